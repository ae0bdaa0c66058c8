//! Proxy transactions (RFC 3261 §16, §17; RFC 6026 for the INVITE "Accepted" state): one entry
//! pairs the server side (where the request came from, to answer or absorb retransmissions) with
//! the client side (where we sent it, our branch, retransmit and timeout timers).
//!
//! A sub-machine: it owns its timers and hands back [`TxnEvent`]s (what to send, what failed)
//! for the edge to carry out; it never reaches into the edge, routing or the flow table.
//!
//! Owns: the transaction table and its timers. Must not touch: message routing decisions.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use imsgw_sip::{Message, response_to};

use super::{Arrival, Dest, FlowId, Identity, Status};

/// What the transaction layer asks the edge to do.
#[derive(Debug)]
pub enum TxnEvent {
    /// Send `bytes` to `to` (a retransmission, a CANCEL, a local final response); a failed send
    /// of one that carries `txn` is reported back with [`super::Edge::send_failed`].
    Send {
        to: Dest,
        bytes: Bytes,
        txn: Option<TxnId>,
    },
    /// Transaction `TxnId` ended with a status the edge made itself (for the counters, and for
    /// the media side: a call whose initial INVITE failed this way has no media either).
    Failed(Status, TxnId),
}

/// A transaction, by table id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnId(u64);

/// How a server transaction is recognised (RFC 3261 §17.2.3): top Via branch and sent-by, and
/// the method (ACK and CANCEL look up the INVITE's entry), plus where it arrived: a client
/// writes its own branch and sent-by, so without the link one WebSocket could retransmit,
/// CANCEL or ACK into another's transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerKey {
    pub branch: String,
    pub sent_by: String,
    pub method: String,
    pub arrival: Arrival,
}

/// Client-side state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Sent, nothing heard.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// INVITE answered 2xx: forward retransmitted 2xx until the timer ends (RFC 6026 §7.2).
    Accepted,
    /// Final response seen or made.
    Completed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    None,
    /// CANCEL asked for before a provisional arrived (RFC 3261 §9.1: wait for one).
    Pending,
    Sent,
}

pub struct Txn {
    pub branch: String,
    pub invite: bool,
    /// The request as we forwarded it, for retransmission.
    pub sent: Bytes,
    /// What its CANCEL or ACK needs (an INVITE; nothing else gets either from the edge).
    pub hop: Option<Hop>,
    pub dest: Dest,
    pub state: State,
    pub cancel: Cancel,
    /// Where responses go and what the request looked like when it arrived, for local
    /// responses. `None` for requests the edge made itself (a CANCEL), whose answers are ours.
    pub origin: Option<Origin>,
    pub final_sent: bool,
    retransmit: bool,
    retrans_at: Option<Instant>,
    retrans_every: Duration,
    timeout_at: Option<Instant>,
    remove_at: Option<Instant>,
    /// The last response sent back on a UDP origin, re-sent when the request is retransmitted.
    pub last_response: Option<Bytes>,
    /// For a REGISTER from a flow: the identity the flow has once a 2xx arrives (`None` for a
    /// de-registration).
    pub registration: Option<(FlowId, Option<Identity>)>,
}

pub struct Origin {
    pub reply_to: Dest,
    pub request: Message,
    pub key: Option<ServerKey>,
    /// The request came over UDP (the IMS side's socket, or a phone's UDP flow): its final
    /// response is kept to answer retransmissions, and the transaction lingers 64*T1
    /// (RFC 3261 §17.2.1, §17.2.2).
    pub unreliable: bool,
}

pub struct Transactions {
    t1: Duration,
    next_id: u64,
    salt: u32,
    by_id: HashMap<TxnId, Txn>,
    by_branch: HashMap<String, TxnId>,
    by_server: HashMap<ServerKey, TxnId>,
    /// Unfinished transactions sent down each flow, so a closing flow finds its own without a
    /// scan of the table.
    pending_by_flow: HashMap<FlowId, Vec<TxnId>>,
    /// How many unfinished transactions each flow started (its requests waiting for a final).
    pending_from: HashMap<FlowId, usize>,
    timers: BinaryHeap<Reverse<(Instant, TxnId)>>,
}

/// RFC 3261 T2 and T4.
const T2: Duration = Duration::from_secs(4);
const T4: Duration = Duration::from_secs(5);
/// RFC 3261 §16.6 step 11: Timer C, "greater than 3 minutes".
const TIMER_C: Duration = Duration::from_secs(181);

impl Transactions {
    pub fn new(t1: Duration) -> Self {
        Self {
            t1,
            next_id: 1,
            salt: rand::random(),
            by_id: HashMap::new(),
            by_branch: HashMap::new(),
            by_server: HashMap::new(),
            pending_by_flow: HashMap::new(),
            pending_from: HashMap::new(),
            timers: BinaryHeap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// A fresh branch (RFC 3261 §8.1.1.7 magic cookie) whose tail is `loop_hash`, so a request
    /// coming back unchanged is seen as a loop (§16.3 item 4) while a spiral is not.
    pub fn new_branch(&mut self, loop_hash: u32) -> (TxnId, String) {
        let id = TxnId(self.next_id);
        self.next_id += 1;
        (
            id,
            format!("z9hG4bK{:08x}{:x}.{:08x}", self.salt, id.0, loop_hash),
        )
    }

    /// Records a transaction whose request was just sent.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        now: Instant,
        id: TxnId,
        branch: String,
        sent: Bytes,
        hop: Option<Hop>,
        invite: bool,
        dest: Dest,
        retransmit: bool,
        origin: Option<Origin>,
    ) {
        let timeout = 64 * self.t1;
        let mut t = Txn {
            branch: branch.clone(),
            invite,
            sent,
            hop,
            dest,
            state: State::Trying,
            cancel: Cancel::None,
            origin,
            final_sent: false,
            retransmit,
            retrans_at: retransmit.then(|| now + self.t1),
            retrans_every: self.t1,
            timeout_at: Some(now + timeout),
            remove_at: None,
            last_response: None,
            registration: None,
        };
        if let Some(key) = t.origin.as_ref().and_then(|o| o.key.clone()) {
            self.by_server.insert(key, id);
        }
        self.by_branch.insert(branch, id);
        if let Dest::Flow(flow) = dest {
            self.pending_by_flow.entry(flow).or_default().push(id);
        }
        if let Some(Dest::Flow(flow)) = t.origin.as_ref().map(|o| o.reply_to) {
            *self.pending_from.entry(flow).or_default() += 1;
        }
        self.schedule(id, &mut t);
        self.by_id.insert(id, t);
    }

    pub fn by_branch(&self, branch: &str) -> Option<TxnId> {
        self.by_branch.get(branch).copied()
    }

    pub fn by_server(&self, key: &ServerKey) -> Option<TxnId> {
        self.by_server.get(key).copied()
    }

    pub fn get(&self, id: TxnId) -> Option<&Txn> {
        self.by_id.get(&id)
    }

    pub fn get_mut(&mut self, id: TxnId) -> Option<&mut Txn> {
        self.by_id.get_mut(&id)
    }

    /// Requests from `flow` still waiting for a final response.
    pub fn pending_from(&self, flow: FlowId) -> usize {
        self.pending_from.get(&flow).copied().unwrap_or(0)
    }

    pub fn dest_of(&self, id: TxnId) -> Option<Dest> {
        self.by_id.get(&id).map(|t| t.dest)
    }

    /// Transactions to `dest` still waiting for a final response, oldest first.
    pub fn pending_to(&self, dest: Dest) -> Vec<TxnId> {
        let waiting = |t: &Txn| matches!(t.state, State::Trying | State::Proceeding);
        let mut ids: Vec<TxnId> = match dest {
            Dest::Flow(flow) => self
                .pending_by_flow
                .get(&flow)
                .into_iter()
                .flatten()
                .filter(|id| self.by_id.get(id).is_some_and(waiting))
                .copied()
                .collect(),
            _ => self
                .by_id
                .iter()
                .filter(|(_, t)| t.dest == dest && waiting(t))
                .map(|(id, _)| *id)
                .collect(),
        };
        ids.sort();
        ids
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// A provisional response arrived (RFC 3261 §17.1.1.2, §17.1.2.2, §16.7 step 2).
    pub fn provisional(&mut self, now: Instant, id: TxnId) {
        let Some(mut t) = self.by_id.remove(&id) else {
            return;
        };
        if t.state == State::Trying {
            t.state = State::Proceeding;
        }
        if t.invite {
            t.retrans_at = None;
            t.timeout_at = Some(now + TIMER_C);
        } else if t.retransmit {
            t.retrans_every = T2;
        }
        self.schedule(id, &mut t);
        self.by_id.insert(id, t);
    }

    /// A final response arrived or was made: stop sending, keep the entry as long as
    /// retransmissions can still arrive on either side.
    pub fn finished(&mut self, now: Instant, id: TxnId, status: u16) {
        let Some(mut t) = self.by_id.remove(&id) else {
            return;
        };
        if matches!(t.state, State::Trying | State::Proceeding)
            && let Some(Dest::Flow(flow)) = t.origin.as_ref().map(|o| o.reply_to)
            && let Some(n) = self.pending_from.get_mut(&flow)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.pending_from.remove(&flow);
            }
        }
        t.state = if t.invite && (200..300).contains(&status) {
            State::Accepted
        } else {
            State::Completed
        };
        t.retrans_at = None;
        t.timeout_at = None;
        self.unindex_flow(id, t.dest);
        let udp_origin = t.origin.as_ref().is_some_and(|o| o.unreliable);
        let linger = if t.invite || udp_origin {
            // Timers D, M (RFC 6026), and J/H for a UDP server side: 64*T1.
            64 * self.t1
        } else if t.retransmit {
            T4
        } else {
            Duration::ZERO
        };
        t.remove_at = Some(now + linger);
        self.schedule(id, &mut t);
        self.by_id.insert(id, t);
    }

    /// Makes a local final response for `id` if none was sent, and finishes the transaction.
    pub fn fail(
        &mut self,
        now: Instant,
        id: TxnId,
        status: Status,
        extra: &[(&str, &str)],
        out: &mut Vec<TxnEvent>,
    ) {
        let Some(t) = self.by_id.get_mut(&id) else {
            return;
        };
        if matches!(t.state, State::Completed | State::Accepted) {
            return;
        }
        out.push(TxnEvent::Failed(status, id));
        if !t.final_sent {
            t.final_sent = true;
            if let Some(origin) = t.origin.as_ref() {
                let to_tag = local_tag(&t.branch);
                let bytes = response_to(
                    &origin.request,
                    status.code,
                    status.reason,
                    Some(&to_tag),
                    extra,
                );
                if origin.unreliable {
                    t.last_response = Some(bytes.clone());
                }
                out.push(TxnEvent::Send {
                    to: origin.reply_to,
                    bytes,
                    txn: None,
                });
            }
        }
        self.finished(now, id, status.code);
    }

    /// The CANCEL for the INVITE of `id` toward where the INVITE went (RFC 3261 §9.1, §16.10),
    /// once: `None` if it was sent already, `id` is no INVITE, or a CANCEL must wait for a
    /// provisional response first (then it goes out when one arrives).
    pub fn cancel(&mut self, id: TxnId) -> Option<(Dest, Bytes)> {
        let t = self.by_id.get_mut(&id)?;
        if t.cancel == Cancel::Sent || !t.invite {
            return None;
        }
        match t.state {
            State::Proceeding => {
                t.cancel = Cancel::Sent;
                let hop = t.hop.as_ref()?;
                Some((t.dest, hop_request(hop, "CANCEL", None)))
            }
            State::Trying => {
                t.cancel = Cancel::Pending;
                None
            }
            State::Accepted | State::Completed => None,
        }
    }

    /// Fires due timers: retransmissions (Timers A and E, on UDP), timeouts (B, F, C: `408`,
    /// with a CANCEL for an INVITE that had a provisional), and removal of finished entries.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<TxnEvent> {
        let mut out = Vec::new();
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(t) = self.by_id.get(&id) else {
                continue;
            };
            if t.remove_at.is_some_and(|r| r <= now) {
                self.remove(id);
                continue;
            }
            if t.timeout_at.is_some_and(|r| r <= now) {
                if t.invite
                    && t.state == State::Proceeding
                    && let Some((to, bytes)) = self.cancel(id)
                {
                    out.push(TxnEvent::Send {
                        to,
                        bytes,
                        txn: None,
                    });
                }
                self.fail(now, id, Status::REQUEST_TIMEOUT, &[], &mut out);
                continue;
            }
            let Some(mut t) = self.by_id.remove(&id) else {
                continue;
            };
            if t.retrans_at.is_some_and(|r| r <= now) {
                t.retrans_every = if t.invite {
                    t.retrans_every * 2
                } else {
                    (t.retrans_every * 2).min(T2)
                };
                t.retrans_at = Some(now + t.retrans_every);
                out.push(TxnEvent::Send {
                    to: t.dest,
                    bytes: t.sent.clone(),
                    txn: Some(id),
                });
            }
            // Re-arm the entry for its next deadline.
            self.schedule(id, &mut t);
            self.by_id.insert(id, t);
        }
        out
    }

    fn schedule(&mut self, id: TxnId, t: &mut Txn) {
        let next = [t.retrans_at, t.timeout_at, t.remove_at]
            .into_iter()
            .flatten()
            .min();
        if let Some(at) = next {
            self.timers.push(Reverse((at, id)));
        }
    }

    fn unindex_flow(&mut self, id: TxnId, dest: Dest) {
        if let Dest::Flow(flow) = dest
            && let Some(ids) = self.pending_by_flow.get_mut(&flow)
        {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.pending_by_flow.remove(&flow);
            }
        }
    }

    fn remove(&mut self, id: TxnId) {
        if let Some(t) = self.by_id.remove(&id) {
            self.unindex_flow(id, t.dest);
            self.by_branch.remove(&t.branch);
            if let Some(key) = t.origin.and_then(|o| o.key)
                && self.by_server.get(&key) == Some(&id)
            {
                self.by_server.remove(&key);
            }
        }
    }
}

/// The To tag for responses the edge makes itself: stable per transaction, so a retransmitted
/// request gets the same answer (RFC 3261 §8.2.6.2).
pub fn local_tag(branch: &str) -> String {
    let h = fnv(branch.as_bytes());
    format!("gw{h:08x}")
}

pub fn fnv(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// What a hop-by-hop request for a forwarded request needs, kept when it is sent so that its
/// CANCEL or ACK is built without parsing anything again: the Request-URI, our Via, the Route
/// values we sent, From, To, Call-ID and the CSeq number (RFC 3261 §9.1, §17.1.1.3).
#[derive(Debug, Clone)]
pub struct Hop {
    pub request_uri: String,
    /// Our Via value (with our branch).
    pub via: String,
    /// The Route values we sent, in order.
    pub routes: Vec<String>,
    pub from: String,
    pub to: String,
    pub call_id: String,
    pub seq: u32,
    /// The identity assertion lines the request carried (each ending in CRLF): a CANCEL or ACK
    /// the edge sends for a flow's request states who sent it too.
    pub assertion: Vec<String>,
}

/// The CANCEL of RFC 3261 §9.1 or the ACK for a non-2xx final of §17.1.1.3 toward where the
/// request went: same Request-URI, Call-ID, From, CSeq number, our Via only, the Routes we
/// sent; To from `to` (the response's, for ACK).
pub fn hop_request(hop: &Hop, method: &str, to: Option<&[u8]>) -> Bytes {
    hop_request_with(hop, method, to, &[])
}

/// [`hop_request`] with more header lines (without their CRLF) before Content-Length: a BYE
/// of the edge's own gives its `Reason` (RFC 3326).
pub fn hop_request_with(hop: &Hop, method: &str, to: Option<&[u8]>, extra: &[&str]) -> Bytes {
    let mut b = BytesMut::with_capacity(512);
    let mut line = |parts: &[&[u8]]| {
        for p in parts {
            b.extend_from_slice(p);
        }
        b.extend_from_slice(b"\r\n");
    };
    line(&[
        method.as_bytes(),
        b" ",
        hop.request_uri.as_bytes(),
        b" SIP/2.0",
    ]);
    line(&[b"Via: ", hop.via.as_bytes()]);
    if !hop.routes.is_empty() {
        line(&[b"Route: ", hop.routes.join(", ").as_bytes()]);
    }
    line(&[b"From: ", hop.from.as_bytes()]);
    line(&[b"To: ", to.unwrap_or(hop.to.as_bytes())]);
    line(&[b"Call-ID: ", hop.call_id.as_bytes()]);
    line(&[format!("CSeq: {} {method}", hop.seq).as_bytes()]);
    for a in &hop.assertion {
        // Each already ends in CRLF.
        line(&[a.trim_end_matches("\r\n").as_bytes()]);
    }
    line(&[b"Max-Forwards: 70"]);
    for e in extra {
        line(&[e.as_bytes()]);
    }
    line(&[b"Content-Length: 0"]);
    b.extend_from_slice(b"\r\n");
    b.freeze()
}
