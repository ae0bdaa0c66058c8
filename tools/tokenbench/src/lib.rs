//! Fixtures for the token benchmarks: access tokens of the shape the WAF mints (imsgw-token's
//! `Minter`: `typ: at+jwt`, a `kid`, RFC 9068 claims plus `impu`/`impi`), signed ES256 by
//! imsgw-token and EdDSA (RFC 8037) by jsonwebtoken; the verifiers and raw keys each bench
//! needs; and two lean steps built straight on serde_json and aws-lc-rs, the claim checks alone
//! ([`check_claims`]) and a full verification without jsonwebtoken ([`LeanEs256`]); and
//! [`ThreadCpu`], the measurement the single-threaded benches use.
//!
//! Setup panics on failure: a fixture that cannot be built is a bug in the bench, not input.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, ParsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cpu_time::ThreadTime;
use criterion::Criterion;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use imsgw_token::{
    Algorithm, Claims, ExternalIssuer, JwkSet, KeyRing, MintRequest, Minter, MinterConfig, Secret,
    Verifier, VerifierConfig,
};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// `iss` of our WAF.
pub const ISSUER: &str = "https://waf.ims.example.net";
/// `iss` of an external issuer. imsgw's verifier takes EdDSA only from a configured external
/// issuer today, so the EdDSA tokens (and, for a like-for-like row, one ES256 token) are its.
pub const EXTERNAL_ISSUER: &str = "https://idp.ims.example.net";
/// `aud` of every token: the SIP service.
pub const AUDIENCE: &str = "sip:ims.example.net";
/// The scope the edge requires (`waf.scope`).
pub const SCOPE: &str = "sip";
/// Clock skew tolerated, as the verifier's default.
pub const LEEWAY: u64 = 60;

/// Wall-clock seconds: jsonwebtoken's own `exp` check reads the system clock, so every token
/// is minted at the real now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What one sign-in asks the WAF for, as the WAF's token endpoint fills it in.
pub fn mint_request() -> MintRequest {
    MintRequest {
        sub: "3f9c2a7e-5b1d-4e8a-9c0f-6d2b7a1e4c55".into(),
        impu: "sip:alice@ims.example.net".into(),
        impi: "alice@ims.example.net".into(),
        scope: "sip openid".into(),
        client_id: "wic".into(),
        ttl: Some(600),
    }
}

/// Every token and key the benches use, made once.
pub struct Fixtures {
    /// When the tokens were minted.
    pub now: u64,
    /// Our ES256 key ring (one key).
    pub ring: KeyRing,
    /// Ours, ES256, minted by imsgw-token's `Minter`: what the edge verifies today.
    pub es256: String,
    /// The same with `iss` the external issuer, signed by the same key.
    pub es256_external: String,
    /// The external issuer's EdDSA token with the same claims, signed by jsonwebtoken.
    pub eddsa: String,
    /// Ours, HS256: imsgw's verify path with a near-free signature (the path's floor).
    pub hs256: String,
    /// The HS256 secret.
    pub hmac_secret: Vec<u8>,
    /// The P-256 public key, SEC1 uncompressed (`04||x||y`).
    pub es256_public: Vec<u8>,
    /// The Ed25519 public key (32 bytes).
    pub ed25519_public: Vec<u8>,
    /// The Ed25519 key pair as PKCS#8, for signing.
    pub ed25519_pkcs8: Vec<u8>,
    /// The external issuer's JWK Set: the P-256 key and the Ed25519 key.
    pub external_jwks: JwkSet,
}

impl Fixtures {
    /// New keys and tokens minted now.
    pub fn new() -> Fixtures {
        let now = unix_now();
        let ring = KeyRing::ephemeral(now).expect("P-256 keygen");
        let (es256, _) = minter(ISSUER, &ring)
            .mint(now, mint_request())
            .expect("mint");
        let (es256_external, ext_claims) = minter(EXTERNAL_ISSUER, &ring)
            .mint(now, mint_request())
            .expect("mint");

        let ed_pair = Ed25519KeyPair::generate().expect("Ed25519 keygen");
        let ed25519_pkcs8 = ed_pair.to_pkcs8().expect("pkcs8").as_ref().to_vec();
        let ed25519_public = ed_pair.public_key().as_ref().to_vec();
        let eddsa = sign_eddsa(&ext_claims, &EncodingKey::from_ed_der(&ed25519_pkcs8));

        let hmac_secret = b"0123456789abcdef0123456789abcdef-bench".to_vec();
        let mut hs_header = Header::new(Algorithm::HS256);
        hs_header.typ = Some("at+jwt".into());
        let (_, our_claims) = minter(ISSUER, &ring)
            .mint(now, mint_request())
            .expect("mint");
        let hs256 = jsonwebtoken::encode(
            &hs_header,
            &our_claims,
            &EncodingKey::from_secret(&hmac_secret),
        )
        .expect("HS256");

        let jwks = ring.jwks();
        let ec = &jwks["keys"][0];
        let mut es256_public = vec![4u8];
        for c in ["x", "y"] {
            let coord = ec[c].as_str().expect("JWK coordinate");
            es256_public.extend(URL_SAFE_NO_PAD.decode(coord).expect("base64url"));
        }
        let mut ec_ext = ec.clone();
        ec_ext["kid"] = json!(ring.signing_kid());
        let okp = json!({
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": ED_KID,
            "x": URL_SAFE_NO_PAD.encode(&ed25519_public),
        });
        let external_jwks =
            serde_json::from_value(json!({ "keys": [ec_ext, okp] })).expect("JwkSet");

        Fixtures {
            now,
            ring,
            es256: es256.expose().to_owned(),
            es256_external: es256_external.expose().to_owned(),
            eddsa,
            hs256,
            hmac_secret,
            es256_public,
            ed25519_public,
            ed25519_pkcs8,
            external_jwks,
        }
    }

    /// imsgw-token's verifier as the edge configures it (required scope, our keys, the
    /// external issuer accepting ES256 and EdDSA), remembering at most `cache` tokens: 0 makes
    /// every call a miss that pays for parsing and the signature.
    pub fn verifier(&self, cache: usize) -> Verifier {
        let mut config = VerifierConfig::new(ISSUER, AUDIENCE);
        config.required_scope = Some(SCOPE.into());
        config.cache_capacity = cache;
        config.hmac_secret = Some(Secret::new(self.hmac_secret.clone()));
        let mut ext = ExternalIssuer::new(EXTERNAL_ISSUER, AUDIENCE);
        ext.algorithms = vec![Algorithm::ES256, Algorithm::EdDSA];
        ext.require_typ = Some("at+jwt".into());
        config.external.push(ext);
        let mut v = Verifier::new(config, &self.ring).expect("verifier config");
        v.set_external_jwks(EXTERNAL_ISSUER, &self.external_jwks)
            .expect("JWK Set");
        v
    }

    /// The Ed25519 public key as jsonwebtoken's `DecodingKey` (from its JWK, as a driver would).
    pub fn eddsa_decoding_key(&self) -> DecodingKey {
        let jwk: &Jwk = self
            .external_jwks
            .find(ED_KID)
            .expect("Ed25519 key in the set");
        DecodingKey::from_jwk(jwk).expect("OKP JWK")
    }

    /// The P-256 public key as jsonwebtoken's `DecodingKey`, built as imsgw-token builds it.
    pub fn es256_decoding_key(&self) -> DecodingKey {
        DecodingKey::from_ec_der(&self.es256_public)
    }
}

impl Default for Fixtures {
    fn default() -> Self {
        Fixtures::new()
    }
}

/// `kid` of the external issuer's Ed25519 key.
pub const ED_KID: &str = "ed-2026";

fn minter(issuer: &str, ring: &KeyRing) -> Minter {
    Minter::new(MinterConfig::new(issuer, AUDIENCE), ring)
}

/// A token with `claims`, signed EdDSA (RFC 8037 §3.1) with `key`, headed like ours.
pub fn sign_eddsa(claims: &Claims, key: &EncodingKey) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(ED_KID.into());
    jsonwebtoken::encode(&header, claims, key).expect("EdDSA sign")
}

/// jsonwebtoken's own validation set up for our tokens: `alg`, `iss`, `aud`, `exp`/`nbf` with
/// leeway, and the claims imsgw requires.
pub fn jsonwebtoken_validation(alg: Algorithm, issuer: &str) -> Validation {
    let mut v = Validation::new(alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[AUDIENCE]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.validate_nbf = true;
    v.leeway = LEEWAY;
    v
}

/// Why a lean check refused a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeanError {
    /// Not a JWS compact serialization with JSON header and payload.
    Malformed,
    /// Not the header we sign with.
    Header,
    /// The signature does not verify.
    Signature,
    /// A claim is missing, of the wrong type, or out of its window.
    Claims,
}

/// The JOSE header fields imsgw reads.
#[derive(Deserialize)]
struct LeanHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// Header, payload, signature and signing input of a compact JWS (RFC 7515 §7.1).
pub fn split_compact(token: &str) -> Result<(&str, &str, &str, &str), LeanError> {
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(LeanError::Malformed);
    };
    Ok((h, p, s, &token[..h.len() + 1 + p.len()]))
}

/// The claim work of a verification without any signature: split, base64url-decode and parse
/// header and payload as imsgw does (the payload into a JSON map, as the verifier must read
/// `iss` before it picks a key), then the claims: types, `exp`/`nbf`/`iat` with leeway, `iss`,
/// `aud`, the canonical `impu` and the required scope. The floor under every row.
pub fn check_claims(now: u64, token: &str, want_alg: &str) -> Result<Claims, LeanError> {
    let (h, p, _, _) = split_compact(token)?;
    check_claims_parts(now, h, p, want_alg)
}

fn check_claims_parts(now: u64, h: &str, p: &str, want_alg: &str) -> Result<Claims, LeanError> {
    let header: LeanHeader = decode_json(h)?;
    if header.crit.is_some() || header.alg != want_alg || header.kid.is_none() {
        return Err(LeanError::Header);
    }
    let payload: Map<String, Value> = decode_json(p)?;
    let payload = Value::Object(payload);
    // `Claims` deserializes `impu` by parsing it into its canonical form.
    let claims = Claims::deserialize(&payload).map_err(|_| LeanError::Claims)?;
    let horizon = now.saturating_add(LEEWAY);
    let in_window =
        now <= claims.exp.saturating_add(LEEWAY) && claims.nbf <= horizon && claims.iat <= horizon;
    let scoped = claims.scope.split(' ').any(|s| s == SCOPE);
    if !in_window || claims.iss != ISSUER || claims.aud != AUDIENCE || !scoped {
        return Err(LeanError::Claims);
    }
    Ok(claims)
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, LeanError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| LeanError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| LeanError::Malformed)
}

/// A complete ES256 verification without jsonwebtoken: the claim work of [`check_claims`]
/// and the signature checked by aws-lc-rs with the public key parsed once, at load.
pub struct LeanEs256 {
    key: ParsedPublicKey,
}

impl LeanEs256 {
    /// A verifier for the P-256 key `public` (SEC1 uncompressed).
    pub fn new(public: &[u8]) -> LeanEs256 {
        LeanEs256 {
            key: ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public).expect("P-256 point"),
        }
    }

    /// Checks `token` at `now`.
    pub fn verify(&self, now: u64, token: &str) -> Result<Claims, LeanError> {
        let (h, p, s, input) = split_compact(token)?;
        let mut sig = [0u8; 64];
        match URL_SAFE_NO_PAD.decode_slice(s, &mut sig) {
            Ok(64) => {}
            _ => return Err(LeanError::Signature),
        }
        self.key
            .verify_sig(input.as_bytes(), &sig)
            .map_err(|_| LeanError::Signature)?;
        check_claims_parts(now, h, p, "ES256")
    }
}

/// The signing input and raw signature of `token`, for the signature-only rows.
pub fn signing_input_and_signature(token: &str) -> (Vec<u8>, Vec<u8>) {
    let (_, _, s, input) = split_compact(token).expect("compact JWS");
    let sig = URL_SAFE_NO_PAD.decode(s).expect("base64url signature");
    (input.as_bytes().to_vec(), sig)
}

/// A fresh P-256 key pair as aws-lc-rs holds it, and its PKCS#8 (for the signing rows).
pub fn p256_keypair() -> (EcdsaKeyPair, Vec<u8>) {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 keygen");
    let pkcs8 = pair.to_pkcs8v1().expect("pkcs8").as_ref().to_vec();
    (pair, pkcs8)
}

/// Checks that the fixtures verify everywhere they should, so a bench never times an error.
pub fn self_check(f: &Fixtures) {
    let mut v = f.verifier(0);
    for t in [&f.es256, &f.es256_external, &f.eddsa, &f.hs256] {
        v.verify(f.now, t).expect("imsgw verifies the fixture");
    }
    check_claims(f.now, &f.es256, "ES256").expect("claims");
    LeanEs256::new(&f.es256_public)
        .verify(f.now, &f.es256)
        .expect("lean ES256");
    let (input, sig) = signing_input_and_signature(&f.eddsa);
    ParsedPublicKey::new(&ED25519, &f.ed25519_public)
        .expect("Ed25519 key")
        .verify_sig(&input, &sig)
        .expect("Ed25519 signature");
}

/// Criterion measurement by the CPU time of the benchmarking thread. The machine is shared
/// with other work, and wall time counts the slices in which this thread was preempted; CPU
/// time does not, so rows measured minutes apart stay comparable. Fit only for work that runs
/// on the calling thread (not the offload rows, which measure wall time on purpose).
pub struct ThreadCpu(WallTime);

impl Measurement for ThreadCpu {
    type Intermediate = ThreadTime;
    type Value = Duration;

    fn start(&self) -> ThreadTime {
        ThreadTime::now()
    }
    fn end(&self, i: ThreadTime) -> Duration {
        i.elapsed()
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_secs_f64() * 1e9
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, as wall time's: the same units and printing.
        self.0.formatter()
    }
}

/// The settings of every bench here: short runs on a small shared machine.
pub fn criterion_config<M: Measurement>(measurement: M) -> Criterion<M> {
    Criterion::default()
        .with_measurement(measurement)
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// [`criterion_config`] measuring thread CPU time.
pub fn cpu_config() -> Criterion<ThreadCpu> {
    criterion_config(ThreadCpu(WallTime))
}
