//! In-memory tests of the edge's media side: the engine is played by hand (its commands read
//! from the outputs, its events fed back), the browser and the IMS side too.

use std::time::{Duration, Instant};

use bytes::Bytes;
use imsgw_media::{Command, EndReason, Event};
use imsgw_sip::Message;

use super::tests::{sent_to, text};
use super::*;
use crate::config::UpstreamTransport;

pub(super) const PCSCF: &str = "127.0.0.1:5070";
pub(super) const BROWSER_SDP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 8\r\na=ice-ufrag:abcd\r\n";
pub(super) const IMS_OFFER: &str = "v=0\r\no=imsgw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 8\r\n";
pub(super) const IMS_ANSWER: &str = "v=0\r\no=bob 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n";
pub(super) const BROWSER_ANSWER: &str = "v=0\r\no=str0m 5 5 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 8\r\na=ice-lite\r\n";

pub(super) struct H {
    pub(super) edge: Edge,
    pub(super) now: Instant,
}

impl H {
    pub(super) fn new() -> Self {
        let settings = EdgeSettings {
            local: super::tests::local(UpstreamTransport::Udp),
            t1: Duration::from_millis(500),
            strip: StripList::default(),
            media: Some(MediaLimits { calls_per_user: 3 }),
            register_timeout: None,
        };
        let mut edge = Edge::new(settings, FlowKey::random(), Auth::disabled());
        edge.flow_opened(FlowId(1), "192.0.2.7:50123".parse().expect("addr"));
        Self {
            edge,
            now: Instant::now(),
        }
    }

    pub(super) fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.edge.poll_output()).collect()
    }

    pub(super) fn browser(&mut self, text: &str) -> Vec<Output> {
        self.browser_on(1, text)
    }

    /// What the browser on `flow` sends.
    pub(super) fn browser_on(&mut self, flow: u64, text: &str) -> Vec<Output> {
        self.edge
            .from_flow(self.now, FlowId(flow), Bytes::from(text.to_string()));
        self.drain()
    }

    pub(super) fn ims(&mut self, text: &str) -> Vec<Output> {
        let source = PCSCF.parse().expect("addr");
        self.edge.from_ims(
            self.now,
            Link::Udp(source),
            source,
            Bytes::from(text.to_string()),
        );
        self.drain()
    }

    pub(super) fn engine(&mut self, ev: Event) -> Vec<Output> {
        self.edge.media_event(self.now, ev);
        self.drain()
    }
}

pub(super) fn commands(outs: &[Output]) -> Vec<Command> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Media(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn sends_to(outs: &[Output], to: Dest) -> usize {
    outs.iter()
        .filter(|o| matches!(o, Output::Send { to: t, .. } if *t == to))
        .count()
}

pub(super) fn pcscf() -> Dest {
    Dest::Link(Link::Udp(PCSCF.parse().expect("addr")))
}

/// An INVITE from the IMS side down flow 1 (Call-ID `call_id`, CSeq 7); `extra` is appended to
/// its To, `body` (SDP when not empty) is its body.
pub(super) fn ims_invite(h: &H, call_id: &str, branch: &str, extra: &str, body: &str) -> String {
    let token = h.edge.key.token(FlowId(1));
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "INVITE sip:alice@c.invalid;transport=ws SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
Route: <sip:{token}@127.0.0.1:5062;transport=udp;lr;ob>\r\n\
Record-Route: <sip:127.0.0.1:5070;lr>\r\n\
Max-Forwards: 69\r\nFrom: <sip:bob@ims.example>;tag=b1\r\nTo: <sip:alice@ims.example>{extra}\r\n\
Call-ID: {call_id}\r\nCSeq: 7 INVITE\r\nContact: <sip:bob@127.0.0.1:4001>\r\n\
{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// [`ims_invite`] requiring reliable provisional responses (RFC 3262).
pub(super) fn ims_invite_100rel(h: &H, call_id: &str, branch: &str, body: &str) -> String {
    ims_invite(h, call_id, branch, "", body).replace(
        "CSeq: 7 INVITE\r\n",
        "CSeq: 7 INVITE\r\nRequire: 100rel\r\n",
    )
}

/// The browser's response to a request the edge sent down its flow.
pub(super) fn browser_response(
    down: &Message,
    code: u16,
    call_id: &str,
    cseq: &str,
    sdp: &str,
) -> String {
    let reason = match code {
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        _ => "X",
    };
    let mut r = format!("SIP/2.0 {code} {reason}\r\n");
    for v in down.vias().expect("vias") {
        r.push_str(&format!(
            "Via: {}\r\n",
            String::from_utf8_lossy(&down.as_bytes()[v.range])
        ));
    }
    let ct = if sdp.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    r.push_str(&format!(
        "From: <sip:bob@ims.example>;tag=b1\r\nTo: <sip:alice@ims.example>;tag=a7\r\n\
Call-ID: {call_id}\r\nCSeq: {cseq}\r\nContact: <sip:a@c.invalid;transport=ws;ob>\r\n{ct}\
Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    r
}

/// The IMS side's PRACK (RFC 3262 §7.2) for `rseq` of the INVITE with CSeq 7 of `call_id`.
pub(super) fn ims_prack(h: &H, call_id: &str, branch: &str, rseq: u32, body: &str) -> String {
    let token = h.edge.key.token(FlowId(1));
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "PRACK sip:a@c.invalid;transport=ws;ob SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
Route: <sip:{token}@127.0.0.1:5062;transport=udp;lr;ob>\r\n\
Max-Forwards: 69\r\nFrom: <sip:bob@ims.example>;tag=b1\r\nTo: <sip:alice@ims.example>;tag=a7\r\n\
Call-ID: {call_id}\r\nCSeq: 8 PRACK\r\nRAck: {rseq} 7 INVITE\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The RSeq of a reliable provisional response.
pub(super) fn rseq_of(response: &str) -> u32 {
    response
        .split("\r\nRSeq: ")
        .nth(1)
        .and_then(|r| r.split("\r\n").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an RSeq: {response}"))
}

pub(super) fn invite(branch: &str) -> String {
    format!(
        "INVITE sip:bob@ims.example SIP/2.0\r\nVia: SIP/2.0/WSS c.invalid;branch={branch}\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@ims.example>;tag=a1\r\nTo: <sip:bob@ims.example>\r\nCall-ID: m1\r\n\
CSeq: 5 INVITE\r\nContact: <sip:a@c.invalid;transport=ws;ob>\r\nContent-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{BROWSER_SDP}",
        BROWSER_SDP.len()
    )
}

/// The IMS side's 200 (or 183) to `up`, with `sdp`.
pub(super) fn ims_response(up: &Message, code: u16, sdp: &str) -> String {
    let mut s = format!("SIP/2.0 {code} OK\r\n");
    for v in up.vias().expect("vias") {
        s.push_str(&format!(
            "Via: {}\r\n",
            String::from_utf8_lossy(&up.as_bytes()[v.range])
        ));
    }
    let rr: Vec<String> = up
        .record_routes()
        .expect("rr")
        .iter()
        .map(|r| String::from_utf8_lossy(&up.as_bytes()[r.range.clone()]).into_owned())
        .collect();
    s.push_str("Record-Route: <sip:127.0.0.1:5070;lr>\r\n");
    for r in rr {
        s.push_str(&format!("Record-Route: {r}\r\n"));
    }
    s.push_str(&format!(
        "From: <sip:alice@ims.example>;tag=a1\r\nTo: <sip:bob@ims.example>;tag=b9\r\nCall-ID: m1\r\n\
CSeq: 5 INVITE\r\nContact: <sip:bob@127.0.0.1:4001>\r\nContent-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    s
}

/// A browser call up to the IMS side's 200: returns the INVITE as it went upstream.
pub(super) fn answered_call(h: &mut H) -> Message {
    let outs = h.browser(&invite("z9hG4bKm1"));
    assert_eq!(
        sends_to(&outs, Dest::Upstream),
        0,
        "held for the engine: {outs:#?}"
    );
    let Some(Command::BrowserOffer { call, req, sdp }) = commands(&outs).pop() else {
        panic!("no BrowserOffer: {outs:#?}");
    };
    assert_eq!(sdp, BROWSER_SDP);
    let outs = h.engine(Event::Sdp {
        call,
        req,
        sdp: IMS_OFFER.into(),
    });
    let up = sent_to(&outs, Dest::Upstream);
    assert_eq!(up.body(), IMS_OFFER.as_bytes(), "{}", text(&up));
    assert_eq!(up.content_length().expect("cl"), Some(IMS_OFFER.len()));
    let outs = h.ims(&ims_response(&up, 200, IMS_ANSWER));
    assert_eq!(sends_to(&outs, Dest::Flow(FlowId(1))), 0, "held: {outs:#?}");
    let Some(Command::ImsAnswer { call: c2, req, sdp }) = commands(&outs).pop() else {
        panic!("no ImsAnswer: {outs:#?}");
    };
    assert_eq!((c2, sdp.as_str()), (call, IMS_ANSWER));
    let outs = h.engine(Event::Sdp {
        call,
        req,
        sdp: BROWSER_ANSWER.into(),
    });
    let down = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(down.status(), Some(200));
    assert_eq!(down.body(), BROWSER_ANSWER.as_bytes(), "{}", text(&down));
    up
}

#[test]
fn ts23228_u_browser_offer_and_ims_answer_are_each_replaced_by_the_other_legs_sdp() {
    let mut h = H::new();
    let up = answered_call(&mut h);
    assert_eq!(h.edge.media_call_count(), 1);
    // RFC 6026 §7.2: a retransmitted 2xx passes, with the same rewrite and no new negotiation.
    let outs = h.ims(&ims_response(&up, 200, IMS_ANSWER));
    assert!(commands(&outs).is_empty(), "{outs:#?}");
    let down = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(down.body(), BROWSER_ANSWER.as_bytes());
}

#[test]
fn rfc3261_15_bye_from_the_browser_releases_the_media() {
    let mut h = H::new();
    answered_call(&mut h);
    let bye = "BYE sip:bob@127.0.0.1:4001 SIP/2.0\r\nVia: SIP/2.0/WSS c.invalid;branch=z9hG4bKb1\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@ims.example>;tag=a1\r\nTo: <sip:bob@ims.example>;tag=b9\r\nCall-ID: m1\r\n\
CSeq: 6 BYE\r\nContent-Length: 0\r\n\r\n";
    let outs = h.browser(bye);
    assert_eq!(sends_to(&outs, Dest::Upstream), 1, "{outs:#?}");
    assert!(
        commands(&outs)
            .iter()
            .any(|c| matches!(c, Command::Release { .. })),
        "{outs:#?}"
    );
    assert_eq!(h.edge.media_call_count(), 0);
}

#[test]
fn rfc3264_no_common_codec_gets_488_with_the_engines_warning_and_nothing_upstream() {
    let mut h = H::new();
    let outs = h.browser(&invite("z9hG4bKm2"));
    let Some(Command::BrowserOffer { call, req, .. }) = commands(&outs).pop() else {
        panic!("no BrowserOffer: {outs:#?}");
    };
    let outs = h.engine(Event::Refused {
        call,
        req,
        status: 488,
        warning: "no common codec".into(),
    });
    assert_eq!(sends_to(&outs, Dest::Upstream), 0, "{outs:#?}");
    let down = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(down.status(), Some(488));
    assert!(
        text(&down).contains("Warning: 399 imsgw \"no common codec\""),
        "{}",
        text(&down)
    );
    assert!(
        commands(&outs)
            .iter()
            .any(|c| matches!(c, Command::Release { .. }))
    );
    assert_eq!(h.edge.media_call_count(), 0);
    // Timer A never sends the browser's own SDP upstream afterwards.
    for _ in 0..10 {
        h.now += Duration::from_millis(600);
        h.edge.handle_timeout(h.now);
        let outs = h.drain();
        assert_eq!(sends_to(&outs, Dest::Upstream), 0, "{outs:#?}");
    }
}

#[test]
fn rfc3261_17_1_2_2_retransmissions_wait_for_the_rewritten_invite() {
    let mut h = H::new();
    let outs = h.browser(&invite("z9hG4bKm3"));
    let Some(Command::BrowserOffer { call, req, .. }) = commands(&outs).pop() else {
        panic!("no BrowserOffer: {outs:#?}");
    };
    // Timer A fires while the engine works: nothing of the browser's SDP leaves.
    h.now += Duration::from_millis(600);
    h.edge.handle_timeout(h.now);
    let outs = h.drain();
    assert_eq!(sends_to(&outs, Dest::Upstream), 0, "{outs:#?}");
    let outs = h.engine(Event::Sdp {
        call,
        req,
        sdp: IMS_OFFER.into(),
    });
    assert_eq!(sent_to(&outs, Dest::Upstream).body(), IMS_OFFER.as_bytes());
    // Later retransmissions repeat the rewritten INVITE.
    h.now += Duration::from_millis(1100);
    h.edge.handle_timeout(h.now);
    let outs = h.drain();
    let again = sent_to(&outs, Dest::Upstream);
    assert_eq!(again.body(), IMS_OFFER.as_bytes());
}

#[test]
fn rfc7675_consent_lost_sends_a_bye_toward_the_ims_in_the_dialog() {
    let mut h = H::new();
    answered_call(&mut h);
    let call = match h.edge.media.as_ref().and_then(|m| m.by_ref_first()) {
        Some(c) => c,
        None => panic!("a call"),
    };
    let outs = h.engine(Event::Ended {
        call,
        reason: EndReason::ConsentLost,
    });
    let bye = sent_to(&outs, Dest::Upstream);
    // The browser's WebSocket is still open: it hears of it too, as the IMS side's BYE.
    let down = sent_to(&outs, Dest::Flow(FlowId(1)));
    let d = text(&down);
    assert!(
        d.starts_with("BYE sip:a@c.invalid;transport=ws;ob SIP/2.0\r\n"),
        "{d}"
    );
    assert!(
        d.contains("\r\nFrom: <sip:bob@ims.example>;tag=b9\r\n"),
        "{d}"
    );
    assert!(
        d.contains("\r\nTo: <sip:alice@ims.example>;tag=a1\r\n"),
        "{d}"
    );
    assert!(!d.contains("\r\nRoute:"), "{d}");
    let t = text(&bye);
    assert!(
        t.starts_with("BYE sip:bob@127.0.0.1:4001 SIP/2.0\r\n"),
        "{t}"
    );
    assert!(t.contains("\r\nRoute: <sip:127.0.0.1:5070;lr>\r\n"), "{t}");
    assert!(
        t.contains("\r\nFrom: <sip:alice@ims.example>;tag=a1\r\n"),
        "{t}"
    );
    assert!(
        t.contains("\r\nTo: <sip:bob@ims.example>;tag=b9\r\n"),
        "{t}"
    );
    assert!(t.contains("\r\nCSeq: 6 BYE\r\n"), "{t}");
    assert!(
        t.contains("\r\nReason: SIP;cause=200;text=\"media consent lost\"\r\n"),
        "{t}"
    );
    assert_eq!(h.edge.media_call_count(), 0);
    // Its 200 ends at the edge.
    let ok = ims_response(&bye, 200, "").replace("CSeq: 5 INVITE", "CSeq: 6 BYE");
    let outs = h.ims(&ok);
    assert_eq!(sends_to(&outs, Dest::Flow(FlowId(1))), 0, "{outs:#?}");
}

#[test]
fn ts23228_u_ims_offer_is_sent_to_the_browser_as_the_engines_webrtc_offer() {
    let mut h = H::new();
    let token = h.edge.key.token(FlowId(1));
    let body = IMS_ANSWER;
    let inv = format!(
        "INVITE sip:alice@c.invalid;transport=ws SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKkam1\r\n\
Route: <sip:{token}@127.0.0.1:5062;transport=udp;lr;ob>\r\n\
Record-Route: <sip:127.0.0.1:5070;lr>\r\n\
Max-Forwards: 69\r\nFrom: <sip:bob@ims.example>;tag=b1\r\nTo: <sip:alice@ims.example>\r\n\
Call-ID: in1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@127.0.0.1:4001>\r\n\
Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let outs = h.ims(&inv);
    assert_eq!(sends_to(&outs, Dest::Flow(FlowId(1))), 0, "{outs:#?}");
    let Some(Command::ImsOffer { call, req, sdp }) = commands(&outs).pop() else {
        panic!("no ImsOffer: {outs:#?}");
    };
    assert_eq!(sdp, body);
    let outs = h.engine(Event::Sdp {
        call,
        req,
        sdp: BROWSER_SDP.into(),
    });
    let down = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(down.body(), BROWSER_SDP.as_bytes());
    // An IMS peer with no codec of ours: 488 with the reason, toward the IMS.
    let inv2 = inv
        .replace("Call-ID: in1", "Call-ID: in2")
        .replace("z9hG4bKkam1", "z9hG4bKkam2");
    let outs = h.ims(&inv2);
    let Some(Command::ImsOffer { call, req, .. }) = commands(&outs).pop() else {
        panic!("no ImsOffer: {outs:#?}");
    };
    let outs = h.engine(Event::Refused {
        call,
        req,
        status: 488,
        warning: "AMR-WB/16000 offered".into(),
    });
    let pcscf = pcscf();
    let no = outs
        .iter()
        .filter_map(|o| match o {
            Output::Send { to, bytes, .. } if *to == pcscf => Message::parse(bytes.clone()).ok(),
            _ => None,
        })
        .find(|m| m.status() == Some(488))
        .unwrap_or_else(|| panic!("488 toward the IMS: {outs:#?}"));
    assert!(text(&no).contains("AMR-WB/16000 offered"), "{}", text(&no));
    assert_eq!(sends_to(&outs, Dest::Flow(FlowId(1))), 0);
}

#[test]
fn rfc3261_13_2_1_offerless_invite_offer_in_the_2xx_answer_in_the_ack() {
    let mut h = H::new();
    let token = h.edge.key.token(FlowId(1));
    // The IMS side's INVITE has no body: the browser offers in its 200, the IMS answers in ACK.
    let inv = format!(
        "INVITE sip:alice@c.invalid;transport=ws SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKlate1\r\n\
Route: <sip:{token}@127.0.0.1:5062;transport=udp;lr;ob>\r\n\
Record-Route: <sip:127.0.0.1:5070;lr>\r\n\
Max-Forwards: 69\r\nFrom: <sip:bob@ims.example>;tag=b1\r\nTo: <sip:alice@ims.example>\r\n\
Call-ID: late1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@127.0.0.1:4001>\r\nContent-Length: 0\r\n\r\n"
    );
    let outs = h.ims(&inv);
    assert!(commands(&outs).is_empty(), "{outs:#?}");
    let down = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert!(down.body().is_empty());
    // The browser's 200 carries its WebRTC offer.
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for v in down.vias().expect("vias") {
        ok.push_str(&format!(
            "Via: {}\r\n",
            String::from_utf8_lossy(&down.as_bytes()[v.range])
        ));
    }
    ok.push_str(&format!(
        "From: <sip:bob@ims.example>;tag=b1\r\nTo: <sip:alice@ims.example>;tag=a7\r\nCall-ID: late1\r\n\
CSeq: 1 INVITE\r\nContact: <sip:a@c.invalid;transport=ws;ob>\r\nContent-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{BROWSER_SDP}",
        BROWSER_SDP.len()
    ));
    let outs = h.browser(&ok);
    let pcscf = pcscf();
    assert_eq!(
        sends_to(&outs, pcscf),
        0,
        "the 200 waits for the engine: {outs:#?}"
    );
    let Some(Command::BrowserOffer { call, req, .. }) = commands(&outs).pop() else {
        panic!("the 200's SDP is the browser's offer: {outs:#?}");
    };
    let outs = h.engine(Event::Sdp {
        call,
        req,
        sdp: IMS_OFFER.into(),
    });
    let up = sent_to(&outs, pcscf);
    assert_eq!(up.status(), Some(200));
    assert_eq!(up.body(), IMS_OFFER.as_bytes());
    // The IMS side's ACK answers it.
    let ack = format!(
        "ACK sip:a@c.invalid;transport=ws;ob SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKlate2\r\n\
Route: <sip:{token}@127.0.0.1:5062;transport=udp;lr;ob>\r\n\
Max-Forwards: 69\r\nFrom: <sip:bob@ims.example>;tag=b1\r\nTo: <sip:alice@ims.example>;tag=a7\r\n\
Call-ID: late1\r\nCSeq: 1 ACK\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{IMS_ANSWER}",
        IMS_ANSWER.len()
    );
    let outs = h.ims(&ack);
    assert_eq!(sends_to(&outs, Dest::Flow(FlowId(1))), 0, "{outs:#?}");
    let Some(Command::ImsAnswer { call: c2, req, sdp }) = commands(&outs).pop() else {
        panic!("the ACK's SDP is the IMS side's answer: {outs:#?}");
    };
    assert_eq!((c2, sdp.as_str()), (call, IMS_ANSWER));
    let outs = h.engine(Event::Sdp {
        call,
        req,
        sdp: BROWSER_ANSWER.into(),
    });
    let down = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(down.method(), Some(&imsgw_sip::Method::Ack));
    assert_eq!(down.body(), BROWSER_ANSWER.as_bytes());
    // A later re-INVITE from the IMS side is an offer again.
    let reinv = inv
        .replace("z9hG4bKlate1", "z9hG4bKlate3")
        .replace(
            "To: <sip:alice@ims.example>",
            "To: <sip:alice@ims.example>;tag=a7",
        )
        .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{IMS_ANSWER}",
                IMS_ANSWER.len()
            ),
        );
    let outs = h.ims(&reinv);
    assert!(
        matches!(commands(&outs).pop(), Some(Command::ImsOffer { .. })),
        "{outs:#?}"
    );
}

#[test]
fn rfc3262_3_the_edge_makes_the_browsers_18x_reliable_and_answers_the_prack_itself() {
    let mut h = H::new();
    let pcscf = pcscf();
    let inv = ims_invite_100rel(&h, "rel1", "z9hG4bKrel1", IMS_ANSWER);
    let outs = h.ims(&inv);
    let Some(Command::ImsOffer { call, req, .. }) = commands(&outs).pop() else {
        panic!("no ImsOffer: {outs:#?}");
    };
    let outs = h.engine(Event::Sdp {
        call,
        req,
        sdp: BROWSER_SDP.into(),
    });
    let down = sent_to(&outs, Dest::Flow(FlowId(1)));
    let response = |code: u16, body: &str| browser_response(&down, code, "rel1", "7 INVITE", body);
    // JsSIP's 180 leaves reliably.
    let outs = h.browser(&response(180, ""));
    let ringing = text(&sent_to(&outs, pcscf));
    assert!(ringing.starts_with("SIP/2.0 180 Ringing\r\n"), "{ringing}");
    assert!(ringing.contains("\r\nRequire: 100rel\r\n"), "{ringing}");
    let rseq = rseq_of(&ringing);
    // The 200 (with the browser's answer, rewritten) waits for the PRACK.
    let outs = h.browser(&response(200, BROWSER_ANSWER));
    let Some(Command::BrowserAnswer { call, req, .. }) = commands(&outs).pop() else {
        panic!("no BrowserAnswer: {outs:#?}");
    };
    let outs = h.engine(Event::Sdp {
        call,
        req,
        sdp: IMS_ANSWER.into(),
    });
    assert_eq!(
        sends_to(&outs, pcscf),
        0,
        "the 2xx waits for the PRACK: {outs:#?}"
    );
    // A PRACK for an RSeq never sent: 481, and the 2xx still waits.
    let outs = h.ims(&ims_prack(&h, "rel1", "z9hG4bKpr1", rseq + 1, ""));
    assert_eq!(sends_to(&outs, Dest::Flow(FlowId(1))), 0, "{outs:#?}");
    let statuses: Vec<u16> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Send { to, bytes, .. } if *to == pcscf => {
                Message::parse(bytes.clone()).ok().and_then(|m| m.status())
            }
            _ => None,
        })
        .collect();
    assert_eq!(statuses, vec![481], "{outs:#?}");
    // The right PRACK: 200 from the edge, then the held 2xx; the browser never sees a PRACK.
    let outs = h.ims(&ims_prack(&h, "rel1", "z9hG4bKpr2", rseq, ""));
    assert_eq!(sends_to(&outs, Dest::Flow(FlowId(1))), 0, "{outs:#?}");
    let sent: Vec<Message> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Send { to, bytes, .. } if *to == pcscf => Message::parse(bytes.clone()).ok(),
            _ => None,
        })
        .collect();
    let cseqs: Vec<(u16, String)> = sent
        .iter()
        .map(|m| {
            let c = m.cseq().expect("cseq");
            (m.status().unwrap_or(0), c.method.as_str().to_string())
        })
        .collect();
    assert_eq!(
        cseqs,
        vec![(200, "PRACK".to_string()), (200, "INVITE".to_string())],
        "{outs:#?}"
    );
    assert_eq!(sent[1].body(), IMS_ANSWER.as_bytes());
}

#[test]
fn rfc3262_3_without_a_prack_the_2xx_goes_out_after_64_t1() {
    let mut h = H::new();
    let pcscf = pcscf();
    let outs = h.ims(&ims_invite_100rel(&h, "rel2", "z9hG4bKrel2", ""));
    let down = sent_to(&outs, Dest::Flow(FlowId(1)));
    let resp = |code: u16| browser_response(&down, code, "rel2", "7 INVITE", "");
    let outs = h.browser(&resp(180));
    assert_eq!(sends_to(&outs, pcscf), 1);
    let outs = h.browser(&resp(200));
    assert_eq!(sends_to(&outs, pcscf), 0, "waits for the PRACK");
    h.now += Duration::from_millis(500 * 64 + 1);
    h.edge.handle_timeout(h.now);
    let outs = h.drain();
    assert_eq!(sent_to(&outs, pcscf).status(), Some(200));
}

#[test]
fn rfc3262_3_a_reliable_18x_is_sent_again_at_t1_doubling_until_its_prack() {
    let mut h = H::new();
    let pcscf = pcscf();
    let outs = h.ims(&ims_invite_100rel(&h, "rel3", "z9hG4bKrel3", ""));
    let down = sent_to(&outs, Dest::Flow(FlowId(1)));
    let outs = h.browser(&browser_response(&down, 180, "rel3", "7 INVITE", ""));
    let first = text(&sent_to(&outs, pcscf));
    let rseq = rseq_of(&first);
    // T1 = 500 ms: again at 0.5 s, then 1.5 s (1 s later), then 3.5 s (2 s later).
    let mut at = Vec::new();
    for step in 1..=8 {
        h.now += Duration::from_millis(250);
        h.edge.handle_timeout(h.now);
        let outs = h.drain();
        if sends_to(&outs, pcscf) > 0 {
            let again = text(&sent_to(&outs, pcscf));
            assert_eq!(again, first, "the same response, the same RSeq");
            at.push(step * 250);
        }
    }
    assert_eq!(
        at,
        vec![500, 1500],
        "retransmitted at T1 and 3*T1 within 2 s"
    );
    // The PRACK stops them.
    let outs = h.ims(&ims_prack(&h, "rel3", "z9hG4bKrel3p", rseq, ""));
    assert_eq!(sent_to(&outs, pcscf).status(), Some(200));
    for _ in 0..20 {
        h.now += Duration::from_millis(500);
        h.edge.handle_timeout(h.now);
        let outs = h.drain();
        assert_eq!(
            sends_to(&outs, pcscf),
            0,
            "nothing after the PRACK: {outs:#?}"
        );
    }
}

#[test]
fn ts23228_u_an_update_with_sdp_outside_any_call_gets_488_and_nothing_crosses() {
    let mut h = H::new();
    // An UPDATE in a dialog this gateway holds no media for (begun before a restart, say).
    let update = format!(
        "UPDATE sip:bob@127.0.0.1:4001 SIP/2.0\r\nVia: SIP/2.0/WSS c.invalid;branch=z9hG4bKu1\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@ims.example>;tag=a1\r\nTo: <sip:bob@ims.example>;tag=b9\r\n\
Call-ID: nocall1\r\nCSeq: 9 UPDATE\r\nContent-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{BROWSER_SDP}",
        BROWSER_SDP.len()
    );
    let outs = h.browser(&update);
    assert_eq!(sends_to(&outs, Dest::Upstream), 0, "{outs:#?}");
    assert!(commands(&outs).is_empty(), "{outs:#?}");
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(488));
    // A REGISTER (no body, no call) goes straight up.
    let register = "REGISTER sip:ims.example SIP/2.0\r\nVia: SIP/2.0/WSS c.invalid;branch=z9hG4bKr1\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@ims.example>;tag=r1\r\nTo: <sip:alice@ims.example>\r\n\
Call-ID: reg1\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@c.invalid;transport=ws>;expires=600\r\n\
Content-Length: 0\r\n\r\n";
    let outs = h.browser(register);
    assert_eq!(sends_to(&outs, Dest::Upstream), 1, "{outs:#?}");
}
