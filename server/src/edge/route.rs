//! Routing decisions for one request (RFC 3261 §16.4–16.5, RFC 5626 §5.3): which leading Route
//! values are ours, which flow a request from the IMS side goes down, and loop detection
//! (§16.3 item 4). Pure functions of the request and the edge's own addresses.
//!
//! Owns: where a request goes. Must not touch: header edits (`rewrite`), transactions.

use imsgw_sip::{HeaderName, Message, Method, NameAddr, Splice, Uri, View};

use super::local::{Local, OurRoute};
use super::status::Status;
use super::txn::fnv;
use super::{FlowId, FlowKey};

/// Where a request from the IMS side goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// Down this flow.
    Flow(FlowId),
    /// To the edge itself (an OPTIONS keep-alive or probe).
    Edge,
}

/// Why a request from the IMS side has nowhere to go.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: Status,
    pub why: Option<&'static str>,
}

impl Refusal {
    fn new(status: Status, why: Option<&'static str>) -> Self {
        Self { status, why }
    }
}

/// Leading Route values that name us (RFC 3261 §16.4: a loose router removes its own).
pub fn ours_on_top(local: &Local, key: &FlowKey, routes: &[NameAddr]) -> usize {
    routes
        .iter()
        .take_while(|r| local.our_route(&r.uri, key).is_some())
        .count()
}

/// Which flow a request from the IMS side goes down: the flow token in the Route values we
/// popped (Path or Record-Route), else in a Request-URI that names us. Every token must verify
/// and all must name the same flow: a request that names two flows is refused, never delivered
/// to either. `is_open` says whether a flow still exists (RFC 5626 §5.3: `430` if not).
pub fn target_for(
    local: &Local,
    key: &FlowKey,
    view: &View,
    popped: &[NameAddr],
    is_open: impl Fn(FlowId) -> bool,
) -> Result<Target, Refusal> {
    let ruri = view
        .request_uri
        .as_ref()
        .filter(|u| matches!(u, Uri::Sip(_)));
    let named = popped
        .iter()
        .map(|r| local.our_route(&r.uri, key))
        .chain(std::iter::once(ruri.and_then(|u| local.our_route(u, key))));
    let mut found: Option<FlowId> = None;
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
            Some(OurRoute::Plain) | None => {}
        }
    }
    match found {
        Some(flow) if is_open(flow) => Ok(Target::Flow(flow)),
        // RFC 5626 §5.3: the flow is gone.
        Some(_) => Err(Refusal::new(Status::FLOW_FAILED, None)),
        None if popped.is_empty() && view.method == Some(Method::Options) => Ok(Target::Edge),
        None => Err(Refusal::new(Status::NOT_FOUND, None)),
    }
}

/// Deletes the first `popped` Route values: whole lines where every value goes, otherwise
/// from the first popped value to the first kept one on that line.
pub fn delete_popped_routes(msg: &Message, routes: &[NameAddr], popped: usize, s: &mut Splice) {
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

/// RFC 3261 §16.3 item 4, §16.6 item 8: a hash over what a loop leaves unchanged and a spiral
/// changes: Request-URI, the Route set as received, From tag, To tag, Call-ID, CSeq number,
/// Proxy-Require and Proxy-Authorization. The Route set matters for in-dialog requests between
/// two WebSocket users: they pass the edge twice with the same Request-URI and tags, but the
/// second time with the Route values before our first visit consumed.
pub fn loop_hash(msg: &Message, view: &View) -> u32 {
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
    data.extend_from_slice(view.from.tag().unwrap_or("").as_bytes());
    data.push(0);
    data.extend_from_slice(view.to.tag().unwrap_or("").as_bytes());
    data.push(0);
    data.extend_from_slice(view.call_id.as_bytes());
    data.push(0);
    data.extend_from_slice(&view.cseq.seq.to_be_bytes());
    fnv(&data)
}

/// Whether one of the request's Vias is ours with this loop hash: it came back unchanged.
pub fn is_loop(local: &Local, view: &View, hash: u32) -> bool {
    let tail = format!(".{hash:08x}");
    view.vias.iter().any(|v| {
        local.is_our_via(&v.host, v.port) && v.branch.as_deref().is_some_and(|b| b.ends_with(&tail))
    })
}
