//! A string that must never be printed: client secrets, `state`, `nonce`, PKCE verifiers.
//!
//! Owns: the redacting wrapper. Must not touch: where secrets come from (config) or how they are
//! compared (callers use [`Secret::ct_eq`]).

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// A secret string. `Debug` prints `Secret(<redacted>)` and there is no `Display`, so it cannot
/// reach a log line or an error message by accident (STYLE: secrets stay secret). It serializes
/// as the plain string, because [`super::PendingLogin`] is kept server-side by the WAF's store.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it (a request body or header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the values differ (the length may leak, which is
    /// public for the random values compared here).
    pub fn ct_eq(&self, other: &str) -> bool {
        self.0.as_bytes().ct_eq(other.as_bytes()).into()
    }

    /// True for an empty value.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
    }

    #[test]
    fn serializes_as_the_plain_string() {
        let s = Secret::new("abc");
        let json = serde_json::to_string(&s).expect("serializable");
        assert_eq!(json, "\"abc\"");
        let back: Secret = serde_json::from_str(&json).expect("deserializable");
        assert!(back.ct_eq("abc"));
    }

    #[test]
    fn constant_time_compare_matches_only_equal_values() {
        let s = Secret::new("state-value");
        assert!(s.ct_eq("state-value"));
        assert!(!s.ct_eq("state-valuE"));
        assert!(!s.ct_eq("state"));
        assert!(!s.ct_eq(""));
    }
}
