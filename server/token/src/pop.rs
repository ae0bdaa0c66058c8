//! Proof of possession of a key (issue 13 §3): checking the signed proof a client sends beside
//! a sender-constrained access token, so that a copied token is useless without the client's
//! private key. Two kinds of proof share one check, [`verify_proof`]:
//!
//! - **DPoP** (RFC 9449): `typ` `dpop+jwt` in the `DPoP` HTTP header, checked as RFC 9449 §4.3
//!   says (the WAF's token endpoint, [`Expected::Http`]);
//! - **SIP proofs**: imsgw's own, `typ` `sip-pop+jwt`, which the SIP edge checks on a REGISTER
//!   ([`Expected::Sip`]), specified below.
//!
//! A token bound to a key names it as `"cnf": {"jkt": "<thumbprint>"}` (RFC 7800 §3.1, RFC 9449
//! §6.1; [`crate::Claims::cnf_jkt`]); a good proof gives the same thumbprint ([`Proof::jkt`]).
//!
//! ## What every proof must be
//!
//! A JWS compact serialization (RFC 7515 §7.1) of at most [`MAX_PROOF_BYTES`] bytes, whose
//! JOSE header has:
//!
//! - `typ`: exactly `dpop+jwt` or `sip-pop+jwt`, whichever the caller expects (RFC 8725 §3.11:
//!   a proof of one kind is never taken for the other, nor for a token);
//! - `alg`: `ES256` (ECDSA P-256 SHA-256, RFC 7518 §3.4) and nothing else: never `none`, never
//!   HMAC (RFC 9449 §4.3 check 5), no other algorithm;
//! - `jwk`: the public key that signed it, an EC P-256 JWK (RFC 7518 §6.2.1: `kty` `EC`, `crv`
//!   `P-256`, `x`, `y`) with no private part `d` (RFC 9449 §4.3 check 7); other members (`kid`,
//!   `alg`, `use`) are ignored;
//! - no `crit` (RFC 7515 §4.1.11: no extension is understood here);
//!
//! and whose signature (64 bytes, `r || s`) verifies with that key. Its payload is a JSON
//! object; every proof has `jti` (a string of 1 to [`MAX_JTI_BYTES`] bytes, unique per proof)
//! and `iat` (a NumericDate, RFC 7519 §2) within the caller's [`IatWindow`] of `now`.
//!
//! ## DPoP (`dpop+jwt`), RFC 9449 §4.2
//!
//! Claims `htm` (the HTTP method, exact), `htu` (the request's URI; compared without query and
//! fragment, with scheme and host case-insensitive, a default port dropped and an empty path
//! read as `/`: RFC 9449 §4.3 check 9 and the syntax- and scheme-based normalisation of RFC 3986
//! §6.2.2–6.2.3 it recommends), `ath` (base64url SHA-256 of the access token, RFC 9449 §4.2)
//! checked only when the caller presents a token, and `nonce` checked only when the caller
//! gave one out (RFC 9449 §8).
//!
//! ## SIP proofs (`sip-pop+jwt`)
//!
//! A UA whose access token is bound to its key (`cnf.jkt`) sends, beside
//! `Authorization: Bearer <access token>` in the request that first presents the token on a
//! connection (its REGISTER), one more header:
//!
//! ```text
//! Proof: <compact JWS>
//! ```
//!
//! The nonce it signs comes from the edge, in a `Proof-Nonce: <nonce>` header
//! ([`SIP_PROOF_NONCE_HEADER`]) of the 401 that refuses a request without a good proof (as RFC
//! 9449 §8 hands out `DPoP-Nonce`). When and for how long the edge asks for proofs is the
//! edge's business (imsgw's README, "What the SIP edge does").
//!
//! The JWS's header is `{"typ":"sip-pop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256",
//! "x":"…","y":"…"}}` (as above) and its payload has exactly these claims, all required:
//!
//! | claim | JSON type | value |
//! | --- | --- | --- |
//! | `jti` | string | unique per proof, 1 to 256 bytes |
//! | `iat` | number | when the proof was made, Unix seconds; accepted within the edge's window (default ±60 s) |
//! | `nonce` | string | the value the edge handed the UA for this (how and when it hands one out is the edge's business); compared exactly |
//! | `method` | string | the request's method, exactly as in the request line (`REGISTER`; SIP methods are case-sensitive, RFC 3261 §7.1) |
//! | `ruri` | string | the Request-URI, exactly as in the request line (no normalisation) |
//! | `call_id` | string | the value of the `Call-ID` header, exactly (RFC 3261 §8.1.1.4) |
//! | `cseq` | integer | the sequence number of the `CSeq` header, 0 to 2^31 - 1 (RFC 3261 §8.1.1.5) |
//! | `ath` | string | base64url (no padding) of the SHA-256 of the access token's ASCII text, as RFC 9449 §4.2 ([`access_token_hash`]) |
//!
//! The signature covers the method, Request-URI, Call-ID, CSeq, the edge's nonce and the
//! token, so a proof seen on the wire cannot carry another request or another token. What the
//! edge still owns: that the token's `cnf.jkt` equals [`Proof::jkt`] ([`Jkt::binds`]), that a
//! nonce is fresh and each `jti` is used once ([`Proof::replayable_until`] says how long to
//! remember it), and the SIP answer to a refusal.
//!
//! Owns: the checks of a proof given what the request was. Must not touch: I/O, clocks (`now` is
//! passed in), replay state, what is done with a refusal. Errors carry no proof, token, nonce or
//! key material.

mod client;
mod jwk;

use aws_lc_rs::signature::ParsedPublicKey;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;

pub use client::ProofKey;
pub use jwk::{Jkt, jwk_thumbprint};

use crate::error::sanitize_alg;

/// The `typ` of a DPoP proof (RFC 9449 §4.2).
pub const DPOP_TYP: &str = "dpop+jwt";
/// The `typ` of a SIP proof (see the module docs).
pub const SIP_POP_TYP: &str = "sip-pop+jwt";
/// The SIP header that carries a SIP proof: `Proof: <compact JWS>`.
pub const SIP_PROOF_HEADER: &str = "Proof";
/// The SIP header in which the edge hands a UA the nonce its next SIP proof signs:
/// `Proof-Nonce: <nonce>` (after RFC 9449 §8's `DPoP-Nonce`).
pub const SIP_PROOF_NONCE_HEADER: &str = "Proof-Nonce";
/// The longest proof read. A proof is a small header with a P-256 key and a few claims, under
/// 1 KiB; anything much longer is not one.
pub const MAX_PROOF_BYTES: usize = 4096;
/// The longest `jti`: it is kept to refuse replays, so it is bounded like any stored input.
pub const MAX_JTI_BYTES: usize = 256;

/// How far a proof's `iat` may be from `now` (RFC 9449 §4.3 check 11, §11.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IatWindow {
    /// Seconds a proof may be old. Default 60.
    pub past_secs: u64,
    /// Seconds a proof may be ahead of `now` (clock skew). Default 60.
    pub future_secs: u64,
}

impl IatWindow {
    /// `secs` either side of `now`.
    pub const fn symmetric(secs: u64) -> Self {
        IatWindow {
            past_secs: secs,
            future_secs: secs,
        }
    }
}

impl Default for IatWindow {
    fn default() -> Self {
        IatWindow::symmetric(60)
    }
}

/// The HTTP request a DPoP proof must be for (RFC 9449 §4.3 checks 8-10, 12).
#[derive(Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The request's method (`htm`), e.g. `POST`.
    pub method: &'a str,
    /// The request's absolute URI (`htu`); query and fragment, if any, are not compared.
    pub uri: &'a str,
    /// The access token the request presents, if any: the proof's `ath` must be its hash. With
    /// `None` (the token endpoint) `ath` is not looked at.
    pub access_token: Option<&'a str>,
    /// The nonce the server gave the client, if any (RFC 9449 §8): `nonce` must equal it. With
    /// `None` `nonce` is not looked at.
    pub nonce: Option<&'a str>,
}

/// The SIP request a SIP proof must be for (see the module docs for each claim).
#[derive(Clone, Copy)]
pub struct SipRequest<'a> {
    /// The method from the request line (`method`).
    pub method: &'a str,
    /// The Request-URI from the request line (`ruri`), compared exactly.
    pub ruri: &'a str,
    /// The `Call-ID` value (`call_id`).
    pub call_id: &'a str,
    /// The `CSeq` sequence number (`cseq`).
    pub cseq: u32,
    /// The nonce the edge handed this UA (`nonce`).
    pub nonce: &'a str,
    /// The access token of the request's `Authorization: Bearer` (`ath` is its hash).
    pub access_token: &'a str,
}

/// What a proof must say besides its key and signature; the variant fixes its `typ`.
#[derive(Debug, Clone, Copy)]
pub enum Expected<'a> {
    /// A DPoP proof (`dpop+jwt`) of an HTTP request.
    Http(HttpRequest<'a>),
    /// A SIP proof (`sip-pop+jwt`) of a SIP request.
    Sip(SipRequest<'a>),
}

impl Expected<'_> {
    /// The `typ` the proof's header must have.
    pub fn typ(&self) -> &'static str {
        match self {
            Expected::Http(_) => DPOP_TYP,
            Expected::Sip(_) => SIP_POP_TYP,
        }
    }
}

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The RFC 7638 thumbprint of the key that signed it: what a bound token's `cnf.jkt` must
    /// be, and what a token issued on this proof is bound to.
    pub jkt: Jkt,
    /// Its `jti`, to refuse its replay.
    pub jti: String,
    /// Its `iat` (Unix seconds, fractions dropped).
    pub iat: u64,
}

impl Proof {
    /// The last second (Unix) at which this proof is still within `window`: how long its `jti`
    /// must be remembered to refuse a replay (RFC 9449 §11.1).
    pub fn replayable_until(&self, window: IatWindow) -> u64 {
        self.iat.saturating_add(window.past_secs)
    }
}

/// Why a proof was refused: one variant per check. None carries the proof, a claim's value, a
/// token or key material; only an `alg` (sanitised) or a claim's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PopError {
    /// Longer than [`MAX_PROOF_BYTES`].
    #[error("proof too large")]
    TooLarge,
    /// Not a JWS compact serialization of a JSON header and a JSON object payload.
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    /// The header's `typ` is absent or not the one expected.
    #[error("proof typ is not {expected}")]
    WrongType {
        /// The `typ` that was expected.
        expected: &'static str,
    },
    /// `alg` is `none`: an unsigned proof proves nothing (RFC 8725 §3.1).
    #[error("proof alg none: a proof must be signed")]
    AlgNone,
    /// `alg` is HMAC: a shared secret proves nothing about a private key (RFC 9449 §4.3).
    #[error("proof alg is symmetric (HMAC); a proof must be signed with a private key")]
    AlgSymmetric,
    /// `alg` is some other algorithm than ES256 (sanitised, shortened).
    #[error("proof alg {0:?} not supported (ES256 only)")]
    AlgNotSupported(String),
    /// The header has `crit`: no extension is understood here (RFC 7515 §4.1.11).
    #[error("proof header has crit; no extension is supported")]
    UnsupportedCrit,
    /// The header has no `jwk`.
    #[error("proof header has no jwk")]
    MissingJwk,
    /// The `jwk` holds a private key (`d`) (RFC 9449 §4.3 check 7).
    #[error("proof jwk holds a private key")]
    PrivateKeyInJwk,
    /// The `jwk` is not an EC key (`kty` RSA, OKP, oct...).
    #[error("proof jwk is not an EC key")]
    KeyNotEc,
    /// The `jwk` is an EC key on another curve than P-256.
    #[error("proof jwk is not on curve P-256")]
    CurveNotP256,
    /// The `jwk` is not a usable EC P-256 public key.
    #[error("proof jwk is not a P-256 public key: {0}")]
    BadJwk(&'static str),
    /// The signature does not verify with the `jwk`.
    #[error("proof signature does not verify with its jwk")]
    BadSignature,
    /// A required claim is absent.
    #[error("proof has no {0} claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type or is out of range.
    #[error("proof claim {0} has the wrong type or size")]
    BadClaim(&'static str),
    /// `iat` is older than the window allows.
    #[error("proof is too old (iat)")]
    TooOld,
    /// `iat` is further ahead than the window allows.
    #[error("proof is issued in the future (iat)")]
    IssuedInFuture,
    /// `htm` is not the request's method.
    #[error("proof htm is not this request's method")]
    WrongHtm,
    /// `htu` is not the request's URI.
    #[error("proof htu is not this request's URI")]
    WrongHtu,
    /// `ath` is not the hash of the access token presented.
    #[error("proof ath is not the hash of this access token")]
    WrongAth,
    /// `nonce` is not the one handed out.
    #[error("proof nonce is not the expected one")]
    WrongNonce,
    /// `method` is not the SIP request's method.
    #[error("proof method is not this request's method")]
    WrongMethod,
    /// `ruri` is not the SIP request's Request-URI.
    #[error("proof ruri is not this request's Request-URI")]
    WrongRuri,
    /// `call_id` is not the SIP request's Call-ID.
    #[error("proof call_id is not this request's Call-ID")]
    WrongCallId,
    /// `cseq` is not the SIP request's CSeq number.
    #[error("proof cseq is not this request's CSeq number")]
    WrongCseq,
}

/// `ath` (RFC 9449 §4.2): base64url (no padding) of the SHA-256 of the access token's text.
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// Checks `proof` (a compact JWS) against what the request was, at `now` (Unix seconds), in
/// the order of the module docs: size, structure, `typ`, `alg`, `crit`, `jwk`, signature, then
/// the claims. Replays are the caller's to refuse ([`Proof::jti`]).
pub fn verify_proof(
    proof: &str,
    expected: &Expected<'_>,
    window: IatWindow,
    now: u64,
) -> Result<Proof, PopError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(PopError::TooLarge);
    }
    let (header_b64, payload_b64, signature_b64, signing_input) = split_compact(proof)?;
    let header: Header = decode_json(header_b64, "header is not a base64url JSON object")?;
    if header.typ.as_ref().and_then(Value::as_str) != Some(expected.typ()) {
        return Err(PopError::WrongType {
            expected: expected.typ(),
        });
    }
    check_alg(header.alg.as_ref())?;
    if header.crit.is_some() {
        return Err(PopError::UnsupportedCrit);
    }
    let jwk = header.jwk.as_ref().ok_or(PopError::MissingJwk)?;
    let jwk = jwk::P256Jwk::parse(jwk)?;
    let key: ParsedPublicKey = jwk.verification_key()?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64.as_bytes())
        .map_err(|_| PopError::BadSignature)?;
    key.verify_sig(signing_input.as_bytes(), &signature)
        .map_err(|_| PopError::BadSignature)?;

    let claims: Claims = decode_json(payload_b64, "payload is not a base64url JSON object")?;
    let jti = required_str(&claims.jti, "jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err(PopError::BadClaim("jti"));
    }
    let iat = numeric_date(&claims.iat, "iat")?;
    if now > iat.saturating_add(window.past_secs) {
        return Err(PopError::TooOld);
    }
    if iat > now.saturating_add(window.future_secs) {
        return Err(PopError::IssuedInFuture);
    }
    match expected {
        Expected::Http(req) => check_http(&claims, req)?,
        Expected::Sip(req) => check_sip(&claims, req)?,
    }
    Ok(Proof {
        jkt: jwk.thumbprint(),
        jti: jti.to_owned(),
        iat,
    })
}

/// RFC 9449 §4.3 checks 8-10 and 12.
fn check_http(c: &Claims, req: &HttpRequest<'_>) -> Result<(), PopError> {
    if required_str(&c.htm, "htm")? != req.method {
        return Err(PopError::WrongHtm);
    }
    let htu = required_str(&c.htu, "htu")?;
    match (normalize_htu(htu), normalize_htu(req.uri)) {
        (Some(a), Some(b)) if a == b => {}
        _ => return Err(PopError::WrongHtu),
    }
    if let Some(nonce) = req.nonce
        && required_str(&c.nonce, "nonce")? != nonce
    {
        return Err(PopError::WrongNonce);
    }
    if let Some(token) = req.access_token
        && required_str(&c.ath, "ath")? != access_token_hash(token)
    {
        return Err(PopError::WrongAth);
    }
    Ok(())
}

/// The SIP proof's claims (module docs), every one required.
fn check_sip(c: &Claims, req: &SipRequest<'_>) -> Result<(), PopError> {
    if required_str(&c.method, "method")? != req.method {
        return Err(PopError::WrongMethod);
    }
    if required_str(&c.ruri, "ruri")? != req.ruri {
        return Err(PopError::WrongRuri);
    }
    if required_str(&c.call_id, "call_id")? != req.call_id {
        return Err(PopError::WrongCallId);
    }
    let cseq = match &c.cseq {
        None => return Err(PopError::MissingClaim("cseq")),
        // RFC 3261 §8.1.1.5: a 32-bit unsigned integer less than 2^31.
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|n| *n < 1 << 31)
            .ok_or(PopError::BadClaim("cseq"))?,
        Some(_) => return Err(PopError::BadClaim("cseq")),
    };
    if cseq != u64::from(req.cseq) {
        return Err(PopError::WrongCseq);
    }
    if required_str(&c.nonce, "nonce")? != req.nonce {
        return Err(PopError::WrongNonce);
    }
    if required_str(&c.ath, "ath")? != access_token_hash(req.access_token) {
        return Err(PopError::WrongAth);
    }
    Ok(())
}

/// The header members read (RFC 7515 §4.1); others are ignored, a repeated one is malformed.
#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    typ: Option<Value>,
    #[serde(default)]
    alg: Option<Value>,
    #[serde(default)]
    jwk: Option<Value>,
    #[serde(default)]
    crit: Option<Value>,
}

/// The claims read, of both kinds; others are ignored, a repeated one is malformed. `null` is
/// read as absent.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    jti: Option<Value>,
    #[serde(default)]
    iat: Option<Value>,
    #[serde(default)]
    htm: Option<Value>,
    #[serde(default)]
    htu: Option<Value>,
    #[serde(default)]
    ath: Option<Value>,
    #[serde(default)]
    nonce: Option<Value>,
    #[serde(default)]
    method: Option<Value>,
    #[serde(default)]
    ruri: Option<Value>,
    #[serde(default)]
    call_id: Option<Value>,
    #[serde(default)]
    cseq: Option<Value>,
}

/// ES256 only; `none` and HMAC named as such (RFC 8725 §3.1, RFC 9449 §4.3 check 5).
fn check_alg(alg: Option<&Value>) -> Result<(), PopError> {
    match alg {
        Some(Value::String(a)) if a == "ES256" => Ok(()),
        Some(Value::String(a)) if a.eq_ignore_ascii_case("none") => Err(PopError::AlgNone),
        Some(Value::String(a)) if a.starts_with("HS") => Err(PopError::AlgSymmetric),
        Some(Value::String(a)) => Err(PopError::AlgNotSupported(sanitize_alg(a))),
        None => Err(PopError::Malformed("header has no alg")),
        Some(_) => Err(PopError::Malformed("header alg is not a string")),
    }
}

fn required_str<'a>(v: &'a Option<Value>, name: &'static str) -> Result<&'a str, PopError> {
    match v {
        None => Err(PopError::MissingClaim(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(PopError::BadClaim(name)),
    }
}

/// A NumericDate (RFC 7519 §2: seconds, possibly fractional), fractions dropped.
fn numeric_date(v: &Option<Value>, name: &'static str) -> Result<u64, PopError> {
    match v {
        None => Err(PopError::MissingClaim(name)),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => Ok(u),
            // Truncation of a non-negative finite seconds value is the intent here.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            (None, Some(f)) if (0.0..1.0e15).contains(&f) => Ok(f as u64),
            _ => Err(PopError::BadClaim(name)),
        },
        Some(_) => Err(PopError::BadClaim(name)),
    }
}

/// An `htu` as compared (RFC 9449 §4.3 check 9, RFC 3986 §6.2.2-6.2.3): query and fragment
/// gone, scheme and authority lower-cased, the scheme's default port dropped, an empty path
/// `/`. `None` if it is not an absolute `http`/`https` URI.
fn normalize_htu(uri: &str) -> Option<String> {
    let uri = uri.split(['?', '#']).next().unwrap_or("");
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let authority = authority.to_ascii_lowercase();
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{authority}{path}"))
}

/// Header, payload, signature and signing input of a JWS compact serialization (RFC 7515 §7.1).
/// The signature may be empty: an `alg: none` proof is refused by its `alg`, not its shape.
fn split_compact(jws: &str) -> Result<(&str, &str, &str, &str), PopError> {
    let mut parts = jws.splitn(4, '.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PopError::Malformed("not three dot-separated parts"));
    };
    let b64url = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    };
    if h.is_empty() || p.is_empty() || !b64url(h) || !b64url(p) || !b64url(s) {
        return Err(PopError::Malformed("a part is not base64url"));
    }
    Ok((h, p, s, &jws[..h.len() + 1 + p.len()]))
}

/// A base64url JSON object read into `T`, a repeated member refused. Only an object: a derived
/// `Deserialize` would also read an array by position.
fn decode_json<T: serde::de::DeserializeOwned>(
    part: &str,
    what: &'static str,
) -> Result<T, PopError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.as_bytes())
        .map_err(|_| PopError::Malformed(what))?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(PopError::Malformed(what));
    }
    serde_json::from_slice(&bytes).map_err(|_| PopError::Malformed(what))
}

impl fmt::Debug for HttpRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("access_token", &self.access_token.map(|_| "<redacted>"))
            .field("nonce", &self.nonce.map(|_| "<redacted>"))
            .finish()
    }
}

impl fmt::Debug for SipRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipRequest")
            .field("method", &self.method)
            .field("ruri", &self.ruri)
            .field("call_id", &self.call_id)
            .field("cseq", &self.cseq)
            .field("nonce", &"<redacted>")
            .field("access_token", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests;
