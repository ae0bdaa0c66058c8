//! Media anchoring as the edge sees it (TS 23.228 Annex U, TS 23.334 §5.20): which SDP body in
//! a forwarded message is an offer and which an answer (RFC 3264, RFC 6337), which call it
//! belongs to, and holding that message back until the media engine (`imsgw-media`) has put
//! the other leg's SDP in its place. Messages of one call leave in the order they came: while
//! one waits for the engine, later ones of that call wait behind it.
//!
//! A call is known by its WebSocket flow and Call-ID: when two browsers on this gateway call
//! each other through the IMS, both legs share a Call-ID but not a flow.
//!
//! Owns: the calls' offer/answer state, the held messages, what a BYE of our own needs (the
//! dialog's route set, target, tags, CSeq). Must not touch: SDP contents (the engine's), sockets.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use imsgw_media::{CallRef, Command, EndReason, Event};
use imsgw_sip::{HeaderName, Message, Method, Splice, View};
use tracing::{debug, info, warn};

use super::local::OurRoute;
use super::rel100::{self, Rel100};
use super::status::Status;
use super::txn::TxnId;
use super::{Dest, Edge, FlowId, Output};

/// Calls one WebSocket may have at once (a browser has one or two); an INVITE past it is
/// refused `486 Busy Here` before it costs a media session (STYLE.md §14).
pub const CALLS_PER_FLOW: usize = 4;
/// Rewrites remembered per party of a call (see `Call::last`).
const REWRITES_KEPT: usize = 4;
/// Messages of one call held behind one the engine is rewriting; past it the call is broken
/// (a flood or a hung engine) and later messages pass unheld and are counted.
const HELD_PER_CALL: usize = 32;

/// What the operator bounds the media side with (`[media]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLimits {
    /// `media.max_calls_per_user`: calls with media one IMPU may have at once, over all its
    /// connections; an INVITE past it is refused `403` from the browser, `486` toward it.
    pub calls_per_user: usize,
}

/// Who a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Party {
    Browser,
    Ims,
}

impl Party {
    fn index(self) -> usize {
        match self {
            Party::Browser => 0,
            Party::Ims => 1,
        }
    }
}

type CallKey = (FlowId, String);

/// The media calls of the edge.
#[derive(Default)]
pub(super) struct MediaCalls {
    calls: HashMap<CallKey, Call>,
    by_ref: HashMap<CallRef, CallKey>,
    next_ref: CallRef,
    next_req: u64,
    /// Client transactions whose request waits for the engine: their retransmissions are not
    /// sent until the rewritten request is.
    held_txns: HashSet<TxnId>,
    /// Calls under RFC 3262 (their deadlines are looked for only when there are some).
    rel100_calls: usize,
    /// Calls with media per IMPU, over all of the person's connections (`Call::user`).
    per_user: HashMap<String, usize>,
    /// `media.max_calls_per_user`.
    max_per_user: usize,
    /// The engine's thread ended (its event channel closed): no call gets media any more.
    gone: bool,
    pub stats: MediaEdgeStats,
}

/// Counters of the edge's media side.
#[derive(Debug, Default, Clone, Copy)]
pub struct MediaEdgeStats {
    pub calls: u64,
    pub offers_refused: u64,
    pub byes_sent: u64,
    pub unmatched_sdp: u64,
}

struct Call {
    call: CallRef,
    caller: Party,
    /// The offer waiting for its answer, and who made it.
    offer: Option<Party>,
    confirmed: bool,
    held: VecDeque<Held>,
    /// The last SDP bodies from each party (newest last, at most [`REWRITES_KEPT`]), with the
    /// CSeq number each came under, and what it became: a retransmitted 2xx (also one of an
    /// earlier INVITE, whose ACK was lost, after a re-offer: RFC 6026 §7.2), or a 200
    /// repeating its 183's answer, gets the same rewrite without a second negotiation; a
    /// re-INVITE repeating the same SDP (a session refresh) has a new CSeq and is an offer.
    last: [VecDeque<(u32, Bytes, Bytes)>; 2],
    dialog: Dialog,
    /// RFC 3262 on the browser's behalf, when the IMS side's INVITE requires it.
    rel100: Option<Rel100>,
    /// The initial INVITE's transaction: cancelled if media ends before it is answered.
    invite: Option<TxnId>,
    /// The IMPU the call counts against (`media.max_calls_per_user`): the identity that
    /// authorised its INVITE, or toward a browser the one its flow registered; none without
    /// tokens.
    user: Option<String>,
}

/// A message on its way out, maybe waiting for the engine.
struct Held {
    to: Dest,
    bytes: Bytes,
    txn: Option<TxnId>,
    /// A response that a UDP retransmission of its request is answered with.
    last_response_of: Option<TxnId>,
    /// The engine request it waits for, the CSeq number and SDP body it sent, and who wrote
    /// that body.
    wait: Option<(u64, u32, Bytes, Party)>,
    /// What to do when the engine refuses the SDP.
    refusal: OnRefusal,
    /// Its part in RFC 3262 (the browser's responses to a 100rel INVITE).
    rel: Rel,
}

/// A held response's part in RFC 3262.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rel {
    None,
    /// An 18x the edge sends reliably: after the previous one is PRACKed (§3).
    Provisional,
    /// The 2xx: not before the last reliable 18x is PRACKed (§3).
    Final,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnRefusal {
    /// A request with its own transaction: answer its sender with the engine's status.
    Answer { initial: bool },
    /// A response or an ACK: pass it on unchanged (the far end's own SDP check ends the call).
    PassOn,
}

/// What a BYE of the gateway's own toward the IMS needs (RFC 3261 §12.2.1.1).
#[derive(Debug, Default, Clone)]
struct Dialog {
    /// The browser's side of the dialog: From of our BYE.
    local: Option<String>,
    /// The IMS side: To of our BYE.
    remote: Option<String>,
    /// The IMS side's target (its Contact URI).
    target: Option<String>,
    /// The route set toward the IMS, without our own entries.
    routes: Vec<String>,
    /// The browser side's highest CSeq number so far.
    cseq: u32,
    /// The browser's target (its Contact URI): where a BYE toward the browser goes.
    browser_target: Option<String>,
    /// The IMS side's highest CSeq number so far.
    ims_cseq: u32,
    /// The identity assertion lines (`sip.identity_assertion`, each ending in CRLF) the
    /// browser's side of the dialog is sent with: a BYE toward the IMS states it too.
    assertion: Vec<String>,
}

/// What the edge knows about a message it is about to send.
pub(super) struct Outgoing<'a> {
    pub flow: FlowId,
    pub from: Party,
    pub msg: &'a Message,
    pub to: Dest,
    pub bytes: Bytes,
    pub txn: Option<TxnId>,
    pub last_response_of: Option<TxnId>,
    /// The IMPU a call this request makes counts against (an INVITE's; see request.rs).
    pub user: Option<String>,
}

/// What a message carries, as far as the media side goes.
enum Body {
    None,
    /// One `application/sdp` body.
    Sdp(Bytes),
    /// A body of another type, or of no or several stated types (`multipart/*` may hold SDP,
    /// RFC 5621; a peer may take an untyped body for SDP): the engine cannot rewrite it.
    Other,
}

fn body_of(msg: &Message) -> Body {
    if msg.body().is_empty() {
        return Body::None;
    }
    let mut types = msg
        .headers()
        .iter()
        .filter(|h| h.name == HeaderName::ContentType);
    let (Some(h), None) = (types.next(), types.next()) else {
        return Body::Other;
    };
    let Ok(ct) = std::str::from_utf8(msg.value(h)) else {
        return Body::Other;
    };
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/sdp") {
        return Body::Other;
    }
    Body::Sdp(msg.as_bytes().slice(msg.body_range()))
}

/// RFC 3261 §13.2.1, RFC 3262 §5, RFC 3311 §5 (RFC 6337 §2.1): the methods whose messages
/// carry offers and answers. A body on any other request is no offer.
fn offer_answer_method(method: &Method) -> bool {
    matches!(
        method,
        Method::Invite | Method::Update | Method::Prack | Method::Ack
    )
}

impl Edge {
    /// A request from one side about to be forwarded to the other: sent now, or held while the
    /// engine rewrites its SDP. Returns the request when media anchoring is off.
    pub(super) fn media_request(&mut self, now: Instant, out: Outgoing<'_>) {
        let Some(mc) = self.media.as_mut() else {
            return self.push(out.to, out.bytes, out.txn);
        };
        let msg = out.msg;
        let Some(method) = msg.method().cloned() else {
            return self.push(out.to, out.bytes, out.txn);
        };
        let call_id = msg.call_id().unwrap_or_default().to_string();
        let key = (out.flow, call_id);
        let to_tag = msg.to().ok().and_then(|t| t.tag().map(str::to_string));
        let oa = offer_answer_method(&method);
        let mut out = out;
        let sdp = match body_of(msg) {
            Body::Other if oa && method != Method::Ack => {
                // Only SDP is rewritten; any other body of an offer/answer request could carry
                // one around the engine (RFC 3261 §21.4.13).
                mc.stats.offers_refused += 1;
                if let Some(t) = out.txn {
                    let why = "only application/sdp bodies are accepted with media anchoring";
                    let warning = super::request::warning(why);
                    let extra = [("Accept", "application/sdp"), ("Warning", warning.as_str())];
                    self.fail_client_with(now, t, Status::UNSUPPORTED_MEDIA_TYPE, &extra);
                }
                return;
            }
            Body::Other if oa => {
                out.bytes = strip_body(&out.bytes);
                None
            }
            Body::Sdp(b) if oa || !mc.calls.contains_key(&key) => Some(b),
            Body::Sdp(_) => {
                // An SDP body on a BYE, MESSAGE, INFO... of a call is no offer: it is not the
                // engine's and must not cross as it is.
                out.bytes = strip_body(&out.bytes);
                None
            }
            Body::None | Body::Other => None,
        };
        if method == Method::Invite && to_tag.is_none() && !mc.calls.contains_key(&key) {
            if mc.gone {
                // Without the engine a call could only pass the other side's SDP through, which
                // the gateway never does (TS 23.228 Annex U): refused at once, not left to time out.
                let why = "the media gateway is not running";
                return self.media_refuse(now, out.txn, Status::SERVICE_UNAVAILABLE, why);
            }
            let per_flow = mc.calls.keys().filter(|(f, _)| *f == out.flow).count();
            if per_flow >= CALLS_PER_FLOW {
                // Counted in `offers_refused` by `media_refuse`.
                let why = format!("more than {CALLS_PER_FLOW} calls on one connection");
                return self.media_refuse(now, out.txn, Status::BUSY_HERE, &why);
            }
            // A person with many connections (tabs, devices, or a script) could otherwise hold
            // every media port: the cap is per IMPU, in both directions.
            let user = out.user.take();
            if let Some(u) = &user
                && mc.per_user.get(u).copied().unwrap_or(0) >= mc.max_per_user
            {
                let why = format!(
                    "{u} has {} calls with media already (media.max_calls_per_user)",
                    mc.max_per_user
                );
                // The browser's own INVITE: refused (RFC 3261 §21.4.4); toward the browser:
                // its user is busy (§21.4.24).
                let status = match out.from {
                    Party::Browser => Status::FORBIDDEN,
                    Party::Ims => Status::BUSY_HERE,
                };
                return self.media_refuse(now, out.txn, status, &why);
            }
            if let Some(u) = &user {
                *mc.per_user.entry(u.clone()).or_default() += 1;
            }
            mc.next_ref += 1;
            let call = Call {
                call: mc.next_ref,
                caller: out.from,
                offer: None,
                confirmed: false,
                held: VecDeque::new(),
                last: [VecDeque::new(), VecDeque::new()],
                dialog: Dialog::default(),
                rel100: (out.from == Party::Ims && rel100::required(msg))
                    .then(|| Rel100::new(1 + (mc.next_ref % 4096) as u32)),
                invite: out.txn,
                user,
            };
            mc.by_ref.insert(call.call, key.clone());
            mc.rel100_calls += usize::from(call.rel100.is_some());
            mc.calls.insert(key.clone(), call);
            mc.stats.calls += 1;
        }
        let Some(call) = mc.calls.get_mut(&key) else {
            if sdp.is_some() {
                // A re-offer in a dialog whose media this gateway does not hold (it began
                // before a restart): a WebRTC body must not reach the IMS, nor RTP/AVP a
                // browser.
                mc.stats.unmatched_sdp += 1;
                return self.media_refuse(
                    now,
                    out.txn,
                    Status::NOT_ACCEPTABLE_HERE,
                    "no media session for this dialog",
                );
            }
            return self.push(out.to, out.bytes, out.txn);
        };
        // RFC 3262 §3: the IMS side's PRACK for a response the edge made reliable is answered
        // here; the browser never sent a reliable response and never sees it.
        if method == Method::Prack
            && out.from == Party::Ims
            && let Some(r) = call.rel100.as_mut()
        {
            let (status, why) = if sdp.is_some() {
                // No reliable 18x of ours carries SDP, so an SDP here is a new offer (RFC 3262
                // §5) that the browser, which never sees the PRACK, could not answer.
                let why = "an SDP offer in a PRACK is not supported; offer in an UPDATE";
                (Status::NOT_ACCEPTABLE_HERE, Some(why))
            } else if r.prack(msg) {
                (Status::OK, None)
            } else {
                // §3: a PRACK that matches no unacknowledged reliable response.
                (Status::NO_TRANSACTION, None)
            };
            if let Some(t) = out.txn {
                let warning = why.map(super::request::warning);
                let extra: Vec<(&str, &str)> =
                    warning.iter().map(|w| ("Warning", w.as_str())).collect();
                self.fail_client_with(now, t, status, &extra);
            }
            return self.media_flush(now, &key);
        }
        // What each side said, for a BYE of our own later.
        if let Ok(cseq) = msg.cseq() {
            match out.from {
                Party::Browser => call.dialog.cseq = call.dialog.cseq.max(cseq.seq),
                Party::Ims => call.dialog.ims_cseq = call.dialog.ims_cseq.max(cseq.seq),
            }
        }
        if call.caller == Party::Ims && out.from == Party::Ims && to_tag.is_none() {
            // The IMS side's initial INVITE: its From, Contact and Record-Route make the
            // dialog's remote side (RFC 3261 §12.1.1).
            call.dialog.remote = header_text(msg, &HeaderName::From);
            call.dialog.target = contact_uri(msg);
            call.dialog.routes = route_set(&self.settings.local, &self.key, msg, false);
        }
        if call.caller == Party::Browser && out.from == Party::Browser && to_tag.is_none() {
            call.dialog.local = header_text(msg, &HeaderName::From);
            call.dialog.browser_target = contact_uri(msg);
            if let Some(hop) = out
                .txn
                .and_then(|t| self.txns.get(t))
                .and_then(|t| t.hop.as_ref())
            {
                call.dialog.assertion = hop.assertion.clone();
            }
        }
        let ending = matches!(method, Method::Bye);
        let refusal = match method {
            Method::Ack => OnRefusal::PassOn,
            _ => OnRefusal::Answer {
                initial: method == Method::Invite && to_tag.is_none(),
            },
        };
        let held = Held {
            to: out.to,
            bytes: out.bytes,
            txn: out.txn,
            last_response_of: None,
            wait: None,
            refusal,
            rel: Rel::None,
        };
        // RFC 3264 in SIP (RFC 6337 §2.1): an SDP body in an ACK or PRACK answers the offer
        // the other side made in a 2xx or a reliable 18x; in any other request it is an offer.
        let answer_method = matches!(method, Method::Ack | Method::Prack);
        let is_answer = sdp.is_some() && answer_method && call.offer.is_some_and(|o| o != out.from);
        if is_answer {
            call.offer = None;
        }
        let mut held = held;
        let mut sdp = sdp;
        if method == Method::Ack && sdp.is_some() && !is_answer {
            // RFC 3261 §13.2.2.4: an ACK answers an offer in the 2xx or carries nothing; an
            // offer in it could never be answered.
            held.bytes = strip_body(&held.bytes);
            sdp = None;
        }
        let cseq = msg.cseq().map_or(0, |c| c.seq);
        self.media_hold(now, key.clone(), held, sdp, cseq, out.from, is_answer);
        if ending {
            self.media_release(now, &key);
        }
    }

    /// A response from one side about to be forwarded to the other.
    pub(super) fn media_response(
        &mut self,
        now: Instant,
        out: Outgoing<'_>,
        status: u16,
        method: Method,
    ) {
        let Some(mc) = self.media.as_mut() else {
            return self.push_response(out.to, out.bytes, out.last_response_of);
        };
        let msg = out.msg;
        let call_id = msg.call_id().unwrap_or_default().to_string();
        let key = (out.flow, call_id);
        let oa = offer_answer_method(&method);
        let body = body_of(msg);
        let Some(call) = mc.calls.get_mut(&key) else {
            // A response of a dialog whose media this gateway does not hold: its SDP must not
            // cross unrewritten either.
            let bytes = match body {
                Body::Sdp(_) | Body::Other if oa => strip_body(&out.bytes),
                _ => out.bytes,
            };
            return self.push_response(out.to, bytes, out.last_response_of);
        };
        let mut out = out;
        let sdp = match body {
            Body::Sdp(b) if oa && (101..300).contains(&status) => Some(b),
            Body::Sdp(_) | Body::Other if oa => {
                out.bytes = strip_body(&out.bytes);
                None
            }
            _ => None,
        };
        let invite = method == Method::Invite;
        if invite && (200..300).contains(&status) {
            if call.caller == Party::Browser {
                // The IMS side answered the browser's INVITE: its To, Contact and
                // Record-Route (reversed, RFC 3261 §12.1.2) make the dialog's remote side.
                call.dialog.remote = header_text(msg, &HeaderName::To);
                call.dialog.target = contact_uri(msg);
                call.dialog.routes = route_set(&self.settings.local, &self.key, msg, true);
            } else if out.from == Party::Browser {
                call.dialog.local = header_text(msg, &HeaderName::To);
                call.dialog.browser_target = contact_uri(msg);
                // Who the browser's side is, as its requests would assert it.
                call.dialog.assertion = self
                    .flows
                    .get(&out.flow)
                    .and_then(|f| f.identity.as_ref())
                    .map(|id| self.auth.assertion_lines(id, id.impu.as_str(), false))
                    .unwrap_or_default();
            }
        }
        let is_answer = call.offer.is_some_and(|o| o != out.from);
        let rel = match (&call.rel100, out.from, invite, status) {
            (Some(_), Party::Browser, true, 101..=199) => Rel::Provisional,
            (Some(_), Party::Browser, true, 200..=299) => Rel::Final,
            _ => Rel::None,
        };
        let mut sdp = sdp;
        if rel == Rel::Provisional && sdp.is_some() {
            // An offer or answer in a reliable 18x would complete in a PRACK (RFC 3262 §5),
            // which the edge answers itself: the browser could never hear the other half.
            // The 18x goes without SDP; the browser's SDP goes in its 2xx (JsSIP's own way).
            out.bytes = strip_body(&out.bytes);
            sdp = None;
        }
        let held = Held {
            to: out.to,
            bytes: out.bytes,
            txn: None,
            last_response_of: out.last_response_of,
            wait: None,
            refusal: OnRefusal::PassOn,
            rel,
        };
        let confirmed_before = call.confirmed;
        let cseq = msg.cseq().map_or(0, |c| c.seq);
        self.media_hold(now, key.clone(), held, sdp, cseq, out.from, is_answer);
        let Some(call) = self.media.as_mut().and_then(|m| m.calls.get_mut(&key)) else {
            return;
        };
        if status >= 200 && matches!(method, Method::Invite | Method::Update) {
            // A final response ends the offer of its request, whichever way it went
            // (RFC 6337 §3.1: a rejected offer leaves the previous session as it was).
            if call.offer.is_some_and(|o| o != out.from) || status >= 300 {
                call.offer = None;
            }
        }
        if invite && (200..300).contains(&status) {
            call.confirmed = true;
        }
        if invite && status >= 300 && !confirmed_before {
            // The initial INVITE failed (rejected, cancelled, timed out): no call.
            self.media_release(now, &key);
        }
    }

    /// Queues `held` behind the call's earlier messages; asks the engine for the other leg's
    /// SDP when it carries a body.
    // Each argument is one fact about the message; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    fn media_hold(
        &mut self,
        now: Instant,
        key: CallKey,
        mut held: Held,
        sdp: Option<Bytes>,
        cseq: u32,
        from: Party,
        is_answer: bool,
    ) {
        let Some(mc) = self.media.as_mut() else {
            return;
        };
        let Some(call) = mc.calls.get_mut(&key) else {
            return;
        };
        if call.held.len() >= HELD_PER_CALL {
            warn!(
                call = call.call,
                "too many messages held for one call; sending unheld"
            );
            if sdp.is_none() {
                return match held.txn {
                    Some(t) => self.push(held.to, held.bytes, Some(t)),
                    None => self.push_response(held.to, held.bytes, held.last_response_of),
                };
            }
            // Its SDP cannot wait for the engine: never send it as it is.
            return match held.txn {
                Some(t) => self.media_refuse(
                    now,
                    Some(t),
                    Status::SERVICE_UNAVAILABLE,
                    "too many messages of this call waiting",
                ),
                None => {
                    let bytes = strip_body(&held.bytes);
                    self.push_response(held.to, bytes, held.last_response_of)
                }
            };
        }
        let mut command = None;
        if let Some(body) = sdp {
            let seen = call.last[from.index()]
                .iter()
                .find(|(n, seen, _)| *n == cseq && *seen == body);
            match seen {
                Some((_, _, made)) => {
                    // The same body again: the same rewrite (RFC 6337 §3.1.1).
                    held.bytes =
                        replace_body(&held.bytes, made).unwrap_or_else(|| strip_body(&held.bytes));
                }
                _ => {
                    mc.next_req += 1;
                    let req = mc.next_req;
                    let text = String::from_utf8_lossy(&body).into_owned();
                    let c = call.call;
                    command = Some(match (from, is_answer) {
                        (Party::Browser, false) => Command::BrowserOffer {
                            call: c,
                            req,
                            sdp: text,
                        },
                        (Party::Browser, true) => Command::BrowserAnswer {
                            call: c,
                            req,
                            sdp: text,
                        },
                        (Party::Ims, false) => Command::ImsOffer {
                            call: c,
                            req,
                            sdp: text,
                        },
                        (Party::Ims, true) => Command::ImsAnswer {
                            call: c,
                            req,
                            sdp: text,
                        },
                    });
                    if !is_answer {
                        call.offer = Some(from);
                    }
                    held.wait = Some((req, cseq, body, from));
                    if let Some(t) = held.txn {
                        mc.held_txns.insert(t);
                    }
                }
            }
        }
        // A request's retransmissions (Timer A/E) wait until it is sent: they repeat what its
        // transaction holds, which until then is the request as it came.
        if let Some(t) = held.txn {
            mc.held_txns.insert(t);
        }
        call.held.push_back(held);
        if let Some(c) = command {
            self.out.push_back(Output::Media(c));
        }
        self.media_flush(now, &key);
    }

    /// Sends the call's held messages from the front while none waits for the engine (or, for
    /// a browser's response to a 100rel INVITE, for the IMS side's PRACK).
    fn media_flush(&mut self, now: Instant, key: &CallKey) {
        let prack_wait = 64 * self.settings.t1;
        loop {
            let Some(mc) = self.media.as_mut() else {
                return;
            };
            let Some(call) = mc.calls.get_mut(key) else {
                return;
            };
            let Some(front) = call.held.front() else {
                return;
            };
            let unacked = call.rel100.as_ref().is_some_and(|r| r.unacked.is_some());
            if front.wait.is_some() || (front.rel != Rel::None && unacked) {
                return;
            }
            let Some(mut h) = call.held.pop_front() else {
                return;
            };
            if h.rel == Rel::Provisional
                && let Some(r) = call.rel100.as_mut()
            {
                match r.make_reliable(h.to, &h.bytes, now, self.settings.t1, now + prack_wait) {
                    Some(b) => h.bytes = b,
                    None => warn!(call = call.call, "could not make an 18x reliable"),
                }
            }
            if let Some(t) = h.txn {
                mc.held_txns.remove(&t);
                if let Some(txn) = self.txns.get_mut(t) {
                    // Retransmissions (Timer A/E) repeat what was really sent.
                    txn.sent = h.bytes.clone();
                }
            }
            if let Some(t) = h.last_response_of
                && let Some(txn) = self.txns.get_mut(t)
            {
                txn.last_response = Some(h.bytes.clone());
            }
            self.push(h.to, h.bytes, h.txn);
        }
    }

    /// Sends a response; toward a UDP origin, retransmissions of its request get it too
    /// (RFC 3261 §17.2.1).
    fn push_response(&mut self, to: Dest, bytes: Bytes, last_response_of: Option<TxnId>) {
        if let Some(t) = last_response_of
            && let Some(txn) = self.txns.get_mut(t)
        {
            txn.last_response = Some(bytes.clone());
        }
        self.push(to, bytes, None);
    }

    /// Whether a send of `txn` must wait: its request is with the engine.
    pub(super) fn media_holds_txn(&self, txn: TxnId) -> bool {
        self.media
            .as_ref()
            .is_some_and(|m| m.held_txns.contains(&txn))
    }

    /// Answers a request the media side refuses, through its transaction (RFC 3261 §16.7).
    fn media_refuse(&mut self, now: Instant, txn: Option<TxnId>, status: Status, why: &str) {
        if let Some(m) = self.media.as_mut() {
            m.stats.offers_refused += 1;
            if let Some(t) = txn {
                m.held_txns.remove(&t);
            }
        }
        if let Some(t) = txn {
            let warning = super::request::warning(why);
            self.fail_client_with(now, t, status, &[("Warning", &warning)]);
        }
    }

    /// Frees the call's media and forgets it; messages still held go out as they are, except
    /// those still waiting for the engine: their bodies were never rewritten, so a request
    /// among them is answered `487` here (its client transaction would otherwise resend the
    /// unrewritten bytes on Timer A/E) and a response is dropped.
    fn media_release(&mut self, now: Instant, key: &CallKey) {
        let Some(mc) = self.media.as_mut() else {
            return;
        };
        let Some(call) = mc.calls.remove(key) else {
            return;
        };
        mc.by_ref.remove(&call.call);
        mc.rel100_calls -= usize::from(call.rel100.is_some());
        if let Some(u) = &call.user
            && let Some(n) = mc.per_user.get_mut(u)
        {
            *n -= 1;
            if *n == 0 {
                mc.per_user.remove(u);
            }
        }
        for h in &call.held {
            if let Some(t) = h.txn {
                mc.held_txns.remove(&t);
            }
        }
        self.out
            .push_back(Output::Media(Command::Release { call: call.call }));
        for h in call.held {
            if h.wait.is_none() && h.txn.is_none() {
                self.push_response(h.to, h.bytes, h.last_response_of);
            } else if h.wait.is_none() {
                self.push(h.to, h.bytes, h.txn);
            } else if let Some(t) = h.txn {
                let why = "the call ended while its SDP was being rewritten";
                let warning = super::request::warning(why);
                self.fail_client_with(now, t, Status::REQUEST_TERMINATED, &[("Warning", &warning)]);
            }
        }
    }

    /// A transaction ended with a status the edge made itself (Timer B/C `408`, `430`, `503`,
    /// a refusal): when it was a call's initial INVITE, the call failed and its media goes
    /// (imsgw-media: before the browser has an answer there is no consent clock).
    pub(super) fn media_txn_failed(&mut self, now: Instant, id: TxnId) {
        let Some(t) = self.txns.get(id).filter(|t| t.invite) else {
            return;
        };
        let Some(origin) = t.origin.as_ref() else {
            return;
        };
        let initial = origin
            .request
            .to()
            .ok()
            .is_some_and(|to| to.tag().is_none());
        let flow = match (t.dest, origin.reply_to) {
            (Dest::Flow(f), _) | (_, Dest::Flow(f)) => f,
            _ => return,
        };
        let Ok(call_id) = origin.request.call_id().map(str::to_string) else {
            return;
        };
        let key = (flow, call_id);
        let confirmed = self
            .media
            .as_ref()
            .and_then(|m| m.calls.get(&key))
            .map(|c| c.confirmed);
        if initial && confirmed == Some(false) {
            self.media_release(now, &key);
        }
    }

    /// A WebSocket closed: its calls can no longer be ended through it (calls are known by
    /// flow), so they end here. Answered calls get a BYE toward the IMS; every call's media is
    /// released (one still in setup has no consent clock in the engine).
    pub(super) fn media_flow_closed(&mut self, now: Instant, flow: FlowId) {
        let Some(mc) = self.media.as_ref() else {
            return;
        };
        let keys: Vec<CallKey> = mc
            .calls
            .keys()
            .filter(|(f, _)| *f == flow)
            .cloned()
            .collect();
        for key in keys {
            let bye = self
                .media
                .as_ref()
                .and_then(|m| m.calls.get(&key))
                .and_then(|c| c.confirmed.then(|| c.dialog.clone()));
            self.media_release(now, &key);
            if let Some(d) = bye {
                self.send_bye(now, &key.1, &d, "WebSocket closed", None);
            }
        }
    }

    /// What the media engine reported.
    /// The engine's thread ended (its event channel closed; a panic outside a call, say): every
    /// call with media ends as if its media had failed (BYE both ways, or CANCEL before the
    /// answer), and new calls are refused `503` from now on.
    pub fn media_gone(&mut self, now: Instant) {
        let Some(mc) = self.media.as_mut() else {
            return;
        };
        if mc.gone {
            return;
        }
        mc.gone = true;
        let calls: Vec<CallRef> = mc.by_ref.keys().copied().collect();
        tracing::error!(
            calls = calls.len(),
            "the media engine stopped: its calls end and new calls are refused 503"
        );
        for call in calls {
            self.media_ended(now, call, EndReason::Failed);
        }
    }

    pub fn media_event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Sdp { call, req, sdp } => self.media_done(now, call, req, Ok(sdp)),
            Event::Refused {
                call,
                req,
                status,
                warning,
            } => self.media_done(now, call, req, Err((status, warning))),
            Event::Ended { call, reason } => self.media_ended(now, call, reason),
        }
    }

    fn media_done(
        &mut self,
        now: Instant,
        call_ref: CallRef,
        req: u64,
        result: Result<String, (u16, String)>,
    ) {
        let Some(mc) = self.media.as_mut() else {
            return;
        };
        let Some(key) = mc.by_ref.get(&call_ref).cloned() else {
            return; // released meanwhile
        };
        let Some(call) = mc.calls.get_mut(&key) else {
            return;
        };
        let Some(pos) = call
            .held
            .iter()
            .position(|h| h.wait.as_ref().is_some_and(|w| w.0 == req))
        else {
            return;
        };
        match result {
            Ok(sdp) => {
                let Some(h) = call.held.get_mut(pos) else {
                    return;
                };
                let made = Bytes::from(sdp);
                if let Some((_, cseq, body, from)) = h.wait.take() {
                    let last = &mut call.last[from.index()];
                    if last.len() >= REWRITES_KEPT {
                        last.pop_front();
                    }
                    last.push_back((cseq, body, made.clone()));
                }
                h.bytes = match replace_body(&h.bytes, &made) {
                    Some(b) => b,
                    None => {
                        warn!(call = call_ref, "could not put the new SDP in a message");
                        strip_body(&h.bytes)
                    }
                };
            }
            Err((status, why)) => {
                let Some(h) = call.held.remove(pos) else {
                    return;
                };
                let initial = matches!(h.refusal, OnRefusal::Answer { initial: true });
                info!(call = call_ref, status, why = %why, "media refused an SDP body");
                if h.refusal == OnRefusal::PassOn {
                    // Nothing to answer: pass the message on without the body the engine
                    // refused (never the other leg's SDP: a browser could aim the IMS side's
                    // media anywhere). The far end's own SDP check ends the call (RFC 3261
                    // §13.2.2.4: a 2xx without the answer it owes).
                    if let Some((_, _, _, from)) = &h.wait
                        && call.offer == Some(*from)
                    {
                        call.offer = None;
                    }
                    let bytes = strip_body(&h.bytes);
                    call.held.insert(
                        pos,
                        Held {
                            wait: None,
                            bytes,
                            ..h
                        },
                    );
                } else {
                    call.offer = None;
                    let status = Status::from_code(status).unwrap_or(Status::NOT_ACCEPTABLE_HERE);
                    self.media_refuse(now, h.txn, status, &why);
                    if initial {
                        self.media_release(now, &key);
                        return;
                    }
                }
            }
        }
        self.media_flush(now, &key);
    }

    /// The engine ended a call by itself (RFC 7675 consent lost, DTLS failed): the IMS side
    /// gets a BYE from the browser's side of the dialog (RFC 3261 §15.1.1).
    fn media_ended(&mut self, now: Instant, call_ref: CallRef, reason: EndReason) {
        let Some(mc) = self.media.as_mut() else {
            return;
        };
        let Some(key) = mc.by_ref.get(&call_ref).cloned() else {
            return;
        };
        let Some(call) = mc.calls.get(&key) else {
            return;
        };
        info!(
            call = call_ref,
            reason = reason.as_str(),
            "media ended a call"
        );
        let bye = call.confirmed.then(|| call.dialog.clone());
        let pending = call.invite.filter(|_| !call.confirmed);
        self.media_release(now, &key);
        // Not answered yet (early media): no dialog to BYE, but the INVITE must not ring on
        // without media (RFC 3261 §9.1; toward whichever side it went).
        if let Some(t) = pending
            && let Some((to, bytes)) = self.txns.cancel(t)
        {
            self.push(to, bytes, None);
        }
        if let Some(d) = bye {
            self.send_bye(now, &key.1, &d, reason.as_str(), None);
            // The browser too, if its WebSocket is still there (media failed, signalling did
            // not): it would otherwise show a call with no sound.
            if self.flows.contains_key(&key.0) {
                self.send_bye(now, &key.1, &d, reason.as_str(), Some(key.0));
            }
        }
    }

    /// A BYE of our own toward the IMS (or, with `down`, toward the browser on that flow), as
    /// a client transaction of the edge (its answer ends here: the transaction has no origin).
    fn send_bye(
        &mut self,
        now: Instant,
        call_id: &str,
        d: &Dialog,
        reason: &str,
        down: Option<FlowId>,
    ) {
        let (Some(browser), Some(ims)) = (&d.local, &d.remote) else {
            debug!("no dialog to send a BYE in");
            return;
        };
        let (target, local, remote, seq, routes, dest) = match down {
            None => (
                &d.target,
                browser,
                ims,
                d.cseq,
                d.routes.as_slice(),
                Dest::Upstream,
            ),
            Some(flow) => (
                &d.browser_target,
                ims,
                browser,
                d.ims_cseq,
                &[][..],
                Dest::Flow(flow),
            ),
        };
        let Some(target) = target else {
            debug!("no target to send a BYE to");
            return;
        };
        let (id, branch) = self.txns.new_branch(super::txn::fnv(call_id.as_bytes()));
        let via = match down {
            None => self.settings.local.via_ims(&branch),
            Some(flow) => self.settings.local.via_flow(self.flow_kind(flow), &branch),
        };
        let hop = super::txn::Hop {
            request_uri: target.clone(),
            via,
            routes: routes.to_vec(),
            from: local.clone(),
            to: remote.clone(),
            call_id: call_id.to_string(),
            seq: seq.saturating_add(1),
            // Toward the IMS the BYE states who sent it, like the browser's own requests.
            assertion: if down.is_none() {
                d.assertion.clone()
            } else {
                Vec::new()
            },
        };
        // RFC 3326: why the call ended.
        let why = format!("Reason: SIP;cause=200;text=\"{reason}\"");
        let bytes = super::txn::hop_request_with(&hop, "BYE", None, &[&why]);
        if let Some(m) = self.media.as_mut() {
            m.stats.byes_sent += 1;
        }
        self.send_own(now, id, branch, bytes, dest);
    }

    /// Whether a request on `flow` is the media side's business: an INVITE, a request with a
    /// body (whose SDP, or other body on an offer/answer method, must not cross unchecked), or
    /// any request of a call it holds. A REGISTER, an OPTIONS... outside calls is not.
    pub(super) fn media_concerns(&self, flow: FlowId, msg: &Message, view: &View) -> bool {
        let Some(m) = self.media.as_ref() else {
            return false;
        };
        // A SIP phone speaks plain RTP itself: its SDP passes through, no WebRTC leg.
        if self.flow_kind(flow) != super::FlowKind::Ws {
            return false;
        }
        view.method == Some(Method::Invite)
            || !msg.body().is_empty()
            || m.calls.contains_key(&(flow, view.call_id.clone()))
    }

    /// When a reliable 18x stops waiting for its PRACK next.
    pub(super) fn media_deadline(&self) -> Option<Instant> {
        let m = self.media.as_ref().filter(|m| m.rel100_calls > 0)?;
        m.calls
            .values()
            .filter_map(|c| c.rel100.as_ref().and_then(Rel100::next_time))
            .min()
    }

    /// RFC 3262 §3: an unacknowledged reliable 18x is sent again at T1, doubling; after 64*T1
    /// without a PRACK the 2xx (or next 18x) the browser sent is not held for ever: it goes
    /// out, and the IMS side decides.
    pub(super) fn media_timeouts(&mut self, now: Instant) {
        let Some(m) = self.media.as_mut() else {
            return;
        };
        let mut due = Vec::new();
        let mut resend = Vec::new();
        for (key, c) in &mut m.calls {
            let Some(r) = c.rel100.as_mut() else {
                continue;
            };
            if r.deadline.is_some_and(|d| d <= now) {
                r.give_up();
                due.push(key.clone());
            } else if let Some(again) = r.due_resend(now) {
                resend.push(again);
            }
        }
        for (to, bytes) in resend {
            self.push(to, bytes, None);
        }
        for key in due {
            info!("no PRACK for a reliable provisional response within 64*T1");
            self.media_flush(now, &key);
        }
    }

    /// Media calls in memory.
    pub fn media_call_count(&self) -> usize {
        self.media.as_ref().map_or(0, |m| m.calls.len())
    }

    pub fn media_stats(&self) -> MediaEdgeStats {
        self.media.as_ref().map(|m| m.stats).unwrap_or_default()
    }
}

impl MediaCalls {
    pub(super) fn new(limits: MediaLimits) -> Self {
        Self {
            max_per_user: limits.calls_per_user,
            ..Self::default()
        }
    }

    /// The oldest call's reference (tests).
    #[cfg(test)]
    pub(super) fn by_ref_first(&self) -> Option<CallRef> {
        self.by_ref.keys().min().copied()
    }
}

/// The whole value of the first `name` header.
fn header_text(msg: &Message, name: &HeaderName) -> Option<String> {
    let h = msg.header(name)?;
    std::str::from_utf8(msg.value(h)).ok().map(str::to_string)
}

/// The URI of the first Contact.
fn contact_uri(msg: &Message) -> Option<String> {
    match msg.contacts().ok()? {
        imsgw_sip::Contacts::List(list) => {
            let c = list.first()?;
            let b = msg.as_bytes().get(c.uri_range.clone())?;
            std::str::from_utf8(b).ok().map(str::to_string)
        }
        imsgw_sip::Contacts::Star(_) => None,
    }
}

/// The dialog's route set toward the IMS from a message's Record-Route (RFC 3261 §12.1.1 in
/// order for the UAS, §12.1.2 reversed for the UAC), without the edge's own entries: the BYE
/// leaves from the edge itself.
fn route_set(
    local: &super::Local,
    key: &super::FlowKey,
    msg: &Message,
    reverse: bool,
) -> Vec<String> {
    let Ok(rr) = msg.record_routes() else {
        return Vec::new();
    };
    let mut out: Vec<String> = rr
        .iter()
        .filter(|na| {
            !matches!(
                local.our_route(&na.uri, key),
                Some(OurRoute::Plain | OurRoute::Flow(_) | OurRoute::Forged)
            )
        })
        .filter_map(|na| msg.as_bytes().get(na.range.clone()))
        .filter_map(|b| std::str::from_utf8(b).ok().map(str::to_string))
        .collect();
    if reverse {
        out.reverse();
    }
    out
}

/// `bytes` without its body (nor Content-Type), Content-Length 0; empty if it does not parse
/// (a message the edge made or forwarded always does).
fn strip_body(bytes: &Bytes) -> Bytes {
    let Ok(msg) = Message::parse(bytes.clone()) else {
        return Bytes::new();
    };
    let mut s = Splice::new();
    for h in msg.headers() {
        if h.name == HeaderName::ContentType {
            s.delete(h.line.clone());
        }
    }
    match msg.header(&HeaderName::ContentLength) {
        Some(h) => s.replace(h.value.clone(), "0"),
        None => s.insert(msg.headers_end(), "Content-Length: 0\r\n"),
    }
    s.delete(msg.body_range());
    s.apply(bytes).unwrap_or_default()
}

/// `bytes` with its body replaced by `body` and Content-Length set to match.
fn replace_body(bytes: &Bytes, body: &[u8]) -> Option<Bytes> {
    let msg = Message::parse(bytes.clone()).ok()?;
    let mut s = Splice::new();
    match msg.header(&HeaderName::ContentLength) {
        Some(h) => s.replace(h.value.clone(), body.len().to_string()),
        None => s.insert(
            msg.headers_end(),
            format!("Content-Length: {}\r\n", body.len()),
        ),
    }
    s.replace(msg.body_range(), Bytes::copy_from_slice(body));
    s.apply(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_body_sets_content_length() {
        let m = Bytes::from_static(
            b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Type: application/sdp\r\nContent-Length: 3\r\n\r\nabc",
        );
        let out = replace_body(&m, b"v=0\r\n").expect("replaced");
        let text = String::from_utf8(out.to_vec()).expect("utf8");
        assert!(text.contains("Content-Length: 5\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nv=0\r\n"), "{text}");
    }
}
