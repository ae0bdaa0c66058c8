//! Fixtures shared by the integration tests: a key directory with our ring, minter and
//! verifier, and hand-built tokens signed with aws-lc-rs (ES256, RS256, HS256) where the crate
//! would refuse to make them. Every key is generated here; none is a real secret.

#![allow(dead_code)] // each test binary uses a different subset

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use imsgw_token::{
    ExternalIssuer, JwkSet, KeyRing, MintRequest, Minter, MinterConfig, Verifier, VerifierConfig,
};
use serde_json::{Value, json};

pub const NOW: u64 = 1_778_581_800;
pub const ISS: &str = "https://waf.ims.example";
pub const AUD: &str = "sip:ims.example";
pub const EXT: &str = "https://op.example";
pub const LIFETIME: u64 = 600;

pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let mut r = [0u8; 8];
        aws_lc_rs::rand::fill(&mut r).expect("rng");
        let p = std::env::temp_dir().join(format!(
            "imsgw-token-adv-{tag}-{}-{}",
            std::process::id(),
            u64::from_le_bytes(r)
        ));
        std::fs::create_dir(&p).expect("mkdir");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Our key directory, ring, minter and verifier, and our signing key as a raw key pair.
pub struct Setup {
    pub dir: TempDir,
    pub ring: KeyRing,
    pub minter: Minter,
    pub verifier: Verifier,
    pub our_pair: EcdsaKeyPair,
}

pub fn config() -> VerifierConfig {
    let mut c = VerifierConfig::new(ISS, AUD);
    c.external.push(ExternalIssuer::new(EXT, "sip-ext"));
    c
}

pub fn setup_with(cfg: VerifierConfig) -> Setup {
    let dir = TempDir::new("setup");
    let ring = KeyRing::load_or_create(dir.path(), NOW).expect("ring");
    let minter = Minter::new(MinterConfig::new(ISS, AUD), &ring);
    let verifier = Verifier::new(cfg, &ring).expect("verifier");
    let our_pair = load_pair(dir.path(), ring.signing_kid());
    Setup {
        dir,
        ring,
        minter,
        verifier,
        our_pair,
    }
}

pub fn setup() -> Setup {
    setup_with(config())
}

/// Reads `<kid>.pem` back as an aws-lc key pair, as an attacker with file access could.
pub fn load_pair(dir: &Path, kid: &str) -> EcdsaKeyPair {
    let pem = std::fs::read_to_string(dir.join(format!("{kid}.pem"))).expect("read");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(b64).expect("b64");
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).expect("pkcs8")
}

pub fn request() -> MintRequest {
    MintRequest {
        sub: "web-user-42".into(),
        impu: "sip:alice@ims.example".into(),
        impi: "alice@ims.example".into(),
        scope: "sip openid".into(),
        client_id: "wic".into(),
        ttl: Some(LIFETIME),
    }
}

pub fn mint(s: &Setup) -> String {
    s.minter
        .mint(NOW, request())
        .expect("mint")
        .0
        .expose()
        .to_owned()
}

pub fn payload() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "web-user-42", "impu": "sip:alice@ims.example",
           "impi": "alice@ims.example", "scope": "sip", "iat": NOW, "nbf": NOW,
           "exp": NOW + LIFETIME, "jti": "hand-made"})
}

pub fn b64json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

pub fn signing_input(header: &Value, payload: &Value) -> String {
    format!("{}.{}", b64json(header), b64json(payload))
}

pub fn es256(pair: &EcdsaKeyPair, kid: &str, payload: &Value) -> String {
    let input = signing_input(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}),
        payload,
    );
    let sig = pair
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

pub fn hs256(secret: &[u8], kid: Option<&str>, payload: &Value) -> String {
    let header = match kid {
        Some(k) => json!({"alg": "HS256", "typ": "JWT", "kid": k}),
        None => json!({"alg": "HS256", "typ": "JWT"}),
    };
    let input = signing_input(&header, payload);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

pub struct Rsa {
    pub pair: aws_lc_rs::rsa::KeyPair,
}

impl Rsa {
    pub fn new() -> Rsa {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .expect("rsa keygen");
        Rsa { pair }
    }

    pub fn sign(&self, kid: &str, payload: &Value) -> String {
        let input = signing_input(&json!({"alg": "RS256", "typ": "JWT", "kid": kid}), payload);
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .expect("rsa sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    pub fn jwk(&self, kid: &str) -> Value {
        let public = self.pair.public_key();
        json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
               "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
               "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero())})
    }
}

pub fn ec_jwk(pair: &EcdsaKeyPair, kid: &str) -> Value {
    let point = pair.public_key().as_ref();
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
           "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])})
}

pub fn jwk_set(keys: Vec<Value>) -> JwkSet {
    serde_json::from_value(json!({ "keys": keys })).expect("JwkSet")
}

pub fn new_ec_pair() -> EcdsaKeyPair {
    EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen")
}

pub fn ext_payload() -> Value {
    let mut p = payload();
    p["iss"] = json!(EXT);
    p["aud"] = json!("sip-ext");
    p
}
