//! Flow tokens (RFC 5626 §5.2): the user part of the Path and Record-Route URIs that the edge
//! puts into requests, naming the WebSocket connection ("flow") that a request from the IMS side
//! must go down. The token is HMAC-protected so that the IMS side (or anyone who can reach
//! `sip.listen`) cannot aim a request at a connection it was not given.
//!
//! Owns: the token format and its key. Must not touch: sockets, the flow table.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// One WebSocket connection. Ids are never reused within a key's life: they start at a random
/// value per process and count up, so a token from before a restart names no live flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

impl FlowId {
    /// A flow id not yet used in this process. Ids start at a random point so that tokens
    /// minted before a restart (with a kept key) name no flow of this run: those requests get
    /// 430, not a stranger's phone. WebSockets and phones share the one sequence.
    pub fn next() -> Self {
        static NEXT: std::sync::OnceLock<std::sync::atomic::AtomicU64> = std::sync::OnceLock::new();
        let next =
            NEXT.get_or_init(|| std::sync::atomic::AtomicU64::new(rand::random::<u64>() >> 1));
        FlowId(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Bytes of HMAC kept in a token: 96 bits, as RFC 5626 §5.2's example suggests is plenty
/// against forgery over the network.
const MAC_LEN: usize = 12;
/// Encoded length: base64url of 8 + 12 bytes.
const TOKEN_LEN: usize = 27;

/// The secret behind flow tokens. `Debug` never shows it.
#[derive(Clone)]
pub struct FlowKey {
    key: [u8; 32],
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FlowKey(<redacted>)")
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowTokenError {
    #[error("not a flow token")]
    Malformed,
    #[error("flow token does not verify")]
    Forged,
}

impl FlowKey {
    /// A key from secret material of at least 32 bytes (longer input is hashed down).
    pub fn from_secret(secret: &[u8]) -> Option<Self> {
        if secret.len() < 32 {
            return None;
        }
        use sha2::Digest;
        let digest = Sha256::digest(secret);
        let mut key = [0u8; 32];
        key.copy_from_slice(&digest);
        Some(Self { key })
    }

    /// A random key, for a gateway that keeps no key file.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Self { key }
    }

    /// The token for `flow`: base64url(flow id ‖ HMAC-SHA256(key, flow id)[..12]).
    pub fn token(&self, flow: FlowId) -> String {
        let id = flow.0.to_be_bytes();
        let mac = self.mac(&id);
        let mut raw = [0u8; 8 + MAC_LEN];
        raw[..8].copy_from_slice(&id);
        raw[8..].copy_from_slice(&mac[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The flow a token names, if the token is ours.
    pub fn verify(&self, token: &str) -> Result<FlowId, FlowTokenError> {
        if token.len() != TOKEN_LEN {
            return Err(FlowTokenError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| FlowTokenError::Malformed)?;
        if raw.len() != 8 + MAC_LEN {
            return Err(FlowTokenError::Malformed);
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&raw[..8]);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            // A 32-byte key is always a valid HMAC key.
            .expect("HMAC accepts any key length");
        mac.update(&id);
        mac.verify_truncated_left(&raw[8..])
            .map_err(|_| FlowTokenError::Forged)?;
        Ok(FlowId(u64::from_be_bytes(id)))
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            // A 32-byte key is always a valid HMAC key.
            .expect("HMAC accepts any key length");
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_is_uri_user_safe() {
        let key = FlowKey::random();
        let t = key.token(FlowId(0xdead_beef_0000_0001));
        assert_eq!(t.len(), TOKEN_LEN);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(key.verify(&t), Ok(FlowId(0xdead_beef_0000_0001)));
    }

    #[test]
    fn rfc5626_5_2_forged_or_foreign_tokens_are_refused() {
        let key = FlowKey::random();
        let other = FlowKey::random();
        let t = other.token(FlowId(7));
        assert_eq!(key.verify(&t), Err(FlowTokenError::Forged));
        let mut bytes = key.token(FlowId(7)).into_bytes();
        bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        assert!(key.verify(&tampered).is_err());
        assert_eq!(key.verify("alice"), Err(FlowTokenError::Malformed));
        assert_eq!(
            key.verify(&"!".repeat(TOKEN_LEN)),
            Err(FlowTokenError::Malformed)
        );
    }

    #[test]
    fn key_needs_32_bytes_and_hides_itself() {
        assert!(FlowKey::from_secret(b"short").is_none());
        let k = FlowKey::from_secret(&[7u8; 40]).expect("long enough");
        assert_eq!(format!("{k:?}"), "FlowKey(<redacted>)");
    }
}
