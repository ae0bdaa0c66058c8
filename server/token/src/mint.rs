//! Minting access tokens (the WAF's token endpoint): a JWT signed ES256 with the ring's newest
//! key, typed `at+jwt` (RFC 9068 §2.1), carrying the claims RFC 9068 §2.2 requires (the
//! registered claims of RFC 7519 §4.1 and `client_id`) and the IMS identities. Lifetimes are minutes (DESIGN.md "Tokens"), bounded by `max_ttl`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use imsgw_sip::Impu;

use crate::claims::Claims;
use crate::keys::KeyRing;
use crate::pop::Jkt;
use crate::secret::AccessToken;

/// What the minter puts in every token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinterConfig {
    /// `iss`: our WAF's issuer URL. Required.
    pub issuer: String,
    /// `aud`: the SIP service. Required.
    pub audience: String,
    /// Lifetime when a request names none, in seconds. Default 600.
    pub default_ttl: u64,
    /// Longest lifetime a request may ask for, in seconds; also what key retirement must wait
    /// for (`KeyRing::retire`'s `max_token_lifetime`). Default 3600.
    pub max_ttl: u64,
}

impl MinterConfig {
    /// A configuration with the defaults above.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        MinterConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            default_ttl: 600,
            max_ttl: 3600,
        }
    }
}

/// One token to mint: who it is for and what it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintRequest {
    /// `sub`: the signed-in web identity.
    pub sub: String,
    /// The IMPU the holder may register; minting fails unless it is in canonical form
    /// ([`imsgw_sip::Impu`]).
    pub impu: String,
    /// The IMPI.
    pub impi: String,
    /// Space-separated scopes (RFC 6749 §3.3).
    pub scope: String,
    /// `client_id` (RFC 9068 §2.2): the OAuth client the token is issued to; only that client
    /// may revoke it (RFC 7009 §2.1). Required.
    pub client_id: String,
    /// Lifetime in seconds, or `None` for the default.
    pub ttl: Option<u64>,
}

/// Why no token was minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// A required field is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// `scope` is not a space-separated list of RFC 6749 §3.3 scope tokens.
    #[error("scope must be space-separated tokens of printable ASCII without '\"' or '\\'")]
    BadScope,
    /// `impu` is not a canonical IMPU; no token may name an identity the edge would read
    /// differently from the registrar.
    #[error("impu is not a canonical IMPU: {0}")]
    BadImpu(imsgw_sip::ImpuError),
    /// `impu` is an IMPU but not spelled in its canonical form.
    #[error("impu must be written in canonical form: {canonical}")]
    NotCanonicalImpu {
        /// The canonical spelling of the requested IMPU.
        canonical: String,
    },
    /// The lifetime is 0 or beyond `max_ttl`.
    #[error("token lifetime {ttl} s is not within 1..={max} s")]
    BadTtl {
        /// The requested lifetime.
        ttl: u64,
        /// The configured maximum.
        max: u64,
    },
    /// The signature could not be made.
    #[error("signing failed")]
    Signing,
}

/// Mints tokens with the signing key of a [`KeyRing`].
pub struct Minter {
    config: MinterConfig,
    kid: String,
    key: EncodingKey,
}

impl Minter {
    /// A minter signing with `ring`'s newest key.
    pub fn new(config: MinterConfig, ring: &KeyRing) -> Minter {
        let k = ring.signing();
        Minter {
            config,
            kid: k.kid.clone(),
            key: k.encoding.clone(),
        }
    }

    /// Switches to `ring`'s newest key (after a rotation).
    pub fn set_keys(&mut self, ring: &KeyRing) {
        let k = ring.signing();
        self.kid = k.kid.clone();
        self.key = k.encoding.clone();
    }

    /// A signed token for `req`, issued at `now` (Unix seconds), and its claims.
    pub fn mint(&self, now: u64, req: MintRequest) -> Result<(AccessToken, Claims), MintError> {
        self.mint_with_jti(now, req, new_jti())
    }

    /// Like [`Minter::mint`] with a `jti` chosen beforehand ([`new_jti`]): a caller can record
    /// what it is about to issue, atomically with what it issues it for, before it exists.
    pub fn mint_with_jti(
        &self,
        now: u64,
        req: MintRequest,
        jti: String,
    ) -> Result<(AccessToken, Claims), MintError> {
        self.mint_bound(now, req, jti, None)
    }

    /// Like [`Minter::mint_with_jti`], and with `cnf_jkt` the token is bound to that key:
    /// `"cnf": {"jkt": …}` (RFC 9449 §6.1), so whoever takes it can require a proof of
    /// possession by it ([`crate::pop`]). The thumbprint is a [`Jkt`]: one computed from a key
    /// or a proof, never free text.
    ///
    /// (The binding is an argument rather than a [`MintRequest`] field because `MintRequest`
    /// is built by struct literal outside this crate.)
    pub fn mint_bound(
        &self,
        now: u64,
        req: MintRequest,
        jti: String,
        cnf_jkt: Option<&Jkt>,
    ) -> Result<(AccessToken, Claims), MintError> {
        if jti.is_empty() {
            return Err(MintError::Empty("jti"));
        }
        for (name, value) in [
            ("sub", &req.sub),
            ("impu", &req.impu),
            ("impi", &req.impi),
            ("client_id", &req.client_id),
        ] {
            if value.is_empty() {
                return Err(MintError::Empty(name));
            }
        }
        let impu = Impu::parse(&req.impu).map_err(MintError::BadImpu)?;
        if impu.as_str() != req.impu {
            // Canonical already means equal to its canonical form: a spelling that merely
            // compares equal (`%62ob`, `IMS.example`) is refused too, so the token says exactly
            // what was asked for.
            return Err(MintError::NotCanonicalImpu {
                canonical: impu.to_string(),
            });
        }
        if !valid_scope(&req.scope) {
            return Err(MintError::BadScope);
        }
        let ttl = req.ttl.unwrap_or(self.config.default_ttl);
        if ttl == 0 || ttl > self.config.max_ttl {
            return Err(MintError::BadTtl {
                ttl,
                max: self.config.max_ttl,
            });
        }
        let claims = Claims {
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            sub: req.sub,
            impu,
            impi: req.impi,
            scope: req.scope,
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl),
            jti,
            client_id: Some(req.client_id),
            cnf_jkt: cnf_jkt.map(|j| j.as_str().to_owned()),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(self.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.key).map_err(|_| MintError::Signing)?;
        Ok((AccessToken::new(token), claims))
    }
}

impl fmt::Debug for Minter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minter")
            .field("config", &self.config)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// 128 random bits, base64url: unique enough to revoke by (RFC 7519 §4.1.7).
pub fn new_jti() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// RFC 6749 §3.3: `scope = scope-token *( SP scope-token )`,
/// `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`. Empty is allowed (no scope).
fn valid_scope(scope: &str) -> bool {
    scope.is_empty()
        || scope.split(' ').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|c| matches!(c, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> MintRequest {
        MintRequest {
            sub: "user-1".into(),
            impu: "sip:alice@ims.example".into(),
            impi: "alice@ims.example".into(),
            scope: "sip".into(),
            client_id: "wic".into(),
            ttl: None,
        }
    }

    fn minter() -> Minter {
        let ring = KeyRing::ephemeral(0).expect("keygen");
        Minter::new(
            MinterConfig::new("https://waf.example", "sip:ims.example"),
            &ring,
        )
    }

    #[test]
    fn header_is_es256_at_jwt_with_the_signing_kid_rfc9068_2_1() {
        let m = minter();
        let (token, claims) = m.mint(1000, req()).expect("mint");
        let header = jsonwebtoken::decode_header(token.expose()).expect("header");
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(m.kid.as_str()));
        assert_eq!((claims.iat, claims.nbf, claims.exp), (1000, 1000, 1600));
        assert_eq!(URL_SAFE_NO_PAD.decode(&claims.jti).expect("b64").len(), 16);
    }

    #[test]
    fn every_claim_rfc9068_2_2_requires_is_in_the_payload() {
        let (token, claims) = minter().mint(1000, req()).expect("mint");
        let payload = token.expose().split('.').nth(1).expect("payload");
        let payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
        for name in ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"] {
            assert!(payload.get(name).is_some(), "{name} missing: {payload}");
        }
        assert_eq!(payload["client_id"], "wic");
        assert_eq!(claims.client_id.as_deref(), Some("wic"));
    }

    #[test]
    fn a_bound_token_carries_cnf_jkt_and_an_unbound_one_no_cnf_rfc9449_6_1() {
        let m = minter();
        let key = crate::pop::ProofKey::generate().expect("key");
        let (token, claims) = m
            .mint_bound(1000, req(), new_jti(), Some(key.jkt()))
            .expect("mint");
        assert_eq!(claims.cnf_jkt.as_deref(), Some(key.jkt().as_str()));
        let payload = |t: &AccessToken| -> serde_json::Value {
            let p = t.expose().split('.').nth(1).expect("payload");
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).expect("b64")).expect("json")
        };
        assert_eq!(
            payload(&token)["cnf"],
            serde_json::json!({ "jkt": key.jkt().as_str() })
        );
        let (plain, claims) = m.mint(1000, req()).expect("mint");
        assert_eq!(claims.cnf_jkt, None);
        assert!(payload(&plain).get("cnf").is_none());
    }

    #[test]
    fn two_tokens_get_different_jti() {
        let m = minter();
        let (_, a) = m.mint(0, req()).expect("mint");
        let (_, b) = m.mint(0, req()).expect("mint");
        assert_ne!(a.jti, b.jti);
    }

    #[test]
    fn ttl_bounds_empty_identities_and_bad_scopes_are_refused() {
        let m = minter();
        let with = |f: fn(&mut MintRequest)| {
            let mut r = req();
            f(&mut r);
            m.mint(0, r).err()
        };
        assert_eq!(
            with(|r| r.ttl = Some(0)),
            Some(MintError::BadTtl { ttl: 0, max: 3600 })
        );
        assert_eq!(
            with(|r| r.ttl = Some(3601)),
            Some(MintError::BadTtl {
                ttl: 3601,
                max: 3600
            })
        );
        assert_eq!(with(|r| r.ttl = Some(3600)), None);
        assert_eq!(with(|r| r.impu.clear()), Some(MintError::Empty("impu")));
        assert_eq!(
            with(|r| r.client_id.clear()),
            Some(MintError::Empty("client_id"))
        );
        assert_eq!(with(|r| r.scope = "a  b".into()), Some(MintError::BadScope));
        assert_eq!(with(|r| r.scope = "a\"b".into()), Some(MintError::BadScope));
        assert_eq!(with(|r| r.scope = String::new()), None);
    }

    #[test]
    fn non_canonical_impu_is_not_minted_rfc3261_19_1_4() {
        use imsgw_sip::ImpuError;
        let m = minter();
        let with = |impu: &str| {
            let mut r = req();
            r.impu = impu.into();
            m.mint(0, r).err()
        };
        assert_eq!(
            with("sip:bob:x@ims.example"),
            Some(MintError::BadImpu(ImpuError::Password))
        );
        assert_eq!(
            with("sip:bob@ims.example;user=phone"),
            Some(MintError::BadImpu(ImpuError::Params))
        );
        assert_eq!(
            with("sip:%62ob@IMS.example"),
            Some(MintError::NotCanonicalImpu {
                canonical: "sip:bob@ims.example".into()
            })
        );
        assert_eq!(with("tel:+15551234"), None);
        assert_eq!(with("sip:bob@ims.example"), None);
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let shown = format!("{:?}", minter());
        assert!(
            !shown.contains("content") && !shown.contains("EncodingKey"),
            "{shown}"
        );
    }
}
