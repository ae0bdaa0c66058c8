//! ID token validation for the code flow (OIDC Core §3.1.3.7, §3.1.3.8): which keys and
//! algorithms are accepted, the `iat` window, `azp`, `at_hash`, and error wording that names
//! the failed check.
//!
//! Owns: the verifier's settings and these checks. Must not touch: fetching keys (discovery
//! refetches on [`Check::UnknownKey`]) or the token request (login).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJwsSigningAlgorithm};
use openidconnect::{
    AccessToken, AccessTokenHash, ClaimsVerificationError, Nonce, SignatureVerificationError,
};
use serde_json::{Map, Value};

use super::OidcError;
use super::config::Provider;
use super::discovery::Discovered;

/// OIDC Core §3.1.3.7 step 10: an ID token's `iat` may be this far in the future (clock skew)…
const IAT_FUTURE_SKEW: Duration = Duration::from_secs(300);
/// …and at most this old (it was minted for this code exchange, moments ago).
const IAT_MAX_AGE: Duration = Duration::from_secs(3600);

pub(super) enum Check {
    /// No key matches the token's `kid`/`alg`: worth one JWK Set refetch.
    UnknownKey,
    /// Anything else, saying which check failed.
    Bad(String),
}

/// OIDC Core §3.1.3.7 (and §3.1.3.8 for `at_hash`) against one copy of the provider's keys.
pub(super) fn check_id_token(
    p: &Provider,
    d: &Discovered,
    id_token: &CoreIdToken,
    nonce: &Nonce,
    access_token: &AccessToken,
) -> Result<(), Check> {
    let verifier = verifier(p, d);
    let claims = match id_token.claims(&verifier, nonce) {
        Ok(c) => c,
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        )) => return Err(Check::UnknownKey),
        Err(err) => return Err(Check::Bad(describe_claims_error(err))),
    };
    // §3.1.3.8 leaves at_hash optional in the code flow; when present it must match.
    if let Some(expected) = claims.access_token_hash() {
        let alg = id_token
            .signing_alg()
            .map_err(|e| Check::Bad(format!("signature: {e}")))?;
        let key = id_token
            .signing_key(&verifier)
            .map_err(|e| Check::Bad(format!("signature: {e}")))?;
        let actual = AccessTokenHash::from_token(access_token, alg, key)
            .map_err(|e| Check::Bad(format!("at_hash: {e}")))?;
        if actual != *expected {
            return Err(Check::Bad(
                "at_hash: does not match the access token".into(),
            ));
        }
    }
    Ok(())
}

/// The ID token verifier: public-client style (no client secret, so never HMAC: DESIGN
/// "never HMAC with a public key"), asymmetric algorithms the provider advertises, issuer and
/// audience from config, and an `iat` window.
fn verifier<'a>(p: &Provider, d: &Discovered) -> CoreIdTokenVerifier<'a> {
    let algs: Vec<CoreJwsSigningAlgorithm> = d
        .metadata
        .id_token_signing_alg_values_supported()
        .iter()
        .filter(|a| is_asymmetric(a))
        .cloned()
        .collect();
    CoreIdTokenVerifier::new_public_client(
        p.client_id.clone(),
        p.issuer.clone(),
        d.metadata.jwks().clone(),
    )
    .set_allowed_algs(algs)
    .set_issue_time_verifier_fn(|iat| {
        let iat = iat.timestamp();
        let now = unix_now();
        let future = i64::try_from(IAT_FUTURE_SKEW.as_secs()).unwrap_or(i64::MAX);
        let age = i64::try_from(IAT_MAX_AGE.as_secs()).unwrap_or(i64::MAX);
        if iat > now.saturating_add(future) {
            Err(format!("iat: {iat} is in the future (now {now})"))
        } else if iat < now.saturating_sub(age) {
            Err(format!("iat: {iat} is more than {age} s old (now {now})"))
        } else {
            Ok(())
        }
    })
}

fn is_asymmetric(a: &CoreJwsSigningAlgorithm) -> bool {
    use CoreJwsSigningAlgorithm as A;
    matches!(
        a,
        A::RsaSsaPkcs1V15Sha256
            | A::RsaSsaPkcs1V15Sha384
            | A::RsaSsaPkcs1V15Sha512
            | A::RsaSsaPssSha256
            | A::RsaSsaPssSha384
            | A::RsaSsaPssSha512
            | A::EcdsaP256Sha256
            | A::EcdsaP384Sha384
            | A::EdDsa
    )
}

/// Names the failed check first (`iss:`, `aud:`, `exp:`, `iat:`, `nonce:`, `signature:`).
fn describe_claims_error(err: ClaimsVerificationError) -> String {
    match err {
        ClaimsVerificationError::Expired(m) if m.starts_with("iat") => m,
        ClaimsVerificationError::Expired(m) => format!("exp: {m}"),
        ClaimsVerificationError::InvalidAudience(m) => format!("aud: {m}"),
        ClaimsVerificationError::InvalidIssuer(m) => format!("iss: {m}"),
        ClaimsVerificationError::InvalidNonce(m) => format!("nonce: {m}"),
        ClaimsVerificationError::InvalidSubject(m) => format!("sub: {m}"),
        ClaimsVerificationError::SignatureVerification(e) => format!("signature: {e}"),
        other => other.to_string(),
    }
}

/// OIDC Core §3.1.3.7 steps 4–5: with several audiences `azp` must be there, and when it is
/// there it must be our client_id. (openidconnect leaves these to the caller.)
pub(super) fn check_azp(p: &Provider, payload: &Map<String, Value>) -> Result<(), OidcError> {
    let several = payload
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match payload.get("azp") {
        Some(Value::String(azp)) if azp == p.client_id.as_str() => Ok(()),
        Some(_) => Err(OidcError::IdToken(format!(
            "azp: not our client_id `{}`",
            p.client_id.as_str()
        ))),
        None if several => Err(OidcError::IdToken(
            "azp: missing although aud has several audiences".into(),
        )),
        None => Ok(()),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider() -> Provider {
        let c: super::super::ProviderConfig = toml::from_str(
            "name = \"acme\"\nissuer = \"https://id.example.com\"\nclient_id = \"imsgw\"\n",
        )
        .expect("valid entry");
        super::super::config::validate(vec![c], &|p| p.to_path_buf(), &|_| None)
            .expect("valid")
            .remove(0)
    }

    #[test]
    fn only_asymmetric_algorithms_verify_id_tokens() {
        let advertised: Vec<CoreJwsSigningAlgorithm> =
            serde_json::from_value(json!(["RS256", "HS256", "none", "ES256", "EdDSA"]))
                .expect("algorithms");
        let algs: Vec<CoreJwsSigningAlgorithm> = advertised
            .iter()
            .filter(|a| is_asymmetric(a))
            .cloned()
            .collect();
        assert_eq!(
            algs,
            [
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::EcdsaP256Sha256,
                CoreJwsSigningAlgorithm::EdDsa
            ]
        );
    }

    #[test]
    fn azp_must_be_ours_and_is_required_with_several_audiences() {
        let p = provider();
        let ok = |v: Value| match v {
            Value::Object(m) => check_azp(&p, &m),
            _ => Err(OidcError::IdToken("not an object".into())),
        };
        assert!(ok(json!({"aud": "imsgw"})).is_ok());
        assert!(ok(json!({"aud": ["imsgw"]})).is_ok());
        assert!(ok(json!({"aud": ["imsgw", "other"], "azp": "imsgw"})).is_ok());
        assert!(ok(json!({"aud": ["imsgw", "other"]})).is_err());
        assert!(ok(json!({"aud": "imsgw", "azp": "other"})).is_err());
    }

    #[test]
    fn claims_errors_name_the_failed_check() {
        let cases = [
            (
                ClaimsVerificationError::InvalidNonce("nonce mismatch".into()),
                "nonce:",
            ),
            (ClaimsVerificationError::InvalidIssuer("x".into()), "iss:"),
            (ClaimsVerificationError::InvalidAudience("x".into()), "aud:"),
            (
                ClaimsVerificationError::Expired("ID token expired".into()),
                "exp:",
            ),
            (
                ClaimsVerificationError::Expired("iat: in the future".into()),
                "iat:",
            ),
            (
                ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::CryptoError("bad".into()),
                ),
                "signature:",
            ),
        ];
        for (e, prefix) in cases {
            let m = describe_claims_error(e);
            assert!(m.starts_with(prefix), "{m}");
        }
    }
}
