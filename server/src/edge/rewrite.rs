//! The forwarded request, built by splicing the original (RFC 3261 §16.6): our Via, Path and
//! Record-Route, `received`/`rport`, popped Routes, Max-Forwards, Content-Length, and on
//! requests from a WebSocket the trust rules (`trust`) and the asserted identity. Also the
//! pieces a transaction needs later to build its CANCEL or ACK without parsing again.
//!
//! Owns: header edits. Must not touch: routing decisions (`route`), transactions.

use bytes::Bytes;
use imsgw_sip::{Contacts, HeaderName, Message, Method, Splice, View};

use super::auth::{ExpiresPlan, Identity};
use super::route::delete_popped_routes;
use super::trust;
use super::txn::Hop;
use super::{Dest, Edge, FlowId};

/// Where the request came from, as far as edits go.
#[derive(Debug, Clone, Copy)]
pub enum From {
    /// A WebSocket, from this address.
    Flow(FlowId, std::net::SocketAddr),
    /// The IMS side, from this address.
    Ims(std::net::SocketAddr),
}

/// What `rewrite` is to do besides routing.
pub struct Edits<'a> {
    pub from: From,
    pub dest: Dest,
    /// Leading Route values that named us.
    pub popped: usize,
    /// Our branch for the Via we add.
    pub branch: &'a str,
    /// The identity that authorized a request from a flow, to assert upstream.
    pub identity: Option<&'a Identity>,
    /// REGISTER expiry capped to the token's life.
    pub expires: Option<&'a ExpiresPlan>,
}

/// The request to send, and, for an INVITE, what its CANCEL or ACK will need (only an INVITE
/// ever gets either from the edge).
pub fn rewrite(
    edge: &Edge,
    edits: &Edits<'_>,
    msg: &Message,
    view: &View,
) -> Result<(Bytes, Option<Hop>), imsgw_sip::SpliceError> {
    let local = &edge.settings.local;
    let mut s = Splice::new();
    let top = msg.headers_start();
    let method = view.method.as_ref();
    let dialog_creating = view.to.tag().is_none()
        && matches!(
            method,
            Some(Method::Invite | Method::Subscribe | Method::Refer | Method::Notify)
        );
    // Our Via first (RFC 3261 §16.6 step 8), so it reads as the top one in any listing.
    let kind_of = |flow: FlowId| edge.flow_kind(flow);
    let via = match (edits.from, edits.dest) {
        (From::Flow(..), _) => local.via_ims(edits.branch),
        (From::Ims(_), Dest::Flow(flow)) => local.via_flow(kind_of(flow), edits.branch),
        (From::Ims(_), _) => local.via_ws(edits.branch),
    };
    s.insert(top, format!("Via: {via}\r\n"));
    let mut assertion = Vec::new();
    let source = match edits.from {
        From::Flow(flow, source) => {
            assertion = assert_identity(edge, edits, msg, view, &mut s);
            if dialog_creating {
                // RFC 5658 double Record-Route: the IMS-facing URI on top, the flow-facing below.
                s.insert(
                    top,
                    format!(
                        "Record-Route: {}, {}\r\n",
                        local.rr_ims(),
                        local.rr_flow(kind_of(flow), &edge.key, flow)
                    ),
                );
            }
            if method == Some(&Method::Register) {
                // RFC 5626 §5.1: `ob` when the UA registers with reg-id.
                let ob = matches!(&view.contacts, Contacts::List(list)
                    if list.iter().any(|c| c.param("reg-id").is_some()));
                s.insert(
                    top,
                    format!("Path: {}\r\n", local.path(&edge.key, flow, ob)),
                );
                if !view
                    .supported
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case("path"))
                {
                    s.insert(top, Bytes::from_static(b"Supported: path\r\n"));
                }
            }
            source
        }
        From::Ims(source) => {
            if dialog_creating && let Dest::Flow(flow) = edits.dest {
                s.insert(
                    top,
                    format!(
                        "Record-Route: {}, {}\r\n",
                        local.rr_flow(kind_of(flow), &edge.key, flow),
                        local.rr_ims()
                    ),
                );
            }
            source
        }
    };
    // RFC 3261 §18.2.1 / RFC 3581 / RFC 7118 §5.4: received (and rport) on the sender's Via.
    let sender = view.top_via();
    let ip = source.ip().to_string();
    let host = sender.host.trim_start_matches('[').trim_end_matches(']');
    if sender.received.is_none() && host != ip {
        s.insert(sender.sent_by_end(), format!(";received={ip}"));
    }
    if sender.rport == Some(None)
        && let Some(r) = sender.param_range("rport")
    {
        s.replace(r, format!(";rport={}", source.port()));
    }
    delete_popped_routes(msg, &view.routes, edits.popped, &mut s);
    // RFC 3261 §16.6 step 3.
    match &view.max_forwards {
        Some((n, range)) => s.replace(range.clone(), n.saturating_sub(1).to_string()),
        None => s.insert(top, Bytes::from_static(b"Max-Forwards: 70\r\n")),
    }
    // Streams need Content-Length (RFC 3261 §18.3); WebSocket clients may leave it out.
    if view.content_length.is_none() {
        s.insert(
            msg.headers_end(),
            format!("Content-Length: {}\r\n", msg.body().len()),
        );
    }
    let bytes = s.apply(msg.as_bytes())?;
    if method != Some(&Method::Invite) {
        return Ok((bytes, None));
    }
    let raw = |name: &HeaderName| {
        msg.header(name)
            .map(|h| String::from_utf8_lossy(msg.value(h)).into_owned())
            .unwrap_or_default()
    };
    let hop = Hop {
        request_uri: msg.request_uri().unwrap_or_default().to_string(),
        via,
        routes: view.routes[edits.popped.min(view.routes.len())..]
            .iter()
            .map(|r| String::from_utf8_lossy(&msg.as_bytes()[r.range.clone()]).into_owned())
            .collect(),
        from: raw(&HeaderName::From),
        to: raw(&HeaderName::To),
        call_id: view.call_id.clone(),
        seq: view.cseq.seq,
        assertion,
    };
    Ok((bytes, Some(hop)))
}

/// TS 24.229 §4.4, RFC 3325, RFC 8898 at the edge: nothing the client wrote about identity,
/// trust or credentials crosses (see `trust`); the identity that authorized the request is
/// asserted as `sip.identity_assertion` says, on every request; a REGISTER may not outlive its
/// token.
/// Returns the assertion lines it added, for the CANCEL or ACK the edge may build later.
fn assert_identity(
    edge: &Edge,
    edits: &Edits<'_>,
    msg: &Message,
    view: &View,
    s: &mut Splice,
) -> Vec<String> {
    let top = msg.headers_start();
    for h in msg.headers() {
        if edge.settings.strip.strips_request(&h.name) {
            s.delete(h.line.clone());
        }
    }
    let Some(id) = edits.identity else {
        return Vec::new();
    };
    let register = view.method == Some(Method::Register);
    let registered = std::slice::from_ref(&id.impu);
    let impu = trust::asserted_impu(msg, registered).unwrap_or(&id.impu);
    let lines = edge.auth.assertion_lines(id, impu.as_str(), register);
    for line in &lines {
        s.insert(top, line.clone());
    }
    if let Some(plan) = edits.expires {
        for (range, text) in &plan.replace {
            s.replace(range.clone(), text.clone());
        }
        if let Some(secs) = plan.add_header {
            s.insert(top, format!("Expires: {secs}\r\n"));
        }
    }
    lines
}
