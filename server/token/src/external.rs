//! Turning an external issuer's JWK Set (RFC 7517 §5), fetched by a driver, into the keys its
//! tokens are checked with. Only public signature keys are taken: symmetric (`oct`) keys are
//! always skipped (never HMAC with a key a third party also holds), as are keys marked for
//! encryption, keys without a `kid`, and keys fit for none of the issuer's allowed algorithms.

use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Why a JWK Set was not installed. The previous keys of the issuer stay in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The issuer is not configured as external.
    #[error("issuer is not a configured external issuer")]
    UnknownIssuer,
    /// No key in the set is usable (see the module docs for what is skipped).
    #[error("JWK Set has no usable signature key for the issuer's algorithms")]
    NoUsableKeys,
}

/// A public key of an external issuer and the algorithms it may verify.
#[derive(Clone)]
pub(crate) struct ExternalKey {
    pub(crate) key: DecodingKey,
    pub(crate) algorithms: Vec<Algorithm>,
}

/// The usable keys of `jwks` by `kid`; a repeated `kid` keeps its first key.
pub(crate) fn keys_from_jwks(
    jwks: &JwkSet,
    allowed: &[Algorithm],
) -> Result<HashMap<String, ExternalKey>, JwksError> {
    let mut out = HashMap::new();
    for jwk in &jwks.keys {
        let Some(kid) = &jwk.common.key_id else {
            continue;
        };
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let algorithms: Vec<Algorithm> = algorithms_for(jwk)
            .iter()
            .copied()
            .filter(|a| allowed.contains(a))
            .filter(|a| declared_alg(jwk).is_none_or(|d| d == *a))
            .collect();
        if algorithms.is_empty() || out.contains_key(kid) || rsa_too_small(jwk) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        out.insert(kid.clone(), ExternalKey { key, algorithms });
    }
    if out.is_empty() {
        return Err(JwksError::NoUsableKeys);
    }
    Ok(out)
}

/// What a key's type and curve can verify (RFC 7518 §3.1). Never an HMAC algorithm.
fn algorithms_for(jwk: &Jwk) -> &'static [Algorithm] {
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => &[],
        },
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            &[Algorithm::EdDSA]
        }
        _ => &[],
    }
}

/// Smallest RSA modulus accepted, in bits (RFC 7518 §3.3: 2048 or larger).
const MIN_RSA_BITS: usize = 2048;

/// Whether `jwk` is an RSA key with a modulus under [`MIN_RSA_BITS`] (or an unreadable one).
fn rsa_too_small(jwk: &Jwk) -> bool {
    use base64::Engine;
    let AlgorithmParameters::RSA(p) = &jwk.algorithm else {
        return false;
    };
    let Ok(n) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p.n.trim_end_matches('='))
    else {
        return true;
    };
    let n = match n.iter().position(|b| *b != 0) {
        Some(i) => &n[i..],
        None => return true,
    };
    let bits = n.len() * 8 - n[0].leading_zeros() as usize;
    bits < MIN_RSA_BITS
}

/// The key's own `alg` (RFC 7517 §4.4), if it names a signature algorithm.
fn declared_alg(jwk: &Jwk) -> Option<Algorithm> {
    let alg = jwk.common.key_algorithm?;
    alg.to_string().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(v: serde_json::Value) -> JwkSet {
        serde_json::from_value(v).expect("JwkSet")
    }

    const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    #[test]
    fn symmetric_encryption_and_kidless_keys_are_skipped() {
        let jwks = set(json!({"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"hmac","alg":"HS256"},
            {"kty":"EC","crv":"P-256","x":X,"y":Y,"kid":"enc","use":"enc"},
            {"kty":"EC","crv":"P-256","x":X,"y":Y},
            {"kty":"EC","crv":"P-256","x":X,"y":Y,"kid":"good"}
        ]}));
        let keys = keys_from_jwks(&jwks, &[Algorithm::ES256, Algorithm::HS256]).expect("one");
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["good"]);
        assert_eq!(keys["good"].algorithms, [Algorithm::ES256]);
    }

    /// A base64url RSA modulus of exactly `bits` bits (the value is not a real key).
    fn rsa_n(bits: usize) -> String {
        use base64::Engine;
        let mut n = vec![0xffu8; bits.div_ceil(8)];
        n[0] = 0xff >> ((8 - bits % 8) % 8);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n)
    }

    #[test]
    fn rfc7518_3_3_rsa_keys_under_2048_bits_are_skipped() {
        let jwks =
            |bits: usize| set(json!({"keys":[{"kty":"RSA","n":rsa_n(bits),"e":"AQAB","kid":"r"}]}));
        for bits in [512, 1024, 2047] {
            assert_eq!(
                keys_from_jwks(&jwks(bits), &[Algorithm::RS256]).err(),
                Some(JwksError::NoUsableKeys),
                "{bits}"
            );
        }
        for bits in [2048, 3072, 4096] {
            assert!(
                keys_from_jwks(&jwks(bits), &[Algorithm::RS256]).is_ok(),
                "{bits}"
            );
        }
        // Leading zero bytes do not count.
        let padded = format!("AAAA{}", rsa_n(1024));
        let set1 = set(json!({"keys":[{"kty":"RSA","n":padded,"e":"AQAB","kid":"r"}]}));
        assert!(keys_from_jwks(&set1, &[Algorithm::RS256]).is_err());
    }

    #[test]
    fn key_alg_and_issuer_allow_list_both_restrict() {
        let jwks = set(json!({"keys":[
            {"kty":"RSA","n":rsa_n(2048),"e":"AQAB","kid":"r","alg":"PS256"},
            {"kty":"EC","crv":"P-384","x":X,"y":Y,"kid":"p384"}
        ]}));
        assert_eq!(
            keys_from_jwks(&jwks, &[Algorithm::ES256, Algorithm::RS256]).err(),
            Some(JwksError::NoUsableKeys)
        );
        let keys = keys_from_jwks(&jwks, &[Algorithm::PS256, Algorithm::RS256]).expect("r");
        assert_eq!(keys["r"].algorithms, [Algorithm::PS256]);
    }
}
