//! One test suite for every [`Store`]: what the WAF relies on, checked the same way against the
//! memory store, the durable store and (issue 12) Redis. A store's tests run it with
//! [`store_suite!`](crate::store_suite) and a [`Harness`] that makes fresh stores; each case is
//! also a plain function, for a store that needs its own test set-up.
//!
//! Owns: the behaviour every store must have. Must not touch: how a store keeps its data.
//!
//! Compiled for this crate's tests and with the `test-suite` feature (for stores in other
//! crates); it panics on failure, as tests do.
#![allow(clippy::unwrap_used)] // a failed store operation fails the test

use std::collections::{BTreeSet, HashMap};
use std::sync::Barrier;

use crate::{Caps, Record, Store, StoreError, StoreExt};

/// Makes stores for the suite.
pub trait Harness {
    type S: Store;
    /// A new, empty store with these caps, at time `now`.
    fn open(&mut self, caps: Caps, now: u64) -> Self::S;
    /// The same store closed and opened again at `now` (a restart); `None` for a store that
    /// keeps nothing across a restart (the memory store), which skips the restart cases.
    fn reopen(&mut self, s: Self::S, now: u64) -> Option<Self::S>;
}

/// How many threads race in the concurrency cases.
pub const RACERS: usize = 8;

const T0: u64 = 1_000_000;

fn open(h: &mut impl Harness) -> impl Store {
    h.open(Caps::unlimited(), T0)
}

/// Records are visible until `expires` (exclusive), then absent to every operation; a record
/// can be made again under an expired key.
pub fn records_expire(h: &mut impl Harness) {
    let s = open(h);
    s.put("code", "k", T0, &"v", T0 + 60).unwrap();
    assert_eq!(
        s.get::<String>("code", "k", T0 + 59).unwrap().as_deref(),
        Some("v")
    );
    assert_eq!(
        s.get::<String>("code", "k", T0 + 60).unwrap(),
        None,
        "expired at T0+60"
    );
    assert_eq!(s.take::<String>("code", "k", T0 + 61).unwrap(), None);
    let mut seen = Some(Record {
        value: 0.into(),
        expires: 0,
    });
    s.modify("code", "k", T0 + 61, &mut |r| {
        seen = r.clone();
        r
    })
    .unwrap();
    assert_eq!(seen, None, "modify sees an expired record as absent");
    s.put("code", "k", T0 + 61, &"w", T0 + 120).unwrap();
    assert_eq!(
        s.get::<String>("code", "k", T0 + 62).unwrap().as_deref(),
        Some("w")
    );
    // namespaces are separate
    assert_eq!(s.get::<String>("session", "k", T0 + 62).unwrap(), None);
}

/// `take` returns a record once (single-use codes, RFC 6749 §4.1.2); `delete` removes;
/// `update` keeps the expiry unless it sets one and answers what its closure returns.
pub fn take_is_single_use_and_update_keeps_expiry(h: &mut impl Harness) {
    let s = open(h);
    s.put("code", "c", T0, &"v", T0 + 60).unwrap();
    assert_eq!(
        s.take::<String>("code", "c", T0 + 1).unwrap().as_deref(),
        Some("v")
    );
    assert_eq!(s.take::<String>("code", "c", T0 + 2).unwrap(), None);
    s.put("session", "x", T0, &1u32, T0 + 60).unwrap();
    s.delete("session", "x", T0).unwrap();
    assert_eq!(s.get::<u32>("session", "x", T0).unwrap(), None);

    s.put("family", "f", T0, &7u32, T0 + 100).unwrap();
    let answer = s
        .update::<u32, &str>("family", "f", T0 + 1, |c| {
            (c.map(|(n, exp)| (n + 1, exp)), "seen")
        })
        .unwrap();
    assert_eq!(answer, "seen");
    assert_eq!(
        s.get::<u32>("family", "f", T0 + 99).unwrap(),
        Some(8),
        "expiry kept"
    );
    assert_eq!(s.get::<u32>("family", "f", T0 + 100).unwrap(), None);
    let n = s
        .update::<u32, u32>("ctr", "x", T0, |c| {
            let n = c.map(|(n, _)| n).unwrap_or(0) + 1;
            (Some((n, T0 + 10)), n)
        })
        .unwrap();
    assert_eq!(n, 1, "update creates");
}

/// RACERS threads take the same code at once: exactly one gets it (a code redeemed twice at
/// once succeeds once, RFC 6749 §4.1.2).
pub fn racing_takes_have_one_winner(h: &mut impl Harness) {
    let s = open(h);
    for round in 0..5 {
        let key = format!("code-{round}");
        s.put("code", &key, T0, &round, T0 + 60).unwrap();
        let barrier = Barrier::new(RACERS);
        let wins: usize = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..RACERS)
                .map(|_| {
                    sc.spawn(|| {
                        barrier.wait();
                        s.take::<u32>("code", &key, T0 + 1).unwrap().is_some()
                    })
                })
                .collect();
            hs.into_iter().map(|h| usize::from(h.join().unwrap())).sum()
        });
        assert_eq!(wins, 1, "round {round}: exactly one take wins");
    }
}

/// RACERS threads rotate the same refresh family from the same token at once: exactly one
/// rotation wins (RFC 9700 §4.14.2), and the family holds the winner's token.
pub fn racing_rotations_have_one_winner(h: &mut impl Harness) {
    let s = open(h);
    for round in 0..5 {
        let fam = format!("fam-{round}");
        s.put("family", &fam, T0, &"rt-0", T0 + 600).unwrap();
        let barrier = Barrier::new(RACERS);
        let winners: Vec<String> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..RACERS)
                .map(|i| {
                    let (s, fam, barrier) = (&s, &fam, &barrier);
                    sc.spawn(move || {
                        barrier.wait();
                        let mine = format!("rt-{}", i + 1);
                        let won = s
                            .update::<String, bool>("family", fam, T0 + 1, |f| match f {
                                Some((cur, exp)) if cur == "rt-0" => {
                                    (Some((mine.clone(), exp)), true)
                                }
                                other => (other, false),
                            })
                            .unwrap();
                        won.then_some(mine)
                    })
                })
                .collect();
            hs.into_iter().filter_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            winners.len(),
            1,
            "round {round}: one rotation wins: {winners:?}"
        );
        assert_eq!(
            s.get::<String>("family", &fam, T0 + 2).unwrap().as_ref(),
            winners.first()
        );
    }
}

/// RACERS threads each add to one counter many times: no update is lost.
pub fn racing_updates_lose_nothing(h: &mut impl Harness) {
    let s = open(h);
    const EACH: u32 = 20;
    std::thread::scope(|sc| {
        for _ in 0..RACERS {
            sc.spawn(|| {
                for _ in 0..EACH {
                    s.update::<u32, ()>("devfail", "k", T0, |c| {
                        (Some((c.map(|(n, _)| n).unwrap_or(0) + 1, T0 + 60)), ())
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(
        s.get::<u32>("devfail", "k", T0).unwrap(),
        Some(EACH * RACERS as u32)
    );
}

fn login_caps(login: usize) -> Caps {
    Caps {
        per_kind: HashMap::from([("login", login)]),
        other: 10,
    }
}

/// A kind at its cap refuses new records with `Full` and stores nothing; other kinds, changes
/// and removals go on; expired records make room again.
pub fn a_full_kind_refuses_new_records_only(h: &mut impl Harness) {
    let s = h.open(login_caps(3), 100);
    for i in 0..3 {
        s.put("login", &format!("l{i}"), 100, &i, 200).unwrap();
    }
    assert_eq!(
        s.put("login", "l3", 100, &3, 200),
        Err(StoreError::Full("login"))
    );
    assert_eq!(
        s.get::<i32>("login", "l3", 100).unwrap(),
        None,
        "nothing stored"
    );
    let mut ran = false;
    let full = s.modify("login", "l3", 100, &mut |_| {
        ran = true;
        Some(Record {
            value: 3.into(),
            expires: 200,
        })
    });
    assert_eq!(full, Err(StoreError::Full("login")));
    assert!(ran);
    // Other kinds are not affected, existing records can change and go.
    s.put("session", "s", 100, &1, 200).unwrap();
    s.put("login", "l0", 100, &7, 300).unwrap();
    assert_eq!(s.get::<i32>("login", "l0", 100).unwrap(), Some(7));
    assert_eq!(s.take::<i32>("login", "l1", 100).unwrap(), Some(1));
    s.put("login", "l4", 100, &4, 200).unwrap();
    assert_eq!(
        s.put("login", "l5", 150, &5, 400),
        Err(StoreError::Full("login"))
    );
    // At 250, l2 and l4 have expired (200): room for two.
    s.put("login", "l5", 250, &5, 400).unwrap();
    s.put("login", "l6", 250, &6, 400).unwrap();
    assert_eq!(
        s.put("login", "l7", 250, &7, 400),
        Err(StoreError::Full("login"))
    );
    assert_eq!(s.get::<i32>("login", "l5", 260).unwrap(), Some(5));
    // the `other` cap applies to unlisted kinds
    for i in 0..10 {
        s.put("return", &format!("r{i}"), 100, &i, 1000).unwrap();
    }
    assert_eq!(
        s.put("return", "r10", 100, &10, 1000),
        Err(StoreError::Full("return"))
    );
}

/// RACERS threads each create records in a kind with room for fewer: exactly the cap is
/// stored, never more.
pub fn racing_creations_stop_at_the_cap(h: &mut impl Harness) {
    const CAP: usize = 5;
    let s = h.open(login_caps(CAP), 100);
    let barrier = Barrier::new(RACERS);
    let stored: usize = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..RACERS)
            .map(|i| {
                let (s, barrier) = (&s, &barrier);
                sc.spawn(move || {
                    barrier.wait();
                    let mut ok = 0;
                    for j in 0..2 {
                        match s.put("login", &format!("t{i}-{j}"), 100, &i, 200) {
                            Ok(()) => ok += 1,
                            Err(e) => assert_eq!(e, StoreError::Full("login")),
                        }
                    }
                    ok
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(stored, CAP);
    let held = (0..RACERS)
        .flat_map(|i| (0..2).map(move |j| format!("t{i}-{j}")))
        .filter(|k| s.get::<usize>("login", k, 100).unwrap().is_some())
        .count();
    assert_eq!(held, CAP);
}

/// RFC 7009: a revoked token stays revoked until its expiry plus the verifier's 60 s leeway,
/// is listed by `revocations()` until then (what the SIP edge is told at start-up), and is
/// forgotten after.
pub fn rfc7009_revocations_last_until_expiry(h: &mut impl Harness) {
    let s = open(h);
    s.revoke("a", T0 + 100, T0).unwrap();
    s.revoke("b", T0 + 1000, T0).unwrap();
    assert!(s.is_revoked("a", T0 + 50).unwrap());
    assert!(!s.is_revoked("c", T0 + 50).unwrap());
    assert!(s.is_revoked("a", T0 + 160).unwrap(), "60 s leeway");
    assert!(!s.is_revoked("a", T0 + 161).unwrap());
    assert!(s.revoked_count() >= 2);
    let listed =
        |now| -> BTreeSet<(String, u64)> { s.revocations(now).unwrap().into_iter().collect() };
    assert_eq!(
        listed(T0 + 50),
        BTreeSet::from([("a".into(), T0 + 100), ("b".into(), T0 + 1000)])
    );
    assert_eq!(listed(T0 + 161), BTreeSet::from([("b".into(), T0 + 1000)]));
    // revoking again is harmless
    s.revoke("b", T0 + 1000, T0 + 200).unwrap();
    assert_eq!(listed(T0 + 200).len(), 1);
}

/// A restart keeps every record, its expiry, the caps' counts and the revocations.
pub fn a_restart_keeps_everything(h: &mut impl Harness) {
    let s = h.open(login_caps(2), T0);
    s.put("session", "s", T0, &"alice", T0 + 3600).unwrap();
    s.put("family", "f", T0, &"rt-1", T0 + 600).unwrap();
    s.put("code", "short", T0, &1, T0 + 10).unwrap();
    s.put("login", "l0", T0, &0, T0 + 600).unwrap();
    s.put("login", "l1", T0, &1, T0 + 600).unwrap();
    s.revoke("jti-1", T0 + 300, T0).unwrap();
    s.update::<String, ()>("family", "f", T0 + 1, |f| {
        (f.map(|(_, e)| ("rt-2".to_string(), e)), ())
    })
    .unwrap();
    let Some(s) = h.reopen(s, T0 + 20) else {
        return;
    };
    assert_eq!(
        s.get::<String>("session", "s", T0 + 20).unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(
        s.get::<String>("family", "f", T0 + 20).unwrap().as_deref(),
        Some("rt-2")
    );
    assert_eq!(
        s.get::<String>("family", "f", T0 + 600).unwrap(),
        None,
        "expiry kept"
    );
    assert_eq!(
        s.get::<u32>("code", "short", T0 + 20).unwrap(),
        None,
        "expired"
    );
    assert!(s.is_revoked("jti-1", T0 + 20).unwrap());
    assert_eq!(
        s.revocations(T0 + 20).unwrap(),
        vec![("jti-1".into(), T0 + 300)]
    );
    assert_eq!(
        s.put("login", "l2", T0 + 20, &2, T0 + 600),
        Err(StoreError::Full("login")),
        "the cap's count survives the restart"
    );
    // and what was taken stays taken
    assert_eq!(
        s.take::<String>("session", "s", T0 + 21)
            .unwrap()
            .as_deref(),
        Some("alice")
    );
    let s = h.reopen(s, T0 + 22).unwrap();
    assert_eq!(s.get::<String>("session", "s", T0 + 22).unwrap(), None);
}

/// Runs every case of the suite as its own `#[test]`, with a fresh harness from `$harness`
/// for each.
#[macro_export]
macro_rules! store_suite {
    ($harness:expr) => {
        $crate::store_suite!(@cases $harness;
            records_expire,
            take_is_single_use_and_update_keeps_expiry,
            racing_takes_have_one_winner,
            racing_rotations_have_one_winner,
            racing_updates_lose_nothing,
            a_full_kind_refuses_new_records_only,
            racing_creations_stop_at_the_cap,
            rfc7009_revocations_last_until_expiry,
            a_restart_keeps_everything,
        );
    };
    (@cases $harness:expr; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::suite::$case(&mut $harness);
            }
        )+
    };
}
