//! Tests of `verify_proof`: good proofs of both kinds first (one made by WebCrypto in Node.js),
//! then every way a proof is refused, each with its own error. Keys are generated here.

use super::*;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;

const NOW: u64 = 1_700_000_000;
const HTU: &str = "https://gw.example/oauth/token";
const TOKEN: &str = "eyJ.access.token";
const NONCE: &str = "n-0S6_WzA2Mj";
const RURI: &str = "sip:ims.example";
const CALL_ID: &str = "a84b4c76e66710@pc33.example";

/// A test key whose header the test writes itself (for proofs `ProofKey` would never make).
struct Raw {
    pair: EcdsaKeyPair,
    jwk: Value,
}

impl Raw {
    fn new() -> Raw {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen");
        let p = pair.public_key().as_ref().to_vec();
        let jwk = json!({"kty":"EC","crv":"P-256",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..])});
        Raw { pair, jwk }
    }

    fn header(&self, typ: &str) -> Value {
        json!({"typ": typ, "alg": "ES256", "jwk": self.jwk})
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

fn http_claims() -> Value {
    json!({"jti":"j-1","htm":"POST","htu":HTU,"iat":NOW})
}

fn sip_claims() -> Value {
    json!({"jti":"j-2","iat":NOW,"nonce":NONCE,"method":"REGISTER","ruri":RURI,
           "call_id":CALL_ID,"cseq":7,"ath":access_token_hash(TOKEN)})
}

fn http() -> Expected<'static> {
    Expected::Http(HttpRequest {
        method: "POST",
        uri: HTU,
        access_token: None,
        nonce: None,
    })
}

fn sip() -> Expected<'static> {
    Expected::Sip(SipRequest {
        method: "REGISTER",
        ruri: RURI,
        call_id: CALL_ID,
        cseq: 7,
        nonce: NONCE,
        access_token: TOKEN,
    })
}

fn check(proof: &str, expected: &Expected<'_>) -> Result<Proof, PopError> {
    verify_proof(proof, expected, IatWindow::default(), NOW)
}

/// The claims with `name` set to `v`, or removed when `v` is null.
fn with(mut claims: Value, name: &str, v: Value) -> Value {
    let m = claims.as_object_mut().expect("object");
    if v.is_null() {
        m.remove(name);
    } else {
        m.insert(name.to_owned(), v);
    }
    claims
}

// ------------------------------------------------------------------ good proofs

#[test]
fn a_dpop_proof_gives_the_thumbprint_of_its_key_rfc9449_4_3() {
    let key = ProofKey::generate().expect("key");
    let proof = key.sign(DPOP_TYP, &http_claims()).expect("sign");
    let p = check(&proof, &http()).expect("valid");
    assert_eq!(&p.jkt, key.jkt());
    assert_eq!(p.jkt, jwk_thumbprint(key.public_jwk()).expect("jkt"));
    assert_eq!((p.jti.as_str(), p.iat), ("j-1", NOW));
    assert_eq!(p.replayable_until(IatWindow::default()), NOW + 60);
}

#[test]
fn a_sip_proof_gives_the_thumbprint_of_its_key() {
    let key = ProofKey::generate().expect("key");
    let proof = key.sign(SIP_POP_TYP, &sip_claims()).expect("sign");
    let p = check(&proof, &sip()).expect("valid");
    assert_eq!(&p.jkt, key.jkt());
    assert_eq!(p.jti, "j-2");
}

#[test]
fn a_proof_made_by_webcrypto_verifies_rfc9449_4_2() {
    // Made with Node.js 20's WebCrypto (crypto.subtle.generateKey ECDSA P-256, sign with
    // SHA-256: the IEEE P1363 r||s JWS wants), its thumbprint computed there with
    // crypto.subtle.digest over {"crv","kty","x","y"}. The claims are RFC 9449 Figure 4's.
    const PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwiY3J2IjoiUC0yNTYiLCJ4IjoiYUxZUWRPTzZlcXRWdEFLN3pMVHI0ZzJBT2RyUVhoRU9nRkg1dUh5dHdKSSIsInkiOiJNUDIxV1RpRVYtT0hPVnhEVHVsanFsR0J5MDZDOTlmVlhKOUxmZWhicTRnIn19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.BSQFZNrMuBF3S_eKmV_2EzHe2hOvQ_v0tliRiJd-WvowLwDQ0LZi1H98J0MM0olNPZtBVldrF7lVRXJGFBAZUQ";
    let expected = Expected::Http(HttpRequest {
        method: "POST",
        uri: "https://server.example.com/token",
        access_token: None,
        nonce: None,
    });
    let p = verify_proof(PROOF, &expected, IatWindow::default(), 1_562_262_616).expect("valid");
    assert_eq!(
        p.jkt.as_str(),
        "HLP3kUKWCjOMujPt9snM0VTEw5xKmPZYTk3NAosxRr0"
    );
    assert_eq!(p.jti, "e1j3V_bKic8-LAEB");
}

#[test]
fn htu_is_compared_without_query_and_fragment_rfc9449_4_3_check_9() {
    let key = ProofKey::generate().expect("key");
    for (in_proof, request) in [
        (HTU, "https://gw.example/oauth/token?x=1"),
        ("https://gw.example/oauth/token#f", HTU),
        ("HTTPS://GW.example:443/oauth/token", HTU),
        ("http://gw.example:80", "http://gw.example/"),
    ] {
        let proof = key
            .sign(DPOP_TYP, &with(http_claims(), "htu", json!(in_proof)))
            .expect("sign");
        let expected = Expected::Http(HttpRequest {
            method: "POST",
            uri: request,
            access_token: None,
            nonce: None,
        });
        assert!(check(&proof, &expected).is_ok(), "{in_proof} vs {request}");
    }
    for other in [
        "https://gw.example/oauth/Token",
        "https://gw.example/oauth/token/",
        "http://gw.example/oauth/token",
        "https://gw.example:8443/oauth/token",
        "https://evil.example/oauth/token",
        "gw.example/oauth/token",
        "https://user@gw.example/oauth/token",
    ] {
        let proof = key
            .sign(DPOP_TYP, &with(http_claims(), "htu", json!(other)))
            .expect("sign");
        assert_eq!(check(&proof, &http()), Err(PopError::WrongHtu), "{other}");
    }
}

#[test]
fn ath_and_nonce_are_checked_when_the_caller_has_them_rfc9449_4_3_checks_10_12() {
    let key = ProofKey::generate().expect("key");
    let with_both = Expected::Http(HttpRequest {
        method: "GET",
        uri: "https://gw.example/api",
        access_token: Some(TOKEN),
        nonce: Some(NONCE),
    });
    let good = json!({"jti":"j","htm":"GET","htu":"https://gw.example/api","iat":NOW,
                      "ath":access_token_hash(TOKEN),"nonce":NONCE});
    let sign = |c: &Value| key.sign(DPOP_TYP, c).expect("sign");
    assert!(check(&sign(&good), &with_both).is_ok());
    for (name, value, err) in [
        ("ath", json!(access_token_hash("other")), PopError::WrongAth),
        ("ath", Value::Null, PopError::MissingClaim("ath")),
        ("ath", json!(1), PopError::BadClaim("ath")),
        ("nonce", json!("stale"), PopError::WrongNonce),
        ("nonce", Value::Null, PopError::MissingClaim("nonce")),
    ] {
        let c = with(good.clone(), name, value);
        assert_eq!(check(&sign(&c), &with_both), Err(err), "{name}");
    }
    // Without a token or a nonce to compare, they are not looked at (the token endpoint).
    let c = with(http_claims(), "ath", json!("whatever"));
    assert!(check(&sign(&with(c, "nonce", json!(5))), &http()).is_ok());
}

// ------------------------------------------------------------------ the header

#[test]
fn typ_must_be_exactly_the_expected_one_rfc8725_3_11() {
    let key = ProofKey::generate().expect("key");
    let dpop = key.sign(DPOP_TYP, &sip_claims()).expect("sign");
    assert_eq!(
        check(&dpop, &sip()),
        Err(PopError::WrongType {
            expected: SIP_POP_TYP
        }),
        "a DPoP proof is no SIP proof"
    );
    let sip_proof = key.sign(SIP_POP_TYP, &http_claims()).expect("sign");
    assert_eq!(
        check(&sip_proof, &http()),
        Err(PopError::WrongType { expected: DPOP_TYP })
    );
    for typ in ["DPoP+JWT", "at+jwt", "JWT", ""] {
        let p = key.sign(typ, &http_claims()).expect("sign");
        assert!(
            matches!(check(&p, &http()), Err(PopError::WrongType { .. })),
            "{typ}"
        );
    }
    let raw = Raw::new();
    let mut h = raw.header(DPOP_TYP);
    h.as_object_mut().expect("obj").remove("typ");
    assert!(matches!(
        check(&raw.sign(&h, &http_claims()), &http()),
        Err(PopError::WrongType { .. })
    ));
}

#[test]
fn alg_none_is_refused_rfc8725_3_1() {
    let raw = Raw::new();
    let mut h = raw.header(DPOP_TYP);
    h["alg"] = json!("none");
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(h.to_string()),
        URL_SAFE_NO_PAD.encode(http_claims().to_string())
    );
    assert_eq!(check(&unsigned, &http()), Err(PopError::AlgNone));
    h["alg"] = json!("None");
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(h.to_string()),
        URL_SAFE_NO_PAD.encode(http_claims().to_string())
    );
    assert_eq!(check(&unsigned, &http()), Err(PopError::AlgNone));
}

#[test]
fn hs256_keyed_with_the_jwk_itself_is_refused_rfc9449_4_3_check_5() {
    // The classic confusion: the "public key" used as an HMAC secret, which anyone can do.
    let raw = Raw::new();
    let mut h = raw.header(DPOP_TYP);
    h["alg"] = json!("HS256");
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(h.to_string()),
        URL_SAFE_NO_PAD.encode(http_claims().to_string())
    );
    let key =
        aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, raw.jwk.to_string().as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert_eq!(check(&forged, &http()), Err(PopError::AlgSymmetric));
}

#[test]
fn only_es256_is_supported() {
    let raw = Raw::new();
    for alg in ["RS256", "ES384", "EdDSA", "PS256", "es256"] {
        let mut h = raw.header(DPOP_TYP);
        h["alg"] = json!(alg);
        assert_eq!(
            check(&raw.sign(&h, &http_claims()), &http()),
            Err(PopError::AlgNotSupported(alg.into())),
            "{alg}"
        );
    }
    let mut h = raw.header(DPOP_TYP);
    h["alg"] = json!(256);
    assert!(matches!(
        check(&raw.sign(&h, &http_claims()), &http()),
        Err(PopError::Malformed(_))
    ));
}

#[test]
fn a_jwk_with_its_private_part_is_refused_rfc9449_4_3_check_7() {
    let raw = Raw::new();
    let mut h = raw.header(DPOP_TYP);
    h["jwk"]["d"] = json!("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
    assert_eq!(
        check(&raw.sign(&h, &http_claims()), &http()),
        Err(PopError::PrivateKeyInJwk)
    );
}

#[test]
fn an_rsa_or_other_curve_jwk_is_refused() {
    let raw = Raw::new();
    let mut h = raw.header(DPOP_TYP);
    h["jwk"] =
        json!({"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4","e":"AQAB"});
    assert_eq!(
        check(&raw.sign(&h, &http_claims()), &http()),
        Err(PopError::KeyNotEc)
    );
    let mut h = raw.header(DPOP_TYP);
    h["jwk"]["crv"] = json!("secp256k1");
    assert_eq!(
        check(&raw.sign(&h, &http_claims()), &http()),
        Err(PopError::CurveNotP256)
    );
    let mut h = raw.header(DPOP_TYP);
    h.as_object_mut().expect("obj").remove("jwk");
    assert_eq!(
        check(&raw.sign(&h, &http_claims()), &http()),
        Err(PopError::MissingJwk)
    );
    let mut h = raw.header(DPOP_TYP);
    h["jwk"] = json!("not a key");
    assert!(matches!(
        check(&raw.sign(&h, &http_claims()), &http()),
        Err(PopError::BadJwk(_))
    ));
}

#[test]
fn crit_is_refused_rfc7515_4_1_11() {
    let raw = Raw::new();
    let mut h = raw.header(DPOP_TYP);
    h["crit"] = json!(["exp"]);
    assert_eq!(
        check(&raw.sign(&h, &http_claims()), &http()),
        Err(PopError::UnsupportedCrit)
    );
}

#[test]
fn a_bad_signature_is_refused() {
    let raw = Raw::new();
    let good = raw.sign(&raw.header(DPOP_TYP), &http_claims());
    assert!(check(&good, &http()).is_ok());
    // Another key's signature over the same header (naming the first key).
    let other = Raw::new();
    let stolen_header = other.sign(&raw.header(DPOP_TYP), &http_claims());
    assert_eq!(check(&stolen_header, &http()), Err(PopError::BadSignature));
    // A claim changed after signing.
    let (head, rest) = good.split_once('.').expect("dot");
    let (_, sig) = rest.split_once('.').expect("dot");
    let changed = with(http_claims(), "htm", json!("GET"));
    let tampered = format!(
        "{head}.{}.{sig}",
        URL_SAFE_NO_PAD.encode(changed.to_string())
    );
    assert_eq!(check(&tampered, &http()), Err(PopError::BadSignature));
    // A truncated or empty signature.
    let short = &good[..good.len() - 4];
    assert_eq!(check(short, &http()), Err(PopError::BadSignature));
    let empty = format!("{}.", &good[..good.rfind('.').expect("dot")]);
    assert_eq!(check(&empty, &http()), Err(PopError::BadSignature));
}

#[test]
fn malformed_and_oversized_proofs_are_refused_rfc7515_7_1() {
    for bad in ["", "a", "a.b", "a.b.c.d", ".b.c", "a..c", "a+.b.c"] {
        assert!(
            matches!(check(bad, &http()), Err(PopError::Malformed(_))),
            "{bad:?}"
        );
    }
    let not_json = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode("x"),
        URL_SAFE_NO_PAD.encode("{}")
    );
    assert!(matches!(
        check(&not_json, &http()),
        Err(PopError::Malformed(_))
    ));
    let raw = Raw::new();
    // The claims in field order as an array: a derived `Deserialize` would read them.
    let claims_array = raw.sign(&raw.header(DPOP_TYP), &json!(["j-1", NOW, "POST", HTU]));
    assert!(matches!(
        check(&claims_array, &http()),
        Err(PopError::Malformed(_))
    ));
    let header_array = raw.sign(&json!([DPOP_TYP, "ES256", raw.jwk]), &http_claims());
    assert!(matches!(
        check(&header_array, &http()),
        Err(PopError::Malformed(_))
    ));
    let huge = with(http_claims(), "pad", json!("x".repeat(MAX_PROOF_BYTES)));
    assert_eq!(
        check(&raw.sign(&raw.header(DPOP_TYP), &huge), &http()),
        Err(PopError::TooLarge)
    );
}

#[test]
fn a_repeated_header_member_or_claim_is_malformed() {
    let raw = Raw::new();
    let header = format!(
        r#"{{"typ":"dpop+jwt","alg":"ES256","alg":"none","jwk":{}}}"#,
        raw.jwk
    );
    let claims = r#"{"jti":"a","htm":"POST","htm":"GET","htu":"https://gw.example/oauth/token","iat":1700000000}"#;
    let sign = |h: &str, c: &str| {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(h),
            URL_SAFE_NO_PAD.encode(c)
        );
        let sig = raw
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    };
    let good_header = raw.header(DPOP_TYP).to_string();
    assert!(matches!(
        check(&sign(&header, &http_claims().to_string()), &http()),
        Err(PopError::Malformed(_))
    ));
    assert!(matches!(
        check(&sign(&good_header, claims), &http()),
        Err(PopError::Malformed(_))
    ));
}

// ------------------------------------------------------------------ the claims

#[test]
fn iat_must_be_within_the_window_rfc9449_4_3_check_11() {
    let key = ProofKey::generate().expect("key");
    let at = |iat: u64, window: IatWindow| {
        let p = key
            .sign(DPOP_TYP, &with(http_claims(), "iat", json!(iat)))
            .expect("sign");
        verify_proof(&p, &http(), window, NOW).map(|p| p.iat)
    };
    let w = IatWindow::default();
    assert_eq!(at(NOW - 60, w), Ok(NOW - 60));
    assert_eq!(at(NOW - 61, w), Err(PopError::TooOld));
    assert_eq!(at(NOW + 60, w), Ok(NOW + 60));
    assert_eq!(at(NOW + 61, w), Err(PopError::IssuedInFuture));
    assert_eq!(at(0, w), Err(PopError::TooOld));
    let tight = IatWindow {
        past_secs: 5,
        future_secs: 0,
    };
    assert_eq!(at(NOW - 6, tight), Err(PopError::TooOld));
    assert_eq!(at(NOW + 1, tight), Err(PopError::IssuedInFuture));
    assert_eq!(at(NOW, tight), Ok(NOW));
    let frac = key
        .sign(
            DPOP_TYP,
            &with(http_claims(), "iat", json!(NOW as f64 + 0.5)),
        )
        .expect("sign");
    assert_eq!(check(&frac, &http()).map(|p| p.iat), Ok(NOW));
}

#[test]
fn wrong_htm_or_htu_is_refused_rfc9449_4_3_checks_8_9() {
    let key = ProofKey::generate().expect("key");
    for (name, value, err) in [
        ("htm", json!("GET"), PopError::WrongHtm),
        ("htm", json!("post"), PopError::WrongHtm),
        (
            "htu",
            json!("https://gw.example/oauth/revoke"),
            PopError::WrongHtu,
        ),
    ] {
        let p = key
            .sign(DPOP_TYP, &with(http_claims(), name, value))
            .expect("sign");
        assert_eq!(check(&p, &http()), Err(err), "{name}");
    }
}

#[test]
fn every_sip_claim_must_match_the_request() {
    let key = ProofKey::generate().expect("key");
    for (name, value, err) in [
        ("method", json!("INVITE"), PopError::WrongMethod),
        ("method", json!("register"), PopError::WrongMethod),
        ("ruri", json!("sip:other.example"), PopError::WrongRuri),
        ("ruri", json!("SIP:ims.example"), PopError::WrongRuri),
        (
            "call_id",
            json!("another@pc33.example"),
            PopError::WrongCallId,
        ),
        ("cseq", json!(8), PopError::WrongCseq),
        ("nonce", json!("an-old-nonce"), PopError::WrongNonce),
        (
            "ath",
            json!(access_token_hash("another token")),
            PopError::WrongAth,
        ),
    ] {
        let p = key
            .sign(SIP_POP_TYP, &with(sip_claims(), name, value))
            .expect("sign");
        assert_eq!(check(&p, &sip()), Err(err), "{name}");
    }
}

#[test]
fn missing_claims_are_named() {
    let key = ProofKey::generate().expect("key");
    for name in ["jti", "iat", "htm", "htu"] {
        let p = key
            .sign(DPOP_TYP, &with(http_claims(), name, Value::Null))
            .expect("sign");
        assert_eq!(
            check(&p, &http()),
            Err(PopError::MissingClaim(name)),
            "{name}"
        );
    }
    for name in [
        "jti", "iat", "method", "ruri", "call_id", "cseq", "nonce", "ath",
    ] {
        let p = key
            .sign(SIP_POP_TYP, &with(sip_claims(), name, Value::Null))
            .expect("sign");
        assert_eq!(
            check(&p, &sip()),
            Err(PopError::MissingClaim(name)),
            "{name}"
        );
    }
}

#[test]
fn claims_of_the_wrong_type_or_size_are_named() {
    let key = ProofKey::generate().expect("key");
    for (name, value) in [
        ("jti", json!(1)),
        ("jti", json!("")),
        ("jti", json!("j".repeat(MAX_JTI_BYTES + 1))),
        ("iat", json!("now")),
        ("iat", json!(-1)),
        ("method", json!(["REGISTER"])),
        ("cseq", json!("7")),
        ("cseq", json!(7.5)),
        ("cseq", json!(-7)),
        ("cseq", json!(1u64 << 31)),
    ] {
        let p = key
            .sign(SIP_POP_TYP, &with(sip_claims(), name, value))
            .expect("sign");
        assert_eq!(check(&p, &sip()), Err(PopError::BadClaim(name)), "{name}");
    }
    let p = key
        .sign(DPOP_TYP, &with(http_claims(), "htu", json!(true)))
        .expect("sign");
    assert_eq!(check(&p, &http()), Err(PopError::BadClaim("htu")));
}

#[test]
fn refusals_and_debug_show_no_secret_or_claim_value() {
    let key = ProofKey::generate().expect("key");
    let claims = with(sip_claims(), "nonce", json!("SECRET-NONCE-VALUE"));
    let p = key.sign(SIP_POP_TYP, &claims).expect("sign");
    let err = check(&p, &sip()).expect_err("wrong nonce");
    let shown = format!("{err} {err:?} {:?}", sip());
    for secret in ["SECRET-NONCE-VALUE", NONCE, TOKEN] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let http_with_token = Expected::Http(HttpRequest {
        method: "GET",
        uri: HTU,
        access_token: Some(TOKEN),
        nonce: Some(NONCE),
    });
    let shown = format!("{http_with_token:?}");
    assert!(!shown.contains(TOKEN) && !shown.contains(NONCE), "{shown}");
    let shown = format!("{key:?}");
    assert!(shown.contains(key.jkt().as_str()), "{shown}");
    assert!(
        !shown.contains(key.public_jwk()["x"].as_str().unwrap_or("-")),
        "{shown}"
    );
}
