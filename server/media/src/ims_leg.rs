//! The IMS leg of one call: plain RTP/AVP + RTCP (RFC 3550) on imsgw's own port pair.
//!
//! Owns: the call's two IMS-side sockets, the peer address from the IMS SDP (and latching,
//! when `media.latch` allows it), sending RTP to the peer, and the RTCP of this leg: sender and
//! receiver statistics, SR/RR every ~5 s (RFC 3550 §6.2, §6.4), reading the peer's SR.
//! Must not touch: str0m, the browser leg, SDP text.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;

/// RFC 3550 §6.2: a fixed 5 s minimum interval is what a two-party call uses.
pub const RTCP_INTERVAL: Duration = Duration::from_secs(5);

/// An RTP header read from the wire (RFC 3550 §5.1), borrowed over the datagram.
#[derive(Debug, Clone, Copy)]
pub struct RtpView<'a> {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// Parses an RTP datagram; None for anything that is not version-2 RTP with a whole header.
pub fn parse_rtp(buf: &[u8]) -> Option<RtpView<'_>> {
    if buf.len() < 12 || buf[0] >> 6 != 2 {
        return None;
    }
    let pt = buf[1] & 0x7f;
    // RFC 5761 §4: 64..=95 would be RTCP on a muxed port.
    if (64..=95).contains(&pt) {
        return None;
    }
    let cc = usize::from(buf[0] & 0x0f);
    let mut off = 12 + 4 * cc;
    if buf[0] & 0x10 != 0 {
        let ext = buf.get(off..off + 4)?;
        off += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    let mut end = buf.len();
    if buf[0] & 0x20 != 0 {
        let pad = usize::from(*buf.last()?);
        end = end.checked_sub(pad)?;
    }
    let payload = buf.get(off..end)?;
    Some(RtpView {
        pt,
        marker: buf[1] & 0x80 != 0,
        seq: u16::from_be_bytes([buf[2], buf[3]]),
        timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        payload,
    })
}

/// Writes a 12-byte RTP header (no CSRC, no extension) into `out`.
#[inline]
pub fn write_rtp_header(out: &mut [u8; 12], pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) {
    out[0] = 0x80;
    out[1] = (pt & 0x7f) | if marker { 0x80 } else { 0 };
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[4..8].copy_from_slice(&ts.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

#[derive(Debug, Default)]
struct TxStats {
    packets: u32,
    octets: u32,
    last_ts: u32,
    last_at: Option<Instant>,
}

/// RFC 3550 Appendix A.1 / A.3 / A.8, kept small.
#[derive(Debug, Default)]
struct RxStats {
    ssrc: Option<u32>,
    base_seq: u16,
    max_seq: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    transit: Option<i64>,
    jitter: f64,
    /// Middle 32 bits of the peer's last SR NTP time and when it came (for LSR/DLSR).
    last_sr: Option<(u32, Instant)>,
}

/// One call's IMS-side RTP/RTCP.
#[derive(Debug)]
pub struct ImsLeg {
    pub port: u16,
    pub(crate) rtp: UdpSocket,
    pub(crate) rtcp: UdpSocket,
    peer_rtp: Option<SocketAddr>,
    peer_rtcp: Option<SocketAddr>,
    rtcp_mux: bool,
    latch: bool,
    latched: bool,
    /// Our SSRC toward the IMS; stable for the call.
    pub ssrc: u32,
    tx: TxStats,
    rx: RxStats,
    /// RTP clock of what we send and receive (for SR timestamps and jitter).
    pub clock: u32,
    next_report: Instant,
}

impl ImsLeg {
    pub fn new(pair: crate::ports::PortPair, latch: bool, ssrc: u32, now: Instant) -> ImsLeg {
        ImsLeg {
            port: pair.port,
            rtp: UdpSocket::from_std(pair.rtp),
            rtcp: UdpSocket::from_std(pair.rtcp),
            peer_rtp: None,
            peer_rtcp: None,
            rtcp_mux: false,
            latch,
            latched: false,
            ssrc,
            tx: TxStats::default(),
            rx: RxStats::default(),
            clock: 8000,
            next_report: now + RTCP_INTERVAL,
        }
    }

    /// The peer from the IMS SDP (`c=`, `m=`, `a=rtcp`, `a=rtcp-mux`). A new SDP naming a new
    /// peer replaces the latched one.
    pub fn set_peer(&mut self, rtp: SocketAddr, rtcp: Option<SocketAddr>, mux: bool) {
        if self.peer_rtp != Some(rtp) {
            self.latched = false;
        }
        self.peer_rtp = Some(rtp);
        self.rtcp_mux = mux;
        self.peer_rtcp = Some(if mux {
            rtp
        } else {
            rtcp.unwrap_or_else(|| SocketAddr::new(rtp.ip(), rtp.port().saturating_add(1)))
        });
    }

    /// Whether a datagram from `src` on the RTP (or RTCP when `rtcp`) port belongs to the
    /// peer. With latching, the first source seen after the SDP becomes the peer (a symmetric
    /// RTP peer behind NAT); without it anything else is dropped (a hijack vector otherwise).
    pub fn accept_source(&mut self, src: SocketAddr, rtcp: bool) -> bool {
        let expected = if rtcp { self.peer_rtcp } else { self.peer_rtp };
        if expected == Some(src) {
            return true;
        }
        if !self.latch || self.peer_rtp.is_none() {
            return false;
        }
        if rtcp {
            // RTCP follows the RTP peer's address once latched.
            return self.latched && self.peer_rtp.map(|p| p.ip()) == Some(src.ip());
        }
        if self.latched {
            return false;
        }
        self.latched = true;
        self.peer_rtp = Some(src);
        if self.rtcp_mux {
            self.peer_rtcp = Some(src);
        } else {
            self.peer_rtcp = Some(SocketAddr::new(src.ip(), src.port().saturating_add(1)));
        }
        true
    }

    /// Sends one RTP datagram to the peer; returns whether it left.
    pub fn send_rtp(&mut self, datagram: &[u8], ts: u32, now: Instant) -> bool {
        let Some(peer) = self.peer_rtp else {
            return false;
        };
        match self.rtp.send_to(datagram, peer) {
            Ok(_) => {
                self.tx.packets = self.tx.packets.wrapping_add(1);
                let payload = datagram.len().saturating_sub(12);
                self.tx.octets = self.tx.octets.wrapping_add(payload as u32);
                self.tx.last_ts = ts;
                self.tx.last_at = Some(now);
                true
            }
            Err(e) => {
                tracing::trace!(error = %e, "RTP to IMS not sent");
                false
            }
        }
    }

    /// Counts a received RTP packet (RFC 3550 A.1 sequence, A.8 jitter).
    pub fn on_rtp(&mut self, rtp: &RtpView<'_>, now: Instant, epoch: Instant) {
        let rx = &mut self.rx;
        if rx.ssrc != Some(rtp.ssrc) {
            *rx = RxStats {
                ssrc: Some(rtp.ssrc),
                base_seq: rtp.seq,
                max_seq: rtp.seq,
                last_sr: rx.last_sr,
                ..RxStats::default()
            };
        } else {
            let delta = rtp.seq.wrapping_sub(rx.max_seq);
            if delta != 0 && delta < 0x8000 {
                if rtp.seq < rx.max_seq {
                    rx.cycles = rx.cycles.wrapping_add(1 << 16);
                }
                rx.max_seq = rtp.seq;
            }
        }
        rx.received = rx.received.wrapping_add(1);
        let arrival = (now.duration_since(epoch).as_secs_f64() * f64::from(self.clock)) as i64;
        let transit = arrival - i64::from(rtp.timestamp);
        if let Some(prev) = rx.transit {
            let d = (transit - prev).unsigned_abs() as f64;
            rx.jitter += (d - rx.jitter) / 16.0;
        }
        rx.transit = Some(transit);
    }

    /// Reads an incoming RTCP compound packet: only the peer's SR matters (for LSR/DLSR).
    pub fn on_rtcp(&mut self, buf: &[u8], now: Instant) {
        let mut off = 0;
        while let Some(h) = buf.get(off..off + 4) {
            if h[0] >> 6 != 2 {
                return;
            }
            let len = (usize::from(u16::from_be_bytes([h[2], h[3]])) + 1) * 4;
            if h[1] == 200
                && let Some(sr) = buf.get(off..off + 28)
            {
                let mid = u32::from_be_bytes([sr[10], sr[11], sr[12], sr[13]]);
                self.rx.last_sr = Some((mid, now));
            }
            off += len;
        }
    }

    /// When this leg next wants [`Self::report`].
    pub fn next_report(&self) -> Instant {
        self.next_report
    }

    /// Sends SR (when we sent since the last report) or RR, with SDES CNAME: RFC 3550 §6.1
    /// compound packet. Called when `next_report` has passed.
    pub fn report(&mut self, now: Instant) {
        self.next_report = now + RTCP_INTERVAL;
        let Some(peer) = self.peer_rtcp else {
            return;
        };
        let mut buf = [0u8; 128];
        let n = self.build_report(now, SystemTime::now(), &mut buf);
        let sock = if self.rtcp_mux { &self.rtp } else { &self.rtcp };
        if let Err(e) = sock.send_to(&buf[..n], peer) {
            tracing::trace!(error = %e, "RTCP to IMS not sent");
        }
    }

    fn build_report(&mut self, now: Instant, wall: SystemTime, out: &mut [u8; 128]) -> usize {
        let sender = self
            .tx
            .last_at
            .is_some_and(|t| now.duration_since(t) < 2 * RTCP_INTERVAL);
        let blocks = usize::from(self.rx.ssrc.is_some());
        let mut w = 0;
        let (pt, words) = if sender {
            (200u8, 6 + 6 * blocks)
        } else {
            (201, 1 + 6 * blocks)
        };
        out[0] = 0x80 | blocks as u8;
        out[1] = pt;
        out[2..4].copy_from_slice(&(words as u16).to_be_bytes());
        out[4..8].copy_from_slice(&self.ssrc.to_be_bytes());
        w += 8;
        if sender {
            let since = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
            // NTP epoch is 1900: 70 years (17 leap days) before the Unix epoch.
            let secs = since.as_secs().wrapping_add(2_208_988_800) as u32;
            let frac = ((u64::from(since.subsec_nanos()) << 32) / 1_000_000_000) as u32;
            let elapsed = self
                .tx
                .last_at
                .map(|t| now.duration_since(t))
                .unwrap_or_default();
            let ts = self
                .tx
                .last_ts
                .wrapping_add((elapsed.as_secs_f64() * f64::from(self.clock)) as u32);
            out[w..w + 4].copy_from_slice(&secs.to_be_bytes());
            out[w + 4..w + 8].copy_from_slice(&frac.to_be_bytes());
            out[w + 8..w + 12].copy_from_slice(&ts.to_be_bytes());
            out[w + 12..w + 16].copy_from_slice(&self.tx.packets.to_be_bytes());
            out[w + 16..w + 20].copy_from_slice(&self.tx.octets.to_be_bytes());
            w += 20;
        }
        if let Some(src) = self.rx.ssrc {
            let rx = &mut self.rx;
            let ext_max = rx.cycles.wrapping_add(u32::from(rx.max_seq));
            let expected = ext_max.wrapping_sub(u32::from(rx.base_seq)).wrapping_add(1);
            let lost = i64::from(expected) - i64::from(rx.received);
            let lost = lost.clamp(-0x80_0000, 0x7f_ffff) as i32;
            let exp_int = expected.wrapping_sub(rx.expected_prior);
            let rec_int = rx.received.wrapping_sub(rx.received_prior);
            rx.expected_prior = expected;
            rx.received_prior = rx.received;
            let lost_int = i64::from(exp_int) - i64::from(rec_int);
            let fraction = if exp_int == 0 || lost_int <= 0 {
                0u8
            } else {
                ((lost_int << 8) / i64::from(exp_int)).min(255) as u8
            };
            let (lsr, dlsr) = match rx.last_sr {
                Some((mid, at)) => {
                    let d = now.duration_since(at).as_secs_f64() * 65536.0;
                    (mid, d as u32)
                }
                None => (0, 0),
            };
            out[w..w + 4].copy_from_slice(&src.to_be_bytes());
            out[w + 4] = fraction;
            out[w + 5..w + 8].copy_from_slice(&(lost as u32).to_be_bytes()[1..]);
            out[w + 8..w + 12].copy_from_slice(&ext_max.to_be_bytes());
            out[w + 12..w + 16].copy_from_slice(&(rx.jitter as u32).to_be_bytes());
            out[w + 16..w + 20].copy_from_slice(&lsr.to_be_bytes());
            out[w + 20..w + 24].copy_from_slice(&dlsr.to_be_bytes());
            w += 24;
        }
        // SDES with CNAME "imsgw" (RFC 3550 §6.5.1), padded to a 32-bit boundary.
        const CNAME: &[u8] = b"imsgw";
        let item = 2 + CNAME.len() + 1; // type, len, text, END
        let chunk = (4 + item).div_ceil(4) * 4;
        out[w] = 0x81;
        out[w + 1] = 202;
        out[w + 2..w + 4].copy_from_slice(&((chunk / 4) as u16).to_be_bytes());
        out[w + 4..w + 8].copy_from_slice(&self.ssrc.to_be_bytes());
        out[w + 8] = 1;
        out[w + 9] = CNAME.len() as u8;
        out[w + 10..w + 10 + CNAME.len()].copy_from_slice(CNAME);
        for b in &mut out[w + 10 + CNAME.len()..w + 4 + chunk] {
            *b = 0;
        }
        w + 4 + chunk
    }
}

#[cfg(test)]
#[path = "ims_leg_tests.rs"]
mod tests;
