//! The browser leg's building blocks: an ICE-lite, RTP-mode str0m `Rtc` per call sharing the
//! process's one DTLS certificate, and the sequence numbering of what is written into it.
//!
//! Owns: `Rtc` configuration (codecs with the negotiated payload types, ICE credentials, host
//! candidates) and [`SeqOut`]. Must not touch: sockets, SDP of the IMS leg, negotiation state.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::config::{CryptoProvider, DtlsCert};
use str0m::format::{Codec, FormatParams};
use str0m::media::Frequency;
use str0m::rtp::Extension;
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};

use crate::sdp::{CodecName, Direction, RtpMap};

/// What every session shares: the process's one DTLS certificate, crypto, host candidates.
pub struct RtcContext {
    pub crypto: Arc<CryptoProvider>,
    pub cert: DtlsCert,
    pub candidates: Vec<SocketAddr>,
}

pub(crate) fn to_str0m(d: Direction) -> str0m::media::Direction {
    match d {
        Direction::SendRecv => str0m::media::Direction::SendRecv,
        Direction::SendOnly => str0m::media::Direction::SendOnly,
        Direction::RecvOnly => str0m::media::Direction::RecvOnly,
        Direction::Inactive => str0m::media::Direction::Inactive,
    }
}

fn random_token(len: usize) -> String {
    use rand::Rng as _;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// An `Rtc` for the browser leg: ICE-lite, RTP mode, the shared certificate, fresh ICE
/// credentials (RFC 8445 §5.3: ufrag ≥ 24 bits, password ≥ 128 bits of randomness), exactly
/// the given codecs with their payload types.
pub(crate) fn build_rtc(ctx: &RtcContext, codecs: &[RtpMap], now: Instant) -> (Rtc, IceCreds) {
    let creds = IceCreds {
        ufrag: random_token(16),
        pass: random_token(32),
    };
    let mut cfg = RtcConfig::new()
        .set_crypto_provider(ctx.crypto.clone())
        .set_dtls_cert(ctx.cert.clone())
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .set_local_ice_credentials(creds.clone())
        // Every write is polled out at once (relay.rs), so a short queue is enough.
        .set_send_buffer_audio(8)
        // Only the header extensions a relay uses: mid (BUNDLE, RFC 8843) and the audio level
        // the browser shows. No transport-wide congestion control (no bandwidth estimation
        // for a fixed-rate audio relay): its send register kept 1000 records per call and its
        // feedback cost CPU on every report (measured with tools/loadgen/media-bench.sh).
        .clear_extension_map()
        .set_extension(1, Extension::AudioLevel)
        .set_extension(4, Extension::RtpMid)
        .clear_codecs();
    let cc = cfg.codec_config();
    for c in codecs {
        let fmtp = c
            .fmtp
            .as_deref()
            .map(FormatParams::parse_line)
            .unwrap_or_default();
        match c.carried() {
            Some(CodecName::Pcmu) if c.pt == 0 => cc.enable_pcmu(true, false),
            Some(CodecName::Pcma) if c.pt == 8 => cc.enable_pcma(true, false),
            Some(CodecName::G722) if c.pt == 9 => cc.enable_g722(true, false),
            Some(CodecName::Opus) => cc.add_config(
                c.pt.into(),
                None,
                Codec::Opus,
                Frequency::FORTY_EIGHT_KHZ,
                Some(2),
                fmtp,
            ),
            Some(CodecName::TelephoneEvent) => {
                let clock = if c.clock == 48000 {
                    Frequency::FORTY_EIGHT_KHZ
                } else {
                    Frequency::EIGHT_KHZ
                };
                cc.add_config(c.pt.into(), None, Codec::Tele, clock, None, fmtp)
            }
            // A static codec on a dynamic number: str0m knows these only by their numbers.
            _ => {}
        }
    }
    let mut rtc = cfg.build(now);
    for addr in &ctx.candidates {
        match Candidate::host(*addr, "udp") {
            Ok(c) => {
                rtc.add_local_candidate(c);
            }
            Err(e) => tracing::warn!(%addr, error = %e, "host candidate refused"),
        }
    }
    (rtc, creds)
}

/// Extends the IMS side's 16-bit sequence numbers into str0m's 64-bit SRTP index, and keeps
/// it increasing when the IMS peer restarts its stream (new SSRC, e.g. after a long hold), so
/// the browser's SRTP replay window never sees an old index (RFC 3711 §3.3.2).
#[derive(Debug, Default, Clone)]
pub struct SeqOut {
    ssrc: Option<u32>,
    /// The highest input number seen and its extended output index.
    last_in: u16,
    last_out: u64,
}

/// RFC 3550 Appendix A.1: how far a packet may run ahead, or lag behind, and still belong to
/// the same run of numbers; beyond that the stream counts as restarted.
const MAX_DROPOUT: i32 = 3000;
const MAX_MISORDER: i32 = 100;

impl SeqOut {
    pub fn next(&mut self, ssrc: u32, seq: u16) -> u64 {
        if self.ssrc == Some(ssrc) {
            let delta = i32::from(seq.wrapping_sub(self.last_in) as i16);
            if (0..MAX_DROPOUT).contains(&delta) {
                self.last_in = seq;
                self.last_out += delta as u64;
                return self.last_out;
            }
            if (-MAX_MISORDER..0).contains(&delta) {
                // A late packet keeps its older index (the replay window takes it once).
                return self
                    .last_out
                    .saturating_sub(delta.unsigned_abs().into())
                    .max(1);
            }
            // A jump (the peer kept counting through a long hold, or restarted): continue
            // right after the last index so the browser never sees an old one.
        }
        let first = self.ssrc.is_none();
        self.ssrc = Some(ssrc);
        self.last_in = seq;
        // The very first packet starts at its own number (ROC 0).
        self.last_out = if first {
            u64::from(seq).max(1)
        } else {
            self.last_out + 1
        };
        self.last_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_out_extends_across_wrap_rfc3711_3_3_1() {
        let mut s = SeqOut::default();
        assert_eq!(s.next(7, 65534), 65534);
        assert_eq!(s.next(7, 65535), 65535);
        assert_eq!(s.next(7, 0), 65536);
        assert_eq!(s.next(7, 1), 65537);
        // Reordered: an older index, not a jump of a whole cycle.
        assert_eq!(s.next(7, 0), 65536);
        assert_eq!(s.next(7, 2), 65538);
    }

    #[test]
    fn seq_out_continues_when_ims_restarts_stream_no_srtp_replay_rfc3711_3_3_2() {
        let mut s = SeqOut::default();
        assert_eq!(s.next(1, 5000), 5000);
        // After a long hold the peer resumes with a new SSRC and a low sequence number.
        assert_eq!(s.next(2, 3), 5001);
        assert_eq!(s.next(2, 4), 5002);
    }

    #[test]
    fn seq_out_treats_a_big_jump_as_a_restart_not_a_late_packet_rfc3550_a_1() {
        let mut s = SeqOut::default();
        assert_eq!(s.next(1, 100), 100);
        // Same SSRC, 40000 numbers later (more than half the space: looks "behind").
        assert_eq!(s.next(1, 40100), 101);
        assert_eq!(s.next(1, 40101), 102);
        // A forward jump beyond MAX_DROPOUT also continues right after.
        assert_eq!(s.next(1, 50000), 103);
    }
}
