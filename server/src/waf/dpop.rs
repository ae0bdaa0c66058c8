//! DPoP at the token endpoint (RFC 9449 §5): the `DPoP` header read and its proof checked
//! (`imsgw_token::pop`, RFC 9449 §4.3), a proof used twice refused (§11.1), and the rule that a
//! grant bound to a key is exchanged only with a proof by that key (§5.8 for refresh tokens,
//! §10 for codes asked for with `dpop_jkt`). No server nonces (§8) are given out.
//!
//! Owns: what a DPoP proof at the token endpoint must be and its replay records. Must not
//! touch: what is issued (see `token`).

use axum::http::HeaderMap;
use imsgw_token::pop::{self, Expected, HttpRequest, IatWindow, Proof};

use super::Waf;
use super::error::{ErrorCode, OAuthError};
use super::store::{StoreExt, key_of};

/// How far a proof's `iat` may be from the WAF's clock, either way (RFC 9449 §11.1).
pub const WINDOW: IatWindow = IatWindow::symmetric(60);

/// The store kind of proofs seen (capped with `waf.limits.refresh_families`: one is kept per
/// grant exchanged with a proof, for at most two minutes).
pub const SEEN: &str = "dpop_jti";

/// The request's DPoP proof for the token endpoint, checked; `None` without a `DPoP` header.
/// A header that is there but not a good proof is `invalid_dpop_proof` (RFC 9449 §5, §12.2).
pub fn proof_of(waf: &Waf, headers: &HeaderMap, now: u64) -> Result<Option<Proof>, OAuthError> {
    let mut values = headers.get_all("dpop").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    // RFC 9449 §4.3 check 1: exactly one DPoP header.
    if values.next().is_some() {
        return Err(invalid("the request has more than one DPoP header"));
    }
    let proof = value
        .to_str()
        .map_err(|_| invalid("the DPoP header is not a JWS"))?;
    let htu = format!("{}/oauth/token", waf.issuer);
    let expected = Expected::Http(HttpRequest {
        method: "POST",
        uri: &htu,
        access_token: None,
        nonce: None,
    });
    pop::verify_proof(proof.trim(), &expected, WINDOW, now)
        .map(Some)
        .map_err(|e| invalid(format!("the DPoP proof is not valid: {e}")))
}

/// Refuses a proof used before (RFC 9449 §11.1): its key and `jti` are kept while the proof is
/// within [`WINDOW`], under the key so that nobody can spend another client's `jti`. Called
/// only once the grant it came with has passed its checks, so proofs that anyone can make up
/// cost the store nothing.
pub fn remember(waf: &Waf, proof: &Proof, now: u64) -> Result<(), OAuthError> {
    let key = key_of(&format!("{}\n{}", proof.jkt, proof.jti));
    // Live while `now <= replayable_until` (a record lives while `expires > now`).
    let until = proof.replayable_until(WINDOW).max(now).saturating_add(1);
    let fresh = waf
        .store
        .update::<u8, bool>(SEEN, &key, now, |seen| match seen {
            Some(s) => (Some(s), false),
            None => (Some((1, until)), true),
        })?;
    if fresh {
        Ok(())
    } else {
        Err(invalid("the DPoP proof was already used (jti)"))
    }
}

/// A grant bound to the key `bound` (its thumbprint) is exchanged only with a proof by that key
/// (RFC 9449 §5.8, §10); an unbound grant takes any proof or none.
pub fn check_bound(
    bound: Option<&str>,
    proof: Option<&Proof>,
    what: &'static str,
) -> Result<(), OAuthError> {
    match (bound, proof) {
        (None, _) => Ok(()),
        (Some(jkt), Some(p)) if p.jkt.binds(Some(jkt)) => Ok(()),
        (Some(_), None) => Err(invalid(format!(
            "{what} is bound to a DPoP key: the request needs a DPoP proof by that key"
        ))),
        (Some(_), Some(_)) => Err(invalid(format!(
            "the DPoP proof is not by the key {what} is bound to"
        ))),
    }
}

fn invalid(description: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidDpopProof, description)
}

#[cfg(test)]
mod tests {
    use super::*;
    use imsgw_token::pop::ProofKey;

    fn proof(key: &ProofKey) -> Proof {
        Proof {
            jkt: key.jkt().clone(),
            jti: "j".into(),
            iat: 0,
        }
    }

    #[test]
    fn a_bound_grant_needs_a_proof_by_its_key_rfc9449_5_8() {
        let (a, b) = (
            ProofKey::generate().expect("key"),
            ProofKey::generate().expect("key"),
        );
        let bound = Some(a.jkt().as_str());
        assert!(check_bound(bound, Some(&proof(&a)), "x").is_ok());
        for p in [None, Some(proof(&b))] {
            let e = check_bound(bound, p.as_ref(), "x").expect_err("refused");
            assert_eq!(e.code, ErrorCode::InvalidDpopProof);
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        }
        assert!(check_bound(None, None, "x").is_ok());
        assert!(check_bound(None, Some(&proof(&b)), "x").is_ok());
    }
}
