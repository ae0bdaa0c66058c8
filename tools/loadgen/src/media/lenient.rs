//! What the browsers accept the way a real browser would, where str0m is stricter: an answer
//! without `a=group:BUNDLE` for a single m-line, and RTP from an SSRC no SDP announced. Pure
//! functions over SDP text and datagrams; the media thread (`rtc`) applies them; the report
//! counts the answers it completed.

/// The SSRC of an RTP (not RTCP) packet: RFC 7983 §7 (first byte 128-191 is RTP/RTCP) and
/// RFC 5761 §4 (RTCP packet types 192-223 leave 64-95 in the RTP payload-type bits).
pub fn unsignaled_rtp_ssrc(d: &[u8]) -> Option<u32> {
    let pt = d.get(1)? & 0x7f;
    if d.len() < 12 || !(128..=191).contains(&d[0]) || (64..=95).contains(&pt) {
        return None;
    }
    Some(u32::from_be_bytes([d[8], d[9], d[10], d[11]]))
}

/// An answer of one m-line with an `a=mid` but no `a=group:BUNDLE`, with the group added before
/// the m-line; `None` when nothing needs adding. A browser accepts such an answer (it just does not
/// bundle, which with one m-line changes nothing), str0m refuses it, and rtpengine 10.5 drops the
/// group line from its answers (RFC 8843 §7.3.1: an answerer that does not support BUNDLE leaves
/// the group out). Counted in the report.
pub fn with_bundle_group(sdp: &str) -> Option<String> {
    if sdp.contains("a=group:BUNDLE") || sdp.matches("\nm=").count() != 1 {
        return None;
    }
    let mid = sdp
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("a=mid:"))?;
    let at = sdp.find("\nm=")? + 1;
    Some(format!(
        "{}a=group:BUNDLE {mid}\r\n{}",
        &sdp[..at],
        &sdp[at..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_ssrc_is_read_and_rtcp_stun_dtls_are_not() {
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        rtp[1] = 8;
        rtp[8..12].copy_from_slice(&0xdead_beef_u32.to_be_bytes());
        assert_eq!(unsignaled_rtp_ssrc(&rtp), Some(0xdead_beef));
        rtp[1] = 0x80 | 8; // marker bit
        assert_eq!(unsignaled_rtp_ssrc(&rtp), Some(0xdead_beef));
        let mut rtcp = rtp;
        rtcp[1] = 200; // sender report
        assert_eq!(unsignaled_rtp_ssrc(&rtcp), None);
        let mut dtls = rtp;
        dtls[0] = 22;
        assert_eq!(unsignaled_rtp_ssrc(&dtls), None);
        assert_eq!(unsignaled_rtp_ssrc(&rtp[..11]), None);
    }

    #[test]
    fn bundle_group_is_added_only_to_a_one_m_line_answer_without_it() {
        let a = "v=0\r\nt=0 0\r\nm=audio 1 UDP/TLS/RTP/SAVPF 8\r\na=mid:hse\r\n";
        assert_eq!(
            with_bundle_group(a).as_deref(),
            Some(
                "v=0\r\nt=0 0\r\na=group:BUNDLE hse\r\nm=audio 1 UDP/TLS/RTP/SAVPF 8\r\na=mid:hse\r\n"
            )
        );
        assert_eq!(
            with_bundle_group("v=0\r\na=group:BUNDLE 0\r\nm=audio 1 X 8\r\na=mid:0\r\n"),
            None
        );
        assert_eq!(with_bundle_group("v=0\r\nm=audio 1 X 8\r\n"), None);
        assert_eq!(
            with_bundle_group("v=0\r\nm=audio 1 X 8\r\na=mid:0\r\nm=video 2 X 96\r\na=mid:1\r\n"),
            None
        );
    }
}
