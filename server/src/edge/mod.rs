//! The SIP edge: an RFC 5626 outbound edge proxy between WebSocket clients (RFC 7118) and the
//! operator's P-CSCF, as a transaction-stateful proxy (RFC 3261 §16–17).
//!
//! This module does no I/O and reads no clock: drivers feed it what arrived
//! ([`Edge::from_flow`], [`Edge::from_ims`]), what happened to connections and sends
//! ([`Edge::flow_closed`], [`Edge::send_failed`], [`Edge::upstream_failed`]), the facts it
//! judges tokens by ([`Edge::set_wall_clock`], [`Edge::set_our_keys`],
//! [`Edge::set_external_jwks`], [`Edge::revoke`]) and the time ([`Edge::handle_timeout`]), then
//! drain [`Edge::poll_output`] and sleep until [`Edge::poll_timeout`].
//!
//! One request goes `request` (the RFC 3261 §16.3 steps, in order, on the [`imsgw_sip::View`]
//! validation returns) → `auth` (RFC 8898: who may use the flow) → `route` (where it goes) →
//! `rewrite` (the edits, with `trust`: what a client may not say) → `txn` (a sub-machine that
//! owns its timers and hands back events). `response` matches answers to transactions.
//!
//! Owns: flows known to be open, transactions, routing decisions. Must not touch: sockets,
//! tasks, the system clock, the WAF's store.

pub mod auth;
pub mod digest;
pub mod flow;
#[doc(hidden)]
pub mod fuzz;
pub mod grant;
pub mod local;
mod media;
pub mod nonce;
pub mod pop;
mod rel100;
mod request;
mod response;
mod rewrite;
mod route;
pub mod status;
pub mod trust;
mod txn;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use auth::{Auth, AuthSettings, Elsewhere, Identity, Revoked};
pub use flow::{FlowId, FlowKey};
pub use grant::{GrantAsk, GrantError, GrantStats, Granted};
pub use local::{FlowKind, Local};
pub use media::{MediaEdgeStats, MediaLimits};
pub use status::Status;
pub use trust::StripList;
pub use txn::TxnId;

use txn::{Transactions, TxnEvent};

/// A connection on the IMS side, as the driver knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// A datagram from/to this address over `sip.listen`'s UDP socket.
    Udp(SocketAddr),
    /// A TCP or TLS connection (accepted, or ours to the upstream), by the driver's id.
    Conn(u64),
}

/// Where a message arrived from, as far as matching it to a transaction goes: a request's
/// CANCEL, ACK or retransmission, and a response, count only from where the original went or
/// came from (RFC 3261 §17.2.3 with the link added, so one WebSocket can never reach another's
/// transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arrival {
    /// A WebSocket.
    Flow(FlowId),
    /// The IMS side (any of its links: only the P-CSCF may use them).
    Ims,
}

/// Where an output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Down a WebSocket.
    Flow(FlowId),
    /// To the configured P-CSCF, over the driver's pooled connection or UDP socket.
    Upstream,
    /// Back on a specific IMS-side link (responses to requests that arrived on it).
    Link(Link),
}

/// Something for a driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `bytes` to `to`; if it cannot be sent and `txn` is set, call
    /// [`Edge::send_failed`] with it.
    Send {
        to: Dest,
        bytes: Bytes,
        txn: Option<TxnId>,
    },
    /// Close a WebSocket with this RFC 6455 §7.4.1 code: 1002 for one that spoke something
    /// other than SIP, 1008 for one whose sign-in was revoked.
    CloseFlow {
        flow: FlowId,
        code: u16,
        reason: &'static str,
    },
    /// The flow registered: it no longer counts as an unregistered connection of its address.
    FlowRegistered { flow: FlowId },
    /// The flow's registration was removed (a 2xx to its un-REGISTER): it counts as
    /// unregistered again, and must register anew within the register timeout.
    FlowUnregistered { flow: FlowId },
    /// Ask the WAF for tokens (a code in a REGISTER, a refresh of a held grant) and hand its
    /// answer to [`Edge::granted`] with `ticket`.
    Grant { ticket: u64, ask: GrantAsk },
    /// Fetch this external issuer's JWKS and hand it to [`Edge::set_external_jwks`].
    FetchJwks { issuer: String },
    /// Check a new token's signature (`job.run(now, token.expose())`) off this task and hand
    /// the verdict to [`Edge::token_verdict`]; if that cannot be done now, call
    /// [`Edge::verify_unavailable`] instead. The token is redacted from `Debug`.
    VerifyToken {
        job: Box<imsgw_token::Job>,
        token: imsgw_token::AccessToken,
    },
    /// Hand this to the media engine; what it reports goes to [`Edge::media_event`].
    Media(imsgw_media::Command),
}

/// Counters the drivers export as metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub requests_from_flows: u64,
    pub requests_from_ims: u64,
    pub responses_forwarded: u64,
    pub rejected_400: u64,
    pub flow_failed_430: u64,
    pub forged_403: u64,
    pub timeouts_408: u64,
    pub unavailable_503: u64,
    /// Requests answered with a Bearer challenge or refused for their token (401/403/407).
    pub auth_refused: u64,
    /// ACKs from a WebSocket that no registration or call of that flow owns.
    pub unowned_ack_dropped: u64,
    /// CANCELs that matched no pending INVITE of the link they came on (481).
    pub unmatched_cancel: u64,
    /// Responses that came from another link than the one their request was sent on.
    pub stray_responses_dropped: u64,
    /// Responses from a WebSocket that failed the checks a request gets.
    pub malformed_responses_dropped: u64,
    /// Requests refused because their WebSocket had [`MAX_PENDING_PER_FLOW`] pending.
    pub flow_busy_503: u64,
    /// WebSockets closed for not registering within `websocket.register_timeout_secs`.
    pub register_timeouts: u64,
    /// New tokens whose signature a verifying thread checked (`sip.verify_threads`): verdicts
    /// that came back.
    pub tokens_verified_elsewhere: u64,
    /// New tokens checked on the edge's task after all, the verifying thread being full or
    /// late: one each, however many requests carried it.
    pub tokens_verified_inline: u64,
}

/// Settings of the core, from the config tree.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    pub local: Local,
    /// RFC 3261 T1.
    pub t1: Duration,
    /// What comes off requests and responses from WebSockets (`sip.strip_headers`).
    pub strip: StripList,
    /// Whether the gateway anchors media (`[media]` configured), and its limits: SDP bodies are
    /// then rewritten between the browser's WebRTC and the IMS side's RTP/AVP, never passed
    /// through.
    pub media: Option<media::MediaLimits>,
    /// A WebSocket that has not registered this long after opening is closed
    /// (`websocket.register_timeout_secs`); None: never.
    pub register_timeout: Option<Duration>,
}

/// An open WebSocket as the core knows it.
struct FlowInfo {
    kind: FlowKind,
    remote: SocketAddr,
    /// The identity of the last successful registration on this flow (RFC 8898 §2.1.4).
    identity: Option<Identity>,
    /// The grant the edge holds for this flow (a code it exchanged), if any.
    grant: Option<Box<grant::Held>>,
    /// The key this flow proved it holds, and the proofs it sent (issue 13 §3, `pop`).
    proofs: pop::FlowProofs,
    /// INVITEs this flow sent that the edge authorized, newest last: their ACKs (RFC 3261
    /// §13.2.2.4, a transaction of their own, with the INVITE's Call-ID and From) belong to
    /// them. Bounded by [`CALLS_PER_FLOW`] and [`CALL_MEMORY`].
    calls: VecDeque<Call>,
    /// Whether the flow counts as registered toward its WebSocket task: the last of
    /// [`Output::FlowRegistered`] and [`Output::FlowUnregistered`] that went out.
    counted_registered: bool,
    /// When a WebSocket must have registered by (opened, or its registration removed, one
    /// register timeout before); `Some` while [`Edge::must_register`] holds its one entry.
    register_by: Option<Instant>,
}

/// Calls remembered per flow for their ACKs; the oldest is forgotten first.
const CALLS_PER_FLOW: usize = 16;
/// How long an authorized INVITE's ACK is accepted: Timer C (RFC 3261 §16.6 step 11) plus
/// 64*T1 for retransmitted 2xx (RFC 6026).
const CALL_MEMORY: Duration = Duration::from_secs(181 + 32);

/// An INVITE a flow sent that the edge authorized.
#[derive(Debug, Clone)]
struct Call {
    at: Instant,
    call_id: String,
    from_tag: String,
    identity: Identity,
}

impl FlowInfo {
    fn remember_call(&mut self, now: Instant, call_id: &str, from_tag: &str, id: Identity) {
        self.calls.retain(|c| {
            (c.call_id != call_id || c.from_tag != from_tag) && now < c.at + CALL_MEMORY
        });
        if self.calls.len() >= CALLS_PER_FLOW {
            self.calls.pop_front();
        }
        self.calls.push_back(Call {
            at: now,
            call_id: call_id.to_string(),
            from_tag: from_tag.to_string(),
            identity: id,
        });
    }

    /// The identity of the INVITE an ACK with this Call-ID and From tag completes.
    fn call_identity(&self, now: Instant, call_id: &str, from_tag: &str) -> Option<Identity> {
        self.calls
            .iter()
            .rev()
            .filter(|c| now < c.at + CALL_MEMORY)
            .find(|c| c.call_id == call_id && c.from_tag == from_tag)
            .map(|c| c.identity.clone())
    }
}

/// Requests from one WebSocket that may wait for a final response at once, or for their
/// token's check ([`Edge::park_for_token`]): a browser has a handful; more is a flood,
/// answered `503` (RFC 3261 §21.5.4) before it costs any state.
pub const MAX_PENDING_PER_FLOW: usize = 64;

/// A request waiting for an external issuer's keys, or for its token's signature check.
struct Parked {
    flow: FlowId,
    bytes: Bytes,
    waits: Waits,
    until: Instant,
}

/// What a parked request waits for.
#[derive(PartialEq, Eq)]
enum Waits {
    Jwks(String),
    /// The verdict on the token with this SHA-256.
    Token([u8; 32]),
}

/// How long a request waits for a JWKS fetch before it is answered with what is known.
const PARK_FOR: Duration = Duration::from_secs(3);

/// How long a request waits for its token's check on the verifying thread before it is
/// checked on the edge's task after all (the thread is stuck or far behind).
const VERIFY_WAIT: Duration = Duration::from_secs(2);

/// Requests waiting for token checks at most: beyond, tokens are checked inline.
const MAX_VERIFYING: usize = 4096;

/// The edge proxy state machine.
pub struct Edge {
    settings: EdgeSettings,
    key: FlowKey,
    flows: HashMap<FlowId, FlowInfo>,
    txns: Transactions,
    out: VecDeque<Output>,
    stats: Stats,
    auth: Auth,
    /// Wall-clock seconds for token checks, set by the driver ([`Edge::set_wall_clock`]).
    unix: u64,
    /// When expired revocations were last forgotten.
    pruned_at: u64,
    parked: Vec<Parked>,
    /// Media anchoring, when on.
    media: Option<media::MediaCalls>,
    /// Codes in REGISTER being exchanged, grants held for flows.
    grants: grant::Grants,
    grant_stats: GrantStats,
    /// WebSockets by when they must have registered, oldest first (opened in time order).
    must_register: VecDeque<(Instant, FlowId)>,
}

impl Edge {
    pub fn new(settings: EdgeSettings, key: FlowKey, auth: Auth) -> Self {
        let txns = Transactions::new(settings.t1);
        let settings_media = settings.media;
        Self {
            settings,
            key,
            flows: HashMap::new(),
            txns,
            out: VecDeque::new(),
            stats: Stats::default(),
            auth,
            unix: 0,
            pruned_at: 0,
            media: settings_media.map(media::MediaCalls::new),
            parked: Vec::new(),
            grants: grant::Grants::default(),
            grant_stats: GrantStats::default(),
            must_register: VecDeque::new(),
        }
    }

    /// The wall clock (unix seconds) that token expiry is judged by.
    pub fn set_wall_clock(&mut self, unix: u64) {
        self.unix = unix;
        // Once a minute, forget revocations of tokens that expired (60 s verifier leeway).
        if unix >= self.pruned_at + 60 {
            self.pruned_at = unix;
            self.auth.revoked.prune(unix, 60);
        }
    }

    /// The WAF revoked the token `jti`, valid until `exp` (RFC 7009): requests carrying it, and
    /// requests riding a registration it made, are refused from now on (RFC 8898 §2.1.4). A
    /// flow whose held grant it was (see `grant`) is un-registered and closed.
    pub fn revoke(&mut self, now: Instant, jti: String, exp: u64) {
        self.grant_revoked(now, &jti);
        self.auth.revoked.insert(jti, exp);
    }

    /// Counters of codes exchanged and grants held.
    pub fn grant_stats(&self) -> GrantStats {
        self.grant_stats
    }

    /// Flows whose grant the edge holds.
    pub fn held_grant_count(&self) -> usize {
        self.grants.held_count()
    }

    /// The WAF's signing keys changed (rotation, retirement).
    pub fn set_our_keys(&mut self, ring: &imsgw_token::KeyRing) {
        if let Some(v) = self.auth.verifier.as_mut() {
            v.set_our_keys(ring);
        }
    }

    /// An external issuer's JWKS arrived: requests waiting for it are looked at again.
    pub fn set_external_jwks(&mut self, now: Instant, issuer: &str, jwks: &imsgw_token::JwkSet) {
        if let Some(v) = self.auth.verifier.as_mut()
            && let Err(e) = v.set_external_jwks(issuer, jwks)
        {
            tracing::warn!(issuer, error = %e, "unusable JWKS from an external issuer");
        }
        let waits = Waits::Jwks(issuer.to_owned());
        for p in self.unpark(|p| p.waits == waits) {
            self.replay(now, p);
        }
    }

    /// The parked requests `which` picks, taken out.
    fn unpark(&mut self, which: impl Fn(&Parked) -> bool) -> Vec<Parked> {
        let (ready, waiting): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(which);
        self.parked = waiting;
        ready
    }

    /// A new token's check came back (see [`Output::VerifyToken`]): the requests waiting for
    /// it are decided again, with the verdict. A verdict made with keys replaced since is not
    /// taken: those requests ask again.
    pub fn token_verdict(&mut self, now: Instant, verdict: imsgw_token::Verdict) {
        let hash = verdict.token_hash();
        let Some(verifier) = self.auth.verifier.as_mut() else {
            return;
        };
        self.stats.tokens_verified_elsewhere += 1;
        // Judged at the edge's clock, as the replayed requests are.
        self.auth.elsewhere.settled = verifier.settle(self.unix, verdict).map(|r| (hash, r));
        for p in self.unpark(|p| p.waits == Waits::Token(hash)) {
            self.replay(now, p);
        }
        self.auth.elsewhere.settled = None;
    }

    /// A token's check could not be handed off (the verifying thread is full or gone): the
    /// requests waiting for it are checked here after all.
    pub fn verify_unavailable(&mut self, now: Instant, token_hash: [u8; 32]) {
        let ready = self.unpark(|p| p.waits == Waits::Token(token_hash));
        self.inline_replay(now, ready);
    }

    /// Decides parked requests again checking their tokens on this task.
    fn inline_replay(&mut self, now: Instant, parked: Vec<Parked>) {
        let mut tokens: Vec<[u8; 32]> = (parked.iter())
            .filter_map(|p| match p.waits {
                Waits::Token(hash) => Some(hash),
                Waits::Jwks(_) => None,
            })
            .collect();
        tokens.sort_unstable();
        tokens.dedup();
        self.stats.tokens_verified_inline += tokens.len() as u64;
        self.auth.elsewhere.inline_now = true;
        for p in parked {
            self.replay(now, p);
        }
        self.auth.elsewhere.inline_now = false;
    }

    /// A parked request decided again, as [`Edge::from_flow`] does; it was counted when it
    /// came.
    fn replay(&mut self, now: Instant, p: Parked) {
        let Some(remote) = self.flows.get(&p.flow).map(|f| f.remote) else {
            return;
        };
        request::replay(self, now, p.flow, remote, p.bytes);
    }

    /// A WebSocket finished its handshake.
    pub fn flow_opened(&mut self, flow: FlowId, remote: SocketAddr) {
        self.flow_opened_as(flow, remote, FlowKind::Ws);
    }

    /// A client connected as `kind`: a WebSocket, a phone's TCP or TLS connection, or a
    /// phone's first datagram from a UDP source.
    pub fn flow_opened_as(&mut self, flow: FlowId, remote: SocketAddr, kind: FlowKind) {
        self.flow_opened_at(None, flow, remote, kind);
    }

    /// [`Edge::flow_opened_as`] at `now`: a WebSocket must then register within
    /// `register_timeout`.
    pub fn flow_opened_at(
        &mut self,
        now: Option<Instant>,
        flow: FlowId,
        remote: SocketAddr,
        kind: FlowKind,
    ) {
        let register_by = match (now, self.settings.register_timeout, kind) {
            (Some(now), Some(t), FlowKind::Ws) => {
                self.must_register.push_back((now + t, flow));
                Some(now + t)
            }
            _ => None,
        };
        self.flows.insert(
            flow,
            FlowInfo {
                kind,
                remote,
                identity: None,
                grant: None,
                proofs: pop::FlowProofs::default(),
                calls: VecDeque::new(),
                counted_registered: false,
                register_by,
            },
        );
    }

    /// A WebSocket is gone: its flow ends (RFC 7118 §6, RFC 5626 §5.3). Requests still waiting
    /// on it get `430 Flow Failed`.
    pub fn flow_closed(&mut self, now: Instant, flow: FlowId) {
        self.grant_flow_closed(flow);
        self.flows.remove(&flow);
        shrink_sparse(&mut self.flows);
        // Its waiting requests have nobody to answer: their bytes go now.
        self.parked.retain(|p| p.flow != flow);
        for id in self.txns.pending_to(Dest::Flow(flow)) {
            self.fail_client(now, id, Status::FLOW_FAILED);
        }
        self.media_flow_closed(now, flow);
    }

    /// A 2xx to a REGISTER of `flow` left it `registered` or not. A WebSocket's task hears of
    /// the change (its address's unregistered share, `transport::admission`); one left with no
    /// registration must register again within the register timeout like a new one, or an
    /// un-REGISTER would buy an idle connection for ever.
    fn registration_changed(&mut self, now: Instant, flow: FlowId, registered: bool) {
        let Some(f) = self.flows.get_mut(&flow) else {
            return;
        };
        if f.kind != FlowKind::Ws || f.counted_registered == registered {
            return;
        }
        f.counted_registered = registered;
        if registered {
            self.out.push_back(Output::FlowRegistered { flow });
            return;
        }
        self.out.push_back(Output::FlowUnregistered { flow });
        if let Some(t) = self.settings.register_timeout {
            // One entry per flow, however often it un-registers: a queued one is moved on
            // when it comes due (see `on_timeout`).
            if f.register_by.replace(now + t).is_none() {
                self.must_register.push_back((now + t, flow));
            }
        }
    }

    /// How `flow` is connected (a WebSocket if it is gone).
    fn flow_kind(&self, flow: FlowId) -> FlowKind {
        self.flows.get(&flow).map_or(FlowKind::Ws, |f| f.kind)
    }

    /// Whether a request sent to `dest` is retransmitted by the edge (RFC 3261 §17.1): UDP
    /// toward the P-CSCF, or a phone's UDP flow.
    fn unreliable(&self, dest: Dest) -> bool {
        match dest {
            Dest::Upstream => {
                self.settings.local.transport == crate::config::UpstreamTransport::Udp
            }
            Dest::Flow(flow) => self.flow_kind(flow).unreliable(),
            Dest::Link(_) => false,
        }
    }

    /// Sends a request of the edge's own (a BYE, an un-REGISTER) as a client transaction,
    /// retransmitted where the transport needs it; its answer ends at the edge (no origin).
    fn send_own(&mut self, now: Instant, id: TxnId, branch: String, bytes: Bytes, dest: Dest) {
        let retransmit = self.unreliable(dest);
        self.txns.insert(
            now,
            id,
            branch,
            bytes.clone(),
            None,
            false,
            dest,
            retransmit,
            None,
        );
        self.push(dest, bytes, Some(id));
    }

    /// A client spoke something that is not SIP: a connection is closed (RFC 6455 §7.4.1
    /// 1002 for a WebSocket); a UDP source is not a connection, and anyone can forge one
    /// datagram from it, so that datagram is only dropped.
    fn close_malformed(&mut self, flow: FlowId) {
        if self.flow_kind(flow).unreliable() {
            return;
        }
        self.out.push_back(Output::CloseFlow {
            flow,
            code: 1002,
            reason: "malformed SIP message",
        });
    }

    /// Open flows.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Transactions in memory.
    pub fn txn_count(&self) -> usize {
        self.txns.len()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// One WebSocket message from `flow` (RFC 7118 §5: one SIP message each).
    pub fn from_flow(&mut self, now: Instant, flow: FlowId, bytes: Bytes) {
        let Some(remote) = self.flows.get(&flow).map(|f| f.remote) else {
            return;
        };
        // RFC 5626 §4.4.1 keep-alive: a double CRLF ping gets a single CRLF pong.
        if bytes.iter().all(|b| *b == b'\r' || *b == b'\n') {
            if bytes.as_ref() == b"\r\n\r\n" {
                self.push(Dest::Flow(flow), Bytes::from_static(b"\r\n"), None);
            }
            return;
        }
        request::from_flow(self, now, flow, remote, bytes);
    }

    /// One SIP message from the IMS side: a datagram, or one framed message from a stream.
    pub fn from_ims(&mut self, now: Instant, link: Link, source: SocketAddr, bytes: Bytes) {
        request::from_ims(self, now, link, source, bytes);
    }

    /// A send that carried `txn` could not be done (connection refused, closed, no route):
    /// RFC 3261 §8.1.3.1 / §16.7: a transport error is treated as a `503`; a dead flow is `430`.
    pub fn send_failed(&mut self, now: Instant, txn: TxnId) {
        let status = match self.txns.dest_of(txn) {
            Some(Dest::Flow(_)) => Status::FLOW_FAILED,
            Some(_) => Status::SERVICE_UNAVAILABLE,
            None => return,
        };
        self.fail_client(now, txn, status);
    }

    /// The P-CSCF is unreachable (ICMP port unreachable, or its connection broke): every
    /// request still waiting on it gets `503` now rather than after Timer B/F.
    pub fn upstream_failed(&mut self, now: Instant) {
        for id in self.txns.pending_to(Dest::Upstream) {
            self.fail_client(now, id, Status::SERVICE_UNAVAILABLE);
        }
    }

    /// Fires due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        for ev in self.txns.handle_timeout(now) {
            self.apply(now, ev);
        }
        if self.media_deadline().is_some_and(|d| d <= now) {
            self.media_timeouts(now);
        }
        if self.grants.next_deadline().is_some_and(|d| d <= now) {
            self.grant_timeouts(now);
        }
        while let Some(&(at, flow)) = self.must_register.front()
            && at <= now
        {
            self.must_register.pop_front();
            let Some(f) = self.flows.get_mut(&flow) else {
                continue;
            };
            match f.register_by.take() {
                // Un-registered since it was queued: due later. Queued again at the back, so
                // it may come due up to one timeout late; one entry a flow keeps the queue
                // bounded by the flows.
                Some(by) if by > now => {
                    f.register_by = Some(by);
                    self.must_register.push_back((by, flow));
                    continue;
                }
                Some(_) => {}
                None => continue,
            }
            let idle = f.identity.is_none() && f.grant.is_none() && !self.grants.pending_for(flow);
            if idle {
                self.stats.register_timeouts += 1;
                self.out.push_back(Output::CloseFlow {
                    flow,
                    code: 1008,
                    reason: "no registration within websocket.register_timeout_secs",
                });
            }
        }
        let q = &mut self.must_register;
        if q.capacity() > 1024 && q.len() * 4 < q.capacity() {
            q.shrink_to(q.len() * 2);
        }
        if self.parked.iter().any(|p| p.until <= now) {
            let (tokens, jwks): (Vec<Parked>, Vec<Parked>) = self
                .unpark(|p| p.until <= now)
                .into_iter()
                .partition(|p| matches!(p.waits, Waits::Token(_)));
            for p in jwks {
                self.replay(now, p);
            }
            self.inline_replay(now, tokens);
        }
    }

    /// When [`Edge::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let parked = self.parked.iter().map(|p| p.until).min();
        [
            self.txns.next_deadline(),
            parked,
            self.media_deadline(),
            self.grants.next_deadline(),
            self.must_register.front().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Holds a request until `issuer`'s keys arrive (or [`PARK_FOR`] passes).
    fn park(&mut self, now: Instant, flow: FlowId, bytes: Bytes, issuer: String) {
        self.out.push_back(Output::FetchJwks {
            issuer: issuer.clone(),
        });
        self.parked.push(Parked {
            flow,
            bytes,
            waits: Waits::Jwks(issuer),
            until: now + PARK_FOR,
        });
    }

    /// Holds a request until its token's check comes back (or [`VERIFY_WAIT`] passes); one
    /// check per token however many requests carry it.
    fn park_for_token(
        &mut self,
        now: Instant,
        flow: FlowId,
        bytes: Bytes,
        job: imsgw_token::Job,
        token: imsgw_token::AccessToken,
    ) {
        let waits = Waits::Token(job.token_hash());
        // However many requests carry one token, at most MAX_VERIFYING wait in all: each holds
        // its bytes.
        if self.parked.len() >= MAX_VERIFYING {
            return self.inline_replay(
                now,
                vec![Parked {
                    flow,
                    bytes,
                    waits,
                    until: now,
                }],
            );
        }
        if !self.parked.iter().any(|p| p.waits == waits) {
            self.out.push_back(Output::VerifyToken {
                job: Box::new(job),
                token,
            });
        }
        self.parked.push(Parked {
            flow,
            bytes,
            waits,
            until: now + VERIFY_WAIT,
        });
    }

    /// Requests of `flow` waiting here (for keys or a token's check).
    fn parked_from(&self, flow: FlowId) -> usize {
        self.parked.iter().filter(|p| p.flow == flow).count()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn push(&mut self, to: Dest, bytes: Bytes, txn: Option<TxnId>) {
        self.out.push_back(Output::Send { to, bytes, txn });
    }

    /// Ends a client transaction that got no final response with a locally made one.
    fn fail_client(&mut self, now: Instant, id: TxnId, status: Status) {
        self.fail_client_with(now, id, status, &[]);
    }

    /// [`Edge::fail_client`] with extra headers on the response (a `Warning`).
    fn fail_client_with(
        &mut self,
        now: Instant,
        id: TxnId,
        status: Status,
        extra: &[(&str, &str)],
    ) {
        let mut events = Vec::new();
        self.txns.fail(now, id, status, extra, &mut events);
        for ev in events {
            self.apply(now, ev);
        }
    }

    /// Carries out what the transaction layer asked for.
    fn apply(&mut self, now: Instant, ev: TxnEvent) {
        match ev {
            TxnEvent::Send { to, bytes, txn } => {
                // A retransmission of a request still with the media engine waits for the
                // rewritten one.
                if txn.is_some_and(|t| self.media_holds_txn(t)) {
                    return;
                }
                self.push(to, bytes, txn)
            }
            TxnEvent::Failed(status, id) => {
                match status {
                    Status::REQUEST_TIMEOUT => self.stats.timeouts_408 += 1,
                    Status::FLOW_FAILED => self.stats.flow_failed_430 += 1,
                    Status::SERVICE_UNAVAILABLE => self.stats.unavailable_503 += 1,
                    _ => {}
                }
                self.media_txn_failed(now, id);
            }
        }
    }
}

/// Gives a map's table back once at most a quarter of it is in use, keeping room to double:
/// after a flood of connections the table would otherwise stay at its peak size for ever.
/// Amortised O(1): the next shrink needs the map to empty to a quarter again.
pub(crate) fn shrink_sparse<K: Eq + std::hash::Hash, V, S: std::hash::BuildHasher>(
    m: &mut HashMap<K, V, S>,
) {
    if m.capacity() > 1024 && m.len() * 4 < m.capacity() {
        m.shrink_to(m.len() * 2);
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_elsewhere;
#[cfg(test)]
mod tests_grant;
#[cfg(test)]
mod tests_media;
#[cfg(test)]
mod tests_media_dialog;
#[cfg(test)]
mod tests_media_limits;
#[cfg(test)]
mod tests_media_review;
#[cfg(test)]
mod tests_phones;
#[cfg(test)]
mod tests_pop;
#[cfg(test)]
mod tests_rfc4475;
#[cfg(test)]
mod tests_trust;
