//! Verifying access tokens: ours (ES256 with a `kid` from our [`KeyRing`], or HS256 only when a
//! secret is configured) and those of configured external issuers (keys from their JWK Sets).
//!
//! Order of checks, each with its own [`TokenError`]: size; JWS compact structure (RFC 7515
//! §7.1) with a JSON header and a JSON object payload; no `crit` (RFC 7515 §4.1.11: we
//! understand no extensions); `iss` ours or configured; header `alg` on that issuer's
//! allow-list (never `none`, RFC 8725 §3.1; HMAC never with a public key, RFC 8725 §3.1/§2.1:
//! the key is chosen by the algorithm family, and the HMAC key is only ever the configured
//! secret); `kid` known; signature; then the claims (see `claims.rs`) and the required scope.
//!
//! Verified tokens are cached by their SHA-256 (see `cache.rs`). Note that ECDSA signatures are
//! malleable, so one set of claims can travel as several token strings: revocation must key on
//! `jti`, never on the token hash.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::cache::{Cache, VerifiedBy};
use crate::claims::Claims;
use crate::config::{ConfigError, VerifierConfig};
use crate::error::{TokenError, sanitize_alg};
use crate::external::{self, ExternalKey, JwksError};
use crate::keys::KeyRing;

/// Least time between two JWKS refetches of one issuer prompted by unknown `kid`s.
const REFETCH_INTERVAL_SECS: u64 = 30;

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its claims.
    pub claims: Claims,
    /// SHA-256 of the token text: a handle for the token that is not the token.
    pub token_hash: [u8; 32],
}

/// Checks tokens. Owned by one task (`&mut self`), like the rest of the edge's state; the
/// signature checks themselves can be done elsewhere ([`Verifier::lookup`], [`Job`]).
pub struct Verifier {
    /// What a token is checked against, shared with [`Job`]s: replaced, never changed in
    /// place while a job holds it.
    rules: Arc<Rules>,
    /// Counts replacements of `rules`: a [`Verdict`] of older rules is not taken.
    generation: u64,
    max_token_bytes: usize,
    cache: Cache,
    /// When each external issuer's keys were last refetched for an unknown `kid`.
    refetched: HashMap<String, u64>,
}

/// The issuers, keys and claims rules a token is checked against.
#[derive(Clone)]
struct Rules {
    issuer: String,
    audience: String,
    required_scope: Option<String>,
    leeway: u64,
    hmac: Option<DecodingKey>,
    ours: HashMap<String, DecodingKey>,
    external: HashMap<String, External>,
}

/// A configured external issuer and what is known of its keys.
#[derive(Clone)]
struct External {
    audience: String,
    algorithms: Vec<Algorithm>,
    require_typ: Option<String>,
    keys: HashMap<String, ExternalKey>,
}

/// [`Verifier::lookup`]'s answer.
// Not boxed: `Done` is the common answer (a cache hit), and a box would be an allocation each.
#[allow(clippy::large_enum_variant)]
pub enum Lookup {
    /// Known without checking a signature: from the cache, or refused before one.
    Done(Result<Verified, TokenError>),
    /// The token needs its signature checked: run the job (anywhere, any thread) and give its
    /// verdict to [`Verifier::settle`].
    Uncached(Job),
}

/// Checking one token's signature and claims, away from the [`Verifier`].
#[derive(Clone)]
pub struct Job {
    rules: Arc<Rules>,
    generation: u64,
    token_hash: [u8; 32],
}

impl Job {
    /// SHA-256 of the token this job is for.
    pub fn token_hash(&self) -> [u8; 32] {
        self.token_hash
    }

    /// Checks `token` (the one [`Verifier::lookup`] was given) at `now`. Another token is
    /// refused: its verdict would be cached under this job's token.
    pub fn run(&self, now: u64, token: &str) -> Verdict {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let result = if hash == self.token_hash {
            self.rules.verify_uncached(now, token)
        } else {
            Err(TokenError::Malformed("not the token the job was made for"))
        };
        Verdict {
            generation: self.generation,
            token_hash: self.token_hash,
            result,
        }
    }
}

/// Two jobs are the same when they check the same token against the same rules.
impl PartialEq for Job {
    fn eq(&self, other: &Self) -> bool {
        self.token_hash == other.token_hash && self.generation == other.generation
    }
}

impl Eq for Job {}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// What a [`Job`] found.
pub struct Verdict {
    generation: u64,
    token_hash: [u8; 32],
    result: Result<(Claims, VerifiedBy), TokenError>,
}

impl fmt::Debug for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verdict")
            .field("generation", &self.generation)
            .field("ok", &self.result.is_ok())
            .finish_non_exhaustive()
    }
}

impl Verdict {
    /// SHA-256 of the token it is for.
    pub fn token_hash(&self) -> [u8; 32] {
        self.token_hash
    }
}

/// The JOSE header fields we read (RFC 7515 §4.1); others are ignored.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl Verifier {
    /// A verifier for `config` that knows our keys in `ours`. External issuers know no keys
    /// until [`Verifier::set_external_jwks`].
    pub fn new(config: VerifierConfig, ours: &KeyRing) -> Result<Verifier, ConfigError> {
        config.validate()?;
        let external = config
            .external
            .into_iter()
            .map(|e| {
                let state = External {
                    audience: e.audience,
                    algorithms: e.algorithms,
                    require_typ: e.require_typ,
                    keys: HashMap::new(),
                };
                (e.issuer, state)
            })
            .collect();
        let mut v = Verifier {
            rules: Arc::new(Rules {
                issuer: config.issuer,
                audience: config.audience,
                required_scope: config.required_scope,
                leeway: config.leeway_secs,
                hmac: config
                    .hmac_secret
                    .map(|s| DecodingKey::from_secret(s.expose())),
                ours: HashMap::new(),
                external,
            }),
            generation: 0,
            max_token_bytes: config.max_token_bytes,
            cache: Cache::new(config.cache_capacity),
            refetched: HashMap::new(),
        };
        v.set_our_keys(ours);
        Ok(v)
    }

    /// Replaces our keys (after a rotation or retirement); cached tokens of removed keys go.
    pub fn set_our_keys(&mut self, ring: &KeyRing) {
        let rules = self.rules_mut();
        rules.ours = ring
            .keys()
            .iter()
            .map(|k| (k.kid.clone(), k.decoding.clone()))
            .collect();
        let ours = &self.rules.ours;
        self.cache
            .retain(|by| match (&by.external_issuer, &by.kid) {
                (None, Some(kid)) => ours.contains_key(kid),
                _ => true,
            });
    }

    /// Installs the JWK Set fetched from `issuer`'s `jwks_uri`. On error the previous keys stay.
    /// Cached tokens verified with keys no longer in the set are dropped.
    pub fn set_external_jwks(&mut self, issuer: &str, jwks: &JwkSet) -> Result<(), JwksError> {
        let ext = self
            .rules
            .external
            .get(issuer)
            .ok_or(JwksError::UnknownIssuer)?;
        let keys = external::keys_from_jwks(jwks, &ext.algorithms)?;
        if let Some(ext) = self.rules_mut().external.get_mut(issuer) {
            ext.keys = keys;
        }
        let keys = &self.rules.external[issuer].keys;
        self.cache
            .retain(|by| match (&by.external_issuer, &by.kid) {
                (Some(i), Some(kid)) if i == issuer => keys.contains_key(kid),
                _ => true,
            });
        Ok(())
    }

    /// After `Err(TokenError::UnknownKid { issuer: Some(iss) })`: whether the driver should
    /// refetch `iss`'s JWK Set now. True at most once per 30 s per issuer, so a stream of tokens
    /// with made-up `kid`s cannot turn the edge into a load generator against the issuer.
    pub fn should_refetch(&mut self, issuer: &str, now: u64) -> bool {
        if !self.rules.external.contains_key(issuer) {
            return false;
        }
        let last = self.refetched.get(issuer).copied();
        let due = last.is_none_or(|t| now >= t.saturating_add(REFETCH_INTERVAL_SECS));
        if due {
            self.refetched.insert(issuer.to_owned(), now);
        }
        due
    }

    /// The rules, to be replaced: a job still holding the old ones keeps them, and its verdict
    /// is not taken ([`Verifier::settle`]).
    fn rules_mut(&mut self) -> &mut Rules {
        self.generation += 1;
        Arc::make_mut(&mut self.rules)
    }

    /// Full check of `token` at time `now` (Unix seconds); see the module docs for the order.
    /// A token verified before is answered from the cache, with its time window re-checked.
    pub fn verify(&mut self, now: u64, token: &str) -> Result<Verified, TokenError> {
        match self.lookup(now, token) {
            Lookup::Done(r) => r,
            Lookup::Uncached(job) => {
                let verdict = job.run(now, token);
                self.settle(now, verdict)
                    .unwrap_or_else(|| unreachable!("a job run at once has the current rules"))
            }
        }
    }

    /// [`Verifier::verify`] without checking a signature here: a token in the cache (or one
    /// refused by its size) is answered, any other comes back as a [`Job`] to run elsewhere.
    pub fn lookup(&mut self, now: u64, token: &str) -> Lookup {
        if token.len() > self.max_token_bytes {
            return Lookup::Done(Err(TokenError::TooLarge));
        }
        let token_hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.cache.purge(now);
        if let Some(claims) = self.cache.get(&token_hash) {
            return Lookup::Done(
                claims
                    .check_time(now, self.rules.leeway)
                    .map(|()| Verified {
                        claims: claims.clone(),
                        token_hash,
                    }),
            );
        }
        Lookup::Uncached(Job {
            rules: self.rules.clone(),
            generation: self.generation,
            token_hash,
        })
    }

    /// Takes a [`Job`]'s verdict at `now` (Unix seconds): a good token goes into the cache. Its
    /// time window is checked again at `now`, as for a cached token: the job ran a while ago,
    /// and a token good then may have expired since. None when the keys changed since the job
    /// was made: its verdict may be of keys no longer trusted (or missing keys that came
    /// since); look the token up again.
    pub fn settle(&mut self, now: u64, verdict: Verdict) -> Option<Result<Verified, TokenError>> {
        if verdict.generation != self.generation {
            return None;
        }
        let token_hash = verdict.token_hash;
        let leeway = self.rules.leeway;
        Some(verdict.result.and_then(|(claims, by)| {
            claims.check_time(now, leeway)?;
            let until = claims.exp.saturating_add(leeway);
            self.cache.insert(token_hash, until, claims.clone(), by);
            Ok(Verified { claims, token_hash })
        }))
    }

    /// Number of tokens in the cache.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Number of verifications answered from the cache since creation.
    pub fn cache_hits(&self) -> u64 {
        self.cache.hits()
    }
}

impl Rules {
    fn verify_uncached(&self, now: u64, token: &str) -> Result<(Claims, VerifiedBy), TokenError> {
        let (header_b64, payload_b64, signature_b64, signing_input) = split_compact(token)?;
        let header: Header = decode_json(header_b64, "header is not base64url JSON")?;
        if header.crit.is_some() {
            return Err(TokenError::Malformed("unsupported crit header"));
        }
        let payload: Map<String, Value> =
            decode_json(payload_b64, "payload is not a base64url JSON object")?;
        let iss = match payload.get("iss") {
            Some(Value::String(s)) => s.as_str(),
            None | Some(Value::Null) => return Err(TokenError::MissingClaim("iss")),
            Some(_) => return Err(TokenError::BadClaim("iss")),
        };
        let (alg, key, audience, by) = self.select_key(iss, &header)?;
        match jsonwebtoken::crypto::verify(signature_b64, signing_input.as_bytes(), key, alg) {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err(TokenError::BadSignature),
        }
        let claims = Claims::from_payload(&payload, iss, audience, now, self.leeway)?;
        if let Some(scope) = &self.required_scope
            && !claims.has_scope(scope)
        {
            return Err(TokenError::InsufficientScope);
        }
        Ok((claims, by))
    }

    /// The algorithm, key and audience for a token of `iss` with `header`, or why there is none.
    fn select_key(
        &self,
        iss: &str,
        header: &Header,
    ) -> Result<(Algorithm, &DecodingKey, &str, VerifiedBy), TokenError> {
        let not_allowed = || TokenError::AlgorithmNotAllowed(sanitize_alg(&header.alg));
        // `Algorithm::from_str` knows no "none", so `none` is refused here for every issuer.
        let alg: Algorithm = header.alg.parse().map_err(|_| not_allowed())?;
        if iss == self.issuer {
            let by = |kid: Option<&String>| VerifiedBy {
                external_issuer: None,
                kid: kid.cloned(),
            };
            return match (alg, &self.hmac) {
                (Algorithm::ES256, _) => {
                    let kid = header.kid.as_ref();
                    let key = kid
                        .and_then(|k| self.ours.get(k))
                        .ok_or(TokenError::UnknownKid { issuer: None })?;
                    Ok((alg, key, &self.audience, by(kid)))
                }
                (Algorithm::HS256, Some(secret)) => Ok((alg, secret, &self.audience, by(None))),
                _ => Err(not_allowed()),
            };
        }
        let ext = self.external.get(iss).ok_or(TokenError::WrongIssuer)?;
        if !ext.algorithms.contains(&alg) {
            return Err(not_allowed());
        }
        // RFC 8725 §3.11: a token of another type (an ID token, say) is not an access token.
        if let Some(want) = &ext.require_typ {
            let typ = header.typ.as_deref().unwrap_or("");
            let typ = typ
                .get(..12)
                .filter(|p| p.eq_ignore_ascii_case("application/"))
                .map_or(typ, |_| &typ[12..]);
            if !typ.eq_ignore_ascii_case(want) {
                return Err(TokenError::WrongType);
            }
        }
        let kid = header.kid.as_ref();
        let key = kid
            .and_then(|k| ext.keys.get(k))
            .ok_or_else(|| TokenError::UnknownKid {
                issuer: Some(iss.to_owned()),
            })?;
        if !key.algorithms.contains(&alg) {
            return Err(not_allowed());
        }
        let by = VerifiedBy {
            external_issuer: Some(iss.to_owned()),
            kid: kid.cloned(),
        };
        Ok((alg, &key.key, &ext.audience, by))
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.rules.issuer)
            .field("audience", &self.rules.audience)
            .field("our_kids", &self.rules.ours.keys().collect::<Vec<_>>())
            .field("hmac", &self.rules.hmac.is_some())
            .field("external", &self.rules.external.keys().collect::<Vec<_>>())
            .field("cache_len", &self.cache.len())
            .finish_non_exhaustive()
    }
}

/// The header, payload and signature parts of a JWS compact serialization and the signing
/// input (RFC 7515 §7.1). Header and payload must be non-empty base64url; the signature may be
/// empty (an `alg: none` token is then refused by its algorithm, not its shape).
fn split_compact(token: &str) -> Result<(&str, &str, &str, &str), TokenError> {
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three dot-separated parts"));
    };
    let b64url = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    };
    if h.is_empty() || p.is_empty() || !b64url(h) || !b64url(p) || !b64url(s) {
        return Err(TokenError::Malformed("part is not base64url"));
    }
    let signing_input = &token[..h.len() + 1 + p.len()];
    Ok((h, p, s, signing_input))
}

fn decode_json<T: serde::de::DeserializeOwned>(
    part: &str,
    what: &'static str,
) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.as_bytes())
        .map_err(|_| TokenError::Malformed(what))?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_serialization_needs_exactly_three_parts_rfc7515_7_1() {
        assert!(split_compact("a.b.c").is_ok());
        assert!(
            split_compact("a.b.").is_ok(),
            "empty signature is judged by alg"
        );
        for bad in [
            "", "a", "a.b", "a.b.c.d", ".b.c", "a..c", "a=.b.c", "a.b.c=", "a.b+.c",
        ] {
            assert!(
                matches!(split_compact(bad), Err(TokenError::Malformed(_))),
                "{bad}"
            );
        }
        let (_, _, s, input) = split_compact("hh.pp.ss").expect("ok");
        assert_eq!((s, input), ("ss", "hh.pp"));
    }

    #[test]
    fn header_and_payload_must_be_json() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#);
        assert!(decode_json::<Header>(&h, "x").is_ok());
        let not_json = URL_SAFE_NO_PAD.encode(b"alg=ES256");
        assert_eq!(
            decode_json::<Header>(&not_json, "x").err(),
            Some(TokenError::Malformed("x"))
        );
        let array = URL_SAFE_NO_PAD.encode(b"[1]");
        assert!(decode_json::<Map<String, Value>>(&array, "x").is_err());
        let dup = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","alg":"none"}"#);
        assert!(
            decode_json::<Header>(&dup, "x").is_err(),
            "duplicate alg refused"
        );
    }
}
