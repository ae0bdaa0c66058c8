//! Our ES256 (ECDSA P-256 with SHA-256, RFC 7518 §3.4) signing keys, each named by a `kid`
//! (RFC 7517 §4.5). The newest key signs; all of them verify, so tokens signed before a
//! rotation stay valid until they expire. Builds the public JWK Set (RFC 7517 §5) the WAF
//! publishes.
//!
//! Private key material lives only in this module's [`KeyRing`] and is never shown by
//! `Debug`, `Display` or an error. Reading and writing key files is in `keydir.rs`.

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::kid;

/// Why a key ring could not be loaded, created or changed. Names files, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A key file or the key directory is open to other users.
    #[error("{path} has mode {mode:o}, open to group or others; run `chmod {want:o} {path}`")]
    InsecurePermissions {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// What they should be.
        want: u32,
    },
    /// A file does not hold a usable P-256 private key.
    #[error("{path} is not a PEM P-256 private key (PKCS#8 or SEC1): {why}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A `kid` is empty, too long, or has characters other than `A-Z a-z 0-9 - _ .`.
    #[error("key id {kid:?} must be 1-64 characters of A-Z a-z 0-9 - _ . and not start with '.'")]
    BadKid {
        /// The offending id.
        kid: String,
    },
    /// Two keys have the same `kid`.
    #[error("key id {kid:?} is used by more than one key")]
    DuplicateKid {
        /// The repeated id.
        kid: String,
    },
    /// No key was given.
    #[error("no signing key configured")]
    NoKeys,
    /// The crypto library failed to generate or encode a key.
    #[error("key generation failed")]
    Crypto,
}

/// One ES256 key pair.
#[derive(Clone)]
pub(crate) struct RingKey {
    pub(crate) kid: String,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    jwk: serde_json::Value,
}

/// Our ES256 keys, oldest first; the last one signs. Never empty.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl KeyRing {
    /// A ring of one freshly generated key that exists only in memory (tests, benchmarks, and
    /// single-instance setups that accept that a restart invalidates every token).
    pub fn ephemeral(now: u64) -> Result<KeyRing, KeyError> {
        let (kid, pkcs8) = generate(now)?;
        let key = ring_key(kid, &pkcs8).map_err(|_| KeyError::Crypto)?;
        Ok(KeyRing { keys: vec![key] })
    }

    /// Keys from PEM files named in configuration (operator-managed keys), with the `kid` given
    /// for each. The **last** entry signs; the others only verify. File permissions are the
    /// operator's business here (a mounted secret is often 0644 inside its container).
    pub fn from_pem_files(files: &[(String, PathBuf)]) -> Result<KeyRing, KeyError> {
        let mut keys = Vec::with_capacity(files.len());
        for (kid, path) in files {
            if !kid::is_valid_kid(kid) {
                return Err(KeyError::BadKid { kid: kid.clone() });
            }
            let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                path: path.clone(),
                source,
            })?;
            keys.push(key_from_pem(kid.clone(), &text, path)?);
        }
        KeyRing::from_keys(keys)
    }

    /// Builds a ring from keys in signing order (last signs), refusing duplicates.
    pub(crate) fn from_keys(keys: Vec<RingKey>) -> Result<KeyRing, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.kid == k.kid) {
                return Err(KeyError::DuplicateKid { kid: k.kid.clone() });
            }
        }
        Ok(KeyRing { keys })
    }

    /// The `kid` of the key that signs new tokens.
    pub fn signing_kid(&self) -> &str {
        &self.signing().kid
    }

    /// Every `kid` in the ring, oldest first.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    /// The RFC 7517 JWK Set of the public keys, for the WAF's `jwks_uri`:
    /// `{"keys":[{"kty":"EC","crv":"P-256","x":..,"y":..,"kid":..,"use":"sig","alg":"ES256"}]}`.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self.keys.iter().map(|k| k.jwk.clone()).collect();
        serde_json::json!({ "keys": keys })
    }

    pub(crate) fn signing(&self) -> &RingKey {
        // `from_keys` and `ephemeral` never build an empty ring, and nothing removes keys.
        #[allow(clippy::unwrap_used)]
        self.keys.last().unwrap()
    }

    pub(crate) fn keys(&self) -> &[RingKey] {
        &self.keys
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("kids", &self.kids().collect::<Vec<_>>())
            .field("signing_kid", &self.signing_kid())
            .finish()
    }
}

/// A new P-256 key: its `kid` and its PKCS#8 v1 DER.
pub(crate) fn generate(now: u64) -> Result<(String, Vec<u8>), KeyError> {
    let pair =
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| KeyError::Crypto)?;
    let pkcs8 = pair.to_pkcs8v1().map_err(|_| KeyError::Crypto)?;
    Ok((kid::new_kid(now), pkcs8.as_ref().to_vec()))
}

/// Parses PEM text into a ring key; `path` only names the file in errors.
pub(crate) fn key_from_pem(kid: String, text: &str, path: &Path) -> Result<RingKey, KeyError> {
    let bad = |why| KeyError::BadKey {
        path: path.to_path_buf(),
        why,
    };
    let der = crate::pem::decode_private_key(text).map_err(bad)?;
    ring_key(kid, &der).map_err(bad)
}

/// A ring key from a P-256 private key in PKCS#8 or SEC1 DER.
fn ring_key(kid: String, der: &[u8]) -> Result<RingKey, &'static str> {
    let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
        .map_err(|_| "not a P-256 private key")?;
    // jsonwebtoken's ES256 signer wants PKCS#8, so SEC1 input is normalised here.
    let pkcs8 = pair
        .to_pkcs8v1()
        .map_err(|_| "cannot re-encode as PKCS#8")?;
    let point = pair.public_key().as_ref();
    // RFC 7518 §6.2.1: x and y are the 32-byte coordinates of the uncompressed point 04||x||y.
    if point.len() != 65 || point[0] != 4 {
        return Err("unexpected public key encoding");
    }
    let jwk = serde_json::json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        "kid": kid,
        "use": "sig",
        "alg": "ES256",
    });
    Ok(RingKey {
        decoding: DecodingKey::from_ec_der(point),
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        kid,
        jwk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn jwks_lists_public_p256_keys_rfc7517_section_5() {
        let ring = KeyRing::ephemeral(1_700_000_000).expect("keygen");
        let jwks = ring.jwks();
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        assert_eq!(key["alg"], "ES256");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kid"], ring.signing_kid());
        for c in ["x", "y"] {
            let bytes = URL_SAFE_NO_PAD
                .decode(key[c].as_str().expect("str"))
                .expect("b64");
            assert_eq!(bytes.len(), 32);
        }
        assert!(key.get("d").is_none(), "private part must not be published");
        let parsed: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).expect("JwkSet");
        assert_eq!(parsed.keys.len(), 1);
    }

    #[test]
    fn from_pem_files_last_key_signs_and_sec1_is_accepted() {
        let dir = TempDir::new("pemfiles");
        let (_, a) = generate(0).expect("keygen");
        let pa = dir.path().join("a.pem");
        std::fs::write(&pa, crate::pem::encode_private_key(&a)).expect("write");
        let sec1 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen");
        let sec1_der =
            aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::EcPrivateKeyRfc5915Der>::as_der(
                &sec1.private_key(),
            )
            .expect("sec1");
        let pb = dir.path().join("b.pem");
        let b64 = base64::engine::general_purpose::STANDARD.encode(sec1_der.as_ref());
        std::fs::write(
            &pb,
            format!("-----BEGIN EC PRIVATE KEY-----\n{b64}\n-----END EC PRIVATE KEY-----\n"),
        )
        .expect("write");
        let ring = KeyRing::from_pem_files(&[("op-a".into(), pa.clone()), ("op-b".into(), pb)])
            .expect("load");
        assert_eq!(ring.signing_kid(), "op-b");
        assert_eq!(ring.kids().collect::<Vec<_>>(), ["op-a", "op-b"]);

        let dup = KeyRing::from_pem_files(&[("x".into(), pa.clone()), ("x".into(), pa.clone())]);
        assert!(matches!(dup, Err(KeyError::DuplicateKid { .. })));
        let bad = KeyRing::from_pem_files(&[("a/b".into(), pa)]);
        assert!(matches!(bad, Err(KeyError::BadKid { .. })));
        assert!(matches!(
            KeyRing::from_pem_files(&[]),
            Err(KeyError::NoKeys)
        ));
    }

    #[test]
    fn a_p384_key_or_garbage_is_refused_without_echoing_it() {
        let dir = TempDir::new("badkey");
        let p384 = EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING)
            .expect("keygen");
        let der = p384.to_pkcs8v1().expect("pkcs8");
        let path = dir.path().join("p384.pem");
        let pem = crate::pem::encode_private_key(der.as_ref());
        std::fs::write(&path, &pem).expect("write");
        let err = KeyRing::from_pem_files(&[("p384".into(), path)]).expect_err("P-384 refused");
        let text = format!("{err} {err:?}");
        assert!(matches!(err, KeyError::BadKey { .. }), "{text}");
        let body_line = pem.lines().nth(1).expect("body");
        assert!(!text.contains(body_line), "{text}");
    }

    #[test]
    fn debug_shows_kids_only() {
        let ring = KeyRing::ephemeral(0).expect("keygen");
        let shown = format!("{ring:?}");
        assert!(shown.contains(ring.signing_kid()));
        let x = ring.jwks()["keys"][0]["x"].as_str().expect("x").to_owned();
        assert!(!shown.contains(&x), "{shown}");
        assert!(!shown.to_lowercase().contains("content"), "{shown}");
    }
}
