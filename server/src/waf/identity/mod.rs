//! From a web account to an IMS identity: the `[identity]` templates over ID-token claims, the
//! required claims, and the static table (TS 24.371: the WAF maps the web identity to an IMPU
//! and IMPI).
//!
//! The key is the provider and its `sub` (OpenID Connect Core §5.7: names are neither unique nor
//! stable): the default templates are `sip:{provider}.{sub}@{sip.domain}` and
//! `{provider}.{sub}@{sip.domain}`, and a template reads a name claim only for a provider
//! marked as controlling names; `template` checks that at start-up.
//!
//! Every IMPU this produces is an [`Impu`] in canonical form (no password, parameters, headers
//! or port; see `imsgw_sip::Impu`). A template filled from claims must come out exactly in that
//! form: an account whose name would need canonicalising (`%62ob` would become `bob`) or is
//! refused (`bob:x` would be read as `bob` with a password by a SIP parser) cannot be mapped.
//!
//! Owns: the mapping rules. Must not touch: HTTP, tokens.

pub mod template;

use imsgw_sip::Impu;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::IdentityConfig;
pub use template::Template;

/// A signed-in person as the WAF keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// The provider's `name`.
    pub provider: String,
    /// The provider's `sub`.
    pub sub: String,
    /// The IMPU, canonical.
    pub impu: Impu,
    pub impi: String,
    /// Something to greet them with.
    pub display: String,
}

impl Person {
    /// The person's key in the store: provider and `sub`, hashed (the same person whatever
    /// session or address they come from).
    pub fn store_key(&self) -> String {
        crate::waf::store::key_of(&format!("{}\n{}", self.provider, self.sub))
    }
}

/// Why an account cannot be used; shown to the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("your account at {provider} does not say `{claim}`, which this service needs")]
    MissingClaim { provider: String, claim: String },
    #[error(
        "your account at {provider} does not meet this service's requirement: `{claim}` must be {expected}"
    )]
    Requirement {
        provider: String,
        claim: String,
        expected: String,
    },
    #[error("your account at {provider} gives a name that cannot be a phone identity ({why})")]
    Unusable { provider: String, why: String },
}

/// Maps `claims` (ID token merged with UserInfo) of an account at `provider`.
pub fn map(
    config: &IdentityConfig,
    domain: &str,
    provider: &str,
    claims: &Map<String, Value>,
) -> Result<Person, MapError> {
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| MapError::MissingClaim {
            provider: provider.into(),
            claim: "sub".into(),
        })?
        .to_string();
    for (claim, expected) in &config.required_claims {
        let want = toml_to_json(expected);
        if claims.get(claim) != Some(&want) {
            return Err(MapError::Requirement {
                provider: provider.into(),
                claim: claim.clone(),
                expected: want.to_string(),
            });
        }
    }
    let display = ["name", "preferred_username", "email"]
        .iter()
        .find_map(|c| claims.get(*c).and_then(Value::as_str))
        .unwrap_or(&sub)
        .to_string();
    if let Some(s) = config.static_map.get(&format!("{provider}:{sub}")) {
        return Ok(Person {
            provider: provider.into(),
            sub,
            impu: s.impu.clone(),
            impi: s.impi.clone(),
            display,
        });
    }
    let t = config.for_provider(provider);
    let missing = |claim: String| MapError::MissingClaim {
        provider: provider.into(),
        claim,
    };
    let impu = t
        .impu
        .fill(domain, provider, &sub, claims)
        .map_err(missing)?;
    let impi = t
        .impi
        .fill(domain, provider, &sub, claims)
        .map_err(missing)?;
    let impu = parse_impu(&impu).map_err(|why| MapError::Unusable {
        provider: provider.into(),
        why,
    })?;
    if impi.is_empty() || impi.contains(|c: char| c.is_whitespace() || "\"<>".contains(c)) {
        return Err(MapError::Unusable {
            provider: provider.into(),
            why: format!("private identity `{impi}`"),
        });
    }
    Ok(Person {
        provider: provider.into(),
        sub,
        impu,
        impi,
        display,
    })
}

/// A filled-in template as an IMPU. It must already be canonical: canonicalising would let two
/// accounts whose names differ only in spelling (`%62ob`, `bob`) share one identity.
fn parse_impu(impu: &str) -> Result<Impu, String> {
    let parsed =
        Impu::parse(impu).map_err(|e| format!("`{impu}` is not a usable IMS identity: {e}"))?;
    if parsed.as_str() != impu {
        return Err(format!(
            "`{impu}` is not written in canonical form (that would be `{parsed}`)"
        ));
    }
    Ok(parsed)
}

fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    /// Names as keys, as for a provider marked as controlling them (start-up checks that).
    fn config() -> IdentityConfig {
        let mut c = IdentityConfig::default();
        c.required_claims
            .insert("email_verified".into(), toml::Value::Boolean(true));
        let provider = crate::config::ProviderIdentity {
            controls_usernames: true,
            impu: Some(Template::parse("sip:{preferred_username}@{sip.domain}").expect("parses")),
            impi: Some(Template::parse("{preferred_username}@{sip.domain}").expect("parses")),
        };
        c.providers.insert("demo".into(), provider);
        c
    }

    #[test]
    fn default_maps_provider_and_sub_so_one_name_at_two_providers_is_two_identities_oidc_core_5_7()
    {
        let c = IdentityConfig::default();
        let alice = json!({"sub": "s|1", "preferred_username": "alice"});
        let home = map(&c, "ims.example", "home", &claims(alice.clone())).expect("maps");
        let other = map(&c, "ims.example", "other", &claims(alice)).expect("maps");
        assert_eq!(home.impu.as_str(), "sip:home.s=7C1@ims.example");
        assert_eq!(home.impi, "home.s=7C1@ims.example");
        assert_eq!(other.impu.as_str(), "sip:other.s=7C1@ims.example");
        assert_ne!(home.impi, other.impi);
        assert_eq!(home.display, "alice");
    }

    #[test]
    fn a_provider_of_its_own_uses_its_templates_others_the_default() {
        let c = config();
        let who =
            claims(json!({"sub": "s1", "preferred_username": "alice", "email_verified": true}));
        assert_eq!(
            map(&c, "ims.example", "demo", &who)
                .expect("maps")
                .impu
                .as_str(),
            "sip:alice@ims.example"
        );
        assert_eq!(
            map(&c, "ims.example", "other", &who)
                .expect("maps")
                .impu
                .as_str(),
            "sip:other.s1@ims.example"
        );
    }

    #[test]
    fn template_maps_preferred_username_to_impu_and_impi() {
        let p = map(
            &config(),
            "ims.example",
            "demo",
            &claims(json!({"sub": "s1", "preferred_username": "alice", "email_verified": true})),
        )
        .expect("maps");
        assert_eq!(p.impu.as_str(), "sip:alice@ims.example");
        assert_eq!(p.impi, "alice@ims.example");
        assert_eq!(p.display, "alice");
    }

    #[test]
    fn unmappable_accounts_get_a_reason() {
        let c = config();
        let e = map(
            &c,
            "d",
            "demo",
            &claims(json!({"sub": "s", "preferred_username": "m", "email_verified": false})),
        )
        .expect_err("unverified");
        assert!(matches!(e, MapError::Requirement { .. }), "{e}");
        let e = map(
            &c,
            "d",
            "demo",
            &claims(json!({"sub": "s", "email_verified": true})),
        )
        .expect_err("no name");
        assert!(
            matches!(e, MapError::MissingClaim { ref claim, .. } if claim == "preferred_username"),
            "{e}"
        );
        let e = map(
            &c,
            "d",
            "demo",
            &claims(json!({"sub": "s", "preferred_username": "a b<c>", "email_verified": true})),
        )
        .expect_err("bad user");
        assert!(matches!(e, MapError::Unusable { .. }), "{e}");
    }

    #[test]
    fn static_table_overrides_the_template() {
        let mut c = config();
        c.static_map.insert(
            "demo:s9".into(),
            crate::config::StaticIdentity {
                // A literal canonical IMPU: cannot fail.
                impu: Impu::parse("sip:+15551234@ims.example").expect("canonical"),
                impi: "15551234@ims.example".into(),
            },
        );
        let p = map(
            &c,
            "ims.example",
            "demo",
            &claims(json!({"sub": "s9", "email_verified": true})),
        )
        .expect("static");
        assert_eq!(p.impu.as_str(), "sip:+15551234@ims.example");
    }

    fn map_name(name: &str) -> Result<Person, MapError> {
        map(
            &config(),
            "ims.example",
            "demo",
            &claims(json!({"sub": "s", "preferred_username": name, "email_verified": true})),
        )
    }

    #[test]
    fn names_that_are_not_a_canonical_impu_cannot_be_mapped_rfc3261_19_1_4() {
        for (name, why) in [
            ("bob:x", "password"),
            ("bob:", "password"),
            ("bob@evil.example", "'@'"),
            ("bob;user=phone", "';'"),
            ("bob?subject=x", "'?'"),
            ("%62ob", "canonical form"),
            ("b%6Fb", "canonical form"),
            ("bob%3Ax", "':'"),
            ("bob\r\nX: y", "whitespace"),
            (" bob", "whitespace"),
            ("böb", "non-ASCII"),
        ] {
            let e = map_name(name).expect_err(name);
            assert!(matches!(e, MapError::Unusable { .. }), "{name}: {e}");
            assert!(e.to_string().contains(why), "{name}: {e}");
        }
        assert_eq!(
            map_name("Bob.Smith+1").expect("maps").impu.as_str(),
            "sip:Bob.Smith+1@ims.example"
        );
    }
}
