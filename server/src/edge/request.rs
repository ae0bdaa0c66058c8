//! Requests through the edge: from a WebSocket toward the P-CSCF, and from the IMS side down
//! the WebSocket that a flow token names (RFC 3261 §16.3–16.6, RFC 5626 §5, RFC 3327, RFC 7118).
//!
//! Owns: request checks, Route popping, the header edits made on the way through.
//! Must not touch: sockets; transaction timers (see `txn`).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use imsgw_sip::{HeaderName, Message, Method, NameAddr, ParseError, Splice, Uri, response_to};
use tracing::{debug, warn};

use super::auth::{self, Decision, Identity};
use super::local::OurRoute;
use super::status::Status;
use super::trust;
use super::txn::{Origin, ServerKey, State, TxnId, fnv, local_tag};
use super::{Arrival, Dest, Edge, FlowId, Link, Output, response};
use crate::config::UpstreamTransport;

/// Where a request came from.
#[derive(Debug, Clone, Copy)]
enum Side {
    Flow(FlowId, SocketAddr),
    Ims(Link, SocketAddr),
}

impl Side {
    /// Where responses to it go (RFC 3261 §18.2.2; RFC 7118 §5: back over the WebSocket).
    fn reply_to(self, msg: &Message) -> Dest {
        match self {
            Side::Flow(flow, _) => Dest::Flow(flow),
            Side::Ims(Link::Udp(source), _) => {
                // RFC 3261 §18.2.2 with RFC 3581: the source address, and the sent-by port
                // unless the client asked for rport.
                let port = match msg.top_via() {
                    Ok(v) if v.rport.is_none() => v.port.unwrap_or(5060),
                    _ => source.port(),
                };
                Dest::Link(Link::Udp(SocketAddr::new(source.ip(), port)))
            }
            Side::Ims(link, _) => Dest::Link(link),
        }
    }

    fn source(self) -> SocketAddr {
        match self {
            Side::Flow(_, a) | Side::Ims(_, a) => a,
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
            debug!(%flow, error = %e, "unparseable message on a WebSocket; closing it");
            edge.stats.rejected_400 += 1;
            edge.out.push_back(Output::CloseFlow {
                flow,
                reason: "malformed SIP message",
            });
            return;
        }
    };
    if !msg.is_request() {
        response::handle(edge, now, Arrival::Flow(flow), msg);
        return;
    }
    edge.stats.requests_from_flows += 1;
    proxy(edge, now, Side::Flow(flow, remote), msg);
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
    proxy(edge, now, Side::Ims(link, source), msg);
}

/// The steps of RFC 3261 §16.3–16.6 for one request, in the order of §16.3: syntax (400, or
/// 505 for another SIP version), URI scheme (416), Max-Forwards (483), loops (482),
/// Proxy-Require (420), then authorization (RFC 8898) and routing.
fn proxy(edge: &mut Edge, now: Instant, side: Side, msg: Message) {
    let reply_to = side.reply_to(&msg);
    let method = msg
        .method()
        .cloned()
        .unwrap_or(Method::Other(String::new()));
    let ack = method == Method::Ack;
    // §16.3 item 1: reasonable syntax.
    if let Err(e) = msg.validate() {
        // RFC 3261 §8.2.6: a response needs the request's Via to find its way back; without
        // one there is nobody to answer, and a WebSocket that sends such things is closed.
        if msg.header(&HeaderName::Via).is_none() {
            edge.stats.rejected_400 += 1;
            if let Side::Flow(flow, _) = side {
                debug!(%flow, error = %e, "request without a Via on a WebSocket; closing it");
                edge.out.push_back(Output::CloseFlow {
                    flow,
                    reason: "malformed SIP message",
                });
            }
        } else if !ack {
            let status = match e {
                // RFC 3261 §8.2.2... §21.5.20, RFC 4475 §3.1.2.18.
                ParseError::BadVersion => Status::VERSION_NOT_SUPPORTED,
                _ => Status::BAD_REQUEST,
            };
            reject(edge, reply_to, &msg, status, Some(&e.to_string()));
        }
        return;
    }
    // §16.3 item 2: a Request-URI scheme the edge cannot route (RFC 4475 §3.3.2, §3.3.3).
    if let Some(scheme) = unsupported_scheme(&msg, side) {
        if !ack {
            let why = format!("the Request-URI scheme `{scheme}` is not supported");
            reject(
                edge,
                reply_to,
                &msg,
                Status::UNSUPPORTED_URI_SCHEME,
                Some(&why),
            );
        }
        return;
    }
    let arrival = side.arrival();
    let key = server_key(&msg, None, arrival);
    // RFC 3261 §17.2.3: ACK for a non-2xx final and CANCEL belong to the INVITE's transaction,
    // and only the link that sent the INVITE can reach it: the key holds where it arrived.
    if ack || method == Method::Cancel {
        let invite =
            server_key(&msg, Some("INVITE"), arrival).and_then(|k| edge.txns.by_server(&k));
        match (invite, ack) {
            (Some(id), false) => {
                cancel(edge, id, &msg, reply_to);
                return;
            }
            (Some(id), true) => {
                if edge.txns.get(id).map(|t| t.state) == Some(State::Completed) {
                    // ACK of our non-2xx: hop by hop, ends here (RFC 3261 §17.2.1).
                    return;
                }
            }
            (None, false) => {
                // RFC 3261 §16.10 would forward a CANCEL that matches nothing statelessly; here
                // a CANCEL only ever ends this link's own pending INVITE.
                edge.stats.unmatched_cancel += 1;
                reject(edge, reply_to, &msg, Status::NO_TRANSACTION, None);
                return;
            }
            (None, true) => {}
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
    if let Ok(Some((0, _))) = msg.max_forwards() {
        if !ack {
            reject(edge, reply_to, &msg, Status::TOO_MANY_HOPS, None);
        }
        return;
    }
    // §16.3 item 4.
    let loop_hash = loop_hash(&msg);
    if is_loop(edge, &msg, loop_hash) {
        if !ack {
            reject(edge, reply_to, &msg, Status::LOOP_DETECTED, None);
        }
        return;
    }
    // §16.3 item 5: the edge implements no extension a UA could require of proxies.
    let unsupported = proxy_require(&msg);
    if !unsupported.is_empty() {
        if !ack {
            let list = unsupported.join(", ");
            let r = response_to(
                &msg,
                Status::BAD_EXTENSION.code,
                Status::BAD_EXTENSION.reason,
                Some(&local_tag_for(&msg)),
                &[("Unsupported", &list)],
            );
            edge.push(reply_to, r, None);
        }
        return;
    }
    // §16.3 item 6, RFC 8898: who may use this flow.
    let mut identity = None;
    if let Side::Flow(flow, _) = side {
        let info = edge.flows.get(&flow);
        // An ACK for an INVITE this flow sent (with its own token or on its registration)
        // belongs to that call.
        let call = ack
            .then(|| info.and_then(|f| f.call_identity(msg.call_id().unwrap_or(""))))
            .flatten();
        if let Some(id) = call {
            identity = Some(id);
        } else {
            let flow_identity = info.and_then(|f| f.identity.clone());
            let unix = edge.unix;
            match edge.auth.decide(unix, &msg, flow_identity.as_ref()) {
                Decision::Forward { identity: id } => identity = id,
                Decision::Reject(r) => {
                    edge.stats.auth_refused += 1;
                    reject_auth(edge, reply_to, &msg, r);
                    return;
                }
                Decision::Park { issuer } => {
                    edge.park(now, flow, msg.as_bytes().clone(), issuer);
                    return;
                }
                Decision::Drop => {
                    debug!(%flow, "ACK that no registration or call of this flow owns; dropped");
                    edge.stats.unowned_ack_dropped += 1;
                    return;
                }
            }
        }
    }
    // Validated above: Route values parse.
    let routes = msg.routes().unwrap_or_default();
    let popped = ours_on_top(edge, &routes);
    let dest = match side {
        Side::Flow(..) => Dest::Upstream,
        Side::Ims(..) => match target_for(edge, &msg, &routes[..popped]) {
            Ok(Target::Flow(flow)) => Dest::Flow(flow),
            Ok(Target::Edge) => {
                // OPTIONS aimed at the edge itself: a keep-alive or a probe (RFC 3261 §11).
                let r = response_to(
                    &msg,
                    Status::OK.code,
                    Status::OK.reason,
                    Some(&local_tag_for(&msg)),
                    &[],
                );
                edge.push(reply_to, r, None);
                return;
            }
            Err(refusal) => {
                if !ack {
                    match refusal.status {
                        Status::FORBIDDEN => edge.stats.forged_403 += 1,
                        Status::FLOW_FAILED => edge.stats.flow_failed_430 += 1,
                        _ => {}
                    }
                    reject(edge, reply_to, &msg, refusal.status, refusal.why);
                }
                return;
            }
        },
    };
    let (id, branch) = edge.txns.new_branch(loop_hash);
    let register_plan = match (&identity, &method) {
        (Some(id), Method::Register) => {
            Some(auth::plan_expires(&msg, id.exp.saturating_sub(edge.unix)))
        }
        _ => None,
    };
    let edits = Edits {
        side,
        dest,
        identity: identity.as_ref(),
        expires: register_plan.as_ref(),
    };
    let bytes = match rewrite(edge, &edits, &msg, &routes, popped, &branch) {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "could not rewrite a request");
            reject(edge, reply_to, &msg, Status::SERVER_ERROR, None);
            return;
        }
    };
    if ack {
        // ACK for a 2xx is its own end-to-end transaction: forward it statelessly.
        edge.push(dest, bytes, None);
        return;
    }
    if let (Side::Flow(flow, _), Method::Invite, Some(id)) = (side, &method, &identity)
        && let Some(f) = edge.flows.get_mut(&flow)
    {
        f.remember_call(now, msg.call_id().unwrap_or(""), id.clone());
    }
    let retransmit =
        dest == Dest::Upstream && edge.settings.local.transport == UpstreamTransport::Udp;
    let invite = method == Method::Invite;
    let trying =
        invite.then(|| response_to(&msg, Status::TRYING.code, Status::TRYING.reason, None, &[]));
    let udp_origin = matches!(reply_to, Dest::Link(Link::Udp(_)));
    edge.txns.insert(
        now,
        id,
        branch,
        bytes.clone(),
        invite,
        dest,
        retransmit,
        Some(Origin {
            reply_to,
            request: msg,
            key,
        }),
    );
    if let (Side::Flow(flow, _), Some(plan)) = (side, &register_plan)
        && let Some(t) = edge.txns.get_mut(id)
    {
        t.registration = Some((
            flow,
            if plan.unregister {
                None
            } else {
                identity.clone()
            },
        ));
    }
    edge.push(dest, bytes, Some(id));
    // RFC 3261 §17.2.1: the INVITE server transaction answers 100 at once.
    if let Some(trying) = trying {
        if udp_origin && let Some(t) = edge.txns.get_mut(id) {
            t.last_response = Some(trying.clone());
        }
        edge.push(reply_to, trying, None);
    }
}

/// The Request-URI's scheme when the edge cannot route it (RFC 3261 §16.3 item 2): from a
/// WebSocket, `sip`, `sips` and `tel` go to the P-CSCF (TS 24.229 allows tel URIs there); from
/// the IMS side only a SIP URI can name one of our flows.
fn unsupported_scheme(msg: &Message, side: Side) -> Option<String> {
    let uri = msg.request_uri()?;
    let scheme = uri.split(':').next().unwrap_or("").to_ascii_lowercase();
    let ok = match side {
        Side::Flow(..) => matches!(scheme.as_str(), "sip" | "sips" | "tel"),
        Side::Ims(..) => matches!(scheme.as_str(), "sip" | "sips"),
    };
    (!ok).then_some(scheme)
}

/// The option tags of `Proxy-Require` (RFC 3261 §20.29): the edge supports none as a proxy.
fn proxy_require(msg: &Message) -> Vec<String> {
    msg.headers()
        .iter()
        .filter(|h| h.name == HeaderName::ProxyRequire)
        .flat_map(|h| msg.value(h).split(|b| *b == b','))
        .map(|t| String::from_utf8_lossy(t.trim_ascii()).into_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Builds the forwarded request by splicing the original (RFC 3261 §16.6).
/// What `rewrite` is to do besides routing.
struct Edits<'a> {
    side: Side,
    dest: Dest,
    /// The identity a token proved, to assert upstream.
    identity: Option<&'a Identity>,
    /// REGISTER expiry capped to the token's life.
    expires: Option<&'a auth::ExpiresPlan>,
}

fn rewrite(
    edge: &Edge,
    edits: &Edits<'_>,
    msg: &Message,
    routes: &[NameAddr],
    popped: usize,
    branch: &str,
) -> Result<Bytes, imsgw_sip::SpliceError> {
    let (side, dest) = (edits.side, edits.dest);
    let local = &edge.settings.local;
    let mut s = Splice::new();
    if let Side::Flow(..) = side {
        assert_identity(edge, edits, msg, &mut s);
    }
    let top = msg.headers_start();
    let method = msg.method();
    let initial = msg.to().map(|t| t.tag().is_none()).unwrap_or(false);
    let dialog_creating = initial
        && matches!(
            method,
            Some(Method::Invite | Method::Subscribe | Method::Refer | Method::Notify)
        );
    match side {
        Side::Flow(flow, _) => {
            s.insert(top, format!("Via: {}\r\n", local.via_ims(branch)));
            if dialog_creating {
                // RFC 5658 double Record-Route: the IMS-facing URI on top, the flow-facing below.
                s.insert(
                    top,
                    format!(
                        "Record-Route: {}, {}\r\n",
                        local.rr_ims(),
                        local.rr_ws(&edge.key, flow)
                    ),
                );
            }
            if method == Some(&Method::Register) {
                // RFC 5626 §5.1: `ob` when the UA registers with reg-id.
                let ob = match msg.contacts() {
                    Ok(imsgw_sip::Contacts::List(list)) => {
                        list.iter().any(|c| c.param("reg-id").is_some())
                    }
                    _ => false,
                };
                s.insert(
                    top,
                    format!("Path: {}\r\n", local.path(&edge.key, flow, ob)),
                );
                if !supports(msg, "path") {
                    s.insert(top, Bytes::from_static(b"Supported: path\r\n"));
                }
            }
        }
        Side::Ims(..) => {
            s.insert(top, format!("Via: {}\r\n", local.via_ws(branch)));
            if dialog_creating && let Dest::Flow(flow) = dest {
                s.insert(
                    top,
                    format!(
                        "Record-Route: {}, {}\r\n",
                        local.rr_ws(&edge.key, flow),
                        local.rr_ims()
                    ),
                );
            }
        }
    }
    // RFC 3261 §18.2.1 / RFC 3581 / RFC 7118 §5.4: received (and rport) on the sender's Via.
    if let Ok(via) = msg.top_via() {
        let source = side.source();
        let ip = source.ip().to_string();
        let host = via.host.trim_start_matches('[').trim_end_matches(']');
        let end = via.sent_by_end();
        if via.received.is_none() && host != ip {
            s.insert(end, format!(";received={ip}"));
        }
        if via.rport == Some(None)
            && let Some(r) = via.param_range("rport")
        {
            s.replace(r, format!(";rport={}", source.port()));
        }
    }
    delete_popped_routes(msg, routes, popped, &mut s);
    // RFC 3261 §16.6 step 3.
    match msg.max_forwards() {
        Ok(Some((n, range))) => s.replace(range, n.saturating_sub(1).to_string()),
        _ => s.insert(top, Bytes::from_static(b"Max-Forwards: 70\r\n")),
    }
    // Streams need Content-Length (RFC 3261 §18.3); WebSocket clients may leave it out.
    if !matches!(msg.content_length(), Ok(Some(_))) {
        s.insert(
            msg.headers_end(),
            format!("Content-Length: {}\r\n", msg.body().len()),
        );
    }
    s.apply(msg.as_bytes())
}

/// Leading Route values that name us (RFC 3261 §16.4: a loose router removes its own).
fn ours_on_top(edge: &Edge, routes: &[NameAddr]) -> usize {
    routes
        .iter()
        .take_while(|r| edge.settings.local.our_route(&r.uri, &edge.key).is_some())
        .count()
}

/// Where a request from the IMS side goes.
enum Target {
    /// Down this flow.
    Flow(FlowId),
    /// To the edge itself (an OPTIONS keep-alive or probe).
    Edge,
}

/// Why a request from the IMS side has nowhere to go.
struct Refusal {
    status: Status,
    why: Option<&'static str>,
}

impl Refusal {
    fn new(status: Status, why: Option<&'static str>) -> Self {
        Self { status, why }
    }
}

/// Which flow a request from the IMS side goes down: the flow token in the Route values we
/// popped (Path or Record-Route), else in a Request-URI that names us. Every token must verify
/// and all must name the same flow: a request that names two flows is refused, never delivered
/// to either.
fn target_for(edge: &Edge, msg: &Message, popped: &[NameAddr]) -> Result<Target, Refusal> {
    let local = &edge.settings.local;
    let ruri = msg
        .request_uri()
        .and_then(|u| imsgw_sip::SipUri::parse(u).ok())
        .map(Uri::Sip);
    let mut found: Option<FlowId> = None;
    let named = popped
        .iter()
        .map(|r| local.our_route(&r.uri, &edge.key))
        .chain(std::iter::once(
            ruri.as_ref().and_then(|u| local.our_route(u, &edge.key)),
        ));
    for r in named {
        match r {
            Some(OurRoute::Flow(f)) => {
                if found.is_some_and(|g| g != f) {
                    return Err(Refusal::new(
                        Status::FORBIDDEN,
                        Some("the request names more than one flow"),
                    ));
                }
                found = Some(f);
            }
            // RFC 5626 §5.3: a token that does not verify -> 403.
            Some(OurRoute::Forged) => return Err(Refusal::new(Status::FORBIDDEN, None)),
            _ => {}
        }
    }
    let Some(flow) = found else {
        let options = msg.method() == Some(&Method::Options);
        if options && popped.is_empty() {
            return Ok(Target::Edge);
        }
        return Err(Refusal::new(Status::NOT_FOUND, None));
    };
    if edge.flows.contains_key(&flow) {
        Ok(Target::Flow(flow))
    } else {
        // RFC 5626 §5.3: the flow is gone.
        Err(Refusal::new(Status::FLOW_FAILED, None))
    }
}

/// Deletes the first `popped` Route values: whole lines where every value goes, otherwise
/// from the first popped value to the first kept one on that line.
fn delete_popped_routes(msg: &Message, routes: &[NameAddr], popped: usize, s: &mut Splice) {
    if popped == 0 {
        return;
    }
    for h in msg.headers().iter().filter(|h| h.name == HeaderName::Route) {
        let on_line: Vec<(usize, &NameAddr)> = routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.range.start >= h.value.start && r.range.end <= h.value.end)
            .collect();
        let gone: Vec<&(usize, &NameAddr)> = on_line.iter().filter(|(i, _)| *i < popped).collect();
        if gone.is_empty() {
            continue;
        }
        if gone.len() == on_line.len() {
            s.delete(h.line.clone());
        } else if let (Some(first), Some((_, kept))) = (gone.first(), on_line.get(gone.len())) {
            s.delete(first.1.range.start..kept.range.start);
        }
    }
}

fn supports(msg: &Message, option: &str) -> bool {
    msg.headers()
        .iter()
        .filter(|h| h.name == HeaderName::Supported)
        .flat_map(|h| msg.value(h).split(|b| *b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(option.as_bytes()))
}

/// RFC 3261 §16.3 item 4, §16.6 item 8: a hash over what a loop leaves unchanged and a spiral
/// changes: Request-URI, the Route set as received, From tag, To tag, Call-ID, CSeq number,
/// Proxy-Require and Proxy-Authorization. The Route set matters for in-dialog requests between
/// two WebSocket users: they pass the edge twice with the same Request-URI and tags, but the
/// second time with the Route values before our first visit consumed.
fn loop_hash(msg: &Message) -> u32 {
    let mut data = Vec::with_capacity(256);
    data.extend_from_slice(msg.request_uri().unwrap_or("").as_bytes());
    data.push(0);
    for h in msg.headers() {
        let name = match &h.name {
            HeaderName::Route | HeaderName::ProxyRequire | HeaderName::ProxyAuthorization => {
                h.name.as_str()
            }
            _ => continue,
        };
        data.extend_from_slice(name.as_bytes());
        data.extend_from_slice(msg.value(h));
        data.push(0);
    }
    if let Ok(f) = msg.from() {
        data.extend_from_slice(f.tag().unwrap_or("").as_bytes());
    }
    data.push(0);
    if let Ok(t) = msg.to() {
        data.extend_from_slice(t.tag().unwrap_or("").as_bytes());
    }
    data.push(0);
    data.extend_from_slice(msg.call_id().unwrap_or("").as_bytes());
    data.push(0);
    if let Ok(c) = msg.cseq() {
        data.extend_from_slice(&c.seq.to_be_bytes());
    }
    fnv(&data)
}

fn is_loop(edge: &Edge, msg: &Message, hash: u32) -> bool {
    let tail = format!(".{hash:08x}");
    let Ok(vias) = msg.vias() else {
        return false;
    };
    vias.iter().any(|v| {
        edge.settings.local.is_our_via(&v.host, v.port)
            && v.branch.as_deref().is_some_and(|b| b.ends_with(&tail))
    })
}

fn server_key(msg: &Message, method: Option<&str>, arrival: Arrival) -> Option<ServerKey> {
    let via = msg.top_via().ok()?;
    let branch = via.branch?;
    let method = match method {
        Some(m) => m.to_string(),
        None => msg.method()?.as_str().to_string(),
    };
    Some(ServerKey {
        branch,
        sent_by: format!(
            "{}:{}",
            via.host.to_ascii_lowercase(),
            via.port.unwrap_or(0)
        ),
        method,
        arrival,
    })
}

/// A stable To tag for a response the edge makes to a request it does not forward.
fn local_tag_for(msg: &Message) -> String {
    let branch = msg
        .top_via()
        .ok()
        .and_then(|v| v.branch)
        .unwrap_or_default();
    local_tag(&branch)
}

/// Answers a request the edge will not forward, with a `Warning` naming why (RFC 3261 §20.43).
fn reject(edge: &mut Edge, to: Dest, msg: &Message, status: Status, why: Option<&str>) {
    if status == Status::BAD_REQUEST {
        edge.stats.rejected_400 += 1;
    }
    let warning;
    let mut extra: Vec<(&str, &str)> = Vec::new();
    if let Some(why) = why {
        warning = format!("399 imsgw \"{}\"", why.replace('"', "'"));
        extra.push(("Warning", &warning));
    }
    let r = response_to(
        msg,
        status.code,
        status.reason,
        Some(&local_tag_for(msg)),
        &extra,
    );
    debug!(code = status.code, "rejected a request");
    edge.push(to, r, None);
}

/// CANCEL for a pending INVITE (RFC 3261 §16.10): answer it, then cancel our branch once it
/// has had a provisional response (§9.1).
fn cancel(edge: &mut Edge, id: TxnId, msg: &Message, reply_to: Dest) {
    let r = response_to(
        msg,
        Status::OK.code,
        Status::OK.reason,
        Some(&local_tag_for(msg)),
        &[],
    );
    edge.push(reply_to, r, None);
    if let Some((to, bytes)) = edge.txns.cancel(id) {
        edge.push(to, bytes, None);
    }
}

/// TS 24.229 §4.4, RFC 3325, RFC 8898 at the edge: nothing the client wrote about identity,
/// trust or credentials crosses (see `trust`); the identity that authorized the request is
/// asserted as `sip.identity_assertion` says, on every request; a REGISTER may not outlive its
/// token.
fn assert_identity(edge: &Edge, edits: &Edits<'_>, msg: &Message, s: &mut Splice) {
    let top = msg.headers_start();
    for h in msg.headers() {
        if edge.settings.strip.strips_request(&h.name) {
            s.delete(h.line.clone());
        }
    }
    let Some(id) = edits.identity else {
        return;
    };
    let register = msg.method() == Some(&Method::Register);
    let impu = trust::asserted_impu(msg, id);
    for line in edge.auth.assertion_lines(id, impu, register) {
        s.insert(top, line);
    }
    if let Some(plan) = edits.expires {
        for (range, text) in &plan.replace {
            s.replace(range.clone(), text.clone());
        }
        if let Some(secs) = plan.add_header {
            s.insert(top, format!("Expires: {secs}\r\n"));
        }
    }
}

/// Answers a request refused for its credentials, with the challenge (RFC 8898 §2.2, §4).
fn reject_auth(edge: &mut Edge, to: Dest, msg: &Message, r: auth::Rejection) {
    let mut extra: Vec<(&str, &str)> = Vec::new();
    if let Some((name, value)) = &r.challenge {
        extra.push((name, value));
    }
    let warning;
    if let Some(why) = &r.why {
        warning = format!("399 imsgw \"{}\"", why.replace('"', "'"));
        extra.push(("Warning", &warning));
    }
    let resp = response_to(msg, r.code, r.reason, Some(&local_tag_for(msg)), &extra);
    debug!(
        code = r.code,
        why = r.why.as_deref().unwrap_or(""),
        "request refused at the edge"
    );
    edge.push(to, resp, None);
}
