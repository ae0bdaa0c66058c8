//! The per-packet path between the legs: browser RTP (decrypted by str0m in RTP mode) out to
//! the IMS peer, and IMS RTP written into str0m to be encrypted toward the browser.
//!
//! Owns: header rewriting (payload type through the [`Relay`] seam, our SSRC toward the IMS,
//! the extended sequence toward the browser) and the relay counters. Must not touch: the
//! demux tables, negotiation, timers.

use std::sync::Arc;
use std::time::Instant;

use str0m::rtp::RtpWrite;

use crate::codec::{Frame, Relay, Way};
use crate::engine::Stats;
use crate::ims_leg;
use crate::session::Session;

/// Browser → IMS: the decrypted RTP str0m gives in RTP mode, renumbered and sent on.
pub(crate) fn relay_to_ims(
    s: &mut Session,
    p: &str0m::rtp::RtpPacket,
    now: Instant,
    out: &mut [u8],
    stats: &Stats,
) {
    if !s.to_ims {
        return;
    }
    let frame = Frame {
        pt: *p.header.payload_type,
        seq: p.header.sequence_number,
        timestamp: p.header.timestamp,
        marker: p.header.marker,
        payload: &p.payload,
    };
    if out.len() < 12 {
        return;
    }
    let (head, body) = out.split_at_mut(12);
    let Some((pt, n)) = s.relay.relay(Way::ToIms, &frame, body) else {
        Stats::add(&stats.dropped, 1);
        return;
    };
    let mut h = [0u8; 12];
    ims_leg::write_rtp_header(
        &mut h,
        pt,
        frame.marker,
        frame.seq,
        frame.timestamp,
        s.ims.ssrc,
    );
    head.copy_from_slice(&h);
    if s.ims.send_rtp(&out[..12 + n], frame.timestamp, now) {
        Stats::add(&stats.packets_to_ims, 1);
        Stats::add(&stats.bytes_to_ims, n as u64);
    }
}

/// IMS → browser: renumbered, written through str0m's direct API so str0m encrypts it.
pub(crate) fn relay_to_browser(
    s: &mut Session,
    rtp: &ims_leg::RtpView<'_>,
    now: Instant,
    out: &mut [u8],
) -> bool {
    let Some(mid) = s.mid else {
        return false;
    };
    let frame = Frame {
        pt: rtp.pt,
        seq: rtp.seq,
        timestamp: rtp.timestamp,
        marker: rtp.marker,
        payload: rtp.payload,
    };
    let Some((pt, n)) = s.relay.relay(Way::ToBrowser, &frame, out) else {
        return false;
    };
    let seq = s.seq_out.next(rtp.ssrc, rtp.seq);
    let mut api = s.rtc.direct_api();
    let Some(tx) = api.stream_tx_by_mid(mid, None) else {
        return false;
    };
    // str0m takes the payload as Arc<[u8]>: one allocation per packet on this path.
    let w = RtpWrite::new(
        pt.into(),
        seq.into(),
        rtp.timestamp,
        now,
        Arc::<[u8]>::from(&out[..n]),
    )
    .marker(rtp.marker);
    tx.write_rtp(w);
    // str0m stamps a written packet for sending on its next timeout (its send queue asks for
    // one "already happened"): give it that now, rather than through the timer heap and a
    // second pass over its output (measured: one timer per relayed packet before).
    if let Err(e) = s.rtc.handle_input(str0m::Input::Timeout(now)) {
        tracing::debug!(error = %e, "str0m timeout after write");
    }
    true
}
