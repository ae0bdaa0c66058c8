//! Proof of possession at the edge (issue 13 §3, `pop`): a token bound to a key (RFC 9449
//! §6.1 `cnf.jkt`) registers only on a flow that proves the key with a `Proof` over the request
//! and a `Proof-Nonce` of that flow; a copied token, a replayed, stale or misdirected proof, a
//! proof by another key are refused with 401 and nothing reaches the IMS. Unbound tokens and
//! requests riding a registration are as before. Real keys and tokens, virtual time.

use std::sync::atomic::{AtomicU64, Ordering};

use imsgw_sip::Message;
use imsgw_token::pop::{ProofKey, SIP_POP_TYP, access_token_hash};
use serde_json::{Value, json};

use super::pop::PROOFS_PER_FLOW;
use super::tests::{sent_to, text};
use super::tests_trust::{H, NOW, header_lines, nothing_upstream, ok_for};
use super::*;
use crate::config::IdentityAssertion;

const RURI: &str = "sip:ims.example";

/// What a proof is signed over, as `imsgw_token::pop` names the claims.
#[derive(Clone)]
struct Over {
    method: String,
    ruri: String,
    call_id: String,
    cseq: u32,
    nonce: String,
    iat: u64,
    jti: String,
}

impl Over {
    fn register(call_id: &str, cseq: u32, nonce: &str) -> Self {
        Over {
            method: "REGISTER".into(),
            ruri: RURI.into(),
            call_id: call_id.into(),
            cseq,
            nonce: nonce.into(),
            iat: NOW,
            jti: format!("jti-{call_id}-{cseq}"),
        }
    }

    fn claims(&self, token: &str) -> Value {
        json!({
            "jti": self.jti,
            "iat": self.iat,
            "nonce": self.nonce,
            "method": self.method,
            "ruri": self.ruri,
            "call_id": self.call_id,
            "cseq": self.cseq,
            "ath": access_token_hash(token),
        })
    }
}

fn key() -> ProofKey {
    ProofKey::generate().expect("a P-256 key")
}

/// `Proof: …` by `key` over `over` for `token`, as a header line.
fn proof(key: &ProofKey, token: &str, over: &Over) -> String {
    proof_of(key, &over.claims(token))
}

fn proof_of(key: &ProofKey, claims: &Value) -> String {
    let jws = key.sign(SIP_POP_TYP, claims).expect("sign");
    format!("Proof: {jws}\r\n")
}

/// A REGISTER for `user` on `flow` with this Call-ID and CSeq, `Authorization: Bearer token`
/// and `extra` lines.
fn register(
    h: &mut H,
    flow: u64,
    user: &str,
    call_id: &str,
    cseq: u32,
    token: &str,
    extra: &str,
) -> Vec<Output> {
    // Every request a transaction of its own, whatever it repeats.
    static BRANCH: AtomicU64 = AtomicU64::new(0);
    let branch = BRANCH.fetch_add(1, Ordering::Relaxed);
    let msg = format!(
        "REGISTER {RURI} SIP/2.0\r\n\
Via: SIP/2.0/WSS c{flow}.invalid;branch=z9hG4bKpop{branch}\r\nMax-Forwards: 70\r\n\
To: <sip:{user}@ims.example>\r\nFrom: <sip:{user}@ims.example>;tag=p{cseq}\r\n\
Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n\
Contact: <sip:{user}@c{flow}.invalid;transport=ws>;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-00000000000{flow}>\"\r\n\
Expires: 3600\r\nAuthorization: Bearer {token}\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    h.send(flow, &msg)
}

/// The refusal sent down `flow`: asserts 401, nothing upstream, the Bearer challenge with
/// `error`, a `Proof-Nonce` and a Warning containing `why`; returns the nonce.
fn refused(outs: &[Output], flow: u64, error: &str, why: &str) -> String {
    nothing_upstream(outs);
    let r = sent_to(outs, Dest::Flow(FlowId(flow)));
    assert_eq!(r.status(), Some(401), "{}", text(&r));
    let ch = header_lines(&r, "WWW-Authenticate");
    assert_eq!(ch.len(), 1, "{}", text(&r));
    assert!(
        ch[0].starts_with("WWW-Authenticate: Bearer realm=\"ims.example\"")
            && ch[0].ends_with(&format!(", error=\"{error}\"")),
        "{ch:?}"
    );
    let w = header_lines(&r, "Warning");
    assert!(
        w.len() == 1 && w[0].starts_with("Warning: 399 imsgw \"") && w[0].contains(why),
        "Warning naming `{why}`: {w:?}"
    );
    nonce_in(&r)
}

fn nonce_in(r: &Message) -> String {
    let lines = header_lines(r, "Proof-Nonce");
    assert_eq!(lines.len(), 1, "one Proof-Nonce: {}", text(r));
    let nonce = lines[0]
        .split_once(':')
        .map(|(_, v)| v.trim().to_string())
        .expect("a value");
    assert!(!nonce.is_empty());
    // The Warning names why, never the nonce it hands out.
    assert!(
        !header_lines(r, "Warning")
            .iter()
            .any(|w| w.contains(&nonce)),
        "{}",
        text(r)
    );
    nonce
}

/// The nonce flow `flow` gets for a bound token without a proof.
fn challenge(h: &mut H, flow: u64, user: &str, token: &str) -> String {
    let outs = register(h, flow, user, "ask", 1, token, "");
    refused(&outs, flow, "use_proof_nonce", "has not proven")
}

/// alice's edge (`tna`), a key, a token bound to it, and the nonce flow 1 was challenged with.
fn alice_challenged() -> (H, ProofKey, String, String) {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let k = key();
    let tok = h.bound_token("alice", k.jkt());
    let nonce = challenge(&mut h, 1, "alice", &tok);
    (h, k, tok, nonce)
}

/// Answers the REGISTER that went upstream with 200.
fn answer_ok(h: &mut H, outs: &[Output], flow: u64) -> Message {
    let up = sent_to(outs, Dest::Upstream);
    let outs = h.ims(&ok_for(&up, 200, ""));
    assert_eq!(sent_to(&outs, Dest::Flow(FlowId(flow))).status(), Some(200));
    up
}

#[test]
fn a_bound_token_without_a_proof_is_401_with_a_proof_nonce_and_nothing_upstream() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let k = key();
    let tok = h.bound_token("alice", k.jkt());
    let outs = register(&mut h, 1, "alice", "c1", 1, &tok, "");
    let nonce = refused(&outs, 1, "use_proof_nonce", "has not proven");
    let r = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert!(!text(&r).contains(&tok), "the token is not echoed");
    assert_eq!(nonce.len(), 32, "{nonce}");
    assert_eq!(h.edge.stats().auth_refused, 1);
}

#[test]
fn a_good_proof_registers_and_later_requests_on_that_flow_need_none() {
    let (mut h, k, tok, nonce) = alice_challenged();
    let p = proof(&k, &tok, &Over::register("c1", 1, &nonce));
    let outs = register(&mut h, 1, "alice", "c1", 1, &tok, &p);
    let up = answer_ok(&mut h, &outs, 1);
    // The proof is for imsgw: it never reaches the IMS (trust::ALWAYS_REMOVED).
    let t = text(&up);
    assert!(header_lines(&up, "Proof").is_empty(), "{t}");
    assert!(!t.contains(&nonce), "{t}");
    // A re-REGISTER with the same token, no proof: the flow proved the key.
    let outs = register(&mut h, 1, "alice", "c1", 2, &tok, "");
    answer_ok(&mut h, &outs, 1);
    // A MESSAGE carrying the same token needs none either; one riding the registration never
    // did.
    let m = h.request(
        1,
        "MESSAGE",
        "alice",
        &format!("Authorization: Bearer {tok}\r\n"),
    );
    sent_to(&h.send(1, &m), Dest::Upstream);
    let m = h.request(1, "MESSAGE", "alice", "");
    sent_to(&h.send(1, &m), Dest::Upstream);
}

#[test]
fn a_copied_token_on_another_flow_is_refused_with_or_without_the_first_flows_proof() {
    let (mut h, k, tok, nonce) = alice_challenged();
    let p = proof(&k, &tok, &Over::register("c1", 1, &nonce));
    let outs = register(&mut h, 1, "alice", "c1", 1, &tok, &p);
    answer_ok(&mut h, &outs, 1);

    // The thief on flow 2 has the token, not the key.
    let outs = register(&mut h, 2, "alice", "c9", 1, &tok, "");
    refused(&outs, 2, "use_proof_nonce", "has not proven");
    // The whole REGISTER seen on flow 1, proof and all, replayed on flow 2: its nonce was
    // given to flow 1 (and its jti was not seen on flow 2, so that is the only thing wrong).
    let outs = register(&mut h, 2, "alice", "c1", 1, &tok, &p);
    refused(&outs, 2, "use_proof_nonce", "not given to this connection");
    // A proof by the thief's own key over flow 2's own nonce: not the token's key.
    let thief = key();
    let n2 = challenge(&mut h, 2, "alice", &tok);
    let mine = proof(&thief, &tok, &Over::register("c9", 2, &n2));
    let outs = register(&mut h, 2, "alice", "c9", 2, &tok, &mine);
    refused(&outs, 2, "invalid_proof", "another key");
    // Flow 1's proving does not carry over: flow 2 still has proven nothing.
    let outs = register(&mut h, 2, "alice", "c9", 3, &tok, "");
    refused(&outs, 2, "use_proof_nonce", "has not proven");
}

#[test]
fn a_proof_by_another_key_is_refused() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let (k, other) = (key(), key());
    let tok = h.bound_token("alice", k.jkt());
    let nonce = challenge(&mut h, 1, "alice", &tok);
    let p = proof(&other, &tok, &Over::register("c1", 1, &nonce));
    let outs = register(&mut h, 1, "alice", "c1", 1, &tok, &p);
    refused(
        &outs,
        1,
        "invalid_proof",
        "another key than the one the token is bound to",
    );
    // The flow proved nothing: the right key's proof is still needed, and passes.
    let p = proof(&k, &tok, &Over::register("c1", 2, &nonce));
    let outs = register(&mut h, 1, "alice", "c1", 2, &tok, &p);
    answer_ok(&mut h, &outs, 1);
}

#[test]
fn a_proof_for_another_call_id_cseq_method_request_uri_or_token_is_refused() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let k = key();
    let tok = h.bound_token("alice", k.jkt());
    let other_tok = h.bound_token("alice", k.jkt());
    let nonce = challenge(&mut h, 1, "alice", &tok);
    let base = Over::register("c1", 5, &nonce);
    let cases: Vec<(Over, &str, &str)> = vec![
        (
            Over {
                call_id: "c2".into(),
                ..base.clone()
            },
            tok.as_str(),
            "call_id",
        ),
        (
            Over {
                cseq: 4,
                ..base.clone()
            },
            tok.as_str(),
            "cseq",
        ),
        (
            Over {
                method: "INVITE".into(),
                ..base.clone()
            },
            tok.as_str(),
            "method",
        ),
        // Compared exactly as sent: another spelling of the same URI is another request.
        (
            Over {
                ruri: "sip:IMS.example".into(),
                ..base.clone()
            },
            tok.as_str(),
            "ruri",
        ),
        (base.clone(), other_tok.as_str(), "another access token"),
    ];
    for (i, (over, signed_for, why)) in cases.into_iter().enumerate() {
        let over = Over {
            jti: format!("j{i}"),
            ..over
        };
        let p = proof(&k, signed_for, &over);
        let outs = register(&mut h, 1, "alice", "c1", 5, &tok, &p);
        refused(&outs, 1, "invalid_proof", why);
    }
    // The same, signed over what was sent, passes.
    let p = proof(&k, &tok, &base);
    let outs = register(&mut h, 1, "alice", "c1", 5, &tok, &p);
    answer_ok(&mut h, &outs, 1);
}

#[test]
fn a_stale_or_future_iat_and_a_stale_nonce_are_refused() {
    let (mut h, k, tok, nonce) = alice_challenged();
    // RFC 9449 §11.1: ±60 s.
    for (n, iat) in [(1, NOW - 61), (2, NOW + 61)] {
        let over = Over {
            iat,
            ..Over::register("c1", n, &nonce)
        };
        let outs = register(&mut h, 1, "alice", "c1", n, &tok, &proof(&k, &tok, &over));
        refused(&outs, 1, "invalid_proof", "stale");
    }
    // A nonce past its five minutes: a fresh proof over it asks for the new one.
    h.edge.set_wall_clock(NOW + pop::NONCE_SECS);
    let over = Over {
        iat: NOW + pop::NONCE_SECS,
        ..Over::register("c1", 3, &nonce)
    };
    let outs = register(&mut h, 1, "alice", "c1", 3, &tok, &proof(&k, &tok, &over));
    let fresh = refused(&outs, 1, "use_proof_nonce", "nonce is stale");
    assert_ne!(fresh, nonce);
    let over = Over {
        nonce: fresh,
        ..over
    };
    let over = Over { cseq: 4, ..over };
    let outs = register(&mut h, 1, "alice", "c1", 4, &tok, &proof(&k, &tok, &over));
    answer_ok(&mut h, &outs, 1);
}

#[test]
fn a_proof_without_a_nonce_or_with_a_forged_one_asks_for_the_proof_nonce() {
    let (mut h, k, tok, nonce) = alice_challenged();
    let mut claims = Over::register("c1", 1, &nonce).claims(&tok);
    claims.as_object_mut().expect("object").remove("nonce");
    let outs = register(&mut h, 1, "alice", "c1", 1, &tok, &proof_of(&k, &claims));
    refused(&outs, 1, "use_proof_nonce", "carries no nonce");
    let forged = "AAAAAGtJ0oAAAAAAAAAAAAAAAAAAAAAA";
    let over = Over::register("c1", 2, forged);
    let outs = register(&mut h, 1, "alice", "c1", 2, &tok, &proof(&k, &tok, &over));
    refused(&outs, 1, "use_proof_nonce", "not given to this connection");
}

#[test]
fn a_reused_jti_is_refused_on_the_flow_that_used_it() {
    let (mut h, k, tok, nonce) = alice_challenged();
    let first = Over::register("c1", 1, &nonce);
    let outs = register(&mut h, 1, "alice", "c1", 1, &tok, &proof(&k, &tok, &first));
    answer_ok(&mut h, &outs, 1);
    // A proof sent on a proven flow is checked all the same: a new request, the old jti.
    let again = Over {
        cseq: 2,
        ..first.clone()
    };
    let outs = register(&mut h, 1, "alice", "c1", 2, &tok, &proof(&k, &tok, &again));
    refused(&outs, 1, "invalid_proof", "used before");
    let fresh = Over {
        jti: "another".into(),
        ..again
    };
    let outs = register(&mut h, 1, "alice", "c1", 2, &tok, &proof(&k, &tok, &fresh));
    answer_ok(&mut h, &outs, 1);
}

#[test]
fn malformed_proofs_are_refused_and_two_proofs_are_one_too_many() {
    let (mut h, k, tok, nonce) = alice_challenged();
    let good = proof(&k, &tok, &Over::register("c1", 1, &nonce));
    for (n, extra, why) in [
        (1, "Proof: not-a-jws\r\n".to_string(), "malformed"),
        (2, format!("{good}{good}"), "more than one Proof"),
        // A JWS with its signature cut off.
        (
            3,
            format!("{}.\r\n", good.trim_end().rsplit_once('.').expect("jws").0),
            "signature",
        ),
    ] {
        let outs = register(&mut h, 1, "alice", "c1", n, &tok, &extra);
        refused(&outs, 1, "invalid_proof", why);
    }
}

#[test]
fn an_unbound_token_is_unaffected_and_its_proof_header_never_crosses() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let tok = h.token("bob");
    let outs = register(&mut h, 2, "bob", "c1", 1, &tok, "");
    answer_ok(&mut h, &outs, 2);
    let outs = register(&mut h, 2, "bob", "c1", 2, &tok, "Proof: whatever\r\n");
    let up = answer_ok(&mut h, &outs, 2);
    assert!(header_lines(&up, "Proof").is_empty(), "{}", text(&up));
}

#[test]
fn a_bound_token_on_another_method_needs_the_proof_too() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let k = key();
    let tok = h.bound_token("alice", k.jkt());
    let auth = format!("Authorization: Bearer {tok}\r\n");
    let m = h.request(3, "MESSAGE", "alice", &auth);
    let outs = h.send(3, &m);
    let nonce = refused(&outs, 3, "use_proof_nonce", "has not proven");
    let msg = Message::parse(bytes::Bytes::from(m)).expect("parses");
    let view = msg.view().expect("view");
    let over = Over {
        method: "MESSAGE".into(),
        ruri: msg.request_uri().expect("ruri").to_string(),
        call_id: view.call_id.clone(),
        cseq: view.cseq.seq,
        nonce,
        iat: NOW,
        jti: "m1".into(),
    };
    // The same MESSAGE, now with a proof (a new branch: a new transaction).
    let resent = text(&msg)
        .replace("branch=z9hG4bKm", "branch=z9hG4bKm2x")
        .replace(
            "Content-Length: 0\r\n",
            &format!("{}Content-Length: 0\r\n", proof(&k, &tok, &over)),
        );
    sent_to(&h.send(3, &resent), Dest::Upstream);
}

#[test]
fn a_flow_with_too_many_proofs_in_their_window_gets_503_until_the_oldest_is_forgotten() {
    let (mut h, k, tok, nonce) = alice_challenged();
    let cap = u32::try_from(PROOFS_PER_FLOW).expect("small");
    for n in 1..=cap {
        let p = proof(&k, &tok, &Over::register("c1", n, &nonce));
        let outs = register(&mut h, 1, "alice", "c1", n, &tok, &p);
        answer_ok(&mut h, &outs, 1);
    }
    let over = Over::register("c1", cap + 1, &nonce);
    let outs = register(
        &mut h,
        1,
        "alice",
        "c1",
        cap + 1,
        &tok,
        &proof(&k, &tok, &over),
    );
    nothing_upstream(&outs);
    let r = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(r.status(), Some(503), "{}", text(&r));
    // Remembered until iat + 60 s: retry after 61 s.
    assert_eq!(
        header_lines(&r, "Retry-After"),
        vec!["Retry-After: 61".to_string()]
    );
    assert!(header_lines(&r, "Warning")[0].contains("too many proofs"));
    // Without a proof the proven flow goes on meanwhile.
    let outs = register(&mut h, 1, "alice", "c1", cap + 2, &tok, "");
    answer_ok(&mut h, &outs, 1);
    // Once the first proofs could no longer pass their iat check, there is room again.
    h.edge.set_wall_clock(NOW + 61);
    let over = Over {
        iat: NOW + 61,
        ..Over::register("c1", cap + 3, &nonce)
    };
    let p = proof(&k, &tok, &over);
    let outs = register(&mut h, 1, "alice", "c1", cap + 3, &tok, &p);
    answer_ok(&mut h, &outs, 1);
}
