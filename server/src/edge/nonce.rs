//! Stateless nonces bound to a flow: the time a nonce was made and an HMAC over that time and
//! the flow id, under a key of the process. A nonce is good on the connection (or UDP source)
//! it was given to only, for the lifetime its owner chose; one copied to another flow fails,
//! and nothing is stored per nonce, so handing them out costs no memory. Flow ids are never
//! reused in a process ([`FlowId::next`]), so a closed flow's nonces name no later flow.
//!
//! Used for Digest (`digest`: RFC 7616 `nonce`) and for SIP proofs of possession (`pop`:
//! `Proof-Nonce`), each with its own key, so that one kind is never taken for the other.
//!
//! Owns: the nonce format and its key. Must not touch: what a nonce is used for, replays.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::FlowId;

/// Bytes of HMAC kept in a nonce: 128 bits.
const MAC_LEN: usize = 16;
/// Bytes of a decoded nonce: the issue time (8, big-endian Unix seconds) and the HMAC.
const RAW_LEN: usize = 8 + MAC_LEN;

/// Issues and checks nonces for flows. `Debug` never shows the key.
#[derive(Clone)]
pub struct FlowNonces {
    key: [u8; 32],
    lifetime_secs: u64,
}

impl fmt::Debug for FlowNonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowNonces")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

/// Why a nonce is not one of ours for this flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// Not the shape of a nonce of this kind (or made with another key).
    #[error("the nonce is not one of ours")]
    NotOurs,
    /// Our shape, but its HMAC does not verify for this flow: given to another connection, or
    /// forged.
    #[error("the nonce is not one this connection was given")]
    OtherFlow,
}

impl FlowNonces {
    /// A fresh random key; nonces live `lifetime_secs` (a restart makes clients ask again).
    pub fn new(lifetime_secs: u64) -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Self { key, lifetime_secs }
    }

    /// A nonce for `flow`, issued at `now` (Unix seconds): 32 base64url characters.
    pub fn issue(&self, flow: FlowId, now: u64) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&now.to_be_bytes());
        raw[8..].copy_from_slice(&self.mac(flow, now)[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `nonce` is one this key gave `flow`: `Ok(true)` fresh, `Ok(false)` stale (issued
    /// more than the lifetime ago, or ahead of `now`), `Err` not ours for this flow.
    pub fn check(&self, flow: FlowId, nonce: &str, now: u64) -> Result<bool, NonceError> {
        let raw = URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| NonceError::NotOurs)?;
        let Ok(raw) = <[u8; RAW_LEN]>::try_from(raw) else {
            return Err(NonceError::NotOurs);
        };
        let mut at = [0u8; 8];
        at.copy_from_slice(&raw[..8]);
        let at = u64::from_be_bytes(at);
        let want = self.mac(flow, at);
        if !bool::from(raw[8..].ct_eq(&want[..MAC_LEN])) {
            return Err(NonceError::OtherFlow);
        }
        Ok(at <= now && now < at.saturating_add(self.lifetime_secs))
    }

    fn mac(&self, flow: FlowId, at: u64) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            // HMAC takes a key of any length (RFC 2104 §2), so this cannot fail.
            .expect("HMAC accepts any key length");
        mac.update(&at.to_be_bytes());
        mac.update(&flow.0.to_be_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_good_on_its_own_flow_for_its_lifetime_only() {
        let n = FlowNonces::new(300);
        let nonce = n.issue(FlowId(1), 1000);
        assert_eq!(nonce.len(), 32);
        assert_eq!(n.check(FlowId(1), &nonce, 1000), Ok(true));
        assert_eq!(n.check(FlowId(1), &nonce, 1299), Ok(true));
        assert_eq!(n.check(FlowId(1), &nonce, 1300), Ok(false), "expired");
        assert_eq!(
            n.check(FlowId(1), &nonce, 999),
            Ok(false),
            "from the future"
        );
        assert_eq!(n.check(FlowId(2), &nonce, 1000), Err(NonceError::OtherFlow));
        let other = FlowNonces::new(300);
        assert_eq!(
            other.check(FlowId(1), &nonce, 1000),
            Err(NonceError::OtherFlow),
            "another key"
        );
        for bad in ["", "garbage!", "AAAA", &format!("{nonce}AAAA")] {
            assert_eq!(
                n.check(FlowId(1), bad, 1000),
                Err(NonceError::NotOurs),
                "{bad}"
            );
        }
        assert!(!format!("{n:?}").contains("key:"), "{n:?}");
    }

    #[test]
    fn a_changed_issue_time_does_not_verify() {
        let n = FlowNonces::new(300);
        let nonce = n.issue(FlowId(1), 1000);
        let mut raw = URL_SAFE_NO_PAD.decode(&nonce).expect("base64url");
        raw[7] ^= 1;
        let moved = URL_SAFE_NO_PAD.encode(raw);
        assert_eq!(n.check(FlowId(1), &moved, 1000), Err(NonceError::OtherFlow));
    }
}
