//! Reliable provisional responses (RFC 3262) on the browser's behalf. JsSIP has no 100rel, so
//! when the IMS side's INVITE requires it, the edge makes the browser's 18x reliable (RSeq,
//! `Require: 100rel`), answers the IMS side's PRACK itself, and holds the browser's 2xx until
//! the last reliable 18x is PRACKed (RFC 3262 §3).
//!
//! Owns: the RSeq space of one call and the unacknowledged reliable response. Must not touch:
//! SDP, sockets.

use std::time::{Duration, Instant};

use bytes::Bytes;
use imsgw_sip::{HeaderName, Message, Splice};

use super::Dest;

/// A call whose IMS-side INVITE carried `Require: 100rel`.
#[derive(Debug, Clone)]
pub(super) struct Rel100 {
    next_rseq: u32,
    /// The RSeq of the reliable 18x not PRACKed yet; while set, the next 18x and the 2xx wait.
    pub unacked: Option<u32>,
    /// When the edge stops waiting for that PRACK (64*T1, RFC 3262 §3).
    pub deadline: Option<Instant>,
    /// That response as sent, for its retransmissions (§3: at T1, doubling), and when the next
    /// one is due.
    resend: Option<(Dest, Bytes, Instant, Duration)>,
}

impl Rel100 {
    /// `first` is the first RSeq (RFC 3262 §3: between 1 and 2^31 - 1).
    pub fn new(first: u32) -> Self {
        Self {
            next_rseq: first.clamp(1, (1 << 31) - 1),
            unacked: None,
            deadline: None,
            resend: None,
        }
    }

    /// `bytes` (an 18x) made reliable with the next RSeq, which is now unacknowledged; it is
    /// sent again after `t1`, then at doubling intervals, until PRACKed or `deadline`.
    pub fn make_reliable(
        &mut self,
        to: Dest,
        bytes: &Bytes,
        now: Instant,
        t1: Duration,
        deadline: Instant,
    ) -> Option<Bytes> {
        let msg = Message::parse(bytes.clone()).ok()?;
        let rseq = self.next_rseq;
        let mut s = Splice::new();
        s.insert(
            msg.headers_end(),
            format!("Require: 100rel\r\nRSeq: {rseq}\r\n"),
        );
        let out = s.apply(bytes).ok()?;
        self.next_rseq = rseq.wrapping_add(1).max(1);
        self.unacked = Some(rseq);
        self.deadline = Some(deadline);
        self.resend = Some((to, out.clone(), now + t1, t1));
        Some(out)
    }

    /// A PRACK's `RAck` (RFC 3262 §7.2): whether it acknowledges the unacknowledged response.
    /// If so, that response is acknowledged now.
    pub fn prack(&mut self, msg: &Message) -> bool {
        let Some(rseq) = rack_rseq(msg) else {
            return false;
        };
        if self.unacked == Some(rseq) {
            self.unacked = None;
            self.deadline = None;
            self.resend = None;
            return true;
        }
        false
    }

    /// The 64*T1 wait ended without a PRACK: nothing is retransmitted any more.
    pub fn give_up(&mut self) {
        self.unacked = None;
        self.deadline = None;
        self.resend = None;
    }

    /// When this call next has something to do: a retransmission or the end of the wait.
    pub fn next_time(&self) -> Option<Instant> {
        let resend = self.resend.as_ref().map(|(_, _, at, _)| *at);
        match (resend, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The unacknowledged response again if its retransmission is due (the interval doubles).
    pub fn due_resend(&mut self, now: Instant) -> Option<(Dest, Bytes)> {
        let (to, bytes, at, interval) = self.resend.as_mut()?;
        if *at > now {
            return None;
        }
        *interval *= 2;
        *at = now + *interval;
        Some((*to, bytes.clone()))
    }
}

/// Whether a request requires reliable provisional responses (`Require: 100rel`).
pub(super) fn required(msg: &Message) -> bool {
    msg.headers()
        .iter()
        .filter(|h| h.name == HeaderName::Require)
        .flat_map(|h| msg.value(h).split(|b| *b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"100rel"))
}

/// The response number of a `RAck: <rseq> <cseq> <method>`.
fn rack_rseq(msg: &Message) -> Option<u32> {
    let h = msg
        .headers()
        .iter()
        .find(|h| matches!(&h.name, HeaderName::Other(n) if n.eq_ignore_ascii_case("rack")))?;
    let v = std::str::from_utf8(msg.value(h)).ok()?;
    v.split_ascii_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> Message {
        Message::parse(Bytes::from(text.to_string())).expect("parses")
    }

    #[test]
    fn rfc3262_7_1_reliable_18x_gets_require_and_increasing_rseq() {
        let mut r = Rel100::new(5);
        let ringing = Bytes::from_static(
            b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        );
        let now = Instant::now();
        let t1 = Duration::from_millis(500);
        let out = r
            .make_reliable(Dest::Upstream, &ringing, now, t1, now)
            .expect("made reliable");
        let t = String::from_utf8(out.to_vec()).expect("utf8");
        assert!(t.contains("\r\nRequire: 100rel\r\nRSeq: 5\r\n\r\n"), "{t}");
        assert_eq!(r.unacked, Some(5));
        let wrong = msg(
            "PRACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\nRAck: 4 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(!r.prack(&wrong), "RSeq 4 was never sent");
        assert_eq!(r.unacked, Some(5));
        let right = msg(
            "PRACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\nRAck: 5 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(r.prack(&right));
        assert_eq!(r.unacked, None);
        let out = r
            .make_reliable(Dest::Upstream, &ringing, now, t1, now)
            .expect("made reliable");
        assert!(String::from_utf8_lossy(&out).contains("RSeq: 6\r\n"));
    }

    #[test]
    fn rfc3262_3_require_100rel_is_found_among_other_tags() {
        let m = msg(
            "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nRequire: precondition, 100REL\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(required(&m));
        let m = msg(
            "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nSupported: 100rel\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(!required(&m));
    }
}
