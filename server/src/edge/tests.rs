//! In-memory tests of the edge: a WebSocket client and the IMS side played by hand against the
//! state machine, on virtual time, with no sockets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use imsgw_sip::{HeaderName, Message};

use super::*;
use crate::config::UpstreamTransport;

const CLIENT: &str = "192.0.2.7:50123";
const PCSCF: &str = "127.0.0.1:5070";

struct Harness {
    edge: Edge,
    now: Instant,
}

pub(super) fn local(transport: UpstreamTransport) -> Local {
    Local {
        listen: "127.0.0.1:5062".parse().expect("addr"),
        tls_listen: None,
        transport,
        ws_host: "ims-example.invalid".into(),
        clients: Vec::new(),
        phone_advertise: None,
    }
}

impl Harness {
    fn new(transport: UpstreamTransport) -> Self {
        let settings = EdgeSettings {
            local: local(transport),
            t1: Duration::from_millis(500),
            strip: StripList::default(),
            media: None,
            register_timeout: None,
        };
        let mut edge = Edge::new(settings, FlowKey::random(), Auth::disabled());
        edge.flow_opened(FlowId(1), CLIENT.parse().expect("addr"));
        Self {
            edge,
            now: Instant::now(),
        }
    }

    fn client_sends(&mut self, flow: u64, text: &str) -> Vec<Output> {
        self.edge
            .from_flow(self.now, FlowId(flow), Bytes::from(text.to_string()));
        self.drain()
    }

    fn ims_sends(&mut self, text: &str) -> Vec<Output> {
        let source: SocketAddr = PCSCF.parse().expect("addr");
        self.edge.from_ims(
            self.now,
            Link::Udp(source),
            source,
            Bytes::from(text.to_string()),
        );
        self.drain()
    }

    fn advance(&mut self, by: Duration) -> Vec<Output> {
        self.now += by;
        self.edge.handle_timeout(self.now);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.edge.poll_output()).collect()
    }

    fn token(&self, flow: u64) -> String {
        self.edge.key.token(FlowId(flow))
    }
}

/// The single Send in `outs` to `to`.
pub(super) fn sent_to(outs: &[Output], to: Dest) -> Message {
    let found: Vec<&Bytes> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Send { to: t, bytes, .. } if *t == to => Some(bytes),
            _ => None,
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one message to {to:?}, got {outs:#?}"
    );
    Message::parse(found[0].clone()).expect("edge output parses")
}

pub(super) fn text(m: &Message) -> String {
    String::from_utf8_lossy(m.as_bytes()).into_owned()
}

fn pcscf() -> Dest {
    Dest::Link(Link::Udp(PCSCF.parse().expect("addr")))
}

const REGISTER: &str = "REGISTER sip:ims.example SIP/2.0\r\n\
Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKasudf\r\n\
Max-Forwards: 69\r\n\
To: <sip:alice@ims.example>\r\n\
From: <sip:alice@ims.example>;tag=65bnmj\r\n\
Call-ID: aiuy7k9njasd\r\n\
CSeq: 1 REGISTER\r\n\
X-Unknown :  kept  as   is\r\n\
Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws>;reg-id=1;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\";expires=600\r\n\
Content-Length: 0\r\n\r\n";

fn registered(h: &mut Harness) -> Message {
    let outs = h.client_sends(1, REGISTER);
    sent_to(&outs, Dest::Upstream)
}

#[test]
fn rfc5626_5_1_register_gets_path_with_flow_token_and_ob() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    let fwd = registered(&mut h);
    let t = text(&fwd);
    let path = fwd.paths().expect("paths");
    assert_eq!(path.len(), 1);
    let imsgw_sip::Uri::Sip(uri) = &path[0].uri else {
        panic!("sip uri in Path");
    };
    assert_eq!(uri.user.as_deref(), Some(h.token(1).as_str()));
    assert_eq!(uri.host, "127.0.0.1");
    assert_eq!(uri.port, Some(5062));
    assert!(
        uri.param("ob").is_some() && uri.param("lr").is_some(),
        "{t}"
    );
    assert!(t.contains("Supported: path\r\n"), "{t}");
    // RFC 3261 §16.6: our Via on top, Max-Forwards down by one, unknown headers untouched.
    let vias = fwd.vias().expect("vias");
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].host, "127.0.0.1");
    assert_eq!(vias[0].transport, "UDP");
    assert!(
        vias[0]
            .branch
            .as_deref()
            .is_some_and(|b| b.starts_with("z9hG4bK"))
    );
    // RFC 7118 §5.4 / RFC 3261 §18.2.1: received on the client's Via.
    assert_eq!(vias[1].received.as_deref(), Some("192.0.2.7"));
    assert_eq!(fwd.max_forwards().expect("mf").map(|m| m.0), Some(68));
    assert!(t.contains("X-Unknown :  kept  as   is\r\n"), "{t}");
    assert!(t.ends_with("Content-Length: 0\r\n\r\n"), "{t}");
}

#[test]
fn rfc3261_16_7_response_goes_back_down_the_flow_without_our_via() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    let fwd = registered(&mut h);
    let our_via = fwd.top_via().expect("via");
    let client_via = &fwd.vias().expect("vias")[1];
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nVia: {}\r\nTo: <sip:alice@ims.example>;tag=reg1\r\n\
From: <sip:alice@ims.example>;tag=65bnmj\r\nCall-ID: aiuy7k9njasd\r\nCSeq: 1 REGISTER\r\n\
Path: <sip:x@127.0.0.1:5062;lr;ob>\r\nContent-Length: 0\r\n\r\n",
        String::from_utf8_lossy(&fwd.as_bytes()[our_via.range.clone()]),
        String::from_utf8_lossy(&fwd.as_bytes()[client_via.range.clone()]),
    );
    let outs = h.ims_sends(&ok);
    let back = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(back.status(), Some(200));
    let vias = back.vias().expect("vias");
    assert_eq!(vias.len(), 1);
    assert_eq!(vias[0].host, "df7jal23ls0d.invalid");
    // A retransmitted 200 (the transaction is over) is not forwarded twice.
    let again = h.ims_sends(&ok);
    assert!(again.is_empty(), "{again:#?}");
}

fn invite_from_ims(h: &Harness, route_user: &str, extra: &str) -> String {
    format!(
        "INVITE sip:alice@df7jal23ls0d.invalid;transport=ws SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKkam1\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5097;branch=z9hG4bKsipp1;rport=5097\r\n\
Route: <sip:{route_user}@127.0.0.1:5062;transport=udp;lr;ob>\r\n\
Record-Route: <sip:127.0.0.1:5070;lr>\r\n\
Max-Forwards: 69\r\nFrom: <sip:caller@ims.example>;tag=c1\r\nTo: <sip:alice@ims.example>\r\n\
Call-ID: call-{}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:5097>\r\n{extra}\
Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n",
        h.now.elapsed().as_nanos()
    )
}

#[test]
fn rfc5626_5_3_request_from_ims_follows_the_flow_token() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    let token = h.token(1);
    let outs = h.ims_sends(&invite_from_ims(&h, &token, ""));
    let down = sent_to(&outs, Dest::Flow(FlowId(1)));
    let t = text(&down);
    assert!(
        down.routes().expect("routes").is_empty(),
        "our Route is popped: {t}"
    );
    // RFC 5658 double Record-Route: flow-facing on top, IMS-facing next, then Kamailio's.
    let rr = down.record_routes().expect("rr");
    assert_eq!(rr.len(), 3, "{t}");
    let imsgw_sip::Uri::Sip(top) = &rr[0].uri else {
        panic!()
    };
    assert_eq!(top.user.as_deref(), Some(token.as_str()));
    assert_eq!(top.transport().as_deref(), Some("ws"));
    let imsgw_sip::Uri::Sip(second) = &rr[1].uri else {
        panic!()
    };
    assert_eq!((second.user.as_deref(), second.port), (None, Some(5062)));
    assert_eq!(down.vias().expect("vias")[0].transport, "WS");
    assert!(t.ends_with("\r\n\r\nv=0\n"), "body untouched: {t}");
    // RFC 3261 §17.2.1: 100 Trying to the IMS side at once.
    let trying = sent_to(&outs, pcscf());
    assert_eq!(trying.status(), Some(100));
}

#[test]
fn rfc5626_5_3_dead_flow_gets_430_and_forged_token_403() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    let token = h.token(1);
    h.edge.flow_closed(h.now, FlowId(1));
    let outs = h.ims_sends(&invite_from_ims(&h, &token, ""));
    assert_eq!(sent_to(&outs, pcscf()).status(), Some(430));
    let forged = FlowKey::random().token(FlowId(1));
    let outs = h.ims_sends(&invite_from_ims(&h, &forged, ""));
    assert_eq!(sent_to(&outs, pcscf()).status(), Some(403));
    assert_eq!(h.edge.stats().forged_403, 1);
}

#[test]
fn rfc5626_5_3_flow_closing_mid_transaction_answers_430() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    let token = h.token(1);
    let outs = h.ims_sends(&invite_from_ims(&h, &token, ""));
    sent_to(&outs, Dest::Flow(FlowId(1)));
    h.edge.flow_closed(h.now, FlowId(1));
    let outs = h.drain();
    assert_eq!(sent_to(&outs, pcscf()).status(), Some(430));
}

#[test]
fn rfc3261_17_1_2_silent_udp_upstream_retransmits_then_408() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    registered(&mut h);
    let mut retransmits = 0;
    let mut final_seen = None;
    for _ in 0..80 {
        let outs = h.advance(Duration::from_millis(500));
        for o in &outs {
            if let Output::Send { to, bytes, .. } = o {
                match to {
                    Dest::Upstream => retransmits += 1,
                    Dest::Flow(_) => {
                        final_seen = Message::parse(bytes.clone()).ok().and_then(|m| m.status())
                    }
                    _ => {}
                }
            }
        }
    }
    // Timer E: 0.5, 1, 2, 4, 4, ... s until Timer F at 32 s.
    assert!(
        (8..=12).contains(&retransmits),
        "{retransmits} retransmissions"
    );
    assert_eq!(final_seen, Some(408));
}

#[test]
fn reliable_upstream_is_not_retransmitted() {
    let mut h = Harness::new(UpstreamTransport::Tcp);
    registered(&mut h);
    let outs = h.advance(Duration::from_secs(5));
    assert!(outs.is_empty(), "{outs:#?}");
}

#[test]
fn rfc3261_8_1_3_1_unreachable_upstream_gives_503_at_once() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    registered(&mut h);
    h.edge.upstream_failed(h.now);
    let outs = h.drain();
    let r = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(r.status(), Some(503));
    // The 503 is a response to the client's own request.
    assert_eq!(r.call_id().expect("call-id"), "aiuy7k9njasd");
    assert_eq!(r.vias().expect("vias")[0].host, "df7jal23ls0d.invalid");
}

#[test]
fn rfc3261_16_3_max_forwards_zero_gets_483() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    let outs = h.client_sends(1, &REGISTER.replace("Max-Forwards: 69", "Max-Forwards: 0"));
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(483));
}

#[test]
fn rfc3261_16_3_request_coming_back_unchanged_is_a_loop() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    let fwd = registered(&mut h);
    // The same request arriving again from the IMS side, carrying our own Via.
    let looped = text(&fwd).replacen(
        "REGISTER sip:ims.example SIP/2.0\r\n",
        "REGISTER sip:ims.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKk2\r\n",
        1,
    );
    let outs = h.ims_sends(&looped);
    assert_eq!(sent_to(&outs, pcscf()).status(), Some(482));
}

#[test]
fn malformed_request_gets_400_with_the_reason() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    let outs = h.client_sends(
        1,
        &REGISTER.replace("CSeq: 1 REGISTER", "CSeq: one REGISTER"),
    );
    let r = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(r.status(), Some(400));
    let w = r
        .header(&HeaderName::Other("warning".into()))
        .map(|h| r.value(h).to_vec());
    assert!(
        w.is_some_and(|w| w.starts_with(b"399 imsgw \"")),
        "{}",
        text(&r)
    );
    // Not SIP at all: nothing to answer, the WebSocket is closed with a protocol error.
    let outs = h.client_sends(1, "hello there\r\n\r\n");
    assert!(
        matches!(
            outs.as_slice(),
            [Output::CloseFlow {
                flow: FlowId(1),
                ..
            }]
        ),
        "{outs:#?}"
    );
}

#[test]
fn rfc5626_4_4_1_crlf_ping_gets_a_pong() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    let outs = h.client_sends(1, "\r\n\r\n");
    assert_eq!(
        outs,
        vec![Output::Send {
            to: Dest::Flow(FlowId(1)),
            bytes: Bytes::from_static(b"\r\n"),
            txn: None
        }]
    );
}

#[test]
fn options_for_the_edge_itself_is_answered() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    let outs = h.ims_sends(
        "OPTIONS sip:127.0.0.1:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKo1\r\n\
Max-Forwards: 70\r\nFrom: <sip:ka@ims.example>;tag=k\r\nTo: <sip:127.0.0.1:5062>\r\nCall-ID: ka1\r\n\
CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(sent_to(&outs, pcscf()).status(), Some(200));
}

#[test]
fn rfc3261_17_2_1_retransmitted_invite_is_absorbed() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    let token = h.token(1);
    let invite = invite_from_ims(&h, &token, "");
    let first = h.ims_sends(&invite);
    sent_to(&first, Dest::Flow(FlowId(1)));
    let again = h.ims_sends(&invite);
    // Only the 100 again, nothing down the WebSocket.
    assert_eq!(sent_to(&again, pcscf()).status(), Some(100));
    assert_eq!(again.len(), 1);
}

/// The client answers what came down with `code`, echoing its Vias.
fn answer(down: &Message, code: u16, to_tag: &str) -> String {
    let mut s = format!("SIP/2.0 {code} Whatever\r\n");
    for v in down.vias().expect("vias") {
        s.push_str(&format!(
            "Via: {}\r\n",
            String::from_utf8_lossy(&down.as_bytes()[v.range])
        ));
    }
    let to = down
        .header(&HeaderName::To)
        .map(|h| down.value(h).to_vec())
        .unwrap_or_default();
    s.push_str(&format!(
        "From: <sip:caller@ims.example>;tag=c1\r\nTo: {};tag={to_tag}\r\nCall-ID: {}\r\nCSeq: {} {}\r\nContent-Length: 0\r\n\r\n",
        String::from_utf8_lossy(&to),
        down.call_id().expect("call-id"),
        down.cseq().expect("cseq").seq,
        down.cseq().expect("cseq").method.as_str(),
    ));
    s
}

#[test]
fn rfc3261_17_2_1_ack_for_an_error_is_absorbed_hop_by_hop() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    let token = h.token(1);
    let invite = invite_from_ims(&h, &token, "");
    let down = sent_to(&h.ims_sends(&invite), Dest::Flow(FlowId(1)));
    let busy = sent_to(&h.client_sends(1, &answer(&down, 486, "b1")), pcscf());
    assert_eq!(busy.status(), Some(486));
    assert_eq!(busy.vias().expect("vias").len(), 2, "our Via removed");
    let ack = invite
        .replacen("INVITE sip:", "ACK sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace(
            "To: <sip:alice@ims.example>",
            "To: <sip:alice@ims.example>;tag=b1",
        );
    assert!(h.ims_sends(&ack).is_empty());
}

#[test]
fn rfc3261_17_1_1_3_edge_acks_an_error_from_upstream() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    let invite = "INVITE sip:bob@ims.example SIP/2.0\r\nVia: SIP/2.0/WSS c.invalid;branch=z9hG4bKi1\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@ims.example>;tag=a1\r\nTo: <sip:bob@ims.example>\r\nCall-ID: ci1\r\n\
CSeq: 5 INVITE\r\nContact: <sip:a@c.invalid;transport=ws;ob>\r\nContent-Length: 0\r\n\r\n";
    let outs = h.client_sends(1, invite);
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(100));
    let up = sent_to(&outs, Dest::Upstream);
    // RFC 5658: IMS-facing Record-Route on top, the flow-facing one (with the token) below.
    let rr = up.record_routes().expect("rr");
    assert_eq!(rr.len(), 2);
    let imsgw_sip::Uri::Sip(below) = &rr[1].uri else {
        panic!()
    };
    assert_eq!(below.user.as_deref(), Some(h.token(1).as_str()));
    let outs = h.ims_sends(&answer(&up, 404, "x"));
    let ack = sent_to(&outs, Dest::Upstream);
    assert_eq!(ack.method(), Some(&imsgw_sip::Method::Ack));
    assert_eq!(
        ack.top_via().expect("via").branch,
        up.top_via().expect("via").branch
    );
    assert_eq!(ack.to().expect("to").tag(), Some("x"));
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(404));
}

#[test]
fn rfc3261_16_10_cancel_is_answered_and_sent_on_after_a_provisional() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    let invite = "INVITE sip:bob@ims.example SIP/2.0\r\nVia: SIP/2.0/WSS c.invalid;branch=z9hG4bKi2\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@ims.example>;tag=a1\r\nTo: <sip:bob@ims.example>\r\nCall-ID: ci2\r\n\
CSeq: 5 INVITE\r\nContent-Length: 0\r\n\r\n";
    let up = sent_to(&h.client_sends(1, invite), Dest::Upstream);
    let cancel = invite
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("5 INVITE", "5 CANCEL");
    let outs = h.client_sends(1, &cancel);
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(200));
    assert!(
        !outs.iter().any(|o| matches!(
            o,
            Output::Send {
                to: Dest::Upstream,
                ..
            }
        )),
        "waits for a provisional"
    );
    let outs = h.ims_sends(&answer(&up, 180, "r"));
    let c = sent_to(&outs, Dest::Upstream);
    assert_eq!(c.method(), Some(&imsgw_sip::Method::Cancel));
    assert_eq!(
        c.top_via().expect("via").branch,
        up.top_via().expect("via").branch
    );
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(180));
}

#[test]
fn in_dialog_request_from_ims_follows_the_record_route_token() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    let token = h.token(1);
    let bye = format!(
        "BYE sip:alice@c.invalid;transport=ws SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKb1\r\n\
Route: <sip:127.0.0.1:5062;transport=udp;lr>, <sip:{token}@127.0.0.1:5062;transport=ws;lr;ob>\r\n\
Max-Forwards: 70\r\nFrom: <sip:caller@ims.example>;tag=c1\r\nTo: <sip:alice@ims.example>;tag=a\r\n\
Call-ID: d1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    let outs = h.ims_sends(&bye);
    let down = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert!(down.routes().expect("routes").is_empty(), "{}", text(&down));
    assert!(
        down.record_routes().expect("rr").is_empty(),
        "no Record-Route in dialog"
    );
}

#[test]
fn in_dialog_request_from_flow_pops_our_routes_and_keeps_the_rest() {
    let mut h = Harness::new(UpstreamTransport::Udp);
    let token = h.token(1);
    let bye = format!(
        "BYE sip:caller@127.0.0.1:5097 SIP/2.0\r\nVia: SIP/2.0/WSS c.invalid;branch=z9hG4bKb2\r\n\
Route: <sip:{token}@127.0.0.1:5062;transport=ws;lr;ob>,<sip:127.0.0.1:5062;transport=udp;lr>,\r\n <sip:127.0.0.1:5070;lr>\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@ims.example>;tag=a\r\nTo: <sip:caller@ims.example>;tag=c1\r\n\
Call-ID: d2\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    let outs = h.client_sends(1, &bye);
    let up = sent_to(&outs, Dest::Upstream);
    let routes = up.routes().expect("routes");
    assert_eq!(routes.len(), 1, "{}", text(&up));
    let imsgw_sip::Uri::Sip(r) = &routes[0].uri else {
        panic!()
    };
    assert_eq!(r.port, Some(5070));
}

#[test]
fn rfc3261_16_3_in_dialog_spiral_between_two_flows_is_not_a_loop() {
    // Alice (flow 1) and Bob (flow 2) are both behind the edge: Alice's BYE passes it twice,
    // first toward the IMS, then back down to Bob, with the same Request-URI, tags and CSeq.
    let mut h = Harness::new(UpstreamTransport::Udp);
    h.edge
        .flow_opened(FlowId(2), "192.0.2.8:40000".parse().expect("addr"));
    let (a, b) = (h.token(1), h.token(2));
    let bye = format!(
        "BYE sip:bob@ims.example;gr=urn:uuid:1 SIP/2.0\r\nVia: SIP/2.0/WSS c.invalid;branch=z9hG4bKs1\r\n\
Route: <sip:{a}@127.0.0.1:5062;transport=ws;lr;ob>, <sip:127.0.0.1:5062;transport=udp;lr>, \
<sip:127.0.0.1:5070;lr>, <sip:127.0.0.1:5062;transport=udp;lr>, <sip:{b}@127.0.0.1:5062;transport=ws;lr;ob>\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@ims.example>;tag=a\r\nTo: <sip:bob@ims.example>;tag=b\r\n\
Call-ID: spiral1\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    let up = sent_to(&h.client_sends(1, &bye), Dest::Upstream);
    // Kamailio pops its own Route and sends it back with its Via on top.
    let back = text(&up)
        .replacen(
            "BYE sip:bob@ims.example;gr=urn:uuid:1 SIP/2.0\r\n",
            "BYE sip:bob@ims.example;gr=urn:uuid:1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKk9\r\n",
            1,
        )
        .replace("<sip:127.0.0.1:5070;lr>, ", "");
    let outs = h.ims_sends(&back);
    let down = sent_to(&outs, Dest::Flow(FlowId(2)));
    assert_eq!(
        down.method(),
        Some(&imsgw_sip::Method::Bye),
        "{}",
        text(&down)
    );
}

#[test]
fn a_flood_s_table_is_given_back_once_a_quarter_is_in_use() {
    let mut m: HashMap<u64, [u8; 64]> = HashMap::new();
    for i in 0..20_000 {
        m.insert(i, [0; 64]);
    }
    let peak = m.capacity();
    for i in 100..20_000 {
        m.remove(&i);
        super::shrink_sparse(&mut m);
    }
    assert_eq!(m.len(), 100);
    assert!(m.capacity() < peak / 8, "{} of {peak}", m.capacity());
    // Small maps are left alone: no churn for a handful of flows.
    let mut small: HashMap<u64, u8> = (0..500).map(|i| (i, 0)).collect();
    small.retain(|k, _| *k < 10);
    super::shrink_sparse(&mut small);
    assert!(small.capacity() >= 500, "{}", small.capacity());
}
