//! Why a token was refused. The variants are specific so the edge can log and count them, but
//! none carries token text, claim values or key material: what reaches a client is only
//! [`TokenError::oauth_error`] (RFC 6750 §3.1).

/// Why [`crate::Verifier::verify`] refused a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Longer than `max_token_bytes`.
    #[error("token too large")]
    TooLarge,
    /// Not a JWS compact serialization of a JSON header and JSON object payload.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not allowed for the token's issuer (always the case for `none`, and
    /// for HMAC unless an HMAC secret is configured). Holds the `alg`, sanitised and shortened.
    #[error("algorithm {0:?} not allowed")]
    AlgorithmNotAllowed(String),
    /// No key with the header's `kid` (or no `kid`). `issuer` is `Some` for an external issuer,
    /// whose JWK Set the driver may refetch (see [`crate::Verifier::should_refetch`]).
    #[error("unknown key id")]
    UnknownKid {
        /// The external issuer whose keys were searched; `None` for ours.
        issuer: Option<String>,
    },
    /// The signature does not verify with the key named by `kid`.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is past by more than the leeway.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future by more than the leeway.
    #[error("token not yet valid")]
    NotYetValid,
    /// A required claim is absent.
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type.
    #[error("claim {0} has the wrong type")]
    BadClaim(&'static str),
    /// The `impu` claim is a string but not a canonical IMPU (a password, parameters, a port,
    /// ...): the token is refused rather than read as some other identity.
    #[error("claim impu is not a canonical IMPU: {0}")]
    BadImpu(imsgw_sip::ImpuError),
    /// `iss` is neither ours nor a configured external issuer.
    #[error("unknown issuer")]
    WrongIssuer,
    /// The header `typ` is not the one the issuer is configured to require (RFC 8725 §3.11).
    #[error("wrong token type (typ)")]
    WrongType,
    /// `aud` does not contain the audience configured for the issuer.
    #[error("wrong audience")]
    WrongAudience,
    /// The token is bound (`cnf`, RFC 7800 §3.1) by a confirmation method other than `jkt`
    /// (RFC 9449 §6.1), which cannot be checked here.
    #[error("token bound by an unsupported confirmation method (cnf)")]
    UnsupportedConfirmation,
    /// The token lacks the required scope.
    #[error("insufficient scope")]
    InsufficientScope,
}

impl TokenError {
    /// RFC 6750 §3.1 error code for the `WWW-Authenticate: Bearer` challenge (RFC 8898 §2.2):
    /// `"insufficient_scope"` (SIP 403) for a good token without the scope, `"invalid_token"`
    /// (SIP 401) for everything else.
    pub fn oauth_error(&self) -> &'static str {
        match self {
            TokenError::InsufficientScope => "insufficient_scope",
            _ => "invalid_token",
        }
    }
}

/// An `alg` value fit for an error message: at most 16 characters of `A-Z a-z 0-9 + - _`.
pub(crate) fn sanitize_alg(alg: &str) -> String {
    let clean: String = alg
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_'))
        .take(16)
        .collect();
    if clean.is_empty() {
        "?".to_owned()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scope_errors_map_to_insufficient_scope_rfc6750_3_1() {
        assert_eq!(
            TokenError::InsufficientScope.oauth_error(),
            "insufficient_scope"
        );
        for e in [
            TokenError::Expired,
            TokenError::BadSignature,
            TokenError::TooLarge,
            TokenError::UnknownKid { issuer: None },
            TokenError::WrongAudience,
            TokenError::BadImpu(imsgw_sip::ImpuError::Password),
        ] {
            assert_eq!(e.oauth_error(), "invalid_token");
        }
    }

    #[test]
    fn alg_in_errors_is_short_and_clean() {
        assert_eq!(sanitize_alg("none"), "none");
        assert_eq!(sanitize_alg("\"<script>\n"), "script");
        assert_eq!(sanitize_alg(&"A".repeat(100)).len(), 16);
        assert_eq!(sanitize_alg(""), "?");
    }
}
