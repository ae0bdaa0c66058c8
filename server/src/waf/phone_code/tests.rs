//! Phone codes against a real WAF on a memory store, on virtual time: the edge's Digest check
//! is a closure comparing the candidate with the password the test phone "typed".

use std::cell::{Cell, RefCell};
use std::net::IpAddr;

use super::*;
use crate::waf::store::Caps;
use crate::waf::tests_router::{PHONE, T, person, waf_with};
use crate::waf::unix_now;

fn waf() -> T {
    waf_with(Caps::unlimited(), PHONE)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn cfg(t: &T) -> PhoneCodeConfig {
    t.waf
        .phone_code
        .clone()
        .unwrap_or_else(|| panic!("phone codes are on"))
}

/// A new code for `user` made in session `session`.
fn code_for(t: &T, user: &str, session: &str, now: u64) -> String {
    match make(&t.waf, &cfg(t), session, &person(user), now) {
        Ok(Made::Code(c)) => c.expose_str().unwrap_or_default().to_string(),
        Ok(Made::Full(n)) => panic!("full at {n}"),
        Err(e) => panic!("{e}"),
    }
}

/// A phone of `user` typing `password`, from `source`.
fn phone_signs_in(
    t: &T,
    user: &str,
    phone: &str,
    source: &str,
    password: &str,
    now: u64,
) -> Result<PhoneGrant, PhoneCodeError> {
    let impu = person(user).impu;
    let req = PhoneSignIn {
        impu: &impu,
        phone,
        source: ip(source),
    };
    sign_in(&t.waf, &req, now, &|candidate| candidate == password)
}

fn active(t: &T, g: &PhoneGrant, now: u64) -> bool {
    t.waf
        .check(now, g.access_token.expose())
        .unwrap_or_else(|e| panic!("{e}"))
        .is_some()
}

#[test]
fn codes_have_their_length_and_uniform_digits() {
    for digits in 6..=12 {
        let c = new_code(digits);
        let c = c.expose_str().unwrap_or_default();
        assert_eq!(c.len(), digits as usize, "{digits}");
        assert!(c.bytes().all(|b| b.is_ascii_digit()), "{digits}");
    }
    // Each position of 10 000 eight-digit codes, chi-square against uniform (9 degrees of
    // freedom: above 45 happens by chance about once in 10^6), leading zeros included.
    let mut counts = [[0u32; 10]; 8];
    for _ in 0..10_000 {
        let c = new_code(8);
        for (i, b) in c.expose_str().unwrap_or_default().bytes().enumerate() {
            counts[i][usize::from(b - b'0')] += 1;
        }
    }
    for (i, row) in counts.iter().enumerate() {
        let chi2: f64 = row
            .iter()
            .map(|&n| (f64::from(n) - 1000.0).powi(2) / 1000.0)
            .sum();
        assert!(chi2 < 45.0, "position {i}: {row:?} (chi2 {chi2})");
    }
}

#[test]
fn codes_are_shown_in_groups_of_at_most_four() {
    for (code, shown) in [
        ("123456", "123 456"),
        ("1234567", "1234 567"),
        ("12345678", "1234 5678"),
        ("123456789", "123 456 789"),
        ("1234567890", "1234 567 890"),
        ("123456789012", "1234 5678 9012"),
    ] {
        assert_eq!(page::grouped(code), shown);
    }
}

#[test]
fn first_use_binds_the_code_then_it_is_that_phones_app_password() {
    let t = waf();
    let now = unix_now();
    let code = code_for(&t, "alice", "s1", now);
    let first = phone_signs_in(&t, "alice", "phone-a", "192.0.2.1", &code, now)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(first.first_use);
    assert!(active(&t, &first, now));
    let claims = t.waf.check(now, first.access_token.expose());
    let claims = claims.ok().flatten().unwrap_or_else(|| panic!("inactive"));
    assert_eq!(claims.impu.as_str(), "sip:alice@ims.example");
    assert_eq!(claims.client_id.as_deref(), Some("sip-phone"));
    // Long after the code's own 10 minutes, the same phone signs in again with it.
    let later = now + 3600;
    let again = phone_signs_in(&t, "alice", "phone-a", "192.0.2.1", &code, later)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!again.first_use);
    assert_eq!(again.family, first.family);
    assert_ne!(again.access_token.expose(), first.access_token.expose());
    assert!(active(&t, &again, later));
    // Never for a second phone, and that counts as a failure.
    for _ in 0..5 {
        assert!(matches!(
            phone_signs_in(&t, "alice", "phone-b", "192.0.2.2", &code, later),
            Err(PhoneCodeError::BadCredentials)
        ));
    }
    // The IMPU is now locked for new phones (phone-b hears so), but not for phone-a's own
    // app password: a stranger's failures must not take its registration away.
    assert!(matches!(
        phone_signs_in(&t, "alice", "phone-b", "192.0.2.2", &code, later),
        Err(PhoneCodeError::TooManyAttempts { .. })
    ));
    assert!(phone_signs_in(&t, "alice", "phone-a", "192.0.2.1", &code, later).is_ok());
}

#[test]
fn two_phones_racing_with_one_code_only_one_wins() {
    let t = waf();
    let now = unix_now();
    let code = code_for(&t, "bob", "s1", now);
    let impu = person("bob").impu;
    let ran = Cell::new(false);
    let second = RefCell::new(None);
    // Phone B signs in while phone A is between finding the code and binding it.
    let check = |candidate: &str| {
        if !ran.replace(true) {
            let b = PhoneSignIn {
                impu: &impu,
                phone: "phone-b",
                source: ip("192.0.2.2"),
            };
            *second.borrow_mut() = Some(sign_in(&t.waf, &b, now, &|c| c == code));
        }
        candidate == code
    };
    let a = PhoneSignIn {
        impu: &impu,
        phone: "phone-a",
        source: ip("192.0.2.1"),
    };
    let first = sign_in(&t.waf, &a, now, &check);
    let b = second
        .take()
        .unwrap_or_else(|| panic!("B never ran"))
        .unwrap_or_else(|e| panic!("B: {e}"));
    assert!(b.first_use);
    assert!(
        matches!(first, Err(PhoneCodeError::BadCredentials)),
        "{first:?}"
    );
    // The code is B's now, and only B's.
    assert!(phone_signs_in(&t, "bob", "phone-b", "192.0.2.2", &code, now).is_ok());
    assert!(phone_signs_in(&t, "bob", "phone-a", "192.0.2.1", &code, now).is_err());
}

#[test]
fn an_unused_code_expires_and_then_fails_like_a_wrong_one() {
    let t = waf();
    let now = unix_now();
    let code = code_for(&t, "carol", "s1", now);
    let ttl = cfg(&t).ttl_secs;
    assert!(matches!(
        phone_signs_in(&t, "carol", "p", "192.0.2.1", &code, now + ttl),
        Err(PhoneCodeError::BadCredentials)
    ));
    let code = code_for(&t, "carol", "s1", now);
    assert!(phone_signs_in(&t, "carol", "p", "192.0.2.1", &code, now + ttl - 1).is_ok());
}

#[test]
fn rfc8628_5_1_wrong_codes_are_limited_per_impu_whatever_the_address() {
    let t = waf();
    let now = unix_now();
    let code = code_for(&t, "dave", "s1", now);
    for i in 0..5 {
        let from = format!("192.0.2.{i}");
        assert!(matches!(
            phone_signs_in(&t, "dave", "p", &from, "00000000", now),
            Err(PhoneCodeError::BadCredentials)
        ));
    }
    // Past the limit, even the right code is refused, and the code is not even tried.
    let impu = person("dave").impu;
    let tried = Cell::new(0);
    let req = PhoneSignIn {
        impu: &impu,
        phone: "p",
        source: ip("198.51.100.1"),
    };
    let r = sign_in(&t.waf, &req, now + 10, &|c| {
        tried.set(tried.get() + 1);
        c == code
    });
    assert!(
        matches!(r, Err(PhoneCodeError::TooManyAttempts { retry_after: 590 })),
        "{r:?}"
    );
    assert_eq!(tried.get(), 0);
    // Another IMPU is not affected; after the window the IMPU may try again.
    let other = code_for(&t, "erin", "s2", now);
    assert!(phone_signs_in(&t, "erin", "p", "192.0.2.9", &other, now).is_ok());
    let window = cfg(&t).failure_window_secs;
    let code = code_for(&t, "dave", "s1", now + window);
    let g = phone_signs_in(&t, "dave", "p", "198.51.100.1", &code, now + window);
    assert!(g.is_ok(), "{g:?}");
}

#[test]
fn rfc8628_5_1_wrong_codes_are_limited_per_address_and_a_success_clears_only_itself() {
    let t = waf();
    let now = unix_now();
    let mine = code_for(&t, "mallory", "s1", now);
    // 19 guesses at other people's IMPUs (none holds codes: counted per address only).
    for i in 0..19 {
        assert!(matches!(
            phone_signs_in(
                &t,
                &format!("victim{i}"),
                "p",
                "203.0.113.7",
                "12345678",
                now
            ),
            Err(PhoneCodeError::BadCredentials)
        ));
    }
    // Signing in with one's own code does not wipe the address's count...
    assert!(phone_signs_in(&t, "mallory", "p", "203.0.113.7", &mine, now).is_ok());
    assert!(phone_signs_in(&t, "victim", "p", "203.0.113.7", "1", now).is_err());
    // ... so the 21st attempt is refused, whatever IMPU it names.
    assert!(matches!(
        phone_signs_in(&t, "mallory", "p", "203.0.113.7", &mine, now),
        Err(PhoneCodeError::TooManyAttempts { .. })
    ));
    // An IPv6 /64 is one address; another address is not affected.
    assert!(phone_signs_in(&t, "mallory", "p", "198.51.100.7", &mine, now).is_ok());
    for i in 0..20 {
        let from = format!("2001:db8:0:1::{i:x}");
        let _ = phone_signs_in(&t, "victim", "p", &from, "1", now);
    }
    assert!(matches!(
        phone_signs_in(&t, "mallory", "p", "2001:db8:0:1::ffff", &mine, now),
        Err(PhoneCodeError::TooManyAttempts { .. })
    ));
}

#[test]
fn rfc7009_a_revoked_app_password_is_revoked_for_its_phone() {
    let t = waf();
    let now = unix_now();
    let code = code_for(&t, "frank", "s1", now);
    let g = phone_signs_in(&t, "frank", "desk", "192.0.2.1", &code, now)
        .unwrap_or_else(|e| panic!("{e}"));
    // The family is revoked elsewhere (as RFC 7009 revocation of its refresh token does).
    token::revoke_family(&t.waf, &g.family, now).unwrap_or_else(|e| panic!("{e}"));
    assert!(!active(&t, &g, now), "its access tokens go with it");
    for _ in 0..10 {
        // Not counted as guesses: the phone proves it knows the code.
        assert!(matches!(
            phone_signs_in(&t, "frank", "desk", "192.0.2.1", &code, now + 1),
            Err(PhoneCodeError::Revoked)
        ));
    }
    assert!(matches!(
        phone_signs_in(&t, "frank", "other", "192.0.2.1", &code, now + 1),
        Err(PhoneCodeError::BadCredentials)
    ));
}

#[test]
fn revoking_from_the_page_revokes_one_code_and_its_family() {
    let t = waf();
    let now = unix_now();
    let bound = code_for(&t, "gina", "s1", now);
    let pending = code_for(&t, "gina", "s1", now);
    let g = phone_signs_in(&t, "gina", "desk", "192.0.2.1", &bound, now)
        .unwrap_or_else(|e| panic!("{e}"));
    let held = t
        .waf
        .store
        .get::<Held>("phonecode", &impu_key(&person("gina").impu), now)
        .ok()
        .flatten()
        .unwrap_or_default();
    let id = held
        .entries
        .iter()
        .find(|e| matches!(e.state, State::Bound { .. }))
        .map(|e| e.id.clone())
        .unwrap_or_default();
    // Another person cannot revoke it, whatever the id.
    let n = revoke_where(&t.waf, &person("hank"), now, &|e| e.id == id);
    assert_eq!(n.ok(), Some(0));
    let n = revoke_where(&t.waf, &person("gina"), now, &|e| e.id == id);
    assert_eq!(n.ok(), Some(1));
    assert!(!active(&t, &g, now));
    assert!(matches!(
        phone_signs_in(&t, "gina", "desk", "192.0.2.1", &bound, now),
        Err(PhoneCodeError::Revoked)
    ));
    assert!(phone_signs_in(&t, "gina", "desk2", "192.0.2.1", &pending, now).is_ok());
}

#[test]
fn signing_out_revokes_what_the_session_made_and_nothing_else() {
    let t = waf();
    let now = unix_now();
    let bound = code_for(&t, "ivan", "s1", now);
    let pending = code_for(&t, "ivan", "s1", now);
    let elsewhere = code_for(&t, "ivan", "s2", now);
    let g = phone_signs_in(&t, "ivan", "desk", "192.0.2.1", &bound, now)
        .unwrap_or_else(|e| panic!("{e}"));
    end_session(&t.waf, "s1", &person("ivan"), now).unwrap_or_else(|e| panic!("{e}"));
    assert!(!active(&t, &g, now));
    assert!(matches!(
        phone_signs_in(&t, "ivan", "desk", "192.0.2.1", &bound, now),
        Err(PhoneCodeError::Revoked)
    ));
    assert!(matches!(
        phone_signs_in(&t, "ivan", "desk2", "192.0.2.1", &pending, now),
        Err(PhoneCodeError::BadCredentials)
    ));
    assert!(phone_signs_in(&t, "ivan", "desk3", "192.0.2.1", &elsewhere, now).is_ok());
}

#[test]
fn an_impu_holds_at_most_per_person_codes() {
    let t = waf();
    let now = unix_now();
    let per = cfg(&t).per_person;
    let codes: Vec<String> = (0..per).map(|_| code_for(&t, "judy", "s1", now)).collect();
    let mut sorted = codes.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), per, "codes of one IMPU differ");
    assert!(matches!(
        make(&t.waf, &cfg(&t), "s1", &person("judy"), now),
        Ok(Made::Full(5))
    ));
    // Another IMPU has its own; an expired code frees its place.
    code_for(&t, "kim", "s1", now);
    code_for(&t, "judy", "s1", now + cfg(&t).ttl_secs);
}

#[test]
fn the_store_caps_the_impus_holding_codes() {
    let mut per_kind = std::collections::HashMap::new();
    per_kind.insert("phonecode", 1);
    let t = waf_with(
        Caps {
            per_kind,
            other: usize::MAX,
        },
        PHONE,
    );
    let now = unix_now();
    code_for(&t, "lee", "s1", now);
    assert!(matches!(
        make(&t.waf, &cfg(&t), "s2", &person("max"), now),
        Err(StoreError::Full("phonecode"))
    ));
}

#[test]
fn no_code_shows_in_debug_or_in_the_store() {
    let t = waf();
    let now = unix_now();
    let code = code_for(&t, "nina", "s1", now);
    let ikey = impu_key(&person("nina").impu);
    let raw = t
        .waf
        .store
        .get::<serde_json::Value>("phonecode", &ikey, now)
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_string();
    assert!(!raw.contains(&code), "{raw}");
    let held = t
        .waf
        .store
        .get::<Held>("phonecode", &ikey, now)
        .ok()
        .flatten();
    let shown = format!("{held:?}");
    assert!(
        shown.contains("Sealed(<redacted>)") && !shown.contains(&code),
        "{shown}"
    );
    let g =
        phone_signs_in(&t, "nina", "p", "192.0.2.1", &code, now).unwrap_or_else(|e| panic!("{e}"));
    let shown = format!("{g:?}");
    assert!(!shown.contains(g.access_token.expose()), "{shown}");
    assert!(
        !format!("{:?}", new_code(8))
            .chars()
            .any(|c| c.is_ascii_digit())
    );
}

#[test]
fn without_the_section_phone_codes_are_off() {
    let t = waf_with(Caps::unlimited(), "");
    let r = phone_signs_in(&t, "olga", "p", "192.0.2.1", "12345678", unix_now());
    assert!(matches!(r, Err(PhoneCodeError::Disabled)), "{r:?}");
}

#[test]
fn an_oversize_phone_identity_is_refused() {
    let t = waf();
    let now = unix_now();
    let code = code_for(&t, "pat", "s1", now);
    let long = "x".repeat(PHONE_MAX + 1);
    assert!(matches!(
        phone_signs_in(&t, "pat", &long, "192.0.2.1", &code, now),
        Err(PhoneCodeError::BadCredentials)
    ));
    assert!(phone_signs_in(&t, "pat", &"x".repeat(PHONE_MAX), "192.0.2.1", &code, now).is_ok());
}

#[test]
fn a_strangers_wrong_guesses_do_not_lock_out_a_bound_phone_and_its_id_buys_few_guesses() {
    let t = waf();
    let now = unix_now();
    let code = code_for(&t, "gina", "s1", now);
    assert!(phone_signs_in(&t, "gina", "desk", "192.0.2.1", &code, now).is_ok());
    // A stranger locks the IMPU out with wrong guesses from many addresses.
    for i in 0..5 {
        let from = format!("198.51.100.{i}");
        let r = phone_signs_in(&t, "gina", "evil", &from, "00000000", now);
        assert!(matches!(r, Err(PhoneCodeError::BadCredentials)), "{r:?}");
    }
    let r = phone_signs_in(&t, "gina", "evil", "198.51.100.9", "00000000", now);
    assert!(
        matches!(r, Err(PhoneCodeError::TooManyAttempts { .. })),
        "{r:?}"
    );
    // gina's desk phone still re-registers with its app password.
    let g = phone_signs_in(&t, "gina", "desk", "192.0.2.1", &code, now + 1);
    assert!(g.is_ok(), "{g:?}");
    // A stranger who knows the desk phone's id gets the same small number of tries at its
    // password, then that is locked too; the real password is then refused as well.
    for i in 0..5 {
        let from = format!("203.0.113.{i}");
        let r = phone_signs_in(&t, "gina", "desk", &from, "11111111", now + 2);
        assert!(
            matches!(r, Err(PhoneCodeError::TooManyAttempts { .. })),
            "{r:?}"
        );
    }
    let r = phone_signs_in(&t, "gina", "desk", "192.0.2.1", &code, now + 3);
    assert!(
        matches!(r, Err(PhoneCodeError::TooManyAttempts { .. })),
        "{r:?}"
    );
}

// ---- review 13b ---------------------------------------------------------------------------

#[test]
fn review13b_a_strangers_wrong_guesses_do_not_lock_out_a_bound_phone() {
    let t = waf();
    let now = unix_now();
    let code = code_for(&t, "frank", "s1", now);
    // frank's desk phone binds the code: it is its app password from now on.
    let desk = "urn:uuid:0f0e0d0c-0b0a-4908-8706-050403020100";
    assert!(phone_signs_in(&t, "frank", desk, "192.0.2.50", &code, now).is_ok());
    // A stranger who knows frank's number (his IMPU is his phone number: no secret) but not
    // the code sends 5 wrong answers from one address, and again every window.
    for _ in 0..5 {
        let _ = phone_signs_in(&t, "frank", "x", "203.0.113.66", "00000000", now + 1);
    }
    // The desk phone signs in again with its own app password, from where it always does (the
    // edge asks for every re-REGISTER with credentials, every token life, every new flow).
    // Refusing it lets anyone keep any phone unregistered for 5 datagrams per 10 minutes.
    let r = phone_signs_in(&t, "frank", desk, "192.0.2.50", &code, now + 2);
    assert!(r.is_ok(), "{r:?}");
}
