//! The authorization code flow of OpenID Connect Core §3.1 as a relying party: [`Providers`]
//! starts a login ([`Providers::begin`]) and finishes it from the callback
//! ([`Providers::finish`]).
//!
//! Owns: the authentication request (PKCE S256, `state`, `nonce`), the callback checks, the
//! code exchange, ID token validation and UserInfo. Must not touch: sessions, cookies, pages
//! or identity mapping (the WAF keeps the [`PendingLogin`] server-side and maps the
//! [`Claims`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreTokenResponse,
};
use openidconnect::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use openidconnect::{
    AccessToken, AuthType, AuthorizationCode, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::OidcError;
use super::claims::{Claims, jwt_payload};
use super::config::{OidcConfigError, Provider, ProviderConfig, validate, validate_with};
use super::discovery::{Cache, Metadata};
use super::http::{DEFAULT_MAX_BODY, DEFAULT_TIMEOUT, HttpClient, error_chain};
use super::id_token::{Check, check_azp, check_id_token};
use crate::secret::Secret;

/// How long a started login may take before its callback is refused.
pub const PENDING_MAX_AGE: Duration = Duration::from_secs(600);
type RpClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What must be kept server-side between [`Providers::begin`] and [`Providers::finish`] (in the
/// WAF's session store, never in the browser). `Debug` redacts the secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    /// The provider's name.
    pub provider: String,
    /// The `state` sent (RFC 6749 §10.12).
    state: Secret,
    /// The `nonce` sent (OIDC Core §3.1.2.1).
    nonce: Secret,
    /// The PKCE `code_verifier` (RFC 7636 §4.1).
    pkce_verifier: Secret,
    /// The `redirect_uri` sent; the code exchange must repeat it (RFC 6749 §4.1.3).
    pub redirect_uri: String,
    /// When the login started, in seconds since the Unix epoch.
    pub created: u64,
}

/// The query of the redirect back from the provider (RFC 6749 §4.1.2, §4.1.2.1; RFC 9207).
/// The WAF deserializes its callback query into this; unknown parameters are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Callback {
    /// `code`: the authorization code.
    #[serde(default)]
    pub code: Option<Secret>,
    /// `state`: must equal the pending login's.
    #[serde(default)]
    pub state: Option<Secret>,
    /// `iss`: the issuer that answered (RFC 9207).
    #[serde(default)]
    pub iss: Option<String>,
    /// `error`: why the provider did not issue a code.
    #[serde(default)]
    pub error: Option<String>,
    /// `error_description`.
    #[serde(default)]
    pub error_description: Option<String>,
}

/// The configured OpenID providers, each with its lazily fetched metadata and keys. Share it
/// (e.g. in an `Arc`) between requests; every method takes `&self`.
#[derive(Debug)]
pub struct Providers {
    http: HttpClient,
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    provider: Provider,
    cache: Cache,
}

impl Providers {
    /// Validates `[[oidc.providers]]`, with the client secrets the config read
    /// (`Config::secrets.providers`, entry by entry). Fetches nothing: a provider that is down
    /// does not stop start-up.
    pub fn new(
        configs: Vec<ProviderConfig>,
        secrets: Vec<Option<Secret>>,
    ) -> Result<Self, OidcConfigError> {
        Self::from_validated(validate_with(configs, secrets)?)
    }

    /// As [`Providers::new`], reading the secrets itself through the one resolver
    /// (`crate::secret`): `resolve_path` makes a relative `client_secret_file` absolute, `env`
    /// looks up `client_secret_env` (tests never touch the process environment).
    pub fn new_with_env(
        configs: Vec<ProviderConfig>,
        resolve_path: impl Fn(&Path) -> PathBuf,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, OidcConfigError> {
        Self::from_validated(validate(configs, &resolve_path, &env)?)
    }

    fn from_validated(providers: Vec<Provider>) -> Result<Self, OidcConfigError> {
        let http = HttpClient::new(DEFAULT_TIMEOUT, DEFAULT_MAX_BODY)
            .map_err(|e| OidcConfigError::HttpClient(e.to_string()))?;
        Ok(Self {
            http,
            entries: providers
                .into_iter()
                .map(|provider| Entry {
                    provider,
                    cache: Cache::default(),
                })
                .collect(),
        })
    }

    /// `(name, display name)` of every provider, in config order.
    pub fn list(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|e| (e.provider.name.clone(), e.provider.display_name.clone()))
            .collect()
    }

    /// True when no provider is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Fetches every provider's metadata once (call it in the background after start-up so
    /// the first login does not wait). Failures are logged and retried on first use.
    pub async fn warm_up(&self) {
        for e in &self.entries {
            let _ = e.cache.get(&e.provider, &self.http).await;
        }
    }

    /// Starts a login (OIDC Core §3.1.2.1): fetches or refreshes discovery if needed, makes a
    /// PKCE S256 verifier (RFC 7636 §4.1–4.2), a random `state` and `nonce`, and returns the
    /// provider's authorization URL to send the browser to, and what the WAF must keep
    /// server-side until the callback. `redirect_uri` is imsgw's callback URL as registered at
    /// the provider.
    pub async fn begin(
        &self,
        provider: &str,
        redirect_uri: &str,
    ) -> Result<(String, PendingLogin), OidcError> {
        let e = self.entry(provider)?;
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|_| OidcError::Misconfigured("the redirect URI is not a URL".into()))?;
        let d = e.cache.get(&e.provider, &self.http).await?;
        let client = client(&e.provider, &d.metadata, redirect);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        // openidconnect adds `openid` itself and asks for response_type=code.
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in &e.provider.extra_scopes {
            request = request.add_scope(s.clone());
        }
        let (url, state, nonce) = request.url();
        let pending = PendingLogin {
            provider: e.provider.name.clone(),
            state: Secret::new(state.secret().as_str()),
            nonce: Secret::new(nonce.secret().as_str()),
            pkce_verifier: Secret::new(verifier.secret().as_str()),
            redirect_uri: redirect_uri.to_owned(),
            created: unix_now(),
        };
        Ok((url.to_string(), pending))
    }

    /// Finishes a login from the provider's redirect (OIDC Core §3.1.2.5–3.1.3), given the
    /// whole callback query: checks its `state` against `pending` (constant time) before
    /// anything else, its `iss` (RFC 9207 §2.4 mix-up defence), turns an `error=` into
    /// [`OidcError::ProviderError`], exchanges the code at the token endpoint
    /// (client_secret_basic or client_secret_post as discovery says, with the PKCE verifier and
    /// the pending login's `redirect_uri`), validates the ID token (OIDC Core §3.1.3.7:
    /// signature by the provider's JWK Set, refetched once on an unknown `kid`; `iss`; `aud`
    /// holds client_id and no untrusted audience; `azp`; `exp`; `iat`; `nonce`; `at_hash` when
    /// present) and merges the UserInfo response when the provider has that endpoint (OIDC Core
    /// §5.3; its `sub` must equal the ID token's). Preferred over [`Providers::finish`].
    pub async fn finish_callback(
        &self,
        pending: &PendingLogin,
        callback: &Callback,
    ) -> Result<Claims, OidcError> {
        self.finish_inner(pending, callback, true).await
    }

    /// [`Providers::finish_callback`] for a caller that took `code` and `state` out of the
    /// callback itself (and handled `error=`). It cannot check RFC 9207's `iss`, so prefer
    /// `finish_callback`. `redirect_uri` must be the one given to [`Providers::begin`].
    pub async fn finish(
        &self,
        pending: &PendingLogin,
        code: &str,
        state: &str,
        redirect_uri: &str,
    ) -> Result<Claims, OidcError> {
        if redirect_uri != pending.redirect_uri {
            return Err(OidcError::Misconfigured(
                "the redirect URI differs from the one the login started with".into(),
            ));
        }
        let callback = Callback {
            code: Some(Secret::new(code)),
            state: Some(Secret::new(state)),
            ..Callback::default()
        };
        self.finish_inner(pending, &callback, false).await
    }

    async fn finish_inner(
        &self,
        pending: &PendingLogin,
        callback: &Callback,
        check_iss: bool,
    ) -> Result<Claims, OidcError> {
        let e = self.entry(&pending.provider)?;
        let p = &e.provider;
        // RFC 6749 §10.12: an unmatched state is a forged or crossed callback; nothing else in
        // it is looked at, error responses included (RFC 6749 §4.1.2.1 returns state too).
        match &callback.state {
            Some(s) if !pending.state.is_empty() && pending.state.ct_eq(s.expose()) => {}
            _ => return Err(OidcError::StateMismatch),
        }
        if unix_now().saturating_sub(pending.created) > PENDING_MAX_AGE.as_secs() {
            return Err(OidcError::LoginExpired);
        }
        let d = e.cache.get(p, &self.http).await?;
        // RFC 9207 §2.4: the iss parameter, when present, must be this provider's issuer; a
        // provider that advertises it must send it.
        match &callback.iss {
            Some(iss) if iss != p.issuer.as_str() => {
                return Err(OidcError::IssuerMismatch(format!(
                    "callback iss `{iss}`, expected `{}`",
                    p.issuer.as_str()
                )));
            }
            None if check_iss
                && d.metadata
                    .additional_metadata()
                    .authorization_response_iss_parameter_supported
                    == Some(true) =>
            {
                return Err(OidcError::IssuerMismatch(
                    "the provider advertises the iss parameter (RFC 9207) but the callback has none"
                        .into(),
                ));
            }
            _ => {}
        }
        if let Some(error) = &callback.error {
            return Err(OidcError::ProviderError {
                error: error.clone(),
                description: callback.error_description.clone(),
            });
        }
        let code = match &callback.code {
            Some(c) if !c.is_empty() => c,
            _ => {
                return Err(OidcError::ProviderError {
                    error: "invalid_request".into(),
                    description: Some("the callback has neither code nor error".into()),
                });
            }
        };
        let redirect = RedirectUrl::new(pending.redirect_uri.clone())
            .map_err(|_| OidcError::Misconfigured("the redirect URI is not a URL".into()))?;
        let client = client(p, &d.metadata, redirect);
        let token: CoreTokenResponse = client
            .exchange_code(AuthorizationCode::new(text(code)))
            .map_err(|_| OidcError::Misconfigured(format!("{} has no token endpoint", p.name)))?
            .set_pkce_verifier(PkceCodeVerifier::new(text(&pending.pkce_verifier)))
            .request_async(&self.http)
            .await
            .map_err(|err| token_error(p, err))?;
        let id_token = token.id_token().ok_or_else(|| {
            OidcError::IdToken("the token response has no id_token (OIDC Core §3.1.3.3)".into())
        })?;
        let nonce = Nonce::new(text(&pending.nonce));
        let d = match check_id_token(p, &d, id_token, &nonce, token.access_token()) {
            Ok(()) => d,
            Err(Check::UnknownKey) => {
                // OIDC Core §10.1.1: the provider may have rotated its keys since we fetched.
                let fresh = e.cache.refresh_jwks(p, &self.http, &d).await?;
                match check_id_token(p, &fresh, id_token, &nonce, token.access_token()) {
                    Ok(()) => fresh,
                    Err(Check::UnknownKey) => {
                        return Err(OidcError::IdToken(
                            "signature: no key in the provider's JWK Set matches the token's kid and alg"
                                .into(),
                        ));
                    }
                    Err(Check::Bad(m)) => return Err(OidcError::IdToken(m)),
                }
            }
            Err(Check::Bad(m)) => return Err(OidcError::IdToken(m)),
        };
        let payload = jwt_payload(&id_token.to_string())?;
        check_azp(p, &payload)?;
        let mut claims = Claims::from_id_token(&p.name, payload)
            .ok_or_else(|| OidcError::IdToken("iss or sub is not a string".into()))?;
        if let Some(endpoint) = d.metadata.userinfo_endpoint() {
            let info = self
                .userinfo(p, endpoint.url().as_str(), token.access_token())
                .await?;
            // OIDC Core §5.3.4: the UserInfo sub must equal the ID token's, or the response is
            // not about this person and must not be used.
            match info.get("sub").and_then(Value::as_str) {
                Some(sub) if sub == claims.subject() => {}
                Some(_) => {
                    return Err(OidcError::UserInfo(
                        "its sub differs from the ID token's (OIDC Core §5.3.4)".into(),
                    ));
                }
                None => return Err(OidcError::UserInfo("it has no sub".into())),
            }
            claims.merge_userinfo(info);
        }
        Ok(claims)
    }

    fn entry(&self, name: &str) -> Result<&Entry, OidcError> {
        self.entries
            .iter()
            .find(|e| e.provider.name == name)
            .ok_or_else(|| OidcError::UnknownProvider(name.to_owned()))
    }

    /// OIDC Core §5.3.1–5.3.2: GET the UserInfo endpoint with the access token.
    async fn userinfo(
        &self,
        p: &Provider,
        endpoint: &str,
        access_token: &AccessToken,
    ) -> Result<Map<String, Value>, OidcError> {
        let request = openidconnect::http::Request::builder()
            .method("GET")
            .uri(endpoint)
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, format!("Bearer {}", access_token.secret()))
            .body(Vec::new())
            .map_err(|_| OidcError::UserInfo("the endpoint is not a usable URL".into()))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|err| OidcError::Unavailable {
                provider: p.name.clone(),
                reason: format!("UserInfo: {}", error_chain(&err)),
            })?;
        if !response.status().is_success() {
            return Err(OidcError::UserInfo(format!(
                "the endpoint answered HTTP {}",
                response.status()
            )));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_type.starts_with("application/jwt") {
            return Err(OidcError::UserInfo(
                "signed or encrypted UserInfo responses are not supported; configure the client for JSON"
                    .into(),
            ));
        }
        serde_json::from_slice::<Map<String, Value>>(response.body())
            .map_err(|_| OidcError::UserInfo("the response is not a JSON object".into()))
    }
}

/// The relying-party client for one login.
fn client(p: &Provider, m: &Metadata, redirect: RedirectUrl) -> RpClient {
    let secret = p.secret.as_ref().map(|s| ClientSecret::new(text(s)));
    CoreClient::from_provider_metadata(m.clone(), p.client_id.clone(), secret)
        .set_redirect_uri(redirect)
        .set_auth_type(auth_type(p, m))
}

/// OIDC Core §9 / Discovery §3: `token_endpoint_auth_methods_supported` defaults to
/// client_secret_basic; use post only when the provider does not take basic. A public client
/// (no secret) sends its client_id in the body (method `none`).
fn auth_type(p: &Provider, m: &Metadata) -> AuthType {
    if p.secret.is_none() {
        return AuthType::RequestBody;
    }
    match m.token_endpoint_auth_methods_supported() {
        Some(methods)
            if !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                && methods.contains(&CoreClientAuthMethod::ClientSecretPost) =>
        {
            AuthType::RequestBody
        }
        _ => AuthType::BasicAuth,
    }
}

fn token_error<RE, T>(p: &Provider, err: RequestTokenError<RE, T>) -> OidcError
where
    RE: std::error::Error + 'static,
    T: openidconnect::ErrorResponse + 'static,
{
    let unavailable = |reason: String| OidcError::Unavailable {
        provider: p.name.clone(),
        reason: format!("token endpoint: {reason}"),
    };
    match err {
        // RFC 6749 §5.2.
        RequestTokenError::ServerResponse(r) => {
            let v = serde_json::to_value(&r).unwrap_or_default();
            OidcError::ProviderError {
                error: v
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("invalid_request")
                    .to_owned(),
                description: v
                    .get("error_description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            }
        }
        RequestTokenError::Request(e) => unavailable(error_chain(&e)),
        RequestTokenError::Parse(e, _) => {
            unavailable(format!("unreadable response at {}", e.path()))
        }
        RequestTokenError::Other(m) => unavailable(m),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A secret that goes into a request as text. Every one here was made from text (a query
/// string, openidconnect's random values, a client secret the config checked is UTF-8), so the
/// lossy conversion never alters one.
fn text(s: &Secret) -> String {
    String::from_utf8_lossy(s.expose()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider(secret: Option<&str>) -> Provider {
        let c: ProviderConfig = toml::from_str(
            "name = \"acme\"\nissuer = \"https://id.example.com\"\nclient_id = \"imsgw\"\n",
        )
        .expect("valid entry");
        let mut p = validate(vec![c], &|p| p.to_path_buf(), &|_| None)
            .expect("valid")
            .remove(0);
        p.secret = secret.map(Secret::new);
        p
    }

    fn metadata(extra: Value) -> Metadata {
        let mut doc = json!({
            "issuer": "https://id.example.com",
            "authorization_endpoint": "https://id.example.com/auth",
            "token_endpoint": "https://id.example.com/token",
            "jwks_uri": "https://id.example.com/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"]
        });
        if let (Value::Object(d), Value::Object(e)) = (&mut doc, extra) {
            d.extend(e);
        }
        serde_json::from_value(doc).expect("valid metadata")
    }

    #[test]
    fn token_auth_follows_discovery_and_defaults_to_basic() {
        let p = provider(Some("s"));
        assert!(matches!(
            auth_type(&p, &metadata(json!({}))),
            AuthType::BasicAuth
        ));
        let post_only =
            metadata(json!({"token_endpoint_auth_methods_supported": ["client_secret_post"]}));
        assert!(matches!(auth_type(&p, &post_only), AuthType::RequestBody));
        let both = metadata(
            json!({"token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"]}),
        );
        assert!(matches!(auth_type(&p, &both), AuthType::BasicAuth));
        // A public client sends client_id in the body (auth method `none`).
        assert!(matches!(
            auth_type(&provider(None), &metadata(json!({}))),
            AuthType::RequestBody
        ));
    }

    #[test]
    fn pending_login_round_trips_and_debug_redacts() {
        let pending = PendingLogin {
            provider: "acme".into(),
            state: Secret::new("st-123"),
            nonce: Secret::new("no-456"),
            pkce_verifier: Secret::new("pk-789"),
            redirect_uri: "https://gw/auth/callback".into(),
            created: 1,
        };
        let dbg = format!("{pending:?}");
        for s in ["st-123", "no-456", "pk-789"] {
            assert!(!dbg.contains(s), "{dbg}");
        }
        let back: PendingLogin =
            serde_json::from_str(&serde_json::to_string(&pending).expect("serializes"))
                .expect("deserializes");
        assert!(back.state.ct_eq("st-123") && back.pkce_verifier.ct_eq("pk-789"));
    }

    #[test]
    fn callback_reads_a_query_and_ignores_unknown_parameters() {
        let cb: Callback = serde_json::from_value(json!({
            "code": "c0de", "state": "st", "iss": "https://id.example.com", "session_state": "x"
        }))
        .expect("deserializes");
        assert!(cb.code.as_ref().is_some_and(|c| c.ct_eq("c0de")));
        assert!(!format!("{cb:?}").contains("c0de"));
        assert_eq!(cb.iss.as_deref(), Some("https://id.example.com"));
    }

    #[tokio::test]
    async fn expired_pending_login_is_refused_without_network() {
        let p = Providers::new_with_env(
            vec![
                toml::from_str(
                    "name = \"acme\"\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"imsgw\"\n",
                )
                .expect("valid entry"),
            ],
            |p| p.to_path_buf(),
            |_| None,
        )
        .expect("valid");
        let pending = PendingLogin {
            provider: "acme".into(),
            state: Secret::new("st"),
            nonce: Secret::new("n"),
            pkce_verifier: Secret::new("v"),
            redirect_uri: "http://127.0.0.1:9/cb".into(),
            created: unix_now() - PENDING_MAX_AGE.as_secs() - 1,
        };
        let cb = Callback {
            code: Some(Secret::new("c")),
            state: Some(Secret::new("st")),
            ..Callback::default()
        };
        assert_eq!(
            p.finish_callback(&pending, &cb).await,
            Err(OidcError::LoginExpired)
        );
        assert_eq!(
            p.finish(&pending, "c", "st", "http://other/cb").await,
            Err(OidcError::Misconfigured(
                "the redirect URI differs from the one the login started with".into()
            ))
        );
    }
}
