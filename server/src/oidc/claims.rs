//! The verified claims of a signed-in person: the ID token's claims merged with the UserInfo
//! response (OIDC Core §5.3).
//!
//! Owns: the [`Claims`] type, reading a verified JWT's payload, and the merge rule. Must not
//! touch: verification (the flow module verifies before it builds `Claims`) or what the claims
//! mean for IMS identities (the WAF's identity mapping).

use base64::Engine;
use serde_json::{Map, Value};

use super::OidcError;

/// What a provider asserted about the person, after every check passed. `iss` and `sub` are
/// always present strings. Claims from the signed ID token win over UserInfo's (UserInfo only
/// adds claims the ID token lacks): the ID token is what was verified against the provider's
/// keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    provider: String,
    map: Map<String, Value>,
}

impl Claims {
    /// Builds from a verified ID token payload; `None` when `iss` or `sub` is not a string.
    pub(super) fn from_id_token(provider: &str, map: Map<String, Value>) -> Option<Self> {
        if !map.get("iss").is_some_and(Value::is_string)
            || !map.get("sub").is_some_and(Value::is_string)
        {
            return None;
        }
        Some(Self {
            provider: provider.to_owned(),
            map,
        })
    }

    /// Adds UserInfo claims (OIDC Core §5.3.2). The caller has checked that UserInfo's `sub`
    /// equals the ID token's; claims already in the ID token are kept as they are.
    pub(super) fn merge_userinfo(&mut self, userinfo: Map<String, Value>) {
        for (k, v) in userinfo {
            self.map.entry(k).or_insert(v);
        }
    }

    /// The imsgw provider name (`[[oidc.providers]] name`) this came from.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// `iss`: the provider's issuer identifier.
    pub fn issuer(&self) -> &str {
        self.map
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `sub`: the person's stable id at the provider (unique per issuer, OIDC Core §2).
    pub fn subject(&self) -> &str {
        self.map
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// A claim that is a string.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.map.get(name).and_then(Value::as_str)
    }

    /// All claims, owned.
    pub fn into_map(self) -> Map<String, Value> {
        self.map
    }
}

/// Read-only access to every claim as a JSON object.
impl std::ops::Deref for Claims {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Map<String, Value> {
        &self.map
    }
}

/// The payload (claims set) of a compact JWS whose signature was already verified.
pub(super) fn jwt_payload(jwt: &str) -> Result<Map<String, Value>, OidcError> {
    let mut parts = jwt.split('.');
    let (Some(_header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OidcError::IdToken("not a compact JWS".into()));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| OidcError::IdToken("payload is not base64url".into()))?;
    serde_json::from_slice::<Map<String, Value>>(&bytes)
        .map_err(|_| OidcError::IdToken("payload is not a JSON object".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn id_token_claims_win_over_userinfo() {
        let mut c = Claims::from_id_token(
            "acme",
            obj(json!({"iss": "https://id", "sub": "u1", "email": "a@id"})),
        )
        .expect("iss and sub present");
        c.merge_userinfo(obj(json!({"sub": "u1", "email": "b@id", "name": "A"})));
        assert_eq!(c.get_str("email"), Some("a@id"));
        assert_eq!(c.get_str("name"), Some("A"));
        assert_eq!(c.subject(), "u1");
        assert_eq!(c.issuer(), "https://id");
        assert_eq!(c.provider(), "acme");
    }

    #[test]
    fn iss_and_sub_must_be_strings() {
        assert!(Claims::from_id_token("a", obj(json!({"iss": "x"}))).is_none());
        assert!(Claims::from_id_token("a", obj(json!({"iss": "x", "sub": 1}))).is_none());
    }

    #[test]
    fn payload_is_read_from_the_middle_part() {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwt = format!(
            "{}.{}.sig",
            b64.encode(br#"{"alg":"RS256"}"#),
            b64.encode(br#"{"sub":"u1","n":1}"#)
        );
        let m = jwt_payload(&jwt).expect("valid");
        assert_eq!(m.get("sub"), Some(&json!("u1")));
        assert!(jwt_payload("a.b").is_err());
        assert!(jwt_payload("a.b.c.d").is_err());
        assert!(jwt_payload("a.!!.c").is_err());
        assert!(jwt_payload(&format!("a.{}.c", b64.encode(b"[1]"))).is_err());
    }
}
