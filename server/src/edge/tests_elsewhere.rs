//! New tokens' signatures checked off the edge's task (`sip.verify_threads`, issue 11 §3): a
//! request with a token the edge has not seen is parked while a [`imsgw_token::Job`] runs
//! elsewhere, then decided with the verdict by every rule it would have met inline. Virtual
//! time, no sockets; the jobs are run here as a verifying thread would.

use std::time::Duration;

use super::tests::sent_to;
use super::tests_trust::{H, NOW, nothing_upstream, ok_for, status_to};
use super::*;
use crate::config::IdentityAssertion;

fn h() -> H {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    h.edge.auth.elsewhere = Elsewhere::new(true);
    h
}

/// The token checks asked for in `outs`.
fn jobs(outs: &[Output]) -> Vec<(imsgw_token::Job, String)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::VerifyToken { job, token } => {
                Some(((**job).clone(), token.expose().to_owned()))
            }
            _ => None,
        })
        .collect()
}

/// Runs a job as a verifying thread does and hands the verdict back; what the edge did then.
fn run(h: &mut H, job: &(imsgw_token::Job, String)) -> Vec<Output> {
    let verdict = job.0.run(NOW, &job.1);
    h.edge.token_verdict(h.now, verdict);
    std::iter::from_fn(|| h.edge.poll_output()).collect()
}

fn bearer(tok: &str) -> String {
    format!("Authorization: Bearer {tok}\r\n")
}

#[test]
fn a_new_token_waits_for_its_check_then_registers_as_inline() {
    let mut h = h();
    let tok = h.token("alice");
    let outs = h.register(1, "alice", &bearer(&tok));
    nothing_upstream(&outs);
    let asked = jobs(&outs);
    assert_eq!(asked.len(), 1, "{outs:#?}");
    let outs = run(&mut h, &asked[0]);
    assert_eq!(h.edge.stats().tokens_verified_elsewhere, 1);
    let up = sent_to(&outs, Dest::Upstream);
    // What the IMS side gets is what an inline check gives: the IMPI asserted (TNA), no token.
    let text = super::tests::text(&up);
    assert!(text.contains("username=\"alice@ims.example\""), "{text}");
    assert!(!text.contains(&tok), "{text}");
    let outs = h.ims(&ok_for(&up, 200, ""));
    assert_eq!(status_to(&outs, 1), 200);
    // The token is now known: its next REGISTER goes at once.
    let outs = h.register(1, "alice", &bearer(&tok));
    assert!(jobs(&outs).is_empty());
    sent_to(&outs, Dest::Upstream);
}

#[test]
fn one_check_per_token_however_many_requests_carry_it() {
    let mut h = h();
    let tok = h.token("alice");
    let first = h.register(1, "alice", &bearer(&tok));
    let second = h.register(2, "alice", &bearer(&tok));
    assert_eq!(jobs(&first).len(), 1);
    assert!(jobs(&second).is_empty(), "{second:#?}");
    let outs = run(&mut h, &jobs(&first)[0]);
    let ups = outs
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Send {
                    to: Dest::Upstream,
                    ..
                }
            )
        })
        .count();
    assert_eq!(ups, 2, "both REGISTERs go on: {outs:#?}");
}

#[test]
fn a_forged_token_is_refused_after_its_check_and_nothing_reaches_the_ims() {
    let mut h = h();
    let tok = h.token("alice");
    let forged = format!("{}AAAA", &tok[..tok.len() - 4]);
    let outs = h.register(1, "alice", &bearer(&forged));
    let asked = jobs(&outs);
    assert_eq!(asked.len(), 1);
    let outs = run(&mut h, &asked[0]);
    nothing_upstream(&outs);
    assert_eq!(status_to(&outs, 1), 401);
    // Another user's token for alice's identity: checked, then refused as not hers (403).
    let bob = h.token("bob");
    let outs = h.register(1, "alice", &bearer(&bob));
    let outs = run(&mut h, &jobs(&outs)[0]);
    nothing_upstream(&outs);
    assert_eq!(status_to(&outs, 1), 403);
}

#[test]
fn a_verdict_of_replaced_keys_is_not_taken_the_token_is_checked_again() {
    let mut h = h();
    let tok = h.token("alice");
    let outs = h.register(1, "alice", &bearer(&tok));
    let asked = jobs(&outs);
    // Our keys are replaced while the check is out (a rotation that retired the old key).
    let ring = imsgw_token::KeyRing::ephemeral(NOW).expect("ring");
    h.edge.set_our_keys(&ring);
    let outs = run(&mut h, &asked[0]);
    nothing_upstream(&outs);
    let again = jobs(&outs);
    assert_eq!(again.len(), 1, "asked again with the new keys: {outs:#?}");
    let outs = run(&mut h, &again[0]);
    nothing_upstream(&outs);
    assert_eq!(status_to(&outs, 1), 401, "the key is gone");
}

#[test]
fn a_check_that_does_not_come_back_or_cannot_be_queued_is_done_inline() {
    let mut h = h();
    let tok = h.token("alice");
    let outs = h.register(1, "alice", &bearer(&tok));
    assert_eq!(jobs(&outs).len(), 1);
    // The verifying thread is stuck: after VERIFY_WAIT the edge checks the token itself.
    h.now += VERIFY_WAIT + Duration::from_millis(1);
    h.edge.handle_timeout(h.now);
    let outs: Vec<Output> = std::iter::from_fn(|| h.edge.poll_output()).collect();
    sent_to(&outs, Dest::Upstream);
    assert_eq!(h.edge.stats().tokens_verified_inline, 1);
    // The queue to the threads is full: the driver says so and the edge checks it at once.
    let bob = h.token("bob");
    let outs = h.register(2, "bob", &bearer(&bob));
    let asked = jobs(&outs);
    h.edge.verify_unavailable(h.now, asked[0].0.token_hash());
    let outs: Vec<Output> = std::iter::from_fn(|| h.edge.poll_output()).collect();
    sent_to(&outs, Dest::Upstream);
    // A verdict that comes after all finds nothing waiting: the REGISTER is not sent twice.
    let late = run(&mut h, &asked[0]);
    nothing_upstream(&late);
    assert!(late.is_empty(), "{late:#?}");
}

#[test]
fn a_revocation_between_the_check_and_the_verdict_is_obeyed() {
    let mut h = h();
    let (tok, jti) = h.mint("sip:alice@ims.example", "sip", 600);
    let outs = h.register(1, "alice", &bearer(&tok));
    let asked = jobs(&outs);
    h.edge.revoke(h.now, jti, NOW + 600);
    let outs = run(&mut h, &asked[0]);
    nothing_upstream(&outs);
    assert_eq!(status_to(&outs, 1), 401);
}

// ---------------------------------------------------------------- review

/// What the edge did since the last look.
fn drained(h: &mut H) -> Vec<Output> {
    std::iter::from_fn(|| h.edge.poll_output()).collect()
}

#[test]
fn a_good_verdict_on_a_token_that_expired_before_it_was_taken_is_not_obeyed() {
    let mut h = h();
    // Good for 10 s (and the verifier's 60 s leeway).
    let (tok, _) = h.mint("sip:alice@ims.example", "sip", 10);
    let invite = h.request(1, "INVITE", "alice", &bearer(&tok));
    let asked = jobs(&h.send(1, &invite));
    assert_eq!(asked.len(), 1);
    // The thread checks it while it is good; the verdict is taken after exp + leeway.
    let verdict = asked[0].0.run(NOW, &asked[0].1);
    h.edge.set_wall_clock(NOW + 10 + 61);
    h.edge.token_verdict(h.now, verdict);
    let outs = drained(&mut h);
    nothing_upstream(&outs);
    assert_eq!(status_to(&outs, 1), 401, "expired, as inline: {outs:#?}");
}

#[test]
fn requests_waiting_for_one_token_are_bounded_per_flow_and_overall() {
    let mut h = h();
    let tok = h.token("alice");
    // One connection sends many requests with one new token while its check is out: like
    // pending transactions, at most MAX_PENDING_PER_FLOW; the rest are 503.
    let mut busy = 0;
    for i in 0..MAX_PENDING_PER_FLOW + 10 {
        let invite = h.request(1, "INVITE", "alice", &bearer(&tok));
        let outs = h.send(1, &invite);
        nothing_upstream(&outs);
        if i < MAX_PENDING_PER_FLOW {
            assert!(outs.iter().all(|o| matches!(o, Output::VerifyToken { .. })));
        } else {
            assert_eq!(status_to(&outs, 1), 503);
            busy += 1;
        }
    }
    assert_eq!(busy, 10);
    assert_eq!(h.edge.parked.len(), MAX_PENDING_PER_FLOW);
    // A connection that closes takes its waiting requests with it.
    h.edge.flow_closed(h.now, FlowId(1));
    assert!(h.edge.parked.is_empty());
    // Many connections: never more than MAX_VERIFYING wait, whatever the token.
    let flows = MAX_VERIFYING / MAX_PENDING_PER_FLOW + 2;
    for f in 10..10 + flows as u64 {
        h.edge
            .flow_opened(FlowId(f), "192.0.2.9:5000".parse().expect("addr"));
        for _ in 0..MAX_PENDING_PER_FLOW {
            let invite = h.request(f, "INVITE", "alice", &bearer(&tok));
            let _ = h.send(f, &invite);
            assert!(h.edge.parked.len() <= MAX_VERIFYING);
        }
    }
}

#[test]
fn each_token_is_counted_once_where_it_was_checked_and_each_request_once() {
    let mut h = h();
    // Two new tokens whose checks do not come back: both are checked here after the wait.
    let (a, b) = (h.token("alice"), h.token("bob"));
    assert_eq!(jobs(&h.register(1, "alice", &bearer(&a))).len(), 1);
    assert_eq!(jobs(&h.register(2, "bob", &bearer(&b))).len(), 1);
    h.now += VERIFY_WAIT + Duration::from_millis(1);
    h.edge.handle_timeout(h.now);
    assert_eq!(sent_to_all(&drained(&mut h)), 2);
    let s = h.edge.stats();
    assert_eq!(
        (s.tokens_verified_elsewhere, s.tokens_verified_inline),
        (0, 2)
    );
    // One the queue had no room for is counted where it was checked, not as handed off.
    let c = h.token("carol");
    let asked = jobs(&h.register(3, "carol", &bearer(&c)));
    h.edge.verify_unavailable(h.now, asked[0].0.token_hash());
    assert_eq!(sent_to_all(&drained(&mut h)), 1);
    let s = h.edge.stats();
    assert_eq!(
        (s.tokens_verified_elsewhere, s.tokens_verified_inline),
        (0, 3)
    );
    // One checked on the thread.
    let d = h.token("dave");
    let asked = jobs(&h.register(1, "dave", &bearer(&d)));
    assert_eq!(sent_to_all(&run(&mut h, &asked[0])), 1);
    let s = h.edge.stats();
    assert_eq!(
        (s.tokens_verified_elsewhere, s.tokens_verified_inline),
        (1, 3)
    );
    // Four requests came from the flows, however often each was decided.
    assert_eq!(s.requests_from_flows, 4);
}

/// How many of `outs` go to the P-CSCF.
fn sent_to_all(outs: &[Output]) -> usize {
    outs.iter()
        .filter(|o| {
            matches!(
                o,
                Output::Send {
                    to: Dest::Upstream,
                    ..
                }
            )
        })
        .count()
}

#[test]
fn the_token_handed_to_a_verifying_thread_is_redacted_from_debug() {
    let mut h = h();
    let tok = h.token("alice");
    let outs = h.register(1, "alice", &bearer(&tok));
    assert_eq!(jobs(&outs).len(), 1);
    let text = format!("{outs:?}");
    let signature = tok.rsplit('.').next().expect("JWS");
    assert!(!text.contains(signature), "{text}");
}
