//! Sealed values: state the WAF hands to a browser instead of keeping it, encrypted and
//! authenticated (AES-256-GCM, a random nonce per value) and with an expiry inside. A sign-in in
//! progress lives in such a cookie, so an anonymous client cannot make the WAF hold anything by
//! starting sign-ins.
//!
//! The key is made once and kept in the store (`secret` kind), so sealed values outlive a
//! restart with the durable store, and every instance sharing a store shares it.
//!
//! Owns: the sealing key and the format. Must not touch: what is sealed.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::store::{Store, StoreError, StoreExt};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Seals and opens values of one purpose (the purpose is authenticated too: a value sealed for
/// one cannot be opened as another).
pub struct Sealer {
    key: LessSafeKey,
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    exp: u64,
    v: T,
}

impl Sealer {
    /// The store's sealing key, made and stored on first use.
    pub fn from_store(store: &dyn Store, now: u64) -> Result<Self, StoreError> {
        let made = {
            let mut b = [0u8; 32];
            rand::fill(&mut b);
            B64.encode(b)
        };
        // Kept for good: about 30 000 years from now.
        let forever = now + (1u64 << 40);
        let key = store.update::<String, String>("secret", "sealing-key", now, |k| match k {
            Some((k, exp)) => (Some((k.clone(), exp)), k),
            None => (Some((made.clone(), forever)), made.clone()),
        })?;
        let bytes = B64
            .decode(key.as_bytes())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                StoreError::Unavailable("the stored sealing key is not 32 bytes".into())
            })?;
        Self::new(&bytes)
    }

    fn new(bytes: &[u8]) -> Result<Self, StoreError> {
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| StoreError::Unavailable("unusable sealing key".into()))?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// `value` for `purpose`, good until `exp`, as a URL-safe string.
    pub fn seal<T: Serialize>(&self, purpose: &str, value: &T, exp: u64) -> Option<String> {
        let mut data = serde_json::to_vec(&Envelope { exp, v: value }).ok()?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.as_bytes()),
                &mut data,
            )
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Some(B64.encode(out))
    }

    /// The value sealed for `purpose`, if `sealed` is one of ours, unaltered and not expired.
    pub fn open<T: DeserializeOwned>(&self, purpose: &str, sealed: &str, now: u64) -> Option<T> {
        let raw = B64.decode(sealed.as_bytes()).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut data)
            .ok()?;
        let e: Envelope<T> = serde_json::from_slice(plain).ok()?;
        (now < e.exp).then_some(e.v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waf::store::MemoryStore;

    #[test]
    fn sealed_values_open_only_unaltered_for_their_purpose_and_in_time() {
        let store = MemoryStore::new();
        let s = Sealer::from_store(&store, 100).unwrap_or_else(|e| panic!("{e}"));
        let v = s
            .seal("login", &"secret".to_string(), 200)
            .unwrap_or_default();
        assert!(!v.contains("secret"));
        assert_eq!(
            s.open::<String>("login", &v, 150).as_deref(),
            Some("secret")
        );
        assert_eq!(s.open::<String>("login", &v, 200), None, "expired");
        assert_eq!(s.open::<String>("other", &v, 150), None, "another purpose");
        let mut bytes = B64.decode(v.as_bytes()).unwrap_or_default();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            s.open::<String>("login", &B64.encode(bytes), 150),
            None,
            "altered"
        );
        assert_eq!(s.open::<String>("login", "garbage", 150), None);
        // The same store gives the same key: a restart (durable store) keeps sealed values good.
        let again = Sealer::from_store(&store, 120).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            again.open::<String>("login", &v, 150).as_deref(),
            Some("secret")
        );
        // Another store, another key.
        let other = Sealer::from_store(&MemoryStore::new(), 100).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(other.open::<String>("login", &v, 150), None);
    }
}
