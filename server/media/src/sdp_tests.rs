//! Unit tests of sdp.rs (kept apart so sdp.rs stays under 600 lines).

use super::*;
use std::net::Ipv4Addr;

const CHROME_OFFER: &str = "v=0\r
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE 0 1\r
a=msid-semantic: WMS\r
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r
c=IN IP4 0.0.0.0\r
a=rtcp:9 IN IP4 0.0.0.0\r
a=ice-ufrag:abcd\r
a=ice-pwd:0123456789012345678901\r
a=fingerprint:sha-256 AA:BB\r
a=setup:actpass\r
a=mid:0\r
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r
a=sendrecv\r
a=rtcp-mux\r
a=rtpmap:111 opus/48000/2\r
a=rtcp-fb:111 transport-cc\r
a=fmtp:111 minptime=10;useinbandfec=1\r
a=rtpmap:63 red/48000/2\r
a=fmtp:63 111/111\r
a=rtpmap:9 G722/8000\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:13 CN/8000\r
a=rtpmap:110 telephone-event/48000\r
a=rtpmap:126 telephone-event/8000\r
a=ssrc:1 cname:x\r
m=video 9 UDP/TLS/RTP/SAVPF 96\r
c=IN IP4 0.0.0.0\r
a=mid:1\r
a=rtpmap:96 VP8/90000\r
";

fn ims(codecs: &str, dir: &str) -> String {
    let pts: Vec<&str> = codecs
        .split(',')
        .map(|c| c.split(' ').next().unwrap_or(""))
        .collect();
    let mut s = format!(
        "v=0\r\no=ims 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 30000 RTP/AVP {}\r\n",
        pts.join(" ")
    );
    for c in codecs.split(',') {
        s.push_str(&format!("a=rtpmap:{c}\r\n"));
    }
    s.push_str(&format!("a={dir}\r\n"));
    s
}

fn names(c: &[RtpMap]) -> Vec<(u8, String, u32)> {
    c.iter()
        .map(|c| (c.pt, c.encoding.clone(), c.clock))
        .collect()
}

#[test]
fn browser_offer_parses_audio_codecs_in_m_line_order_rfc4566_5_14() {
    let d = parse_audio(CHROME_OFFER).expect("parses");
    assert_eq!(d.port, 9);
    assert_eq!(d.proto, "UDP/TLS/RTP/SAVPF");
    assert_eq!(d.mid.as_deref(), Some("0"));
    assert!(d.rtcp_mux);
    assert_eq!(d.other_media, 1, "the video m-line is seen and ignored");
    let order: Vec<u8> = d.codecs.iter().map(|c| c.pt).collect();
    assert_eq!(order, vec![111, 63, 9, 0, 8, 13, 110, 126]);
    assert_eq!(
        d.codecs[0].fmtp.as_deref(),
        Some("minptime=10;useinbandfec=1")
    );
    assert_eq!(d.codecs[0].channels, Some(2));
}

#[test]
fn intersection_keeps_carried_codecs_and_pairs_events_by_clock_rfc4733_2_5_1_2() {
    let d = parse_audio(CHROME_OFFER).expect("parses");
    let common = d.common().expect("common codecs");
    assert_eq!(
        names(&common),
        vec![
            (111, "opus".into(), 48000),
            (9, "G722".into(), 8000),
            (0, "PCMU".into(), 8000),
            (8, "PCMA".into(), 8000),
            (110, "telephone-event".into(), 48000),
            (126, "telephone-event".into(), 8000),
        ],
        "red and CN are not carried"
    );
    // Events at 8000 without any 8000 audio codec are dropped.
    let d = parse_audio(&ims(
        "111 opus/48000/2,126 telephone-event/8000",
        "sendrecv",
    ))
    .expect("ok");
    assert_eq!(
        names(&d.common().expect("opus")),
        vec![(111, "opus".into(), 48000)]
    );
}

#[test]
fn amr_wb_only_is_488_naming_offered_and_carried() {
    let d = parse_audio(&ims("97 AMR-WB/16000,98 telephone-event/16000", "sendrecv")).expect("ok");
    let e = d.common().expect_err("nothing common");
    let w = e.to_string();
    assert!(
        w.contains("AMR-WB/16000, telephone-event/16000 offered; imsgw carries PCMA"),
        "{w}"
    );
    assert!(
        w.contains("opus/48000/2") && w.contains("telephone-event/8000"),
        "{w}"
    );
}

#[test]
fn events_alone_are_not_a_common_codec() {
    let d = parse_audio(&ims("101 telephone-event/8000", "sendrecv")).expect("ok");
    assert!(d.common().is_err());
}

#[test]
fn static_payload_types_need_no_rtpmap_rfc3551_6() {
    let sdp = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4000 RTP/AVP 0 8 18\r\n";
    let d = parse_audio(sdp).expect("ok");
    assert_eq!(
        names(&d.codecs),
        vec![(0, "PCMU".into(), 8000), (8, "PCMA".into(), 8000)]
    );
    assert_eq!(d.unknown_formats, vec!["18".to_string()]);
    assert_eq!(
        d.addr,
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9))),
        "session-level c="
    );
}

#[test]
fn opus_must_be_48000_2_rfc7587_7() {
    let d = parse_audio(&ims("96 opus/48000/1,97 opus/16000/2", "sendrecv")).expect("ok");
    assert!(d.common().is_err());
}

#[test]
fn media_level_direction_overrides_session_level_rfc4566_6() {
    let sdp = "v=0\r\nc=IN IP4 1.2.3.4\r\na=sendonly\r\nm=audio 4000 RTP/AVP 0\r\n";
    assert_eq!(parse_audio(sdp).expect("ok").direction, Direction::SendOnly);
    let sdp = "v=0\r\nc=IN IP4 1.2.3.4\r\na=sendonly\r\nm=audio 4000 RTP/AVP 0\r\na=inactive\r\n";
    assert_eq!(parse_audio(sdp).expect("ok").direction, Direction::Inactive);
    let sdp = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\n";
    assert_eq!(parse_audio(sdp).expect("ok").direction, Direction::SendRecv);
}

#[test]
fn direction_algebra_maps_hold_rfc3264_6_1() {
    assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
    assert_eq!(Direction::RecvOnly.reversed(), Direction::SendOnly);
    assert_eq!(Direction::Inactive.reversed(), Direction::Inactive);
    assert_eq!(Direction::SendRecv.reversed(), Direction::SendRecv);
    assert_eq!(
        Direction::SendRecv.and(Direction::RecvOnly),
        Direction::RecvOnly
    );
    assert_eq!(
        Direction::SendOnly.and(Direction::RecvOnly),
        Direction::Inactive
    );
}

#[test]
fn rtcp_attribute_and_mux_are_read_rfc3605_rfc5761() {
    let sdp = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:4005 IN IP4 5.6.7.8\r\na=rtcp-mux\r\n";
    let d = parse_audio(sdp).expect("ok");
    assert_eq!(
        d.rtcp,
        Some((4005, Some(IpAddr::V4(Ipv4Addr::new(5, 6, 7, 8)))))
    );
    assert!(d.rtcp_mux);
}

#[test]
fn ims_sdp_is_plain_rtp_avp_with_nothing_of_webrtc_ts23334_5_20() {
    let d = parse_audio(CHROME_OFFER).expect("parses");
    let common = d.common().expect("common");
    let s = ImsSdp {
        session_id: 77,
        version: 1,
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        port: 40000,
        codecs: &common,
        direction: Direction::SendOnly,
        rtcp_mux: true,
    }
    .build();
    assert!(
        s.starts_with(
            "v=0\r\no=imsgw 77 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        ),
        "{s}"
    );
    assert!(
        s.contains("m=audio 40000 RTP/AVP 111 9 0 8 110 126\r\n"),
        "{s}"
    );
    assert!(s.contains("a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"));
    assert!(s.contains("a=rtpmap:126 telephone-event/8000\r\n"));
    assert!(
        s.contains("a=ptime:20\r\na=sendonly\r\na=rtcp:40001\r\n"),
        "{s}"
    );
    for bad in [
        "ice-",
        "fingerprint",
        "setup",
        "BUNDLE",
        "group",
        "mid",
        "msid",
        "ssrc",
        "rtcp-fb",
        "extmap",
        "SAVPF",
        "red/",
        "CN/",
        "candidate",
    ] {
        assert!(!s.contains(bad), "{bad} must not reach the IMS: {s}");
    }
    // And it parses back to the same facts.
    let back = parse_audio(&s).expect("own SDP parses");
    assert_eq!(back.port, 40000);
    assert_eq!(back.direction, Direction::SendOnly);
    assert_eq!(names(&back.codecs), names(&common));
}

#[test]
fn ipv6_ims_address_is_written_ip6() {
    let codecs = [RtpMap {
        pt: 0,
        encoding: "PCMU".into(),
        clock: 8000,
        channels: None,
        fmtp: None,
    }];
    let s = ImsSdp {
        session_id: 1,
        version: 1,
        addr: "2001:db8::1".parse().expect("v6"),
        port: 40000,
        codecs: &codecs,
        direction: Direction::SendRecv,
        rtcp_mux: false,
    }
    .build();
    assert!(s.contains("c=IN IP6 2001:db8::1\r\n"), "{s}");
    assert!(!s.contains("rtcp-mux"));
}

#[test]
fn narrowed_answer_keeps_only_chosen_pts_and_sets_direction() {
    let answer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0 126\r\na=mid:0\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:126 telephone-event/8000\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\na=sendrecv\r\n";
    let n = narrow_audio(answer, &[0, 126], Direction::RecvOnly);
    assert!(n.contains("m=audio 9 UDP/TLS/RTP/SAVPF 0 126\r\n"), "{n}");
    assert!(!n.contains("opus") && !n.contains(":111"), "{n}");
    assert!(n.contains("a=mid:0\r\na=recvonly\r\n"), "{n}");
    // Only the audio m-line is touched.
    assert!(
        n.ends_with("m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=sendrecv\r\n"),
        "{n}"
    );
}

#[test]
fn odd_and_forged_sdp_is_an_error_never_a_panic() {
    let cases = [
        "",
        "garbage",
        "v=1\r\nm=audio 1 RTP/AVP 0\r\n",
        "v=0\r\nm=audio\r\n",
        "v=0\r\nm=audio 99999 RTP/AVP 0\r\n",
        "v=0\r\nm=audio 4000 RTP/AVP abc\r\n",
        "v=0\r\nm=audio 4000 RTP/AVP 200\r\n",
        "v=0\r\nm=audio 4000 RTP/AVP 96\r\na=rtpmap:96 opus/0\r\n",
        "v=0\r\nm=audio 4000 RTP/AVP 96\r\na=rtpmap:96\r\n",
        "v=0\r\nm=audio 4000 RTP/AVP 96\r\na=fmtp:x y\r\n",
        "v=0\r\nc=IN IP4 not-an-ip\r\nm=audio 4000 RTP/AVP 0\r\n",
        "v=0\r\nc=IN IP6 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\n",
        "v=0\r\nm=video 4000 RTP/AVP 96\r\n",
        "m=audio 4000 RTP/AVP 0\r\n",
    ];
    for c in cases {
        assert!(parse_audio(c).is_err(), "should be refused: {c:?}");
    }
    assert!(matches!(
        parse_audio(&"a".repeat(MAX_SDP_LEN + 1)),
        Err(SdpError::TooLarge(_))
    ));
    let many: String = std::iter::once("v=0\r\n".to_string())
        .chain((0..20).map(|_| "m=audio 1 RTP/AVP 0\r\n".to_string()))
        .collect();
    assert!(parse_audio(&many).is_err(), "m-line count is bounded");
    // An rtpmap for a format not on the m-line is ignored, not added.
    let d = parse_audio(
        "v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:96 opus/48000/2\r\n",
    )
    .expect("ok");
    assert_eq!(d.codecs.len(), 1);
    // Every prefix of a real offer: never a panic.
    for n in 0..CHROME_OFFER.len() {
        let _ = parse_audio(&CHROME_OFFER[..n]);
    }
}
