//! Types that hold secrets and redact them from `Debug` (STYLE.md §8): a bearer token, and every
//! other secret imsgw handles ([`Secret`]). The only way to the value is the explicit `expose`.

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

/// A secret value: a client secret, an HMAC or flow-token key, an OAuth `state`, `nonce` or PKCE
/// verifier. imsgw has this one type for all of them.
///
/// `Debug` prints `Secret(<redacted>)` and `Display` `<redacted>`, so a secret cannot reach a log
/// line or an error message by accident (STYLE: secrets stay secret); the only way to the value
/// is the explicit [`Secret::expose`]. The bytes are zeroed when the value is dropped. It
/// serializes as the plain string (the WAF's store keeps a pending sign-in's `state` server-side)
/// and fails to serialize a value that is not UTF-8. Compare with [`Secret::ct_eq`], never `==`.
#[derive(Clone, Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps a value.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// The value, for the one place that must use it (a key, a request to a provider).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, or `None` when it is not UTF-8.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Compares in time independent of where the values differ (the length may leak, which is
    /// public for the values compared here).
    pub fn ct_eq(&self, other: impl AsRef<[u8]>) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(other.as_ref()).into()
    }

    /// True for an empty value.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The length in bytes (not secret: key-length rules check it).
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.expose_str() {
            Some(text) => s.serialize_str(text),
            None => Err(serde::ser::Error::custom("a secret that is not text")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
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
    fn debug_and_display_of_secret_are_redacted() {
        let s = Secret::new(b"hunter2hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{s}"), "<redacted>");
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
        assert_eq!(s.expose(), b"hunter2hunter2");
        assert_eq!(s.expose_str(), Some("hunter2hunter2"));
        assert_eq!(Secret::new(vec![0xff]).expose_str(), None);
    }

    #[test]
    fn secret_serializes_as_the_plain_string_and_compares_in_constant_time() {
        let s = Secret::new("state-value");
        let json = serde_json::to_string(&s).expect("serializable");
        assert_eq!(json, "\"state-value\"");
        let back: Secret = serde_json::from_str(&json).expect("deserializable");
        assert!(back.ct_eq("state-value"));
        assert!(!back.ct_eq("state-valuE"));
        assert!(!back.ct_eq("state"));
        assert!(!back.ct_eq(""));
        assert!(serde_json::to_string(&Secret::new(vec![0xff])).is_err());
    }
}
