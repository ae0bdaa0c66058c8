//! Requests through the edge: from a WebSocket toward the P-CSCF, and from the IMS side down
//! the WebSocket that a flow token names (RFC 3261 §16.3–16.6, RFC 5626 §5, RFC 3327, RFC 7118).
//!
//! The request is parsed once: [`Message::view`] checks it and returns the typed view every
//! step below reads. Routing is `route`, header edits `rewrite`, transactions `txn`.
//!
//! Owns: the order of the proxy steps and the answers the edge makes itself. Must not touch:
//! sockets; transaction timers (see `txn`).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use imsgw_sip::{HeaderName, Message, Method, ParseError, Uri, View, response_to};
use tracing::{debug, warn};

use super::auth::{self, Decision, FlowAuth, Identity};
use super::grant::Step as GrantStep;
use super::media::{Outgoing, Party};
use super::pop::FlowProofs;
use super::rewrite::{self, Edits};
use super::route::{self, Target};
use super::status::Status;
use super::txn::{Origin, ServerKey, State, TxnId, local_tag};
use super::{Arrival, Dest, Edge, FlowId, Link, response};

/// Where a request came from.
#[derive(Debug, Clone, Copy)]
enum Side {
    Flow(FlowId, SocketAddr),
    Ims(Link, SocketAddr),
}

impl Side {
    /// Where responses to it go (RFC 3261 §18.2.2; RFC 7118 §5: back over the WebSocket).
    fn reply_to(self, msg: &Message, view: Option<&View>) -> Dest {
        match self {
            Side::Flow(flow, _) => Dest::Flow(flow),
            Side::Ims(Link::Udp(source), _) => {
                // RFC 3261 §18.2.2 with RFC 3581: the source address, and the sent-by port
                // unless the client asked for rport. A request that failed validation is
                // answered (400) by what its top Via says, if anything.
                let sent_by_port =
                    |v: &imsgw_sip::Via| v.rport.is_none().then(|| v.port.unwrap_or(5060));
                let port = match view {
                    Some(v) => sent_by_port(v.top_via()),
                    None => msg.top_via().ok().as_ref().and_then(sent_by_port),
                }
                .unwrap_or(source.port());
                Dest::Link(Link::Udp(SocketAddr::new(source.ip(), port)))
            }
            Side::Ims(link, _) => Dest::Link(link),
        }
    }

    fn rewrite_from(self) -> rewrite::From {
        match self {
            Side::Flow(flow, a) => rewrite::From::Flow(flow, a),
            Side::Ims(_, a) => rewrite::From::Ims(a),
        }
    }

    fn arrival(self) -> Arrival {
        match self {
            Side::Flow(flow, _) => Arrival::Flow(flow),
            Side::Ims(..) => Arrival::Ims,
        }
    }
}

pub(super) fn from_flow(
    edge: &mut Edge,
    now: Instant,
    flow: FlowId,
    remote: SocketAddr,
    bytes: Bytes,
) {
    // Lenient: a request whose body disagrees with its Content-Length still has headers to
    // answer 400 with (RFC 4475 §3.1.2.2, §3.3.9); `validate` reports the body error.
    let msg = match Message::parse_lenient(bytes) {
        Ok(m) => m,
        Err(e) => {
            // Nothing to answer: without a start line and headers there is no response to form.
            debug!(%flow, error = %e, "unparseable message from a client; closing it");
            edge.stats.rejected_400 += 1;
            edge.close_malformed(flow);
            return;
        }
    };
    if !msg.is_request() {
        response::handle(edge, now, Arrival::Flow(flow), msg);
        return;
    }
    edge.stats.requests_from_flows += 1;
    proxy(edge, now, Side::Flow(flow, remote), msg, None);
}

/// A request that waited here (for an issuer's keys or its token's check) is decided again;
/// it was counted when it came, and parsed then.
pub(super) fn replay(
    edge: &mut Edge,
    now: Instant,
    flow: FlowId,
    remote: SocketAddr,
    bytes: Bytes,
) {
    if let Ok(msg) = Message::parse_lenient(bytes) {
        proxy(edge, now, Side::Flow(flow, remote), msg, None);
    }
}

/// A REGISTER that waited for the WAF goes on, with the identity of the grant it got.
pub(super) fn resume(edge: &mut Edge, now: Instant, flow: FlowId, msg: Message, id: Identity) {
    let Some(remote) = edge.flows.get(&flow).map(|f| f.remote) else {
        return;
    };
    proxy(edge, now, Side::Flow(flow, remote), msg, Some(id));
}

pub(super) fn from_ims(
    edge: &mut Edge,
    now: Instant,
    link: Link,
    source: SocketAddr,
    bytes: Bytes,
) {
    let msg = match Message::parse_lenient(bytes) {
        Ok(m) => m,
        Err(e) => {
            debug!(?link, %source, error = %e, "unparseable message from the IMS side; dropped");
            return;
        }
    };
    if !msg.is_request() {
        response::handle(edge, now, Arrival::Ims, msg);
        return;
    }
    edge.stats.requests_from_ims += 1;
    proxy(edge, now, Side::Ims(link, source), msg, None);
}

/// The steps of RFC 3261 §16.3–16.6 for one request, in the order of §16.3: syntax (400, or
/// 505 for another SIP version), URI scheme (416), Max-Forwards (483), loops (482),
/// Proxy-Require (420), then authorization (RFC 8898) and routing. `granted` is the identity a
/// REGISTER that waited for the WAF was given (see `grant`).
fn proxy(edge: &mut Edge, now: Instant, side: Side, msg: Message, granted: Option<Identity>) {
    // §16.3 item 1: reasonable syntax. The view is all later steps read.
    let view = match msg.view() {
        Ok(v) => v,
        Err(e) => return refuse_invalid(edge, side, &msg, &e),
    };
    let reply_to = side.reply_to(&msg, Some(&view));
    let Some(method) = view.method.clone() else {
        return; // a request always has a method; `view` of a request sets it.
    };
    let ack = method == Method::Ack;
    // §16.3 item 2: a Request-URI scheme the edge cannot route (RFC 4475 §3.3.2, §3.3.3).
    if let Some(scheme) = unsupported_scheme(&view, side) {
        if !ack {
            let why = format!("the Request-URI scheme `{scheme}` is not supported");
            let status = Status::UNSUPPORTED_URI_SCHEME;
            reject(edge, reply_to, &msg, &view, status, Some(&why));
        }
        return;
    }
    let arrival = side.arrival();
    let key = server_key(&view, None, arrival);
    // RFC 3261 §17.2.3: ACK for a non-2xx final and CANCEL belong to the INVITE's transaction,
    // and only the link that sent the INVITE can reach it: the key holds where it arrived.
    if ack || method == Method::Cancel {
        let invite =
            server_key(&view, Some(Method::Invite), arrival).and_then(|k| edge.txns.by_server(&k));
        match (invite, ack) {
            (Some(id), false) => return cancel(edge, id, &msg, &view, reply_to),
            // ACK of our non-2xx: hop by hop, ends here (RFC 3261 §17.2.1).
            (Some(id), true) if edge.txns.get(id).map(|t| t.state) == Some(State::Completed) => {
                return;
            }
            (None, false) => {
                // RFC 3261 §16.10 would forward a CANCEL that matches nothing statelessly; here
                // a CANCEL only ever ends this link's own pending INVITE.
                edge.stats.unmatched_cancel += 1;
                let status = Status::NO_TRANSACTION;
                return reject(edge, reply_to, &msg, &view, status, None);
            }
            _ => {}
        }
    }
    // A retransmission (UDP from the IMS side): answer it with what was last sent.
    if let Some(id) = key.as_ref().and_then(|k| edge.txns.by_server(k)) {
        if let Some(last) = edge.txns.get(id).and_then(|t| t.last_response.clone()) {
            edge.push(reply_to, last, None);
        }
        return;
    }
    // §16.3 item 3.
    if let Some((0, _)) = view.max_forwards {
        if !ack {
            reject(edge, reply_to, &msg, &view, Status::TOO_MANY_HOPS, None);
        }
        return;
    }
    // §16.3 item 4.
    let loop_hash = route::loop_hash(&msg, &view);
    if route::is_loop(&edge.settings.local, &view, loop_hash) {
        if !ack {
            reject(edge, reply_to, &msg, &view, Status::LOOP_DETECTED, None);
        }
        return;
    }
    // §16.3 item 5: the edge implements no extension a UA could require of proxies.
    if !view.proxy_require.is_empty() {
        if !ack {
            let list = view.proxy_require.join(", ");
            let s = Status::BAD_EXTENSION;
            let tag = local_tag_for(&view);
            let r = response_to(
                &msg,
                s.code,
                s.reason,
                Some(&tag),
                &[("Unsupported", &list)],
            );
            edge.push(reply_to, r, None);
        }
        return;
    }
    // §16.3 item 6, RFC 8898: who may use this flow.
    let mut identity = None;
    if let Side::Flow(flow, _) = side {
        let step = match granted {
            Some(id) if id.names(&view.to.uri) => GrantStep::Forward(id),
            Some(id) => {
                edge.stats.auth_refused += 1;
                let why = format!(
                    "the code is for {}, not for the To identity of this request",
                    id.impu
                );
                return reject(edge, reply_to, &msg, &view, Status::FORBIDDEN, Some(&why));
            }
            None if ack => GrantStep::NotMine,
            None => edge.grant_step(now, flow, &msg, &view),
        };
        let info = edge.flows.get(&flow);
        // An ACK for an INVITE this flow sent (with its own token or on its registration)
        // belongs to that call: same Call-ID and From tag as the INVITE (RFC 3261 §17.1.1.3,
        // §13.2.2.4), the same From identity, and a token not revoked since.
        let from_tag = view.from.tag().unwrap_or("");
        let call = ack
            .then(|| info.and_then(|f| f.call_identity(now, &view.call_id, from_tag)))
            .flatten()
            .filter(|id| id.names(&view.from.uri) && !edge.auth.revoked.contains(&id.jti));
        if let Some(id) = call {
            identity = Some(id);
        } else if let GrantStep::Forward(id) = step {
            identity = Some(id);
        } else if let GrantStep::Done = step {
            return;
        } else {
            let unix = edge.unix;
            // `from_flow` and `resume` look the flow up first, so it is there; a flow without
            // an entry would prove nothing that outlives this request.
            let mut spare = FlowProofs::default();
            let (registered, proofs) = match edge.flows.get_mut(&flow) {
                Some(f) => (f.identity.as_ref(), &mut f.proofs),
                None => (None, &mut spare),
            };
            let mut ctx = FlowAuth {
                id: flow,
                identity: registered,
                proofs,
            };
            let decision = match step {
                GrantStep::Ride => edge.auth.decide_riding(unix, &msg, &view, &mut ctx),
                _ => edge.auth.decide(unix, &msg, &view, &mut ctx),
            };
            match decision {
                Decision::Forward { identity: id } => identity = id,
                Decision::Reject(r) => {
                    edge.stats.auth_refused += 1;
                    return reject_auth(edge, reply_to, &msg, &view, r);
                }
                Decision::Park { issuer } => {
                    return edge.park(now, flow, msg.as_bytes().clone(), issuer);
                }
                Decision::Verify(job) => {
                    // A waiting request counts against its connection like a pending one
                    // (below): a flood of requests with one new token is 503, not memory.
                    let waiting = edge.txns.pending_from(flow) + edge.parked_from(flow);
                    if waiting >= super::MAX_PENDING_PER_FLOW {
                        edge.stats.flow_busy_503 += 1;
                        let why = "too many requests of this connection are pending";
                        let status = Status::SERVICE_UNAVAILABLE;
                        return reject(edge, reply_to, &msg, &view, status, Some(why));
                    }
                    let (job, token) = *job;
                    return edge.park_for_token(now, flow, msg.as_bytes().clone(), job, token);
                }
                Decision::Drop => {
                    debug!(%flow, "ACK that no registration or call of this flow owns; dropped");
                    edge.stats.unowned_ack_dropped += 1;
                    return;
                }
            }
        }
    }
    let local = &edge.settings.local;
    let popped = route::ours_on_top(local, &edge.key, &view.routes);
    let dest = match side {
        Side::Flow(..) => Dest::Upstream,
        Side::Ims(..) => {
            let flows = &edge.flows;
            let target = route::target_for(local, &edge.key, &view, &view.routes[..popped], |f| {
                flows.contains_key(&f)
            });
            match target {
                Ok(Target::Flow(flow)) => Dest::Flow(flow),
                Ok(Target::Edge) => {
                    // OPTIONS aimed at the edge itself: a keep-alive or a probe (RFC 3261 §11).
                    let (s, tag) = (Status::OK, local_tag_for(&view));
                    let r = response_to(&msg, s.code, s.reason, Some(&tag), &[]);
                    return edge.push(reply_to, r, None);
                }
                Err(refusal) => {
                    if !ack {
                        match refusal.status {
                            Status::FORBIDDEN => edge.stats.forged_403 += 1,
                            Status::FLOW_FAILED => edge.stats.flow_failed_430 += 1,
                            _ => {}
                        }
                        reject(edge, reply_to, &msg, &view, refusal.status, refusal.why);
                    }
                    return;
                }
            }
        }
    };
    // An ACK makes no transaction and is never answered: it is not counted or refused here.
    if let Side::Flow(flow, _) = side
        && !ack
        && edge.txns.pending_from(flow) >= super::MAX_PENDING_PER_FLOW
    {
        edge.stats.flow_busy_503 += 1;
        let why = "too many requests of this connection are pending";
        let status = Status::SERVICE_UNAVAILABLE;
        return reject(edge, reply_to, &msg, &view, status, Some(why));
    }
    let (id, branch) = edge.txns.new_branch(loop_hash);
    let register_plan = match (&identity, &method) {
        (Some(id), Method::Register) => {
            Some(auth::plan_expires(&view, id.exp.saturating_sub(edge.unix)))
        }
        _ => None,
    };
    let edits = Edits {
        from: side.rewrite_from(),
        dest,
        popped,
        branch: &branch,
        identity: identity.as_ref(),
        expires: register_plan.as_ref(),
    };
    let (bytes, hop) = match rewrite::rewrite(edge, &edits, &msg, &view) {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "could not rewrite a request");
            return reject(edge, reply_to, &msg, &view, Status::SERVER_ERROR, None);
        }
    };
    if let (Side::Flow(flow, _), Some(plan), Some(id)) = (side, &register_plan, &identity) {
        edge.grant_registered(flow, id, &bytes, plan.unregister);
    }
    let media_flow = match (side, dest) {
        (Side::Flow(flow, _), _) => Some((flow, Party::Browser)),
        (Side::Ims(..), Dest::Flow(flow)) => Some((flow, Party::Ims)),
        _ => None,
    };
    if ack {
        // ACK for a 2xx is its own end-to-end transaction: forward it statelessly (with the
        // media side, it may carry the answer to an offer in a 2xx).
        return match media_flow {
            Some((flow, from)) => {
                let out = Outgoing {
                    flow,
                    from,
                    msg: &msg,
                    to: dest,
                    bytes,
                    txn: None,
                    last_response_of: None,
                    user: None,
                };
                edge.media_request(now, out)
            }
            None => edge.push(dest, bytes, None),
        };
    }
    if let (Side::Flow(flow, _), Method::Invite, Some(id)) = (side, &method, &identity)
        && let Some(f) = edge.flows.get_mut(&flow)
    {
        f.remember_call(
            now,
            &view.call_id,
            view.from.tag().unwrap_or(""),
            id.clone(),
        );
    }
    let retransmit = edge.unreliable(dest);
    let invite = method == Method::Invite;
    let trying =
        invite.then(|| response_to(&msg, Status::TRYING.code, Status::TRYING.reason, None, &[]));
    let udp_origin = match reply_to {
        Dest::Link(Link::Udp(_)) => true,
        Dest::Flow(f) => edge.flow_kind(f).unreliable(),
        _ => false,
    };
    // The media side reads the request after the transaction owns it.
    // Only what the media side must see is copied for it: a REGISTER outside calls goes out
    // without the copy.
    let for_media = media_flow
        .filter(|(flow, _)| edge.media_concerns(*flow, &msg, &view))
        .map(|(flow, from)| {
            // Whom a call this INVITE makes counts against (`media.max_calls_per_user`): the
            // identity that authorised it (a token of its own, or the flow's registration), or
            // toward a browser the identity its flow registered.
            let id = match from {
                _ if !invite => None,
                Party::Browser => identity.as_ref(),
                Party::Ims => edge.flows.get(&flow).and_then(|f| f.identity.as_ref()),
            };
            let user = id.map(|id| id.impu.as_str().to_string());
            ((flow, from), msg.clone(), user)
        });
    let origin = Origin {
        reply_to,
        request: msg,
        key,
        unreliable: udp_origin,
    };
    edge.txns.insert(
        now,
        id,
        branch,
        bytes.clone(),
        hop,
        invite,
        dest,
        retransmit,
        Some(origin),
    );
    if let (Side::Flow(flow, _), Some(plan)) = (side, &register_plan)
        && let Some(t) = edge.txns.get_mut(id)
    {
        let registered = if plan.unregister { None } else { identity };
        t.registration = Some((flow, registered));
    }
    match for_media {
        Some(((flow, from), msg, user)) => {
            let out = Outgoing {
                flow,
                from,
                msg: &msg,
                to: dest,
                bytes,
                txn: Some(id),
                last_response_of: None,
                user,
            };
            edge.media_request(now, out);
        }
        None => edge.push(dest, bytes, Some(id)),
    }
    // RFC 3261 §17.2.1: the INVITE server transaction answers 100 at once.
    if let Some(trying) = trying {
        if udp_origin && let Some(t) = edge.txns.get_mut(id) {
            t.last_response = Some(trying.clone());
        }
        edge.push(reply_to, trying, None);
    }
}

/// A request that failed the syntax check (RFC 3261 §16.3 item 1): `400` with the reason, or
/// `505` for another SIP version (RFC 4475 §3.1.2.15); no answer to an ACK or to a request with
/// no Via to answer by (a WebSocket that sends one is closed: it speaks no SIP).
fn refuse_invalid(edge: &mut Edge, side: Side, msg: &Message, e: &ParseError) {
    if msg.header(&HeaderName::Via).is_none() {
        edge.stats.rejected_400 += 1;
        if let Side::Flow(flow, _) = side {
            debug!(%flow, error = %e, "request without a Via from a client; closing it");
            edge.close_malformed(flow);
        }
        return;
    }
    if msg.method() == Some(&Method::Ack) {
        return;
    }
    let status = match e {
        ParseError::BadVersion => Status::VERSION_NOT_SUPPORTED,
        _ => Status::BAD_REQUEST,
    };
    if status == Status::BAD_REQUEST {
        edge.stats.rejected_400 += 1;
    }
    let reply_to = side.reply_to(msg, None);
    let tag = local_tag_from_bytes(msg);
    let warning = warning(&e.to_string());
    let r = response_to(
        msg,
        status.code,
        status.reason,
        Some(&tag),
        &[("Warning", &warning)],
    );
    debug!(code = status.code, error = %e, "refused an invalid request");
    edge.push(reply_to, r, None);
}

/// The Request-URI's scheme when the edge cannot route it (RFC 3261 §16.3 item 2): from a
/// WebSocket, `sip`, `sips` and `tel` go to the P-CSCF (TS 24.229 allows tel URIs there); from
/// the IMS side only a SIP URI can name one of our flows.
fn unsupported_scheme(view: &View, side: Side) -> Option<String> {
    match (&view.request_uri, side) {
        (Some(Uri::Sip(_)), _) | (None, _) => None,
        (Some(Uri::Other(other)), side) => {
            let scheme = other.split(':').next().unwrap_or("").to_ascii_lowercase();
            let tel_ok = matches!(side, Side::Flow(..)) && scheme == "tel";
            (!tel_ok).then_some(scheme)
        }
    }
}

fn server_key(view: &View, method: Option<Method>, arrival: Arrival) -> Option<ServerKey> {
    let via = view.top_via();
    let branch = via.branch.clone()?;
    let method = method.or_else(|| view.method.clone())?;
    Some(ServerKey {
        branch,
        sent_by: format!(
            "{}:{}",
            via.host.to_ascii_lowercase(),
            via.port.unwrap_or(0)
        ),
        method: method.as_str().to_string(),
        arrival,
    })
}

/// A stable To tag for a response the edge makes to a request it does not forward.
pub(super) fn local_tag_for(view: &View) -> String {
    local_tag(view.top_via().branch.as_deref().unwrap_or_default())
}

/// [`local_tag_for`] for a request that did not validate.
fn local_tag_from_bytes(msg: &Message) -> String {
    let branch = msg.top_via().ok().and_then(|v| v.branch);
    local_tag(branch.as_deref().unwrap_or_default())
}

/// `399 imsgw "<why>"` (RFC 3261 §20.43).
pub(super) fn warning(why: &str) -> String {
    format!("399 imsgw \"{}\"", why.replace('"', "'"))
}

/// Answers a request the edge will not forward, with a `Warning` naming why (RFC 3261 §20.43).
pub(super) fn reject(
    edge: &mut Edge,
    to: Dest,
    msg: &Message,
    view: &View,
    status: Status,
    why: Option<&str>,
) {
    if status == Status::BAD_REQUEST {
        edge.stats.rejected_400 += 1;
    }
    let warning = why.map(warning);
    let extra: Vec<(&str, &str)> = warning.iter().map(|w| ("Warning", w.as_str())).collect();
    let tag = local_tag_for(view);
    let r = response_to(msg, status.code, status.reason, Some(&tag), &extra);
    debug!(code = status.code, "rejected a request");
    edge.push(to, r, None);
}

/// CANCEL for a pending INVITE (RFC 3261 §16.10): answer it, then cancel our branch once it
/// has had a provisional response (§9.1).
fn cancel(edge: &mut Edge, id: TxnId, msg: &Message, view: &View, reply_to: Dest) {
    let (s, tag) = (Status::OK, local_tag_for(view));
    let r = response_to(msg, s.code, s.reason, Some(&tag), &[]);
    edge.push(reply_to, r, None);
    if let Some((to, bytes)) = edge.txns.cancel(id) {
        edge.push(to, bytes, None);
    }
}

/// Answers a request refused for its credentials, with the challenge (RFC 8898 §2.2, §4).
pub(super) fn reject_auth(
    edge: &mut Edge,
    to: Dest,
    msg: &Message,
    view: &View,
    r: auth::Rejection,
) {
    let mut extra: Vec<(&str, &str)> = Vec::new();
    if let Some((name, value)) = &r.challenge {
        extra.push((name, value));
    }
    for (name, value) in &r.extra {
        extra.push((name, value));
    }
    let warning = r.why.as_deref().map(warning);
    if let Some(w) = &warning {
        extra.push(("Warning", w));
    }
    let tag = local_tag_for(view);
    let resp = response_to(msg, r.status.code, r.status.reason, Some(&tag), &extra);
    debug!(
        code = r.status.code,
        why = r.why.as_deref().unwrap_or(""),
        "request refused at the edge"
    );
    edge.push(to, resp, None);
}
