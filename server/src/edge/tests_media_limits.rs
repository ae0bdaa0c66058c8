//! The media side's limits and failures: an IMPU's calls with media (`media.max_calls_per_user`)
//! are counted over all its connections and in both directions, and freed when calls end; when
//! the engine's thread is gone, calls end and new ones are refused.

use imsgw_media::Command;
use imsgw_sip::Message;

use super::tests_media::{BROWSER_SDP, H, answered_call, commands, ims_invite, sends_to};
use super::tests_trust::H as TrustH;
use super::*;

/// The token-checking harness (flows 1..=3 open) with media on, 3 calls per person.
fn trust_h() -> TrustH {
    let mut h = TrustH::new(&[]);
    h.edge.media = Some(super::media::MediaCalls::new(MediaLimits {
        calls_per_user: 3,
    }));
    h
}

/// `text` (a request without a body) with the browser's WebRTC offer as its body.
fn with_offer(text: &str) -> String {
    text.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{BROWSER_SDP}",
            BROWSER_SDP.len()
        ),
    )
}

/// A browser INVITE from `user` on `flow`, on the flow's registration or with `token`.
fn call_from(h: &mut TrustH, flow: u64, user: &str, token: Option<&str>) -> Vec<Output> {
    let extra = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let text = with_offer(&h.request(flow, "INVITE", user, &extra));
    h.send(flow, &text)
}

fn browser_invite(call_id: &str) -> String {
    format!(
        "INVITE sip:bob@ims.example SIP/2.0\r\nVia: SIP/2.0/WSS c.invalid;branch=z9hG4bK{call_id}\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@ims.example>;tag=a1\r\nTo: <sip:bob@ims.example>\r\nCall-ID: {call_id}\r\n\
CSeq: 5 INVITE\r\nContact: <sip:a@c.invalid;transport=ws;ob>\r\nContent-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{BROWSER_SDP}",
        BROWSER_SDP.len()
    )
}

/// The final response in `outs` sent to `to` (a `100 Trying` may go first).
fn final_to(outs: &[Output], to: Dest) -> Message {
    let finals: Vec<Message> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Send { to: t, bytes, .. } if *t == to => Message::parse(bytes.clone()).ok(),
            _ => None,
        })
        .filter(|m| m.status().is_some_and(|s| s >= 200))
        .collect();
    assert_eq!(finals.len(), 1, "one final response to {to:?}: {outs:#?}");
    finals.into_iter().next().expect("one")
}

fn offers(outs: &[Output]) -> usize {
    commands(outs)
        .iter()
        .filter(|c| matches!(c, Command::BrowserOffer { .. } | Command::ImsOffer { .. }))
        .count()
}

fn text(m: &Message) -> String {
    String::from_utf8_lossy(m.as_bytes()).into_owned()
}

#[test]
fn a_person_past_max_calls_per_user_over_two_connections_gets_403_and_no_media_port() {
    let mut h = trust_h();
    h.registered(1, "alice");
    h.registered(2, "alice");
    // Two calls on the first connection, one on the second: three, the limit.
    for flow in [1, 1, 2] {
        let outs = call_from(&mut h, flow, "alice", None);
        assert_eq!(offers(&outs), 1, "goes to the engine: {outs:#?}");
    }
    // The fourth, on either connection, is refused before the engine is asked.
    for flow in [1, 2] {
        let outs = call_from(&mut h, flow, "alice", None);
        assert_eq!(offers(&outs), 0, "{outs:#?}");
        assert_eq!(sends_to(&outs, Dest::Upstream), 0, "{outs:#?}");
        let down = final_to(&outs, Dest::Flow(FlowId(flow)));
        assert_eq!(down.status(), Some(403));
        assert!(
            text(&down).contains("media.max_calls_per_user"),
            "{}",
            text(&down)
        );
    }
    assert_eq!(h.edge.media_call_count(), 3);
}

/// An INVITE may carry a token of its own on a connection that never registered (RFC 8898):
/// its calls count against that token's IMPU like any other (found by review: counting the
/// flow's registration let N such connections have 4*N calls).
#[test]
fn a_token_per_invite_on_unregistered_connections_is_counted_too() {
    let mut h = trust_h();
    let tok = h.token("alice");
    let mut made = 0;
    for flow in 1..=3 {
        for _ in 0..3 {
            made += offers(&call_from(&mut h, flow, "alice", Some(&tok)));
        }
    }
    assert_eq!(made, 3, "alice gets her 3, not 9");
    assert_eq!(h.edge.media_call_count(), 3);
    // Registered or not, the same person: at the cap on a registered connection too.
    h.registered(1, "alice");
    assert_eq!(offers(&call_from(&mut h, 1, "alice", None)), 0);
    // bob's token on alice's connection counts against bob, who has room.
    let bob = h.token("bob");
    assert_eq!(offers(&call_from(&mut h, 1, "bob", Some(&bob))), 1);
}

#[test]
fn an_ims_call_to_a_person_at_the_limit_gets_486_and_a_freed_call_makes_room() {
    let mut h = trust_h();
    h.registered(1, "alice");
    h.registered(2, "alice");
    let mut first = None;
    for flow in [1, 2, 2] {
        let outs = call_from(&mut h, flow, "alice", None);
        if let Some(Command::BrowserOffer { call, req, .. }) = commands(&outs).pop() {
            first.get_or_insert((call, req));
        }
    }
    // The IMS side calls alice down connection 1: she is busy (RFC 3261 §21.4.24).
    let outs = h.ims(&with_offer(&h.ims_request_to_alice("INVITE", "in1")));
    assert_eq!(offers(&outs), 0, "{outs:#?}");
    let up = final_to(&outs, super::tests_media::pcscf());
    assert_eq!(up.status(), Some(486), "{}", text(&up));
    // One of her calls fails (the engine finds no common codec): its media is released and
    // the count goes down.
    let (call, req) = first.expect("the first call's offer");
    h.edge.media_event(
        std::time::Instant::now(),
        imsgw_media::Event::Refused {
            call,
            req,
            status: 488,
            warning: "no common codec".into(),
        },
    );
    let outs: Vec<Output> = std::iter::from_fn(|| h.edge.poll_output()).collect();
    assert!(
        commands(&outs)
            .iter()
            .any(|c| matches!(c, Command::Release { .. })),
        "{outs:#?}"
    );
    assert_eq!(h.edge.media_call_count(), 2);
    let outs = h.ims(&with_offer(&h.ims_request_to_alice("INVITE", "in2")));
    assert_eq!(offers(&outs), 1, "room again: {outs:#?}");
}

#[test]
fn connections_without_an_identity_are_not_counted_per_user() {
    // Tokens not required (danger_allow_unauthenticated): only the per-connection cap holds.
    let mut h = H::new();
    for id in ["c1", "c2", "c3", "c4"] {
        let outs = h.browser_on(1, &browser_invite(id));
        assert_eq!(offers(&outs), 1, "{id}: {outs:#?}");
    }
}

#[test]
fn when_the_engine_is_gone_calls_end_with_bye_and_new_calls_get_503_not_a_timeout() {
    let mut h = H::new();
    answered_call(&mut h);
    // A second call waits for the engine's rewrite of its offer.
    let outs = h.browser_on(1, &browser_invite("w1"));
    assert_eq!(offers(&outs), 1);

    h.edge.media_gone(h.now);
    let outs = h.drain();
    let sent: Vec<Message> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Send { bytes, .. } => Message::parse(bytes.clone()).ok(),
            _ => None,
        })
        .collect();
    let byes: Vec<String> = sent
        .iter()
        .filter(|m| m.method() == Some(&imsgw_sip::Method::Bye))
        .map(text)
        .collect();
    assert_eq!(
        byes.len(),
        2,
        "a BYE to each side of the answered call: {outs:#?}"
    );
    assert!(
        byes.iter().all(|b| b.contains("text=\"media failed\"")),
        "{byes:#?}"
    );
    assert_eq!(
        sends_to(&outs, Dest::Upstream),
        1,
        "only the BYE: {outs:#?}"
    );
    // The INVITE that waited for the engine is ended toward the browser (487), never sent.
    let w1 = final_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(w1.status(), Some(487), "{}", text(&w1));
    assert_eq!(h.edge.media_call_count(), 0);

    // A new call: 503 at once, nothing for the engine, nothing upstream.
    let outs = h.browser_on(1, &browser_invite("n1"));
    assert_eq!(offers(&outs), 0, "{outs:#?}");
    assert_eq!(sends_to(&outs, Dest::Upstream), 0, "{outs:#?}");
    let r = final_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(r.status(), Some(503), "{}", text(&r));
    // From the IMS side too.
    let outs = h.ims(&ims_invite(&h, "in9", "z9hG4bKi9", "", BROWSER_SDP));
    assert_eq!(offers(&outs), 0, "{outs:#?}");
    let up = final_to(&outs, super::tests_media::pcscf());
    assert_eq!(up.status(), Some(503), "{}", text(&up));
}
