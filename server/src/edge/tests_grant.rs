//! A code in REGISTER (issue 13 §1) at the edge: the exchange asked of the WAF, the REGISTER
//! that goes on with the grant's identity, the held grant carrying later REGISTERs and being
//! refreshed, every refusal, and revocation ending the registration. The WAF is played here;
//! `server/tests` and interop 51 run the real one.

use std::time::Duration;

use bytes::Bytes;
use imsgw_token::{AccessToken, Secret};

use super::tests::{sent_to, text};
use super::tests_trust::{H, NOW, TNA_ALICE, header_lines, nothing_upstream, ok_for};
use super::*;
use crate::config::IdentityAssertion;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn code_cred(code: &str) -> String {
    format!(
        "Authorization: Bearer code=\"{code}\", code_verifier=\"{VERIFIER}\", client_id=\"phone\"\r\n"
    )
}

/// The one grant ask among `outs`.
fn ask(outs: &[Output]) -> (u64, GrantAsk) {
    let asks: Vec<_> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Grant { ticket, ask } => Some((*ticket, ask.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(asks.len(), 1, "one grant ask: {outs:#?}");
    asks.into_iter().next().expect("one")
}

fn no_ask(outs: &[Output]) {
    assert!(
        !outs.iter().any(|o| matches!(o, Output::Grant { .. })),
        "no grant ask: {outs:#?}"
    );
}

fn grant(h: &H, user: &str, ttl: u64, refresh: Option<&str>) -> (Granted, String) {
    let (t, jti) = h.mint(&format!("sip:{user}@ims.example"), "sip", ttl);
    (
        Granted {
            access_token: AccessToken::new(t),
            refresh_token: refresh.map(Secret::new),
            digest_ha1: None,
        },
        jti,
    )
}

fn answer(h: &mut H, ticket: u64, r: Result<Granted, GrantError>) -> Vec<Output> {
    h.edge.granted(h.now, ticket, r);
    std::iter::from_fn(|| h.edge.poll_output()).collect()
}

/// Registers alice on flow 1 with a code the WAF exchanges; returns the access token's jti and
/// the REGISTER as it went upstream.
fn signed_in(h: &mut H) -> (String, imsgw_sip::Message) {
    let outs = h.register(1, "alice", &code_cred("c0de"));
    let (ticket, _) = ask(&outs);
    let (g, jti) = grant(h, "alice", 600, Some("fam.rt1"));
    let outs = answer(h, ticket, Ok(g));
    let up = sent_to(&outs, Dest::Upstream);
    let outs = h.ims(&ok_for(&up, 200, ""));
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(200));
    (jti, up)
}

#[test]
fn a_code_in_register_is_exchanged_and_the_register_goes_on_as_its_owner() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let outs = h.register(1, "alice", &code_cred("c0de"));
    nothing_upstream(&outs);
    let (ticket, a) = ask(&outs);
    assert_eq!(
        a,
        GrantAsk::Code {
            code: Secret::new("c0de"),
            verifier: Secret::new(VERIFIER),
            client_id: "phone".into(),
            redirect_uri: None,
        }
    );
    let (g, _) = grant(&h, "alice", 300, Some("fam.rt1"));
    let outs = answer(&mut h, ticket, Ok(g));
    let up = sent_to(&outs, Dest::Upstream);
    let t = text(&up);
    assert!(!t.contains("c0de") && !t.contains(VERIFIER), "{t}");
    assert!(!t.to_ascii_lowercase().contains("bearer"), "{t}");
    assert_eq!(
        header_lines(&up, "Authorization"),
        vec![TNA_ALICE.to_string()]
    );
    // RFC 8898 §2.1: the registration never outlives the token the code gave.
    assert_eq!(
        header_lines(&up, "Expires"),
        vec!["Expires: 300".to_string()]
    );
}

#[test]
fn a_code_for_another_person_is_refused_403_and_nothing_reaches_the_ims() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let outs = h.register(1, "bob", &code_cred("c0de"));
    let (ticket, _) = ask(&outs);
    let (g, _) = grant(&h, "alice", 600, None);
    let outs = answer(&mut h, ticket, Ok(g));
    nothing_upstream(&outs);
    let r = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(r.status(), Some(403));
    assert!(text(&r).contains("not for the To identity"), "{}", text(&r));
    // And nothing is held for bob or alice: a REGISTER without credentials is challenged.
    let outs = h.register(1, "alice", "");
    no_ask(&outs);
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(401));
}

#[test]
fn a_refused_code_is_401_invalid_token_and_an_unavailable_waf_503() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let outs = h.register(1, "alice", &code_cred("bad"));
    let (ticket, _) = ask(&outs);
    let why = "the code was already used".to_string();
    let outs = answer(&mut h, ticket, Err(GrantError::Refused(why)));
    nothing_upstream(&outs);
    let r = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(r.status(), Some(401));
    let ch = header_lines(&r, "WWW-Authenticate");
    assert!(ch[0].ends_with("error=\"invalid_token\""), "{ch:?}");
    assert!(text(&r).contains("the code was refused: the code was already used"));

    let outs = h.register(1, "alice", &code_cred("c2"));
    let (ticket, _) = ask(&outs);
    let outs = answer(&mut h, ticket, Err(GrantError::Unavailable("store".into())));
    nothing_upstream(&outs);
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(503));
}

#[test]
fn a_waf_that_does_not_answer_in_time_is_503_and_its_late_grant_is_dropped() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let outs = h.register(1, "alice", &code_cred("c0de"));
    let (ticket, _) = ask(&outs);
    let later = h.now + grant::WAIT + Duration::from_millis(1);
    assert!(h.edge.poll_timeout().is_some_and(|t| t <= later));
    h.edge.handle_timeout(later);
    let outs: Vec<_> = std::iter::from_fn(|| h.edge.poll_output()).collect();
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(503));
    let (g, _) = grant(&h, "alice", 600, None);
    let outs = answer(&mut h, ticket, Ok(g));
    assert!(outs.is_empty(), "{outs:#?}");
}

#[test]
fn one_exchange_per_connection_and_a_bounded_number_in_all() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let outs = h.register(1, "alice", &code_cred("c1"));
    ask(&outs);
    let outs = h.register(1, "alice", &code_cred("c2"));
    no_ask(&outs);
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(503));
    // Codes may take all but the places kept for refreshes, from many addresses.
    let codes = grant::MAX_IN_FLIGHT - grant::FOR_REFRESH;
    for f in 10..(10 + codes as u64 - 1) {
        let a = format!("10.0.{}.{}:5060", f / 250, f % 250)
            .parse()
            .expect("addr");
        h.edge.flow_opened(FlowId(f), a);
        ask(&h.register(f, "alice", &code_cred("c")));
    }
    let outs = h.register(2, "alice", &code_cred("c"));
    no_ask(&outs);
    let r = sent_to(&outs, Dest::Flow(FlowId(2)));
    assert_eq!(r.status(), Some(503));
    assert_eq!(
        header_lines(&r, "Retry-After"),
        vec!["Retry-After: 5".to_string()]
    );
}

#[test]
fn the_held_grant_carries_later_registers_and_is_refreshed_past_half_its_life() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let (_, _) = signed_in(&mut h);
    // Early: no credentials needed, no refresh.
    let outs = h.register(1, "alice", "");
    no_ask(&outs);
    let up = sent_to(&outs, Dest::Upstream);
    assert_eq!(
        header_lines(&up, "Authorization"),
        vec![TNA_ALICE.to_string()]
    );
    // Another connection holds nothing: challenged.
    let outs = h.register(2, "alice", "");
    no_ask(&outs);
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(2))).status(), Some(401));
    // Another identity on the signed-in connection: 403.
    let outs = h.register(1, "bob", "");
    no_ask(&outs);
    nothing_upstream(&outs);
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(403));
    // Past half the token's life the edge refreshes first.
    h.edge.set_wall_clock(NOW + 301);
    let outs = h.register(1, "alice", "");
    nothing_upstream(&outs);
    let (ticket, a) = ask(&outs);
    assert_eq!(
        a,
        GrantAsk::Refresh {
            client_id: "phone".into(),
            refresh_token: Secret::new("fam.rt1"),
        }
    );
    let (t, _) = h.mint("sip:alice@ims.example", "sip", 900);
    let g = Granted {
        access_token: AccessToken::new(t),
        refresh_token: Some(Secret::new("fam.rt2")),
        digest_ha1: None,
    };
    let outs = answer(&mut h, ticket, Ok(g));
    let up = sent_to(&outs, Dest::Upstream);
    // The new token was minted at NOW for 900 s; 301 s have passed.
    assert_eq!(
        header_lines(&up, "Expires"),
        vec!["Expires: 599".to_string()]
    );
    // The rotated refresh token is the one used next time.
    h.edge.set_wall_clock(NOW + 700);
    let (_, a) = ask(&h.register(1, "alice", ""));
    assert!(matches!(a, GrantAsk::Refresh { refresh_token, .. } if refresh_token.ct_eq("fam.rt2")));
}

#[test]
fn a_refused_refresh_ends_the_sign_in() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    signed_in(&mut h);
    h.edge.set_wall_clock(NOW + 400);
    let (ticket, _) = ask(&h.register(1, "alice", ""));
    let why = "the refresh token was revoked".to_string();
    let outs = answer(&mut h, ticket, Err(GrantError::Refused(why)));
    nothing_upstream(&outs);
    let r = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(r.status(), Some(401));
    assert!(text(&r).contains("the sign-in has ended"), "{}", text(&r));
    let outs = h.register(1, "alice", "");
    no_ask(&outs);
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(401));
}

#[test]
fn revocation_ends_the_registration_and_closes_the_connection() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let (jti, reg) = signed_in(&mut h);
    h.edge.revoke(h.now, jti, NOW + 600);
    let outs: Vec<_> = std::iter::from_fn(|| h.edge.poll_output()).collect();
    let un = sent_to(&outs, Dest::Upstream);
    let t = text(&un);
    assert!(t.starts_with("REGISTER sip:ims.example SIP/2.0\r\n"), "{t}");
    // The same registration (Call-ID, To, Contact), the next CSeq, expires 0, our Via only.
    let v = un.view().expect("valid");
    let r = reg.view().expect("valid");
    assert_eq!(v.call_id, r.call_id);
    assert_eq!(v.cseq.seq, r.cseq.seq + 1);
    assert_eq!(header_lines(&un, "Expires"), vec!["Expires: 0".to_string()]);
    assert_eq!(v.vias.len(), 1, "{t}");
    assert!(!t.contains("c1.invalid;branch"), "{t}");
    assert_eq!(header_lines(&un, "Contact"), header_lines(&reg, "Contact"));
    assert_eq!(
        header_lines(&un, "Authorization"),
        vec![TNA_ALICE.to_string()]
    );
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::CloseFlow {
            flow: FlowId(1),
            code: 1008,
            ..
        }
    )));
    // Its answer ends at the edge.
    let outs = h.ims(&ok_for(&un, 200, ""));
    assert!(outs.is_empty(), "{outs:#?}");
    // Until the connection is gone, it speaks for nobody.
    let outs = h.register(1, "alice", "");
    no_ask(&outs);
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(401));
    let invite = "INVITE sip:bob@ims.example SIP/2.0\r\n\
Via: SIP/2.0/WSS c1.invalid;branch=z9hG4bKinv1\r\nMax-Forwards: 70\r\n\
To: <sip:bob@ims.example>\r\nFrom: <sip:alice@ims.example>;tag=i1\r\n\
Call-ID: inv-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@c1.invalid;transport=ws>\r\n\
Content-Length: 0\r\n\r\n";
    let outs = h.send(1, invite);
    nothing_upstream(&outs);
}

#[test]
fn a_flow_that_closes_while_its_code_is_exchanged_gets_nothing() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let (ticket, _) = ask(&h.register(1, "alice", &code_cred("c0de")));
    h.edge.flow_closed(h.now, FlowId(1));
    let (g, _) = grant(&h, "alice", 600, None);
    let outs = answer(&mut h, ticket, Ok(g));
    assert!(outs.is_empty(), "{outs:#?}");
    assert_eq!(h.edge.held_grant_count(), 0);
    let _ = Bytes::new();
}

#[test]
fn a_ua_that_repeats_its_code_rides_on_its_grant_and_is_not_a_replay() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    signed_in(&mut h);
    // The same code on the same connection: no second exchange.
    let outs = h.register(1, "alice", &code_cred("c0de"));
    no_ask(&outs);
    let up = sent_to(&outs, Dest::Upstream);
    assert_eq!(
        header_lines(&up, "Authorization"),
        vec![TNA_ALICE.to_string()]
    );
    // Another code, or the same code from another connection, is exchanged (a replay there).
    ask(&h.register(1, "alice", &code_cred("0ther")));
    ask(&h.register(2, "alice", &code_cred("c0de")));
}

#[test]
fn requests_carrying_the_flows_own_code_ride_its_registration_and_others_are_refused() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    signed_in(&mut h);
    let msg = |cred: &str, n: u32| {
        format!(
            "MESSAGE sip:bob@ims.example SIP/2.0\r\n\
Via: SIP/2.0/WSS c1.invalid;branch=z9hG4bKm{n}\r\nMax-Forwards: 70\r\n\
To: <sip:bob@ims.example>\r\nFrom: <sip:alice@ims.example>;tag=m{n}\r\n\
Call-ID: m-{n}\r\nCSeq: 1 MESSAGE\r\n{cred}Content-Length: 0\r\n\r\n"
        )
    };
    let outs = h.send(1, &msg(&code_cred("c0de"), 1));
    no_ask(&outs);
    let up = sent_to(&outs, Dest::Upstream);
    let t = text(&up);
    assert!(
        !t.contains("c0de") && !t.to_ascii_lowercase().contains("bearer"),
        "{t}"
    );
    // Another code is no credential outside a REGISTER; nor is this code on another flow.
    let outs = h.send(1, &msg(&code_cred("0ther"), 2));
    nothing_upstream(&outs);
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(401));
    let outs = h.send(2, &msg(&code_cred("c0de"), 3));
    nothing_upstream(&outs);
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(2))).status(), Some(401));
}

#[test]
fn a_connection_that_closes_has_its_grant_revoked_at_the_waf() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    signed_in(&mut h);
    assert_eq!(h.edge.held_grant_count(), 1);
    h.edge.flow_closed(h.now, FlowId(1));
    let outs: Vec<_> = std::iter::from_fn(|| h.edge.poll_output()).collect();
    let (_, a) = ask(&outs);
    assert_eq!(
        a,
        GrantAsk::Revoke {
            client_id: "phone".into(),
            refresh_token: Secret::new("fam.rt1"),
        }
    );
    assert_eq!(h.edge.held_grant_count(), 0);
}

// ---- review 13: races, orphaned grants, fairness ------------------------------------------

/// Signs alice in (refresh token `fam.rt1`), moves past half the token's life and sends the
/// REGISTER that makes the edge refresh; returns the held jti and the refresh's ticket.
fn refresh_in_flight(h: &mut H) -> (String, u64) {
    let (jti, _) = signed_in(h);
    h.edge.set_wall_clock(NOW + 400);
    let (ticket, a) = ask(&h.register(1, "alice", ""));
    assert!(matches!(a, GrantAsk::Refresh { .. }), "{a:?}");
    (jti, ticket)
}

fn drain(h: &mut H) -> Vec<Output> {
    std::iter::from_fn(|| h.edge.poll_output()).collect()
}

#[test]
fn review13_a_refresh_answer_after_revocation_registers_nothing_and_holds_nothing() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let (jti, ticket) = refresh_in_flight(&mut h);
    // The WAF revokes the held token (sign-out elsewhere, RFC 7009, a replay) while the refresh
    // it already carried out is on its way back.
    h.edge.revoke(h.now, jti, NOW + 600);
    let outs = drain(&mut h);
    assert!(
        outs.iter()
            .any(|o| matches!(o, Output::CloseFlow { code: 1008, .. })),
        "{outs:#?}"
    );
    let (t, _) = h.mint("sip:alice@ims.example", "sip", 900);
    let g = Granted {
        access_token: AccessToken::new(t),
        refresh_token: Some(Secret::new("fam.rt2")),
        digest_ha1: None,
    };
    let outs = answer(&mut h, ticket, Ok(g));
    // The revoked sign-in must not come back: no new binding upstream, no grant held.
    nothing_upstream(&outs);
    assert_eq!(
        h.edge.held_grant_count(),
        0,
        "a revoked grant was re-created"
    );
}

#[test]
fn review13_a_refresh_answer_after_revocation_is_revoked_as_its_own_client() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let (jti, ticket) = refresh_in_flight(&mut h);
    h.edge.revoke(h.now, jti, NOW + 600);
    drain(&mut h);
    let (t, _) = h.mint("sip:alice@ims.example", "sip", 900);
    let g = Granted {
        access_token: AccessToken::new(t),
        refresh_token: Some(Secret::new("fam.rt2")),
        digest_ha1: None,
    };
    let mut outs = answer(&mut h, ticket, Ok(g));
    h.edge.flow_closed(h.now, FlowId(1));
    outs.extend(drain(&mut h));
    // Whatever became of the late tokens, they must be revoked as the client they belong to:
    // `revoke_refresh_token` answers NotOwner for any other client_id and revokes nothing.
    let (_, a) = ask(&outs);
    assert_eq!(
        a,
        GrantAsk::Revoke {
            client_id: "phone".into(),
            refresh_token: Secret::new("fam.rt2"),
        }
    );
}

#[test]
fn review13_a_grant_that_comes_after_its_connection_closed_is_revoked_at_the_waf() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let (ticket, _) = ask(&h.register(1, "alice", &code_cred("c0de")));
    h.edge.flow_closed(h.now, FlowId(1));
    drain(&mut h);
    let (g, _) = grant(&h, "alice", 600, Some("fam.late"));
    let outs = answer(&mut h, ticket, Ok(g));
    // "a closed connection's grant is revoked at the WAF": also one the WAF gave too late.
    let (_, a) = ask(&outs);
    assert_eq!(
        a,
        GrantAsk::Revoke {
            client_id: "phone".into(),
            refresh_token: Secret::new("fam.late"),
        }
    );
}

/// Flow 1 holds phone's grant (fam.rt1), then signs in again with a code of `kiosk`, a client
/// without the refresh grant; returns what the second exchange's answer produced.
fn second_code_from_kiosk(h: &mut H) -> Vec<Output> {
    signed_in(h);
    let kiosk = format!(
        "Authorization: Bearer code=\"k1\", code_verifier=\"{VERIFIER}\", client_id=\"kiosk\"\r\n"
    );
    let (ticket, _) = ask(&h.register(1, "alice", &kiosk));
    let (g, _) = grant(h, "alice", 600, None);
    let outs = answer(h, ticket, Ok(g));
    sent_to(&outs, Dest::Upstream);
    outs
}

#[test]
fn review13_a_grant_replaced_by_a_second_code_is_revoked_at_the_waf() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let outs = second_code_from_kiosk(&mut h);
    // The first grant's family is let go by the edge: revoked at the WAF, as `phone`.
    let (_, a) = ask(&outs);
    assert_eq!(
        a,
        GrantAsk::Revoke {
            client_id: "phone".into(),
            refresh_token: Secret::new("fam.rt1"),
        }
    );
}

#[test]
fn review13_a_second_code_does_not_inherit_the_first_grants_refresh_token() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    second_code_from_kiosk(&mut h);
    // The kiosk grant has nothing to refresh with: it rides to its end. It must not ask the
    // WAF to refresh phone's family as kiosk (refused: the sign-in would end at once).
    h.edge.set_wall_clock(NOW + 400);
    let outs = h.register(1, "alice", "");
    no_ask(&outs);
    sent_to(&outs, Dest::Upstream);
}

#[test]
fn review13_one_source_cannot_take_every_exchange_slot() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    // One address opens many connections (no sign-in needed to open one) and sends junk codes.
    for f in 10..(10 + grant::MAX_IN_FLIGHT as u64) {
        let a = format!("203.0.113.7:{}", 1000 + f).parse().expect("addr");
        h.edge.flow_opened(FlowId(f), a);
        let _ = h.register(f, "alice", &code_cred("junk"));
    }
    // Someone else, from another address, still gets their code exchanged.
    let outs = h.register(2, "bob", &code_cred("real"));
    ask(&outs);
}

#[test]
fn review13_an_unregister_past_half_life_goes_on_without_waiting_for_a_refresh() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    signed_in(&mut h);
    h.edge.set_wall_clock(NOW + 400);
    // The UA signs out: it removes its binding (RFC 3261 §10.2.2). Removing needs no new
    // token: the held one is still good for 200 s. Asking the WAF first makes the removal
    // fail whenever the WAF is slow, down (503) or the family just lapsed (401), and the
    // binding then stays at the registrar.
    let n = 77;
    let unreg = format!(
        "REGISTER sip:ims.example SIP/2.0\r\n\
Via: SIP/2.0/WSS c1.invalid;branch=z9hG4bKun{n}\r\nMax-Forwards: 70\r\n\
To: <sip:alice@ims.example>\r\nFrom: <sip:alice@ims.example>;tag=u{n}\r\n\
Call-ID: reg-1\r\nCSeq: {n} REGISTER\r\n\
Contact: <sip:alice@c1.invalid;transport=ws>;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-000000000001>\"\r\n\
Expires: 0\r\n{}Content-Length: 0\r\n\r\n",
        code_cred("c0de")
    );
    let outs = h.send(1, &unreg);
    no_ask(&outs);
    let up = sent_to(&outs, Dest::Upstream);
    assert_eq!(header_lines(&up, "Expires"), vec!["Expires: 0".to_string()]);
}

#[test]
fn review13_a_held_grant_that_ran_out_answers_its_own_code_with_the_sign_in_ended() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    // A client without the refresh grant: the grant ends with its access token.
    let outs = h.register(1, "alice", &code_cred("c0de"));
    let (ticket, _) = ask(&outs);
    let (g, _) = grant(&h, "alice", 300, None);
    let up = sent_to(&answer(&mut h, ticket, Ok(g)), Dest::Upstream);
    h.ims(&ok_for(&up, 200, ""));
    h.edge.set_wall_clock(NOW + 301);
    // JsSIP re-REGISTERs with the same Authorization value (the spent code).
    let outs = h.register(1, "alice", &code_cred("c0de"));
    no_ask(&outs);
    let r = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(r.status(), Some(401));
    let w = header_lines(&r, "Warning").join(" ");
    // Not "the token was refused: malformed ... no access_token parameter".
    assert!(w.contains("the sign-in has ended"), "{w}");
}

#[test]
fn review13_a_retry_after_a_timed_out_exchange_is_not_a_replay() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let (ticket, _) = ask(&h.register(1, "alice", &code_cred("c0de")));
    // The WAF is slow: the REGISTER is answered 503 after WAIT...
    let later = h.now + grant::WAIT + Duration::from_millis(1);
    h.edge.handle_timeout(later);
    h.now = later;
    let outs = drain(&mut h);
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(503));
    // ...but it did exchange the code (single use: it is spent now), and its answer comes.
    let (g, _) = grant(&h, "alice", 600, Some("fam.late"));
    answer(&mut h, ticket, Ok(g));
    // The UA retries the 503 on the same connection with the same code. Exchanging it again is
    // a replay: the WAF revokes everything and the UA's sign-in is lost to a slow WAF.
    let outs = h.register(1, "alice", &code_cred("c0de"));
    no_ask(&outs);
    sent_to(&outs, Dest::Upstream);
}

#[test]
fn review13_a_late_refresh_answer_is_kept_so_the_next_refresh_is_not_a_reuse() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let (_, ticket) = refresh_in_flight(&mut h);
    let later = h.now + grant::WAIT + Duration::from_millis(1);
    h.edge.handle_timeout(later);
    h.now = later;
    let outs = drain(&mut h);
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(1))).status(), Some(503));
    // The WAF did rotate the family (fam.rt1 is spent) and says so, late.
    let (t, _) = h.mint("sip:alice@ims.example", "sip", 900);
    let g = Granted {
        access_token: AccessToken::new(t),
        refresh_token: Some(Secret::new("fam.rt2")),
        digest_ha1: None,
    };
    answer(&mut h, ticket, Ok(g));
    // The UA retries. Presenting fam.rt1 again is reuse of a rotated token (RFC 9700
    // §4.14.2): the WAF revokes the family, and the edge then un-REGISTERs and closes 1008.
    let outs = h.register(1, "alice", "");
    for o in &outs {
        if let Output::Grant {
            ask: GrantAsk::Refresh { refresh_token, .. },
            ..
        } = o
        {
            assert!(
                !refresh_token.ct_eq("fam.rt1"),
                "the rotated-away refresh token is presented again"
            );
        }
    }
}

#[test]
fn review13_junk_codes_from_one_source_do_not_starve_the_refresh_of_a_held_grant() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    signed_in(&mut h);
    for f in 10..(10 + grant::MAX_IN_FLIGHT as u64) {
        let a = format!("203.0.113.7:{}", 1000 + f).parse().expect("addr");
        h.edge.flow_opened(FlowId(f), a);
        let _ = h.register(f, "alice", &code_cred("junk"));
    }
    // alice's grant needs its refresh; if it is refused 503 for as long as the flood lasts,
    // her registration runs out with the token.
    h.edge.set_wall_clock(NOW + 400);
    let outs = h.register(1, "alice", "");
    let (_, a) = ask(&outs);
    assert!(matches!(a, GrantAsk::Refresh { .. }), "{a:?}");
}

#[test]
fn a_websocket_that_never_registers_is_closed_after_the_register_timeout() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    h.edge.settings.register_timeout = Some(Duration::from_secs(30));
    let a: std::net::SocketAddr = "192.0.2.50:5000".parse().expect("addr");
    let (idle, registers) = (FlowId(20), FlowId(21));
    h.edge.flow_opened_at(Some(h.now), idle, a, FlowKind::Ws);
    h.edge
        .flow_opened_at(Some(h.now), registers, a, FlowKind::Ws);
    // Flow 21 registers with a token; flow 20 never does.
    let tok = h.token("alice");
    let reg = format!(
        "REGISTER sip:ims.example SIP/2.0\r\nVia: SIP/2.0/WSS c21.invalid;branch=z9hG4bKr21\r\n\
Max-Forwards: 70\r\nTo: <sip:alice@ims.example>\r\nFrom: <sip:alice@ims.example>;tag=r21\r\n\
Call-ID: r21\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@c21.invalid;transport=ws>\r\n\
Authorization: Bearer {tok}\r\nContent-Length: 0\r\n\r\n"
    );
    let up = sent_to(&h.send(21, &reg), Dest::Upstream);
    h.ims(&ok_for(&up, 200, ""));
    assert!(
        h.edge
            .poll_timeout()
            .is_some_and(|d| d <= h.now + Duration::from_secs(30))
    );
    h.edge.handle_timeout(h.now + Duration::from_secs(29));
    let outs: Vec<_> = std::iter::from_fn(|| h.edge.poll_output()).collect();
    assert!(
        !outs.iter().any(|o| matches!(o, Output::CloseFlow { .. })),
        "{outs:#?}"
    );
    h.edge.handle_timeout(h.now + Duration::from_secs(30));
    let outs: Vec<_> = std::iter::from_fn(|| h.edge.poll_output()).collect();
    let closed: Vec<FlowId> = outs
        .iter()
        .filter_map(|o| match o {
            Output::CloseFlow {
                flow, code: 1008, ..
            } => Some(*flow),
            _ => None,
        })
        .collect();
    assert_eq!(
        closed,
        vec![idle],
        "only the one that never registered: {outs:#?}"
    );
    assert_eq!(h.edge.stats().register_timeouts, 1);
}

#[test]
fn review11_a_websocket_that_un_registers_must_register_again_within_the_timeout() {
    // Otherwise one REGISTER and one un-REGISTER would buy an idle connection for ever, and
    // its address's unregistered share would never see it again.
    let mut h = H::new(&[IdentityAssertion::Tna]);
    h.edge.settings.register_timeout = Some(Duration::from_secs(30));
    let a: std::net::SocketAddr = "192.0.2.51:5000".parse().expect("addr");
    let opened = h.now;
    h.edge
        .flow_opened_at(Some(opened), FlowId(22), a, FlowKind::Ws);
    let tok = h.token("alice");
    let reg = |cseq: u32, expires: u32| {
        format!(
            "REGISTER sip:ims.example SIP/2.0\r\nVia: SIP/2.0/WSS c22.invalid;branch=z9hG4bKr22{cseq}\r\n\
Max-Forwards: 70\r\nTo: <sip:alice@ims.example>\r\nFrom: <sip:alice@ims.example>;tag=r22\r\n\
Call-ID: r22\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:alice@c22.invalid;transport=ws>\r\n\
Expires: {expires}\r\nAuthorization: Bearer {tok}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let round = |h: &mut H, cseq: u32, expires: u32| -> Vec<Output> {
        let up = sent_to(&h.send(22, &reg(cseq, expires)), Dest::Upstream);
        h.ims(&ok_for(&up, 200, ""))
    };
    let outs = round(&mut h, 1, 600);
    assert!(
        outs.iter()
            .any(|o| matches!(o, Output::FlowRegistered { flow: FlowId(22) })),
        "{outs:#?}"
    );
    // Twenty seconds on it un-registers (and again and again: one deadline a flow).
    h.now = opened + Duration::from_secs(20);
    let outs = round(&mut h, 2, 0);
    assert!(
        outs.iter()
            .any(|o| matches!(o, Output::FlowUnregistered { flow: FlowId(22) })),
        "{outs:#?}"
    );
    for cseq in 3..23 {
        let _ = round(&mut h, cseq, if cseq % 2 == 1 { 600 } else { 0 });
    }
    assert_eq!(
        h.edge.must_register.len(),
        1,
        "one queued deadline for the flow"
    );
    // Its opening deadline (30 s) passes: it un-registered at 20 s, so it has until 50 s.
    h.edge.handle_timeout(opened + Duration::from_secs(31));
    let outs: Vec<_> = std::iter::from_fn(|| h.edge.poll_output()).collect();
    assert!(
        !outs.iter().any(|o| matches!(o, Output::CloseFlow { .. })),
        "{outs:#?}"
    );
    h.edge.handle_timeout(opened + Duration::from_secs(50));
    let outs: Vec<_> = std::iter::from_fn(|| h.edge.poll_output()).collect();
    assert!(
        outs.iter().any(|o| matches!(
            o,
            Output::CloseFlow {
                flow: FlowId(22),
                code: 1008,
                ..
            }
        )),
        "{outs:#?}"
    );
}
