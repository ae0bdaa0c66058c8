//! `[[oidc.providers]]`: the typed entry the WAF's config deserializes, and its validation into
//! a [`Provider`] (issuer URL parsed, client secret read from where the entry says).
//!
//! Owns: the keys of one provider entry, their defaults and their errors. Must not touch: the
//! rest of the config tree (`crate::config` owns it), how a secret is read (`crate::secret`: the
//! one resolver) or the network (discovery is lazy, in `discovery`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use openidconnect::{ClientId, IssuerUrl, Scope};
use serde::Deserialize;

use crate::secret::{Resolver, Secret, SecretError, SecretSource};

/// One `[[oidc.providers]]` entry: an OpenID provider people may sign in with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// `name`: the provider's id in imsgw's URLs and in identity keys (`"<name>:<sub>"`):
    /// letters, digits, `-` or `_`. Required, no default.
    pub name: String,
    /// `display_name`: what the sign-in page shows on the button. Default: `name`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// `issuer`: the provider's issuer identifier, exactly as its discovery document's `issuer`
    /// says (OpenID Connect Discovery 1.0 §4.3); metadata is read from
    /// `{issuer}/.well-known/openid-configuration`. Must be `https://`; `http://` only to a
    /// loopback host (tests, a lab on the same machine). Required, no default.
    pub issuer: String,
    /// `client_id`: the client id imsgw was registered with at the provider. Required.
    pub client_id: String,
    /// `client_secret`: the client secret, inline. Prefer `client_secret_file` or
    /// `client_secret_env`. Default none; with no secret at all imsgw is a public client
    /// (token endpoint auth `none`) and relies on PKCE alone.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// `client_secret_file`: a file holding the client secret (surrounding whitespace is
    /// dropped), mode 0600 or stricter; relative paths resolve beside the config file. Default
    /// none.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// `client_secret_env`: an environment variable holding the client secret. Default none.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// `scopes`: scopes asked for (OIDC Core §5.4). Default `["openid", "profile", "email"]`;
    /// `openid` is added when missing (OIDC Core §3.1.2.1).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// `discovery_refresh_secs`: how long discovery metadata and the JWK Set are used before
    /// they are fetched again (the JWK Set is also refetched when an ID token names an unknown
    /// `kid`, OIDC Core §10.1.1). At least 10. Default 3600.
    #[serde(default = "default_discovery_refresh")]
    pub discovery_refresh_secs: u64,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}

fn default_discovery_refresh() -> u64 {
    3600
}

/// Problems with `[[oidc.providers]]`, each naming the key and the fix; never a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum OidcConfigError {
    /// A key has a value imsgw cannot use.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, e.g. `oidc.providers[0].issuer`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The client secret could not be read (names the key).
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The HTTP client for the providers could not be built (TLS set-up).
    #[error("oidc: cannot build the HTTP client: {0}")]
    HttpClient(String),
}

fn invalid(i: usize, field: &str, message: impl Into<String>) -> OidcConfigError {
    OidcConfigError::Invalid {
        key: format!("oidc.providers[{i}].{field}"),
        message: message.into(),
    }
}

/// A validated provider entry.
#[derive(Debug)]
pub(super) struct Provider {
    pub name: String,
    pub display_name: String,
    pub issuer: IssuerUrl,
    pub client_id: ClientId,
    pub secret: Option<Secret>,
    /// Without `openid`, which openidconnect always sends first.
    pub extra_scopes: Vec<Scope>,
    pub refresh: Duration,
}

impl ProviderConfig {
    /// Reads the client secret of entry `i` (`client_secret`, `client_secret_file` or
    /// `client_secret_env`, at most one) through the one resolver; it must be text, since it
    /// goes into an HTTP header or form.
    pub fn read_secret(&self, i: usize, r: &Resolver<'_>) -> Result<Option<Secret>, SecretError> {
        let key = format!("oidc.providers[{i}].client_secret");
        let Some(source) = SecretSource::from_keys(
            &key,
            self.client_secret.as_ref(),
            self.client_secret_file.as_ref(),
            self.client_secret_env.as_ref(),
        )?
        else {
            return Ok(None);
        };
        let secret = source.resolve(&key, r)?;
        if secret.expose_str().is_none() {
            return Err(SecretError::Unusable {
                key: crate::secret::key_of(&key, &source),
                message: "must be text (UTF-8)".into(),
            });
        }
        Ok(Some(secret))
    }
}

/// Validates the entries and reads their secrets. `resolve_path` makes a relative
/// `client_secret_file` absolute; `env` looks up `client_secret_env` (tests pass a map, so they
/// never touch the process environment).
pub(super) fn validate(
    configs: Vec<ProviderConfig>,
    resolve_path: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Provider>, OidcConfigError> {
    let r = Resolver {
        path: resolve_path,
        env,
    };
    let secrets = configs
        .iter()
        .enumerate()
        .map(|(i, c)| c.read_secret(i, &r))
        .collect::<Result<Vec<_>, _>>()?;
    validate_with(configs, secrets)
}

/// Validates the entries, with their client secrets already read (`secrets[i]` for entry `i`).
pub(super) fn validate_with(
    configs: Vec<ProviderConfig>,
    secrets: Vec<Option<Secret>>,
) -> Result<Vec<Provider>, OidcConfigError> {
    // A missing entry must not make a confidential client public: refuse, do not guess.
    if secrets.len() != configs.len() {
        return Err(OidcConfigError::Invalid {
            key: "oidc.providers".into(),
            message: "the client secrets were not read with the entries (load the config with Config::load)".into(),
        });
    }
    let mut out: Vec<Provider> = Vec::with_capacity(configs.len());
    for ((i, c), secret) in configs.into_iter().enumerate().zip(secrets) {
        if c.name.is_empty()
            || !c
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                i,
                "name",
                "must be letters, digits, - or _ (it appears in URLs)",
            ));
        }
        if out.iter().any(|p| p.name == c.name) {
            return Err(invalid(i, "name", "two providers have this name"));
        }
        let issuer = parse_issuer(&c.issuer).map_err(|m| invalid(i, "issuer", m))?;
        if c.client_id.is_empty() {
            return Err(invalid(i, "client_id", "must not be empty"));
        }
        let mut extra_scopes = Vec::new();
        for s in &c.scopes {
            // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            let ok = !s.is_empty()
                && s.bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !ok {
                return Err(invalid(
                    i,
                    "scopes",
                    format!("`{s}` is not a scope token (RFC 6749 §3.3): one word per entry"),
                ));
            }
            if s != "openid" && !extra_scopes.iter().any(|e: &Scope| e.as_str() == s) {
                extra_scopes.push(Scope::new(s.clone()));
            }
        }
        if c.discovery_refresh_secs < 10 {
            return Err(invalid(i, "discovery_refresh_secs", "must be at least 10"));
        }
        out.push(Provider {
            display_name: c
                .display_name
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(|| c.name.clone()),
            name: c.name,
            issuer,
            client_id: ClientId::new(c.client_id),
            secret,
            extra_scopes,
            refresh: Duration::from_secs(c.discovery_refresh_secs),
        });
    }
    Ok(out)
}

/// OpenID Connect Discovery 1.0 §2: the issuer is an https URL with no query or fragment.
fn parse_issuer(s: &str) -> Result<IssuerUrl, String> {
    let issuer = IssuerUrl::new(s.to_owned())
        .map_err(|e| format!("`{s}` is not a URL ({e}); use e.g. https://accounts.example.com"))?;
    let url = issuer.url();
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment (OpenID Connect Discovery §2)".into());
    }
    if !url_allowed(url) {
        return Err("must be https:// (http:// only to a loopback host such as 127.0.0.1)".into());
    }
    Ok(issuer)
}

/// The one rule for every URL imsgw calls at a provider: https, or http to loopback only
/// (nothing leaves the machine in the clear).
pub(super) fn url_allowed(url: &openidconnect::url::Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(openidconnect::url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(openidconnect::url::Host::Ipv4(a)) => a.is_loopback(),
            Some(openidconnect::url::Host::Ipv6(a)) => a.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(toml_text: &str) -> ProviderConfig {
        toml::from_str(toml_text).expect("valid entry")
    }

    fn minimal() -> ProviderConfig {
        entry("name = \"acme\"\nissuer = \"https://id.example.com\"\nclient_id = \"imsgw\"\n")
    }

    fn check(configs: Vec<ProviderConfig>) -> Result<Vec<Provider>, OidcConfigError> {
        validate(configs, &|p| p.to_path_buf(), &|_| None)
    }

    fn err_text(r: Result<Vec<Provider>, OidcConfigError>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_fill_scopes_display_name_and_refresh() {
        let c = minimal();
        assert_eq!(c.scopes, ["openid", "profile", "email"]);
        assert_eq!(c.discovery_refresh_secs, 3600);
        let p = check(vec![c]).expect("valid");
        assert_eq!(p[0].display_name, "acme");
        let scopes: Vec<&str> = p[0].extra_scopes.iter().map(|s| s.as_str()).collect();
        assert_eq!(scopes, ["profile", "email"]);
        assert!(p[0].secret.is_none());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let r: Result<ProviderConfig, _> = toml::from_str(
            "name = \"a\"\nissuer = \"https://x\"\nclient_id = \"c\"\nscope = [\"x\"]\n",
        );
        assert!(r.is_err());
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = minimal();
        c.name = "other".into();
        c.issuer = "http://id.example.com".into();
        let e = err_text(check(vec![minimal(), c]));
        assert!(e.starts_with("oidc.providers[1].issuer:"), "{e}");

        let mut c = minimal();
        c.name = "a b".into();
        assert!(err_text(check(vec![c])).starts_with("oidc.providers[0].name:"));

        assert!(err_text(check(vec![minimal(), minimal()])).contains("two providers"));

        let mut c = minimal();
        c.client_id.clear();
        assert!(err_text(check(vec![c])).starts_with("oidc.providers[0].client_id:"));

        let mut c = minimal();
        c.scopes = vec!["openid email".into()];
        assert!(err_text(check(vec![c])).starts_with("oidc.providers[0].scopes:"));

        let mut c = minimal();
        c.discovery_refresh_secs = 0;
        assert!(err_text(check(vec![c])).contains("discovery_refresh_secs"));
    }

    #[test]
    fn issuer_must_be_https_or_loopback_http() {
        for ok in [
            "https://id.example.com",
            "https://id.example.com/realms/x",
            "http://127.0.0.1:8080",
            "http://localhost:9000",
            "http://[::1]:80",
        ] {
            assert!(parse_issuer(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://id.example.com",
            "http://10.0.0.1",
            "ftp://id.example.com",
            "https://id.example.com/?a=b",
            "https://id.example.com/#x",
            "id.example.com",
        ] {
            assert!(parse_issuer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn openid_scope_is_not_duplicated_and_is_optional_in_config() {
        let mut c = minimal();
        c.scopes = vec!["email".into(), "openid".into(), "email".into()];
        let p = check(vec![c]).expect("valid");
        let scopes: Vec<&str> = p[0].extra_scopes.iter().map(|s| s.as_str()).collect();
        assert_eq!(scopes, ["email"]);
    }

    #[test]
    fn secret_is_read_from_exactly_one_source() {
        let mut c = minimal();
        c.client_secret = Some(Secret::new("inline"));
        c.client_secret_env = Some("X".into());
        assert!(err_text(check(vec![c])).contains("give the secret once"));

        let mut c = minimal();
        c.client_secret_env = Some("ACME_SECRET".into());
        let p = validate(vec![c.clone()], &|p| p.to_path_buf(), &|v| {
            (v == "ACME_SECRET").then(|| "from-env\n".to_string())
        })
        .expect("valid");
        assert!(p[0].secret.as_ref().is_some_and(|s| s.ct_eq("from-env")));
        let e = err_text(validate(vec![c], &|p| p.to_path_buf(), &|_| None));
        assert!(
            e.contains("ACME_SECRET") && e.contains("client_secret_env"),
            "{e}"
        );
    }

    #[test]
    fn secret_file_resolves_beside_the_config_and_is_trimmed_and_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("imsgw-oidc-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("acme.secret");
        std::fs::write(&file, "s3cret-value\n").expect("write");
        let chmod = |mode| {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod")
        };
        let mut c = minimal();
        c.client_secret_file = Some(PathBuf::from("acme.secret"));
        chmod(0o644);
        let e = err_text(validate(vec![c.clone()], &|p| dir.join(p), &|_| None));
        assert!(
            e.contains("`oidc.providers[0].client_secret_file`") && e.contains("mode 644"),
            "{e}"
        );
        chmod(0o600);
        let p = validate(vec![c.clone()], &|p| dir.join(p), &|_| None).expect("valid");
        assert!(
            p[0].secret
                .as_ref()
                .is_some_and(|s| s.ct_eq("s3cret-value"))
        );

        c.client_secret_file = Some(PathBuf::from("missing.secret"));
        let e = err_text(validate(vec![c], &|p| dir.join(p), &|_| None));
        assert!(e.contains("`oidc.providers[0].client_secret_file`"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn debug_of_an_entry_hides_the_inline_secret() {
        let c = entry(
            "name = \"acme\"\nissuer = \"https://id.example.com\"\nclient_id = \"imsgw\"\nclient_secret = \"hunter2\"\n",
        );
        assert!(!format!("{c:?}").contains("hunter2"));
        let p = check(vec![c]).expect("valid");
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}

/// `[oidc]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// `oidc.providers`: OpenID providers, each shown as a button on the sign-in page.
    #[serde(default)]
    pub providers: Vec<crate::oidc::ProviderConfig>,
    /// `oidc.session_ttl_secs`: how long a sign-in session (cookie) lasts. Default 28800 (8 h).
    #[serde(default = "default_session_ttl")]
    pub session_ttl_secs: u64,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            providers: Vec::new(),
            session_ttl_secs: default_session_ttl(),
        }
    }
}

fn default_session_ttl() -> u64 {
    28800
}
