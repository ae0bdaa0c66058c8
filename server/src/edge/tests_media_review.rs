//! Hostile and broken peers against the edge's media side (a review of the media anchoring):
//! each test is one way a WebRTC body could reach the IMS side unrewritten, or state could
//! outlive its call.

use std::time::Duration;

use imsgw_media::{Command, Event};

use super::tests::{sent_to, text};
use super::tests_media::{
    BROWSER_SDP, H, IMS_ANSWER, IMS_OFFER, answered_call, browser_response, commands, ims_invite,
    invite, pcscf,
};
use super::*;

/// A WebRTC-only marker of the browser's SDP (and of an attacker's RTP/AVP body below).
pub(super) const WEBRTC: &str = "UDP/TLS/RTP/SAVPF";
/// An RTP/AVP body a hostile browser writes itself: media aimed at a third party, around the
/// gateway's anchor.
const FORGED: &str = "v=0\r\no=x 1 1 IN IP4 198.51.100.9\r\ns=-\r\nc=IN IP4 198.51.100.9\r\nt=0 0\r\nm=audio 7777 RTP/AVP 8\r\n";

/// Every message sent to `to`, as text.
pub(super) fn texts_to(outs: &[Output], to: Dest) -> Vec<String> {
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
pub(super) fn run_for(h: &mut H, secs: u64) -> Vec<Output> {
    let mut all = Vec::new();
    for _ in 0..secs * 10 {
        h.now += Duration::from_millis(100);
        h.edge.handle_timeout(h.now);
        all.extend(h.drain());
    }
    all
}

pub(super) fn assert_no_body_upstream(outs: &[Output], needle: &str) {
    for t in texts_to(outs, Dest::Upstream)
        .into_iter()
        .chain(texts_to(outs, pcscf()))
    {
        assert!(!t.contains(needle), "`{needle}` reached the IMS side:\n{t}");
    }
}

pub(super) fn sends_to_upstream(outs: &[Output]) -> usize {
    texts_to(outs, Dest::Upstream).len()
}

fn released(outs: &[Output]) -> bool {
    commands(outs)
        .iter()
        .any(|c| matches!(c, Command::Release { .. }))
}

/// A browser request in call `m1` (the `invite` helper's), with an optional SDP body.
pub(super) fn browser_request(
    method: &str,
    branch: &str,
    seq: u32,
    body: Option<(&str, &str)>,
) -> String {
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
// --- WebRTC (or forged) bodies reaching the IMS unrewritten --------------------------------

/// RFC 3261 §13.3.1 / RFC 6337: offers and answers ride INVITE, UPDATE, PRACK and ACK (and
/// their responses). An SDP body in a BYE is no offer: it must not hold the BYE (released at
/// once, so never sent) and must not reach the IMS by Timer E.
#[test]
fn review_sdp_in_a_bye_neither_loses_the_bye_nor_leaks_the_body() {
    let mut h = H::new();
    answered_call(&mut h);
    let bye = browser_request(
        "BYE",
        "z9hG4bKsb1",
        6,
        Some(("application/sdp", BROWSER_SDP)),
    );
    let outs = h.browser(&bye);
    assert!(
        !commands(&outs)
            .iter()
            .any(|c| matches!(c, Command::BrowserOffer { .. })),
        "a BYE's body taken for an offer: {outs:#?}"
    );
    let mut all = outs.clone();
    all.extend(run_for(&mut h, 5));
    assert_no_body_upstream(&all, WEBRTC);
    // The BYE itself went (or was refused): it is not silently dropped.
    let answered = texts_to(&all, Dest::Flow(FlowId(1)))
        .iter()
        .any(|t| t.starts_with("SIP/2.0 4") || t.starts_with("SIP/2.0 5"));
    let sent = texts_to(&all, Dest::Upstream)
        .iter()
        .any(|t| t.starts_with("BYE "));
    assert!(answered || sent, "the BYE vanished: {all:#?}");
}

/// A MESSAGE (or INFO) with an SDP body in a media call starts no renegotiation with the
/// engine and leaves the call's offer state alone.
#[test]
fn review_sdp_in_a_message_is_no_offer() {
    let mut h = H::new();
    answered_call(&mut h);
    let msg = browser_request(
        "MESSAGE",
        "z9hG4bKms1",
        6,
        Some(("application/sdp", BROWSER_SDP)),
    );
    let outs = h.browser(&msg);
    assert!(
        !commands(&outs)
            .iter()
            .any(|c| matches!(c, Command::BrowserOffer { .. })),
        "a MESSAGE's body taken for an offer: {outs:#?}"
    );
}

/// The engine refuses the browser's answer in its 2xx (here: a body the browser wrote itself,
/// RTP/AVP aimed at a third party). "Pass it on unchanged" sends that body to the IMS: media
/// around the anchor (DESIGN.md: SDP toward the IMS is generated fresh, never the browser's).
#[test]
fn review_a_refused_browser_answer_never_reaches_the_ims() {
    let mut h = H::new();
    let inv = ims_invite(&h, "ra1", "z9hG4bKra1", "", IMS_ANSWER);
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
    let outs = h.browser(&browser_response(&down, 200, "ra1", "7 INVITE", FORGED));
    let Some(Command::BrowserAnswer { call, req, .. }) = commands(&outs).pop() else {
        panic!("no BrowserAnswer: {outs:#?}");
    };
    let outs = h.engine(Event::Refused {
        call,
        req,
        status: 488,
        warning: "not WebRTC".into(),
    });
    assert_no_body_upstream(&outs, "198.51.100.9");
}

/// The same through the ACK of a late offer: the IMS side offered in its 2xx, the browser's
/// ACK answers, the engine refuses it.
#[test]
fn review_a_refused_browser_answer_in_an_ack_never_reaches_the_ims() {
    let mut h = H::new();
    // Browser INVITE without a body: the IMS side offers in its 200.
    let inv = invite("z9hG4bKak1").replace(
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{BROWSER_SDP}",
            BROWSER_SDP.len()
        ),
        "Content-Length: 0\r\n\r\n",
    );
    let outs = h.browser(&inv);
    let up = sent_to(&outs, Dest::Upstream);
    let outs = h.ims(&super::tests_media::ims_response(&up, 200, IMS_ANSWER));
    let Some(Command::ImsOffer { call, req, .. }) = commands(&outs).pop() else {
        panic!("no ImsOffer: {outs:#?}");
    };
    h.engine(Event::Sdp {
        call,
        req,
        sdp: BROWSER_SDP.into(),
    });
    let ack = browser_request("ACK", "z9hG4bKak2", 5, Some(("application/sdp", FORGED)));
    let outs = h.browser(&ack);
    let Some(Command::BrowserAnswer { call, req, .. }) = commands(&outs).pop() else {
        panic!("no BrowserAnswer: {outs:#?}");
    };
    let outs = h.engine(Event::Refused {
        call,
        req,
        status: 488,
        warning: "not WebRTC".into(),
    });
    assert_no_body_upstream(&outs, "198.51.100.9");
}

/// Past `HELD_PER_CALL` a message "passes unheld": a browser that sends a burst faster than
/// the engine answers gets its own SDP to the IMS unrewritten.
#[test]
fn review_a_full_held_queue_never_sends_an_unrewritten_body() {
    let mut h = H::new();
    let mut outs = h.browser(&invite("z9hG4bKhq0"));
    // In-dialog requests of the same call queue behind the INVITE.
    for i in 0..40 {
        outs.extend(h.browser(&browser_request(
            "INFO",
            &format!("z9hG4bKhqi{i}"),
            6 + i,
            None,
        )));
    }
    let update = browser_request(
        "UPDATE",
        "z9hG4bKhqu",
        50,
        Some(("application/sdp", FORGED)),
    );
    outs.extend(h.browser(&update));
    outs.extend(run_for(&mut h, 3));
    assert_no_body_upstream(&outs, "198.51.100.9");
}

/// RFC 5621: a multipart body can carry SDP (VoLTE emergency calls do: SDP + PIDF-LO). The
/// edge sees no `application/sdp` Content-Type and passes the body on: the browser's own SDP
/// reaches the IMS around the engine.
#[test]
fn review_sdp_in_a_multipart_body_never_reaches_the_ims_unrewritten() {
    let mut h = H::new();
    let body = format!("--b1\r\nContent-Type: application/sdp\r\n\r\n{FORGED}\r\n--b1--\r\n");
    let inv = invite("z9hG4bKmp1").replace(
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{BROWSER_SDP}",
            BROWSER_SDP.len()
        ),
        &format!(
            "Content-Type: multipart/mixed;boundary=b1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    let mut outs = h.browser(&inv);
    outs.extend(run_for(&mut h, 2));
    assert!(
        texts_to(&outs, Dest::Flow(FlowId(1)))
            .iter()
            .any(|t| t.starts_with("SIP/2.0 415") && t.contains("\r\nAccept: application/sdp\r\n")),
        "{outs:#?}"
    );
    assert_no_body_upstream(&outs, "198.51.100.9");
}

/// A body with no Content-Type at all (RFC 3261 §20.15 requires one; many UAs assume SDP).
#[test]
fn review_an_untyped_body_never_reaches_the_ims_unrewritten() {
    let mut h = H::new();
    let inv = invite("z9hG4bKut1")
        .replace("Content-Type: application/sdp\r\n", "")
        .replace(BROWSER_SDP, FORGED)
        .replace(
            &format!("Content-Length: {}", BROWSER_SDP.len()),
            &format!("Content-Length: {}", FORGED.len()),
        );
    let mut outs = h.browser(&inv);
    outs.extend(run_for(&mut h, 2));
    assert_no_body_upstream(&outs, "198.51.100.9");
}

/// A response with SDP in a dialog the media side does not hold (a re-INVITE without SDP from
/// the IMS side for a Call-ID unknown on this flow): requests get 488 in that case, responses
/// pass unrewritten.
#[test]
fn review_a_browser_response_with_sdp_for_an_unknown_call_is_not_passed_on() {
    let mut h = H::new();
    let inv = ims_invite(&h, "uk1", "z9hG4bKuk1", ";tag=a7", "");
    let outs = h.ims(&inv);
    let down = sent_to(&outs, Dest::Flow(FlowId(1)));
    let outs = h.browser(&browser_response(&down, 200, "uk1", "7 INVITE", FORGED));
    assert_no_body_upstream(&outs, "198.51.100.9");
}
