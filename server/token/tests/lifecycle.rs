//! Token lifecycle across key changes and repeated use: our key rotation and retirement,
//! external issuers' JWK Sets with refetch on an unknown `kid`, and the verification cache.

mod common;

use common::*;
use imsgw_token::{KeyRing, TokenError};

// ---------------------------------------------------------------- rotation

#[test]
fn old_key_verifies_after_rotation_and_is_unknown_after_retirement() {
    let mut s = setup();
    let old_token = mint(&s);
    let old_kid = s.ring.signing_kid().to_owned();
    assert!(s.verifier.verify(NOW, &old_token).is_ok());

    let t1 = NOW + 60;
    let new_kid = KeyRing::rotate(s.dir.path(), t1).expect("rotate");
    let ring = KeyRing::load_or_create(s.dir.path(), t1).expect("reload");
    s.minter.set_keys(&ring);
    s.verifier.set_our_keys(&ring);
    assert!(
        s.verifier.verify(t1, &old_token).is_ok(),
        "old key still verifies"
    );
    let new_token = s.minter.mint(t1, request()).expect("mint").0;
    let header = jsonwebtoken::decode_header(new_token.expose()).expect("header");
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
    assert!(s.verifier.verify(t1, new_token.expose()).is_ok());
    assert_eq!(s.verifier.cache_len(), 2);

    let t2 = t1 + LIFETIME + 61;
    assert_eq!(
        KeyRing::retire(s.dir.path(), t2, LIFETIME).expect("retire"),
        [old_kid]
    );
    let ring = KeyRing::load_or_create(s.dir.path(), t2).expect("reload");
    s.verifier.set_our_keys(&ring);
    assert_eq!(
        s.verifier.cache_len(),
        1,
        "old key's cached token dropped with the key"
    );
    // Even ignoring expiry, the old token can no longer verify: its key is gone.
    assert_eq!(
        s.verifier.verify(NOW, &old_token),
        Err(TokenError::UnknownKid { issuer: None })
    );
}

// ---------------------------------------------------------------- external issuers

#[test]
fn external_issuer_es256_and_rs256_via_jwks_and_refetch_on_rotation() {
    let mut s = setup();
    let ec = new_ec_pair();
    let rsa = Rsa::new();
    let ec_token = es256(&ec, "ec-1", &ext_payload());
    let rs_token = rsa.sign("rsa-1", &ext_payload());
    let unknown = TokenError::UnknownKid {
        issuer: Some(EXT.into()),
    };

    assert_eq!(
        s.verifier.verify(NOW, &ec_token),
        Err(unknown.clone()),
        "no JWKS yet"
    );
    s.verifier
        .set_external_jwks(EXT, &jwk_set(vec![ec_jwk(&ec, "ec-1"), rsa.jwk("rsa-1")]))
        .expect("jwks");
    let v = s.verifier.verify(NOW, &ec_token).expect("es256");
    assert_eq!(
        (v.claims.iss.as_str(), v.claims.aud.as_str()),
        (EXT, "sip-ext")
    );
    assert!(s.verifier.verify(NOW, &rs_token).is_ok(), "rs256");

    // The issuer rotates: a token with a new kid arrives before we know the key.
    let ec2 = new_ec_pair();
    let new_token = es256(&ec2, "ec-2", &ext_payload());
    assert_eq!(s.verifier.verify(NOW + 100, &new_token), Err(unknown));
    assert!(s.verifier.should_refetch(EXT, NOW + 100));
    assert!(!s.verifier.should_refetch(EXT, NOW + 101));
    assert!(!s.verifier.should_refetch(EXT, NOW + 129));
    assert!(
        !s.verifier.should_refetch(ISS, NOW + 100),
        "our issuer has nothing to fetch"
    );
    s.verifier
        .set_external_jwks(EXT, &jwk_set(vec![ec_jwk(&ec2, "ec-2")]))
        .expect("jwks");
    assert!(s.verifier.verify(NOW + 101, &new_token).is_ok());
    assert!(
        s.verifier.should_refetch(EXT, NOW + 130),
        "allowed again after 30 s"
    );
    // The old external key left the set, and its cached tokens with it.
    assert_eq!(
        s.verifier.verify(NOW + 102, &ec_token),
        Err(TokenError::UnknownKid {
            issuer: Some(EXT.into())
        })
    );
}

#[test]
fn external_key_cannot_sign_for_our_issuer_and_vice_versa() {
    let mut s = setup();
    let ec = new_ec_pair();
    s.verifier
        .set_external_jwks(EXT, &jwk_set(vec![ec_jwk(&ec, "ec-1")]))
        .expect("jwks");
    let as_ours = es256(&ec, "ec-1", &payload());
    assert_eq!(
        s.verifier.verify(NOW, &as_ours),
        Err(TokenError::UnknownKid { issuer: None })
    );
    let ours_as_ext = es256(&s.our_pair, s.ring.signing_kid(), &ext_payload());
    assert_eq!(
        s.verifier.verify(NOW, &ours_as_ext),
        Err(TokenError::UnknownKid {
            issuer: Some(EXT.into())
        })
    );
    assert!(
        s.verifier
            .set_external_jwks("https://nobody", &jwk_set(vec![ec_jwk(&ec, "x")]))
            .is_err()
    );
}

#[test]
fn external_token_without_impi_defaults_to_impu_user_at_host() {
    let mut s = setup();
    let ec = new_ec_pair();
    s.verifier
        .set_external_jwks(EXT, &jwk_set(vec![ec_jwk(&ec, "ec-1")]))
        .expect("jwks");
    let mut p = ext_payload();
    p.as_object_mut().expect("obj").remove("impi");
    let token = es256(&ec, "ec-1", &p);
    assert_eq!(
        s.verifier.verify(NOW, &token).expect("ok").claims.impi,
        "alice@ims.example"
    );
}

// ---------------------------------------------------------------- cache

#[test]
fn second_verify_hits_the_cache_and_expiry_is_still_enforced() {
    let mut s = setup();
    let token = mint(&s);
    s.verifier.verify(NOW, &token).expect("first");
    assert_eq!((s.verifier.cache_len(), s.verifier.cache_hits()), (1, 0));
    let again = s.verifier.verify(NOW + 10, &token).expect("second");
    assert_eq!(s.verifier.cache_hits(), 1);
    assert_eq!(again.claims.impu.as_str(), "sip:alice@ims.example");
    assert_eq!(
        s.verifier.verify(NOW + LIFETIME + 61, &token),
        Err(TokenError::Expired)
    );
    assert_eq!(s.verifier.cache_len(), 0, "expired entry dropped");
}

#[test]
fn cached_token_is_still_not_valid_before_its_time() {
    let mut s = setup();
    let token = mint(&s);
    s.verifier.verify(NOW, &token).expect("first");
    assert_eq!(
        s.verifier.verify(NOW - 3600, &token),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(s.verifier.cache_hits(), 1);
}

#[test]
fn cache_stays_within_capacity() {
    let mut cfg = config();
    cfg.cache_capacity = 5;
    let mut s = setup_with(cfg);
    for i in 0..20u64 {
        let mut r = request();
        r.ttl = Some(60 + i);
        let token = s.minter.mint(NOW, r).expect("mint").0;
        s.verifier.verify(NOW, token.expose()).expect("ok");
        assert!(s.verifier.cache_len() <= 5);
    }
    assert_eq!(s.verifier.cache_len(), 5);
}

#[test]
fn refused_tokens_are_not_cached() {
    let mut s = setup();
    let token = es256(&new_ec_pair(), s.ring.signing_kid(), &payload());
    for _ in 0..3 {
        assert_eq!(
            s.verifier.verify(NOW, &token),
            Err(TokenError::BadSignature)
        );
    }
    assert_eq!((s.verifier.cache_len(), s.verifier.cache_hits()), (0, 0));
}

// ---------------------------------------------------------------- verification elsewhere

#[test]
fn a_job_run_on_another_thread_settles_into_the_cache() {
    use imsgw_token::Lookup;
    let mut s = setup();
    let token = mint(&s);
    let Lookup::Uncached(job) = s.verifier.lookup(NOW, &token) else {
        panic!("a new token is not in the cache");
    };
    let t = token.clone();
    let verdict = std::thread::spawn(move || job.run(NOW, &t))
        .join()
        .expect("thread");
    let got = s.verifier.settle(NOW, verdict).expect("same keys");
    assert!(got.is_ok(), "{got:?}");
    // Now a cache hit, with the same claims as verify gives.
    let Lookup::Done(Ok(v)) = s.verifier.lookup(NOW + 1, &token) else {
        panic!("settled into the cache");
    };
    assert_eq!(Ok(v), s.verifier.verify(NOW + 1, &token));
    assert_eq!(s.verifier.cache_len(), 1);
}

#[test]
fn a_refused_job_is_not_cached_and_a_verdict_of_replaced_keys_is_not_taken() {
    use imsgw_token::Lookup;
    let mut s = setup();
    let token = mint(&s);
    let forged = format!("{}AAAA", &token[..token.len() - 4]);
    let Lookup::Uncached(job) = s.verifier.lookup(NOW, &forged) else {
        panic!("uncached");
    };
    assert_eq!(
        s.verifier.settle(NOW, job.run(NOW, &forged)),
        Some(Err(TokenError::BadSignature))
    );
    assert!(matches!(
        s.verifier.lookup(NOW, &forged),
        Lookup::Uncached(_)
    ));
    // The key is retired while a job is out: its verdict (made with the old keys) is not
    // taken, and looking again finds the key gone.
    let Lookup::Uncached(job) = s.verifier.lookup(NOW, &token) else {
        panic!("uncached");
    };
    let t2 = NOW + 60 + LIFETIME + 61;
    KeyRing::rotate(s.dir.path(), NOW + 60).expect("rotate");
    KeyRing::retire(s.dir.path(), t2, LIFETIME).expect("retire");
    let ring = KeyRing::load_or_create(s.dir.path(), t2).expect("reload");
    s.verifier.set_our_keys(&ring);
    assert_eq!(s.verifier.settle(NOW, job.run(NOW, &token)), None);
    assert_eq!(s.verifier.cache_len(), 0);
    assert_eq!(
        s.verifier.verify(NOW, &token),
        Err(TokenError::UnknownKid { issuer: None })
    );
    // Too large is answered without a job.
    let huge = "a".repeat(64 * 1024);
    assert!(matches!(
        s.verifier.lookup(NOW, &huge),
        Lookup::Done(Err(TokenError::TooLarge))
    ));
}

#[test]
fn a_good_verdict_is_judged_by_the_time_it_is_settled() {
    use imsgw_token::Lookup;
    let mut s = setup();
    let token = mint(&s);
    let Lookup::Uncached(job) = s.verifier.lookup(NOW, &token) else {
        panic!("uncached");
    };
    // Checked while good; taken after exp + leeway (60 s).
    let verdict = job.run(NOW, &token);
    assert_eq!(
        s.verifier.settle(NOW + LIFETIME + 61, verdict),
        Some(Err(TokenError::Expired))
    );
    assert_eq!(s.verifier.cache_len(), 0);
}

#[test]
fn a_job_run_on_another_token_than_its_own_does_not_vouch_for_its_own() {
    use imsgw_token::Lookup;
    let mut s = setup();
    let good = mint(&s);
    let forged = "eyJhbGciOiJFUzI1NiJ9.e30.AAAA";
    let Lookup::Uncached(job) = s.verifier.lookup(NOW, forged) else {
        panic!("uncached");
    };
    // A driver that mixes up its jobs and tokens: the verdict is the good token's.
    let got = s.verifier.settle(NOW, job.run(NOW, &good));
    assert!(matches!(got, Some(Err(_))), "{got:?}");
    assert_eq!(s.verifier.cache_len(), 0);
    assert!(s.verifier.verify(NOW, forged).is_err());
}
