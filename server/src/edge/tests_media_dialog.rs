//! More hostile and broken peers against the edge's media side (the second half of the media
//! anchoring's review, `tests_media_review.rs` has the first): reliable provisional responses,
//! what a retransmission is answered with, offer/answer state, and the edge's own BYE.

use imsgw_media::{Command, Event};

use super::tests::{sent_to, text};
use super::tests_media::{
    BROWSER_ANSWER, BROWSER_SDP, H, IMS_ANSWER, IMS_OFFER, answered_call, browser_response,
    commands, ims_invite, ims_invite_100rel, ims_prack, invite, pcscf, rseq_of, sends_to,
};
use super::tests_media_review::{
    WEBRTC, assert_no_body_upstream, browser_request, run_for, sends_to_upstream, texts_to,
};
use super::*;

// --- RFC 3262 --------------------------------------------------------------------------------

/// RFC 3262 §5: an offer or answer in a reliable 18x completes in the PRACK, which the edge
/// answers itself (the browser has no 100rel): the browser could never hear the other half.
/// So the reliable 18x goes without SDP (no engine command), the browser's SDP goes in its 2xx,
/// and an SDP the IMS side still puts in a PRACK (a new offer) gets 488 with a Warning.
#[test]
fn review_rfc3262_5_no_offer_answer_rides_a_prack_the_browser_never_sees() {
    let mut h = H::new();
    let inv = ims_invite_100rel(&h, "pa1", "z9hG4bKpa1", "");
    let outs = h.ims(&inv);
    let down = sent_to(&outs, Dest::Flow(FlowId(1)));
    // The browser offers in its 183: it leaves reliably, without the SDP, and nothing asks the
    // engine.
    let outs = h.browser(&browser_response(
        &down,
        183,
        "pa1",
        "7 INVITE",
        BROWSER_SDP,
    ));
    assert!(commands(&outs).is_empty(), "{outs:#?}");
    let reliable = sent_to(&outs, pcscf());
    assert!(reliable.body().is_empty(), "{}", text(&reliable));
    assert!(
        !text(&reliable).contains("Content-Type"),
        "{}",
        text(&reliable)
    );
    let reliable = text(&reliable);
    let rseq = rseq_of(&reliable);
    // A PRACK with SDP is a new offer nobody could answer: 488, the browser sees nothing.
    let outs = h.ims(&ims_prack(&h, "pa1", "z9hG4bKpa2", rseq, IMS_ANSWER));
    assert_eq!(sends_to(&outs, Dest::Flow(FlowId(1))), 0, "{outs:#?}");
    assert!(commands(&outs).is_empty(), "{outs:#?}");
    let no = sent_to(&outs, pcscf());
    assert_eq!(no.status(), Some(488), "{}", text(&no));
    assert!(text(&no).contains("Warning: 399 imsgw"), "{}", text(&no));
    // The plain PRACK is answered 200.
    let outs = h.ims(&ims_prack(&h, "pa1", "z9hG4bKpa3", rseq, ""));
    assert_eq!(sent_to(&outs, pcscf()).status(), Some(200));
    // The browser's 2xx carries its offer, to the engine as usual.
    let outs = h.browser(&browser_response(
        &down,
        200,
        "pa1",
        "7 INVITE",
        BROWSER_SDP,
    ));
    assert!(
        matches!(commands(&outs).pop(), Some(Command::BrowserOffer { .. })),
        "{outs:#?}"
    );
}

// --- What a retransmission is answered with --------------------------------------------------

/// RFC 3261 §17.2.1: a retransmitted INVITE (UDP) is answered with the last response sent.
/// The edge records the browser's response before the engine rewrites it: a retransmission
/// while the 2xx waits (for the engine, or up to 64*T1 for a PRACK) gets the browser's SDP.
#[test]
fn review_rfc3261_17_2_1_a_retransmitted_invite_never_gets_the_unrewritten_2xx() {
    let mut h = H::new();
    let inv = ims_invite(&h, "rt1", "z9hG4bKrt1", "", IMS_ANSWER);
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
    let outs = h.browser(&browser_response(
        &down,
        200,
        "rt1",
        "7 INVITE",
        BROWSER_ANSWER,
    ));
    let Some(Command::BrowserAnswer { call, req, .. }) = commands(&outs).pop() else {
        panic!("no BrowserAnswer: {outs:#?}");
    };
    // The engine is still at work when the P-CSCF retransmits its INVITE.
    let outs = h.ims(&inv);
    assert_no_body_upstream(&outs, WEBRTC);
    h.engine(Event::Sdp {
        call,
        req,
        sdp: IMS_OFFER.into(),
    });
    // Once sent, the rewritten 2xx is what a retransmission gets.
    let outs = h.ims(&inv);
    let again = sent_to(&outs, pcscf());
    assert_eq!(again.status(), Some(200));
    assert_eq!(again.body(), IMS_OFFER.as_bytes());
}

// --- Offer/answer state -----------------------------------------------------------------------

/// RFC 3261 §13.2.2.4, RFC 6337 §3.1: an ACK carries an answer only when the 2xx made an
/// offer; an SDP body in any other ACK is no offer (nobody could answer it: an ACK has no
/// response). Taking it for one starts a renegotiation with the engine and leaves the call's
/// offer pending for ever.
#[test]
fn review_rfc3261_13_2_2_4_sdp_in_an_ack_without_a_pending_offer_is_no_offer() {
    let mut h = H::new();
    answered_call(&mut h);
    let other = BROWSER_SDP.replace("abcd", "wxyz");
    let ack = browser_request("ACK", "z9hG4bKao1", 5, Some(("application/sdp", &other)));
    let outs = h.browser(&ack);
    assert!(
        !commands(&outs)
            .iter()
            .any(|c| matches!(c, Command::BrowserOffer { .. })),
        "an ACK's body taken for an offer: {outs:#?}"
    );
    let up = sent_to(&outs, Dest::Upstream);
    assert_eq!(up.method(), Some(&imsgw_sip::Method::Ack));
    assert_no_body_upstream(&outs, WEBRTC);
}

// --- The BYE of the edge's own ------------------------------------------------------------

/// DESIGN.md: every request from a flow carries the identity the edge asserts
/// (`sip.identity_assertion`), the only one the P-CSCF believes; the CANCEL and ACK the edge
/// builds carry it too (`Hop::assertion`). The BYE it sends on consent loss does not.
#[test]
fn review_the_edges_own_bye_asserts_the_identity_like_the_browsers_requests() {
    use crate::config::IdentityAssertion;
    let mut h = super::tests_trust::H::new(&[IdentityAssertion::Pai]);
    h.edge.media = Some(super::media::MediaCalls::new(MediaLimits {
        calls_per_user: 3,
    }));
    h.registered(1, "alice");
    let inv = h.ims_request_to_alice("INVITE", "byeid1").replace(
        "Max-Forwards: 69\r\n",
        "Record-Route: <sip:127.0.0.1:5070;lr>\r\nMax-Forwards: 69\r\n",
    );
    let outs = h.ims(&inv);
    let down = sent_to(&outs, Dest::Flow(FlowId(1)));
    let ok = browser_response(&down, 200, "byeid1", "1 INVITE", BROWSER_SDP);
    let outs = h.send(1, &ok);
    let Some(Command::BrowserOffer { call, req, .. }) = commands(&outs).pop() else {
        panic!("no BrowserOffer: {outs:#?}");
    };
    let now = std::time::Instant::now();
    h.edge.media_event(
        now,
        Event::Sdp {
            call,
            req,
            sdp: IMS_OFFER.into(),
        },
    );
    h.edge.media_event(
        now,
        Event::Ended {
            call,
            reason: imsgw_media::EndReason::ConsentLost,
        },
    );
    let outs: Vec<Output> = std::iter::from_fn(|| h.edge.poll_output()).collect();
    let bye = texts_to(&outs, Dest::Upstream)
        .into_iter()
        .find(|t| t.starts_with("BYE "))
        .unwrap_or_else(|| panic!("no BYE upstream: {outs:#?}"));
    assert!(
        bye.contains("\r\nP-Asserted-Identity: <sip:alice@ims.example>\r\n"),
        "{bye}"
    );
}

/// The same for a call the browser made: its INVITE's assertion.
#[test]
fn review_the_edges_own_bye_asserts_the_identity_of_the_browsers_invite() {
    use crate::config::IdentityAssertion;
    let mut h = super::tests_trust::H::new(&[IdentityAssertion::Pai]);
    h.edge.media = Some(super::media::MediaCalls::new(MediaLimits {
        calls_per_user: 3,
    }));
    h.registered(1, "alice");
    let inv = h.request(1, "INVITE", "alice", "").replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{BROWSER_SDP}",
            BROWSER_SDP.len()
        ),
    );
    let outs = h.send(1, &inv);
    let Some(Command::BrowserOffer { call, req, .. }) = commands(&outs).pop() else {
        panic!("no BrowserOffer: {outs:#?}");
    };
    let now = std::time::Instant::now();
    h.edge.media_event(
        now,
        Event::Sdp {
            call,
            req,
            sdp: IMS_OFFER.into(),
        },
    );
    let outs: Vec<Output> = std::iter::from_fn(|| h.edge.poll_output()).collect();
    let up = sent_to(&outs, Dest::Upstream);
    let call_id = up.call_id().expect("call-id").to_string();
    let ok = super::tests_media::ims_response(&up, 200, IMS_ANSWER)
        .replace("Call-ID: m1", &format!("Call-ID: {call_id}"));
    let outs = h.ims(&ok);
    let Some(Command::ImsAnswer { req, .. }) = commands(&outs).pop() else {
        panic!("no ImsAnswer: {outs:#?}");
    };
    h.edge.media_event(
        now,
        Event::Sdp {
            call,
            req,
            sdp: BROWSER_ANSWER.into(),
        },
    );
    h.edge.media_event(
        now,
        Event::Ended {
            call,
            reason: imsgw_media::EndReason::ConsentLost,
        },
    );
    let outs: Vec<Output> = std::iter::from_fn(|| h.edge.poll_output()).collect();
    let bye = texts_to(&outs, Dest::Upstream)
        .into_iter()
        .find(|t| t.starts_with("BYE "))
        .unwrap_or_else(|| panic!("no BYE upstream: {outs:#?}"));
    assert!(
        bye.contains("\r\nP-Asserted-Identity: <sip:alice@ims.example>\r\n"),
        "{bye}"
    );
}

/// A request queued behind one the engine is rewriting, whose body the rewrite cache answered
/// at once (same CSeq number and body as an earlier one): its client transaction still holds
/// the bytes as they came, and only requests waiting for the engine themselves are kept from
/// Timer A/E. Its retransmission leaves before it does, with the browser's body.
#[test]
fn review_rfc3261_17_1_2_2_a_queued_request_is_not_retransmitted_before_it_is_sent() {
    let mut h = H::new();
    answered_call(&mut h);
    let other = BROWSER_SDP.replace("abcd", "wxyz");
    let mut outs = h.browser(&browser_request(
        "UPDATE",
        "z9hG4bKqr1",
        6,
        Some(("application/sdp", &other)),
    ));
    assert!(
        matches!(commands(&outs).pop(), Some(Command::BrowserOffer { .. })),
        "{outs:#?}"
    );
    // CSeq 5 and the INVITE's body again: the cache has its rewrite.
    outs.extend(h.browser(&browser_request(
        "UPDATE",
        "z9hG4bKqr2",
        5,
        Some(("application/sdp", BROWSER_SDP)),
    )));
    // The engine takes a while; Timer E runs.
    outs.extend(run_for(&mut h, 3));
    assert_no_body_upstream(&outs, WEBRTC);
}

/// The engine ends a call still in early media (an answer came in a 183, the browser's ICE
/// failed; RFC 7675 consent lost). It is not confirmed, so no BYE: but its INVITE stays
/// pending and the call rings on without media, or is answered into nothing.
#[test]
fn review_rfc7675_media_ended_before_the_2xx_cancels_the_invite() {
    let mut h = H::new();
    let outs = h.browser(&invite("z9hG4bKem1"));
    let Some(Command::BrowserOffer { call, req, .. }) = commands(&outs).pop() else {
        panic!("no BrowserOffer: {outs:#?}");
    };
    let outs = h.engine(Event::Sdp {
        call,
        req,
        sdp: IMS_OFFER.into(),
    });
    let up = sent_to(&outs, Dest::Upstream);
    let outs = h.ims(&super::tests_media::ims_response(&up, 183, IMS_ANSWER));
    let Some(Command::ImsAnswer { req, .. }) = commands(&outs).pop() else {
        panic!("no ImsAnswer: {outs:#?}");
    };
    h.engine(Event::Sdp {
        call,
        req,
        sdp: BROWSER_ANSWER.into(),
    });
    let outs = h.engine(Event::Ended {
        call,
        reason: imsgw_media::EndReason::ConsentLost,
    });
    assert!(
        texts_to(&outs, Dest::Upstream)
            .iter()
            .any(|t| t.starts_with("CANCEL ")),
        "the INVITE is left pending: {outs:#?}"
    );
}

/// RFC 6026 §7.2: a 2xx retransmission (its ACK was lost) passes the edge. After a re-offer
/// and its answer, the first 2xx's retransmission is no longer what the rewrite cache holds:
/// it must not become a new IMS offer to the engine (which would point the IMS leg back at the
/// old answer's address).
#[test]
fn review_rfc6026_7_2_a_2xx_retransmitted_after_a_reoffer_is_no_new_offer() {
    let mut h = H::new();
    let up = answered_call(&mut h);
    // The browser re-offers (hold); the IMS side answers with a new body.
    let other = BROWSER_SDP.replace("abcd", "wxyz");
    let outs = h.browser(&browser_request(
        "INVITE",
        "z9hG4bKrr1",
        6,
        Some(("application/sdp", &other)),
    ));
    let Some(Command::BrowserOffer { call, req, .. }) = commands(&outs).pop() else {
        panic!("no BrowserOffer: {outs:#?}");
    };
    let outs = h.engine(Event::Sdp {
        call,
        req,
        sdp: IMS_OFFER.into(),
    });
    let up2 = sent_to(&outs, Dest::Upstream);
    let answer2 = IMS_ANSWER.replace("4000", "4100");
    let ok2 = super::tests_media::ims_response(&up2, 200, &answer2).replace("CSeq: 5", "CSeq: 6");
    let outs = h.ims(&ok2);
    let Some(Command::ImsAnswer { req, .. }) = commands(&outs).pop() else {
        panic!("no ImsAnswer: {outs:#?}");
    };
    h.engine(Event::Sdp {
        call,
        req,
        sdp: BROWSER_ANSWER.into(),
    });
    // The first 200 again.
    let outs = h.ims(&super::tests_media::ims_response(&up, 200, IMS_ANSWER));
    assert!(
        commands(&outs).is_empty(),
        "a retransmitted 2xx started a negotiation: {outs:#?}"
    );
}

/// STYLE.md §14, a test that hits the cap: the fifth call of one WebSocket is refused 486,
/// counted once in `offers_refused`.
#[test]
fn review_calls_per_flow_cap_refuses_486_and_counts_it_once() {
    let mut h = H::new();
    for i in 0..super::media::CALLS_PER_FLOW {
        let inv =
            invite(&format!("z9hG4bKcap{i}")).replace("Call-ID: m1", &format!("Call-ID: cap{i}"));
        let outs = h.browser(&inv);
        assert!(
            matches!(commands(&outs).pop(), Some(Command::BrowserOffer { .. })),
            "{outs:#?}"
        );
    }
    let inv = invite("z9hG4bKcapx").replace("Call-ID: m1", "Call-ID: capx");
    let outs = h.browser(&inv);
    assert!(
        texts_to(&outs, Dest::Flow(FlowId(1)))
            .iter()
            .any(|t| t.starts_with("SIP/2.0 486")),
        "{outs:#?}"
    );
    assert_eq!(sends_to_upstream(&outs), 0);
    assert_eq!(h.edge.media_stats().offers_refused, 1);
}
