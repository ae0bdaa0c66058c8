//! Hostile and broken peers against the edge's media side (a review of the media anchoring):
//! each test is one way a WebRTC body could reach the IMS side unrewritten, or state could
//! outlive its call.

use std::time::Duration;

use imsgw_media::{Command, Event};
use imsgw_sip::Message;

use super::tests::{sent_to, text};
use super::tests_media::{
    BROWSER_SDP, H, IMS_ANSWER, IMS_OFFER, PCSCF, answered_call, commands, invite,
};
use super::*;

/// A WebRTC-only marker of the browser's SDP (and of an attacker's RTP/AVP body below).
const WEBRTC: &str = "UDP/TLS/RTP/SAVPF";

fn pcscf() -> Dest {
    Dest::Link(Link::Udp(PCSCF.parse().expect("addr")))
}

/// Every message sent to `to`, as text.
fn texts_to(outs: &[Output], to: Dest) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send { to: t, bytes, .. } if *t == to => {
                Some(String::from_utf8_lossy(bytes).into_owned())
            }
            _ => None,
        })
        .collect()
}

/// Runs the edge's timers for `secs` seconds in 100 ms steps, collecting the outputs.
fn run_for(h: &mut H, secs: u64) -> Vec<Output> {
    let mut all = Vec::new();
    for _ in 0..secs * 10 {
        h.now += Duration::from_millis(100);
        h.edge.handle_timeout(h.now);
        all.extend(h.drain());
    }
    all
}

fn assert_no_body_upstream(outs: &[Output], needle: &str) {
    for t in texts_to(outs, Dest::Upstream)
        .into_iter()
        .chain(texts_to(outs, pcscf()))
    {
        assert!(!t.contains(needle), "`{needle}` reached the IMS side:\n{t}");
    }
}

fn released(outs: &[Output]) -> bool {
    commands(outs)
        .iter()
        .any(|c| matches!(c, Command::Release { .. }))
}

/// A browser request in call `m1` (the `invite` helper's), with an optional SDP body.
fn browser_request(method: &str, branch: &str, seq: u32, body: Option<(&str, &str)>) -> String {
    let (ct, body) = match body {
        Some((ct, b)) => (format!("Content-Type: {ct}\r\n"), b),
        None => (String::new(), ""),
    };
    format!(
        "{method} sip:bob@127.0.0.1:4001 SIP/2.0\r\nVia: SIP/2.0/WSS c.invalid;branch={branch}\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@ims.example>;tag=a1\r\nTo: <sip:bob@ims.example>;tag=b9\r\n\
Call-ID: m1\r\nCSeq: {seq} {method}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// An IMS-side INVITE toward the browser's flow.
fn ims_invite(h: &H, call_id: &str, branch: &str, extra: &str, body: &str) -> String {
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

/// The browser's response to a request the edge sent down its flow.
fn browser_response(down: &Message, code: u16, call_id: &str, cseq: &str, sdp: &str) -> String {
    let mut r = format!("SIP/2.0 {code} X\r\n");
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

// --- State that outlives its call ----------------------------------------------------------

/// lib.rs of imsgw-media: "Send `Release` for every call that ... ends in SIP for any reason
/// (... failure response, flow gone): before the browser has an answer there is no consent
/// clock, so nothing else frees it." A final response the edge makes itself (Timer B/C 408,
/// 503 when the P-CSCF is gone, 430) is a failure response too.
#[test]
fn review_rfc3261_17_1_1_2_timer_b_on_a_browser_invite_releases_its_media() {
    let mut h = H::new();
    let outs = h.browser(&invite("z9hG4bKtb1"));
    let Some(Command::BrowserOffer { call, req, .. }) = commands(&outs).pop() else {
        panic!("no BrowserOffer: {outs:#?}");
    };
    h.engine(Event::Sdp {
        call,
        req,
        sdp: IMS_OFFER.into(),
    });
    // The IMS side never answers: Timer B (64*T1 = 32 s) ends the INVITE with a local 408.
    let outs = run_for(&mut h, 40);
    let to_browser = texts_to(&outs, Dest::Flow(FlowId(1)));
    assert!(
        to_browser.iter().any(|t| t.starts_with("SIP/2.0 408")),
        "{outs:#?}"
    );
    assert!(released(&outs), "the engine session stays: {outs:#?}");
    assert_eq!(h.edge.media_call_count(), 0);
}

#[test]
fn review_upstream_failure_503_releases_the_media_of_pending_invites() {
    let mut h = H::new();
    let outs = h.browser(&invite("z9hG4bKuf1"));
    let Some(Command::BrowserOffer { call, req, .. }) = commands(&outs).pop() else {
        panic!("no BrowserOffer: {outs:#?}");
    };
    h.engine(Event::Sdp {
        call,
        req,
        sdp: IMS_OFFER.into(),
    });
    h.edge.upstream_failed(h.now);
    let outs = h.drain();
    assert!(released(&outs), "the engine session stays: {outs:#?}");
    assert_eq!(h.edge.media_call_count(), 0);
}

/// Calls are keyed by flow: once the WebSocket is gone nothing of that flow can end them (an
/// IMS-side BYE gets 430 before the media side sees it), and `CALLS_PER_FLOW` never bounds the
/// total. A call still being set up has no consent clock in the engine.
#[test]
fn review_rfc5626_5_3_a_closed_flow_releases_its_calls_in_setup() {
    let mut h = H::new();
    let outs = h.browser(&invite("z9hG4bKfc1"));
    let Some(Command::BrowserOffer { call, req, .. }) = commands(&outs).pop() else {
        panic!("no BrowserOffer: {outs:#?}");
    };
    let outs = h.engine(Event::Sdp {
        call,
        req,
        sdp: IMS_OFFER.into(),
    });
    let up = sent_to(&outs, Dest::Upstream);
    h.edge.flow_closed(h.now, FlowId(1));
    let mut outs = h.drain();
    // The IMS side answers anyway (its 200 cannot reach anyone).
    let mut resp = super::tests_media::ims_response(&up, 200, IMS_ANSWER);
    resp = resp.replace("Record-Route: <sip:127.0.0.1:5070;lr>\r\n", "");
    outs.extend(h.ims(&resp));
    assert!(released(&outs), "the engine session stays: {outs:#?}");
    assert_eq!(h.edge.media_call_count(), 0);
}

#[test]
fn review_rfc5626_5_3_a_closed_flow_ends_its_answered_calls_toward_the_ims() {
    let mut h = H::new();
    answered_call(&mut h);
    h.edge.flow_closed(h.now, FlowId(1));
    let outs = h.drain();
    assert!(released(&outs), "the engine session stays: {outs:#?}");
    assert_eq!(h.edge.media_call_count(), 0);
    let bye = sent_to(&outs, Dest::Upstream);
    assert!(text(&bye).starts_with("BYE sip:bob@127.0.0.1:4001 SIP/2.0\r\n"));
}

/// An IMS-side INVITE the browser never answers finally: Timer C's 408 (RFC 3261 §16.6 step
/// 11) toward the IMS must free the media the engine made for it.
#[test]
fn review_rfc3261_16_6_timer_c_on_an_ims_invite_releases_its_media() {
    let mut h = H::new();
    let inv = ims_invite(&h, "tc1", "z9hG4bKtc1", "", IMS_ANSWER);
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
    h.browser(&browser_response(&down, 180, "tc1", "7 INVITE", ""));
    let outs = run_for(&mut h, 190);
    assert!(
        texts_to(&outs, pcscf())
            .iter()
            .any(|t| t.starts_with("SIP/2.0 408")),
        "{outs:#?}"
    );
    assert!(released(&outs), "the engine session stays: {outs:#?}");
    assert_eq!(h.edge.media_call_count(), 0);
}

/// A BYE right behind the INVITE the engine is rewriting: the release drops the held INVITE
/// but its client transaction lives on, and Timer A resends the bytes it was created with:
/// the browser's WebRTC offer.
#[test]
fn review_bye_behind_a_held_invite_never_lets_the_unrewritten_invite_out() {
    let mut h = H::new();
    let mut outs = h.browser(&invite("z9hG4bKbh1"));
    outs.extend(h.browser(&browser_request("BYE", "z9hG4bKbh2", 6, None)));
    outs.extend(run_for(&mut h, 10));
    assert_no_body_upstream(&outs, WEBRTC);
}
