//! Types that hold secrets and redact them from `Debug` (STYLE.md §8): a bearer token and an
//! HMAC key. Neither implements `Display`; the only way to the bytes is the explicit `expose`.

use std::fmt;

/// A signed access token (a JWS compact serialization). Anyone holding it can register as its
/// `impu` until it expires, so it must never be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// Wraps token text.
    pub fn new(token: String) -> Self {
        AccessToken(token)
    }

    /// The token text, for the one place that must send it (the WAF's token response).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken(<redacted, {} bytes>)", self.0.len())
    }
}

/// Secret key bytes (the optional HS256 key). Comparison is not constant-time, so never compare
/// two `Secret`s to authenticate anything.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps key bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// The key bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_access_token_shows_length_not_text() {
        let t = AccessToken::new("eyJhbGciOiJFUzI1NiJ9.e30.c2ln".to_owned());
        let shown = format!("{t:?}");
        assert!(!shown.contains("eyJ"), "{shown}");
        assert!(shown.contains("29 bytes"), "{shown}");
        assert_eq!(t.expose(), "eyJhbGciOiJFUzI1NiJ9.e30.c2ln");
    }

    #[test]
    fn debug_of_secret_is_redacted() {
        let s = Secret::new(b"hunter2hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(s.expose(), b"hunter2hunter2");
    }
}
