//! Responses through the edge (RFC 3261 §16.7, §17.1; RFC 6026): matched to a transaction by
//! our top Via's branch, our Via removed, then forwarded toward where the request came from.
//!
//! Owns: response matching and forwarding. Must not touch: sockets.

use std::time::Instant;

use imsgw_sip::{HeaderName, Message, Method, Splice};
use tracing::debug;

use super::media::{Outgoing, Party};
use super::txn::{Cancel, State, hop_request};
use super::{Arrival, Dest, Edge};

/// A response from `arrival`.
pub(super) fn handle(edge: &mut Edge, now: Instant, arrival: Arrival, msg: Message) {
    let Some(status) = msg.status() else {
        return;
    };
    if let Some(e) = msg.body_error() {
        // A response cannot be answered; one whose body is not what it says is not forwarded.
        debug!(status, error = %e, "response with a broken body; dropped");
        return;
    }
    // A WebSocket client is not trusted to write a well-formed response: the same checks as a
    // request (mandatory headers, no control characters that a parser downstream could take
    // for a line end), and it gets a Content-Length on the way (RFC 3261 §18.3: the IMS side
    // may be a stream, where a missing one would make the body the next message).
    // From the IMS side only what matching needs is parsed: the top Via and CSeq.
    let (via, cseq_method, add_length) = match arrival {
        Arrival::Flow(flow) => match msg.view() {
            Ok(v) => (
                v.top_via().clone(),
                Some(v.cseq.method),
                v.content_length.is_none(),
            ),
            Err(e) => {
                debug!(%flow, status, error = %e, "malformed response from a WebSocket; dropped");
                edge.stats.malformed_responses_dropped += 1;
                return;
            }
        },
        Arrival::Ims => {
            let Ok(via) = msg.top_via() else {
                debug!("response without a Via; dropped");
                return;
            };
            (via, msg.cseq().ok().map(|c| c.method), false)
        }
    };
    if !edge.settings.local.is_our_via(&via.host, via.port) {
        // RFC 3261 §18.1.2: a response whose top Via is not ours is discarded.
        debug!(status, "response not addressed to us; dropped");
        return;
    }
    let Some(id) = via.branch.as_deref().and_then(|b| edge.txns.by_branch(b)) else {
        debug!(status, "response matches no transaction; dropped");
        return;
    };
    // The answer to a CANCEL we sent shares the INVITE's branch; it ends here.
    if cseq_method == Some(Method::Cancel) {
        return;
    }
    let Some(t) = edge.txns.get(id) else {
        return;
    };
    // Only the link the request went down may answer it: another WebSocket (or the IMS side,
    // for a request sent down a WebSocket) cannot complete someone else's transaction.
    let from_right_link = match (arrival, t.dest) {
        (Arrival::Flow(f), Dest::Flow(g)) => f == g,
        (Arrival::Ims, Dest::Upstream | Dest::Link(_)) => true,
        _ => false,
    };
    if !from_right_link {
        debug!(
            status,
            ?arrival,
            "response from another link than its request went to; dropped"
        );
        edge.stats.stray_responses_dropped += 1;
        return;
    }
    let invite = t.invite;
    let state = t.state;
    let final_sent = t.final_sent;
    let origin = t.origin.as_ref().map(|o| o.reply_to);
    let dest = t.dest;

    if invite && status >= 300 {
        // RFC 3261 §17.1.1.3: the client transaction ACKs a non-2xx final itself, also when
        // the final is retransmitted.
        let to = msg
            .header(&HeaderName::To)
            .map(|h| msg.value(h).to_vec())
            .unwrap_or_default();
        if let Some(hop) = &t.hop {
            let ack = hop_request(hop, "ACK", Some(&to));
            edge.push(dest, ack, None);
        }
    }

    let forward = match (status, state) {
        (100, _) => false, // RFC 3261 §16.7 step 3: 100 is not forwarded.
        (101..=199, State::Trying | State::Proceeding) => !final_sent,
        (200..=299, State::Accepted) => invite, // RFC 6026 §7.2: 2xx retransmissions pass.
        (200..=299, State::Trying | State::Proceeding) => !final_sent || invite,
        (300.., State::Trying | State::Proceeding) => !final_sent,
        _ => false,
    };

    if status < 200 {
        edge.txns.provisional(now, id);
        if edge.txns.get(id).map(|t| t.cancel) == Some(Cancel::Pending)
            && let Some((to, bytes)) = edge.txns.cancel(id)
        {
            edge.push(to, bytes, None);
        }
    } else if matches!(state, State::Trying | State::Proceeding) {
        let mut registration = None;
        if let Some(t) = edge.txns.get_mut(id) {
            t.final_sent = true;
            registration = t.registration.take();
        }
        // RFC 8898 §2.1.4: a flow speaks for the identity its last accepted REGISTER proved.
        if let (Some((flow, identity)), 200..=299) = (registration, status)
            && let Some(f) = edge.flows.get_mut(&flow)
        {
            let registered = identity.is_some();
            f.identity = identity;
            edge.registration_changed(now, flow, registered);
        }
        edge.txns.finished(now, id, status);
    }

    let Some(reply_to) = origin else {
        return;
    };
    if !forward {
        return;
    }
    let Ok(range) = msg.remove_value_range(&HeaderName::Via, 0) else {
        return;
    };
    let mut s = Splice::new();
    s.delete(range);
    // TS 24.229 §4.4: an identity a UA claims in a response is not believed either; in `pai`
    // mode imsgw asserts the answering flow's registered IMPU instead (TS 24.229 §5.2.6.4.4, the
    // P-CSCF's handling of responses from a UE; RFC 3325 §9.1).
    if let Arrival::Flow(flow) = arrival {
        for h in msg.headers() {
            if edge.settings.strip.strips_response(&h.name) {
                s.delete(h.line.clone());
            }
        }
        let unix = edge.unix;
        let registered = edge.flows.get(&flow).and_then(|f| f.identity.as_ref());
        if let Some(line) = registered.and_then(|id| edge.auth.response_pai(unix, id)) {
            s.insert(msg.headers_start(), line);
        }
    }
    if add_length {
        s.insert(
            msg.headers_end(),
            format!("Content-Length: {}\r\n", msg.body().len()),
        );
    }
    let Ok(bytes) = s.apply(msg.as_bytes()) else {
        return;
    };
    let udp = (edge.txns.get(id).and_then(|t| t.origin.as_ref())).is_some_and(|o| o.unreliable);
    edge.stats.responses_forwarded += 1;
    let media_flow = match (arrival, reply_to) {
        (Arrival::Flow(flow), _) => Some((flow, Party::Browser)),
        (Arrival::Ims, Dest::Flow(flow)) => Some((flow, Party::Ims)),
        _ => None,
    };
    match (media_flow, cseq_method) {
        (Some((flow, from)), Some(method)) => {
            // The media side records what a retransmitted request is answered with once it
            // sends the response: what was really sent, never the body before its rewrite.
            let out = Outgoing {
                flow,
                from,
                msg: &msg,
                to: reply_to,
                bytes,
                txn: None,
                last_response_of: udp.then_some(id),
                user: None,
            };
            edge.media_response(now, out, status, method);
        }
        _ => {
            if udp && let Some(t) = edge.txns.get_mut(id) {
                t.last_response = Some(bytes.clone());
            }
            edge.push(reply_to, bytes, None)
        }
    }
}
