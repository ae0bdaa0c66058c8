//! The client's side of a proof: an ES256 key that signs proofs with its public JWK in the
//! header. For tests, tools and load generators; a browser WIC makes its own with WebCrypto.
//!
//! Owns: making a proof. Must not touch: checking one.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::jwk::{Jkt, jwk_thumbprint};
use crate::keys::KeyError;

/// A P-256 key pair that makes proofs. `Debug` shows its thumbprint only.
pub struct ProofKey {
    pair: EcdsaKeyPair,
    jwk: Value,
    jkt: Jkt,
}

impl ProofKey {
    /// A fresh key, in memory only.
    pub fn generate() -> Result<ProofKey, KeyError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| KeyError::Crypto)?;
        let point = pair.public_key().as_ref();
        // SEC 1 §2.3.3: aws-lc gives P-256 public keys as the uncompressed point 04 || x || y.
        if point.len() != 65 || point[0] != 4 {
            return Err(KeyError::Crypto);
        }
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        let jkt = jwk_thumbprint(&jwk).map_err(|_| KeyError::Crypto)?;
        Ok(ProofKey { pair, jwk, jkt })
    }

    /// The RFC 7638 thumbprint of the public key.
    pub fn jkt(&self) -> &Jkt {
        &self.jkt
    }

    /// The public key as a JWK (`kty`, `crv`, `x`, `y`).
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// A proof of type `typ` (e.g. [`super::DPOP_TYP`]) over `claims`: the compact JWS with
    /// header `{"typ":…,"alg":"ES256","jwk":…}`.
    pub fn sign(&self, typ: &str, claims: &Value) -> Result<String, KeyError> {
        let header = json!({ "typ": typ, "alg": "ES256", "jwk": self.jwk });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| KeyError::Crypto)?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }
}

impl fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProofKey")
            .field("jkt", &self.jkt)
            .finish_non_exhaustive()
    }
}
