//! Adversarial tests of token verification: a good token first, then every way an attacker (or
//! a broken client) might present a bad one, each refused with its specific error. Tokens are
//! hand-built with aws-lc-rs where the crate would refuse to make them. All keys, including the
//! RSA one, are generated in the test; nothing here is a real secret.

mod common;

use common::*;
use imsgw_sip::ImpuError;
use imsgw_token::{Claims, KeyRing, Secret, TokenError, parse_bearer};
use serde_json::{Value, json};

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::KeyPair;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::os::unix::fs::PermissionsExt;

// ---------------------------------------------------------------- the good token

#[test]
fn minted_token_verifies_with_exact_claims() {
    let mut s = setup();
    let (token, minted) = s.minter.mint(NOW, request()).expect("mint");
    let v = s
        .verifier
        .verify(NOW + 1, token.expose())
        .expect("verifies");
    assert_eq!(v.claims, minted);
    let expected = Claims {
        iss: ISS.into(),
        aud: AUD.into(),
        sub: "web-user-42".into(),
        // A literal canonical IMPU: cannot fail.
        impu: "sip:alice@ims.example".parse().expect("canonical"),
        impi: "alice@ims.example".into(),
        scope: "sip openid".into(),
        iat: NOW,
        nbf: NOW,
        exp: NOW + LIFETIME,
        jti: minted.jti.clone(),
        client_id: Some("wic".into()),
        cnf_jkt: None,
    };
    assert_eq!(v.claims, expected);
    assert!(v.claims.has_scope("sip"));
    assert_ne!(v.token_hash, [0u8; 32]);
}

#[test]
fn both_bearer_syntaxes_carry_a_token_that_verifies_rfc8898_2_2_ts24371() {
    let mut s = setup();
    let token = mint(&s);
    for header in [
        format!("Bearer {token}"),
        format!("bearer access_token=\"{token}\", realm=\"x\""),
    ] {
        let t = parse_bearer(&header).expect("parsed");
        assert_eq!(t, token);
        assert!(s.verifier.verify(NOW, t).is_ok());
    }
}

// ---------------------------------------------------------------- structure

#[test]
fn garbage_is_malformed() {
    let mut s = setup();
    for g in [
        "",
        "x",
        "not a jwt",
        "a.b.c",
        "....",
        "eyJ.eyJ.",
        "{}.{}.{}",
        "é.é.é",
    ] {
        assert!(
            matches!(s.verifier.verify(NOW, g), Err(TokenError::Malformed(_))),
            "{g:?}"
        );
    }
    let not_json = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode("hello"),
        b64json(&payload())
    );
    assert!(matches!(
        s.verifier.verify(NOW, &not_json),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn truncated_token_is_refused() {
    let mut s = setup();
    let token = mint(&s);
    let short_sig = &token[..token.len() - 8];
    assert_eq!(
        s.verifier.verify(NOW, short_sig),
        Err(TokenError::BadSignature)
    );
    let no_sig = &token[..token.rfind('.').expect("dot")];
    assert!(matches!(
        s.verifier.verify(NOW, no_sig),
        Err(TokenError::Malformed(_))
    ));
    let half = &token[..token.len() / 2];
    assert!(matches!(
        s.verifier.verify(NOW, half),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn tampered_payload_with_original_signature_is_bad_signature() {
    let mut s = setup();
    let token = mint(&s);
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
    claims["impu"] = json!("sip:mallory@ims.example");
    let forged = format!("{}.{}.{}", parts[0], b64json(&claims), parts[2]);
    assert_eq!(
        s.verifier.verify(NOW, &forged),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn crit_header_is_refused_rfc7515_4_1_11() {
    let mut s = setup();
    let header = json!({"alg": "ES256", "kid": s.ring.signing_kid(), "crit": ["exp"], "exp": 1});
    let input = signing_input(&header, &payload());
    let sig = s
        .our_pair
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("sign");
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    assert_eq!(
        s.verifier.verify(NOW, &token),
        Err(TokenError::Malformed("unsupported crit header"))
    );
}

#[test]
fn token_over_8_kib_is_too_large_before_parsing() {
    let mut s = setup();
    let mut p = payload();
    p["pad"] = json!("x".repeat(8192));
    let big = es256(&s.our_pair, s.ring.signing_kid(), &p);
    assert!(big.len() > 8192);
    assert_eq!(s.verifier.verify(NOW, &big), Err(TokenError::TooLarge));
    assert_eq!(
        s.verifier.verify(NOW, &"A".repeat(8193)),
        Err(TokenError::TooLarge)
    );
    assert!(matches!(
        s.verifier.verify(NOW, &"A".repeat(8192)),
        Err(TokenError::Malformed(_))
    ));
}

// ---------------------------------------------------------------- keys and algorithms

#[test]
fn another_p256_key_claiming_our_kid_is_bad_signature() {
    let mut s = setup();
    let token = es256(&new_ec_pair(), s.ring.signing_kid(), &payload());
    assert_eq!(
        s.verifier.verify(NOW, &token),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn unknown_or_missing_kid_is_unknown_kid() {
    let mut s = setup();
    let token = es256(&s.our_pair, "20200101T000000Z-deadbeef", &payload());
    assert_eq!(
        s.verifier.verify(NOW, &token),
        Err(TokenError::UnknownKid { issuer: None })
    );
    let input = signing_input(&json!({"alg": "ES256"}), &payload());
    let sig = s
        .our_pair
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("sign");
    let no_kid = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    assert_eq!(
        s.verifier.verify(NOW, &no_kid),
        Err(TokenError::UnknownKid { issuer: None })
    );
}

#[test]
fn alg_none_is_never_allowed_rfc8725_3_1() {
    let mut s = setup();
    for alg in ["none", "None", "NONE", ""] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": s.ring.signing_kid()});
        for sig in ["", "c2ln"] {
            let token = format!("{}.{sig}", signing_input(&header, &payload()));
            let err = s.verifier.verify(NOW, &token).expect_err("refused");
            assert!(
                matches!(err, TokenError::AlgorithmNotAllowed(_)),
                "{alg}: {err:?}"
            );
        }
    }
    let ext = format!(
        "{}.",
        signing_input(&json!({"alg": "none"}), &ext_payload())
    );
    assert_eq!(
        s.verifier.verify(NOW, &ext),
        Err(TokenError::AlgorithmNotAllowed("none".into()))
    );
}

/// The public key in every form an attacker might feed to HMAC as the "secret".
fn public_key_forms(s: &Setup) -> Vec<(&'static str, Vec<u8>)> {
    let spki: PublicKeyX509Der = s.our_pair.public_key().as_der().expect("spki");
    let b64 = STANDARD.encode(spki.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    );
    let jwk = s.ring.jwks()["keys"][0].clone();
    vec![
        ("pem", pem.into_bytes()),
        ("der", spki.as_ref().to_vec()),
        ("raw point", s.our_pair.public_key().as_ref().to_vec()),
        ("jwk", serde_json::to_vec(&jwk).expect("json")),
        ("jwks", serde_json::to_vec(&s.ring.jwks()).expect("json")),
    ]
}

#[test]
fn hs256_with_our_public_key_as_secret_is_refused_rfc8725_2_1() {
    let mut s = setup();
    for (form, secret) in public_key_forms(&s) {
        for kid in [Some(s.ring.signing_kid().to_owned()), None] {
            let token = hs256(&secret, kid.as_deref(), &payload());
            assert_eq!(
                s.verifier.verify(NOW, &token),
                Err(TokenError::AlgorithmNotAllowed("HS256".into())),
                "{form}"
            );
        }
    }
    // An external issuer never gets HMAC either, even if its JWKS held an `oct` key.
    let ext = hs256(
        b"0123456789abcdef0123456789abcdef",
        Some("k"),
        &ext_payload(),
    );
    assert_eq!(
        s.verifier.verify(NOW, &ext),
        Err(TokenError::AlgorithmNotAllowed("HS256".into()))
    );
}

#[test]
fn with_hmac_configured_only_the_configured_secret_verifies() {
    let secret = b"a 32-byte test secret, not real!".to_vec();
    let mut cfg = config();
    cfg.hmac_secret = Some(Secret::new(secret.clone()));
    let mut s = setup_with(cfg);
    for (form, public) in public_key_forms(&s) {
        let token = hs256(&public, Some(s.ring.signing_kid()), &payload());
        assert_eq!(
            s.verifier.verify(NOW, &token),
            Err(TokenError::BadSignature),
            "{form}"
        );
    }
    let good = hs256(&secret, None, &payload());
    assert_eq!(
        s.verifier.verify(NOW, &good).expect("hs256").claims.jti,
        "hand-made"
    );
}

#[test]
fn rs256_from_a_foreign_rsa_key_is_not_allowed_for_our_issuer() {
    let mut s = setup();
    let rsa = Rsa::new();
    for kid in [s.ring.signing_kid().to_owned(), "rsa-1".to_owned()] {
        let token = rsa.sign(&kid, &payload());
        assert_eq!(
            s.verifier.verify(NOW, &token),
            Err(TokenError::AlgorithmNotAllowed("RS256".into()))
        );
    }
}

// ---------------------------------------------------------------- claims

#[test]
fn expiry_uses_the_leeway_rfc7519_4_1_4() {
    let mut s = setup();
    let exp = NOW + LIFETIME;
    let token = mint(&s);
    assert!(s.verifier.verify(exp + 59, &token).is_ok(), "within leeway");
    let token2 = mint(&s);
    assert!(
        s.verifier.verify(exp + 60, &token2).is_ok(),
        "at the edge of leeway"
    );
    let token3 = mint(&s);
    assert_eq!(
        s.verifier.verify(exp + 61, &token3),
        Err(TokenError::Expired)
    );
}

#[test]
fn nbf_in_the_future_is_not_yet_valid_rfc7519_4_1_5() {
    let mut s = setup();
    let mut p = payload();
    p["nbf"] = json!(NOW + 3600);
    p["exp"] = json!(NOW + 7200);
    let token = es256(&s.our_pair, s.ring.signing_kid(), &p);
    assert_eq!(s.verifier.verify(NOW, &token), Err(TokenError::NotYetValid));
    assert!(
        s.verifier.verify(NOW + 3600 - 60, &token).is_ok(),
        "valid once within leeway"
    );
}

#[test]
fn wrong_issuer_and_wrong_audience() {
    let mut s = setup();
    let mut p = payload();
    p["iss"] = json!("https://evil.example");
    let token = es256(&s.our_pair, s.ring.signing_kid(), &p);
    assert_eq!(s.verifier.verify(NOW, &token), Err(TokenError::WrongIssuer));

    let mut p = payload();
    p["aud"] = json!("sip:other.example");
    let token = es256(&s.our_pair, s.ring.signing_kid(), &p);
    assert_eq!(
        s.verifier.verify(NOW, &token),
        Err(TokenError::WrongAudience)
    );

    let mut p = payload();
    p["aud"] = json!("sip-ext"); // the external issuer's audience is not ours
    let token = es256(&s.our_pair, s.ring.signing_kid(), &p);
    assert_eq!(
        s.verifier.verify(NOW, &token),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn required_scope_missing_or_wrong_is_insufficient_scope_rfc6750_3_1() {
    let mut cfg = config();
    cfg.required_scope = Some("sip".into());
    let mut s = setup_with(cfg);
    let mut p = payload();
    p.as_object_mut().expect("obj").remove("scope");
    let missing = es256(&s.our_pair, s.ring.signing_kid(), &p);
    let err = s.verifier.verify(NOW, &missing).expect_err("refused");
    assert_eq!(err, TokenError::InsufficientScope);
    assert_eq!(err.oauth_error(), "insufficient_scope");
    p["scope"] = json!("openid sipx");
    let wrong = es256(&s.our_pair, s.ring.signing_kid(), &p);
    assert_eq!(
        s.verifier.verify(NOW, &wrong),
        Err(TokenError::InsufficientScope)
    );
    p["scope"] = json!("openid sip");
    let right = es256(&s.our_pair, s.ring.signing_kid(), &p);
    assert!(s.verifier.verify(NOW, &right).is_ok());
}

#[test]
fn missing_exp_or_impu_is_refused() {
    let mut s = setup();
    for claim in ["exp", "impu", "iss"] {
        let mut p = payload();
        p.as_object_mut().expect("obj").remove(claim);
        let token = es256(&s.our_pair, s.ring.signing_kid(), &p);
        assert_eq!(
            s.verifier.verify(NOW, &token),
            Err(TokenError::MissingClaim(claim)),
            "{claim}"
        );
    }
}

#[test]
fn signed_token_with_non_canonical_impu_is_refused_rfc3261_19_1_4() {
    let mut s = setup();
    for (impu, why) in [
        ("sip:alice:x@ims.example", ImpuError::Password),
        ("sip:alice:@ims.example", ImpuError::Password),
        ("sip:alice@ims.example;user=phone", ImpuError::Params),
        ("sip:alice@ims.example?subject=x", ImpuError::Headers),
    ] {
        let mut p = payload();
        p["impu"] = json!(impu);
        let token = es256(&s.our_pair, s.ring.signing_kid(), &p);
        let e = s.verifier.verify(NOW, &token).expect_err(impu);
        assert_eq!(e, TokenError::BadImpu(why), "{impu}");
        assert_eq!(e.oauth_error(), "invalid_token");
        assert!(!e.to_string().contains("alice"), "{e}");
    }
}

// ---------------------------------------------------------------- secrecy

#[test]
fn no_debug_or_error_output_contains_key_or_token_text() {
    let mut s = setup();
    let (token, _) = s.minter.mint(NOW, request()).expect("mint");
    let verified = s.verifier.verify(NOW, token.expose()).expect("ok");
    let pem = std::fs::read_to_string(s.dir.path().join(format!("{}.pem", s.ring.signing_kid())))
        .expect("read");
    let pem_body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let sig = token.expose().rsplit('.').next().expect("sig").to_owned();
    let mut cfg = config();
    cfg.hmac_secret = Some(Secret::new(b"0123456789abcdef0123456789abcdef".to_vec()));

    let mut shown = vec![
        format!("{token:?}"),
        format!("{:?}", s.ring),
        format!("{:?}", s.minter),
        format!("{:?}", s.verifier),
        format!("{verified:?}"),
        format!("{cfg:?}"),
    ];
    let bad = format!("{}x", token.expose());
    for t in [bad.as_str(), "a.b.c", &"x".repeat(9000)] {
        let e = s.verifier.verify(NOW, t).expect_err("refused");
        shown.push(format!("{e} {e:?}"));
    }
    std::fs::set_permissions(
        s.dir.path().join(format!("{}.pem", s.ring.signing_kid())),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let e = KeyRing::load_or_create(s.dir.path(), NOW).expect_err("0644");
    shown.push(format!("{e} {e:?}"));

    for text in &shown {
        assert!(!text.contains(token.expose()), "{text}");
        assert!(!text.contains(&sig), "{text}");
        assert!(!text.contains("0123456789abcdef"), "{text}");
        for line in &pem_body {
            assert!(!text.contains(line), "{text}");
        }
    }
}

/// An ES256 token with the header `typ` given (or none).
fn es256_typ(
    pair: &aws_lc_rs::signature::EcdsaKeyPair,
    kid: &str,
    typ: Option<&str>,
    payload: &Value,
) -> String {
    let mut header = json!({"alg": "ES256", "kid": kid});
    if let Some(t) = typ {
        header["typ"] = json!(t);
    }
    let input = signing_input(&header, payload);
    let sig = pair
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

#[test]
fn rfc8725_3_11_an_issuer_can_require_explicit_typing() {
    let mut cfg = imsgw_token::VerifierConfig::new(ISS, AUD);
    let mut ext = imsgw_token::ExternalIssuer::new(EXT, "sip-ext");
    ext.require_typ = Some("at+jwt".into());
    cfg.external.push(ext);
    let mut s = setup_with(cfg);
    let pair = new_ec_pair();
    s.verifier
        .set_external_jwks(EXT, &jwk_set(vec![ec_jwk(&pair, "x1")]))
        .expect("jwks");
    for (typ, ok) in [
        (Some("at+jwt"), true),
        (Some("AT+JWT"), true),
        (Some("application/at+jwt"), true),
        (Some("JWT"), false),
        (Some("id_token+jwt"), false),
        (Some("application/jwt"), false),
        (None, false),
    ] {
        let t = es256_typ(&pair, "x1", typ, &ext_payload());
        let got = s.verifier.verify(NOW, &t);
        if ok {
            assert!(got.is_ok(), "{typ:?}: {got:?}");
        } else {
            assert_eq!(got.err(), Some(TokenError::WrongType), "{typ:?}");
        }
    }
}

// ---------------------------------------------------------------- sender-constrained tokens

#[test]
fn a_bound_token_verifies_and_names_its_key_rfc9449_6_1() {
    let mut s = setup();
    let key = imsgw_token::pop::ProofKey::generate().expect("key");
    let (token, minted) = s
        .minter
        .mint_bound(NOW, request(), imsgw_token::new_jti(), Some(key.jkt()))
        .expect("mint");
    let v = s
        .verifier
        .verify(NOW + 1, token.expose())
        .expect("a bound token is not refused by the verifier");
    assert_eq!(v.claims, minted);
    assert!(key.jkt().binds(v.claims.cnf_jkt.as_deref()));
    // Answered again from the cache: still bound.
    let again = s.verifier.verify(NOW + 2, token.expose()).expect("cached");
    assert_eq!(again.claims.cnf_jkt, v.claims.cnf_jkt);
    let plain = s.verifier.verify(NOW, &mint(&s)).expect("bearer");
    assert_eq!(plain.claims.cnf_jkt, None);
}

#[test]
fn a_cnf_without_jkt_is_refused_not_taken_for_bearer_rfc7800_3_1() {
    let mut s = setup();
    let kid = s.ring.signing_kid().to_owned();
    let with_cnf = |cnf: Value| {
        let mut p = payload();
        p["cnf"] = cnf;
        es256(&s.our_pair, &kid, &p)
    };
    // An RFC 8705 mTLS binding: nothing here can check it.
    let mtls = with_cnf(json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}));
    assert_eq!(
        s.verifier.verify(NOW, &mtls),
        Err(TokenError::UnsupportedConfirmation)
    );
    for bad in [
        json!("jkt"),
        json!({"jkt": 5}),
        json!({"jkt": ""}),
        json!([1]),
    ] {
        let t = with_cnf(bad.clone());
        assert_eq!(
            s.verifier.verify(NOW, &t),
            Err(TokenError::BadClaim("cnf")),
            "{bad}"
        );
    }
    let good = with_cnf(json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", "x": 1}));
    let v = s.verifier.verify(NOW, &good).expect("valid");
    assert_eq!(
        v.claims.cnf_jkt.as_deref(),
        Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
    );
}
