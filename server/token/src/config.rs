//! Configuration of the [`crate::Verifier`]: one typed struct, every field documented with its
//! default, and start-up validation whose errors name the field and the fix (STYLE.md §7).

use jsonwebtoken::{Algorithm, AlgorithmFamily};

use crate::secret::Secret;

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
const MIN_HMAC_SECRET_BYTES: usize = 32;

/// What the verifier accepts.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// `iss` of tokens minted by our WAF. Required.
    pub issuer: String,
    /// `aud` our tokens must carry: the SIP service. Required.
    pub audience: String,
    /// Scope every token must have (e.g. `"sip"`), or `None` to not check. Default `None`.
    pub required_scope: Option<String>,
    /// Longest token accepted, in bytes; longer ones are refused before any parsing.
    /// Default 8192.
    pub max_token_bytes: usize,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds. Default 60.
    pub leeway_secs: u64,
    /// Key for HS256 tokens with our `iss`. HMAC is refused unless this is set. At least 32
    /// bytes. Default `None`.
    pub hmac_secret: Option<Secret>,
    /// Other issuers whose tokens are accepted. Default none.
    pub external: Vec<ExternalIssuer>,
    /// Most verified tokens remembered so a re-REGISTER skips the signature check. 0 disables
    /// the cache. Default 100 000 (about 40 MB at the worst).
    pub cache_capacity: usize,
}

impl VerifierConfig {
    /// A configuration with the defaults above.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        VerifierConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            required_scope: None,
            max_token_bytes: 8192,
            leeway_secs: 60,
            hmac_secret: None,
            external: Vec::new(),
            cache_capacity: 100_000,
        }
    }

    /// Start-up checks.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.issuer.is_empty() {
            return Err(ConfigError::Empty("issuer"));
        }
        if self.audience.is_empty() {
            return Err(ConfigError::Empty("audience"));
        }
        if let Some(s) = &self.hmac_secret
            && s.expose().len() < MIN_HMAC_SECRET_BYTES
        {
            return Err(ConfigError::HmacSecretTooShort);
        }
        for (i, ext) in self.external.iter().enumerate() {
            if ext.issuer.is_empty() || ext.audience.is_empty() {
                return Err(ConfigError::Empty("external.issuer / external.audience"));
            }
            if ext.issuer == self.issuer
                || self.external[..i].iter().any(|o| o.issuer == ext.issuer)
            {
                return Err(ConfigError::DuplicateIssuer(ext.issuer.clone()));
            }
            if ext.algorithms.is_empty() {
                return Err(ConfigError::NoAlgorithms(ext.issuer.clone()));
            }
            if let Some(a) = ext
                .algorithms
                .iter()
                .find(|a| a.family() == AlgorithmFamily::Hmac)
            {
                return Err(ConfigError::ExternalHmac {
                    issuer: ext.issuer.clone(),
                    alg: *a,
                });
            }
        }
        Ok(())
    }
}

/// An external authorization server whose tokens are accepted (DESIGN.md "Tokens"). Its JWK Set
/// is fetched by a driver and handed to [`crate::Verifier::set_external_jwks`].
///
/// Such tokens must carry the IMS identity in `impu` (and may carry `impi`, which otherwise
/// defaults to the IMPU's user@host); mapping other claims is not supported yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIssuer {
    /// Its `iss`, exactly as in its tokens.
    pub issuer: String,
    /// The `aud` its tokens for us carry.
    pub audience: String,
    /// Signature algorithms accepted from it. Default `[ES256, RS256]`. HMAC is refused: a
    /// shared secret with a third party would let it be us.
    pub algorithms: Vec<Algorithm>,
    /// The JOSE `typ` its tokens must carry (RFC 8725 §3.11 explicit typing), compared without
    /// case and without an `application/` prefix, e.g. `at+jwt` (RFC 9068 §2.1). Default none:
    /// any `typ`.
    pub require_typ: Option<String>,
}

impl ExternalIssuer {
    /// An issuer with the default algorithms.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        ExternalIssuer {
            issuer: issuer.into(),
            audience: audience.into(),
            algorithms: vec![Algorithm::ES256, Algorithm::RS256],
            require_typ: None,
        }
    }
}

/// A [`VerifierConfig`] that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required string is empty.
    #[error("token verifier: `{0}` must not be empty")]
    Empty(&'static str),
    /// `hmac_secret` is shorter than 32 bytes.
    #[error(
        "token verifier: `hmac_secret` must be at least 32 bytes (RFC 7518 §3.2); use a random 32-byte value or remove it"
    )]
    HmacSecretTooShort,
    /// An issuer is configured twice.
    #[error("token verifier: issuer {0:?} is configured more than once")]
    DuplicateIssuer(String),
    /// An external issuer has no algorithms.
    #[error(
        "token verifier: external issuer {0:?} has an empty `algorithms` list; use [\"ES256\", \"RS256\"]"
    )]
    NoAlgorithms(String),
    /// An external issuer lists an HMAC algorithm.
    #[error(
        "token verifier: external issuer {issuer:?} may not use {alg:?}; HMAC is only for our own issuer"
    )]
    ExternalHmac {
        /// The issuer.
        issuer: String,
        /// The HMAC algorithm listed.
        alg: Algorithm,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let c = VerifierConfig::new("https://waf", "sip");
        assert_eq!(
            (c.max_token_bytes, c.leeway_secs, c.cache_capacity),
            (8192, 60, 100_000)
        );
        assert!(c.hmac_secret.is_none() && c.required_scope.is_none() && c.external.is_empty());
        assert!(c.validate().is_ok());
        let e = ExternalIssuer::new("https://op", "sip");
        assert_eq!(e.algorithms, [Algorithm::ES256, Algorithm::RS256]);
    }

    #[test]
    fn unsafe_configurations_are_refused_with_the_field_named() {
        let mut c = VerifierConfig::new("https://waf", "sip");
        c.hmac_secret = Some(Secret::new(vec![7u8; 31]));
        assert_eq!(c.validate(), Err(ConfigError::HmacSecretTooShort));
        assert!(
            ConfigError::HmacSecretTooShort
                .to_string()
                .contains("hmac_secret")
        );

        let mut c = VerifierConfig::new("https://waf", "sip");
        let mut ext = ExternalIssuer::new("https://op", "sip");
        ext.algorithms.push(Algorithm::HS256);
        c.external.push(ext);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ExternalHmac { .. })
        ));

        let mut c = VerifierConfig::new("https://waf", "sip");
        c.external.push(ExternalIssuer::new("https://waf", "sip"));
        assert!(matches!(c.validate(), Err(ConfigError::DuplicateIssuer(_))));

        let mut c = VerifierConfig::new("https://waf", "sip");
        let mut ext = ExternalIssuer::new("https://op", "sip");
        ext.algorithms.clear();
        c.external.push(ext);
        assert!(matches!(c.validate(), Err(ConfigError::NoAlgorithms(_))));
        assert_eq!(
            VerifierConfig::new("", "sip").validate(),
            Err(ConfigError::Empty("issuer"))
        );
    }
}
