//! Provider metadata (OpenID Connect Discovery 1.0) and the provider's JWK Set, fetched lazily
//! and cached per provider.
//!
//! Owns: when discovery and the JWK Set are fetched: on first use (a provider that is down when
//! imsgw starts does not stop it), again after `discovery_refresh_secs`, and the JWK Set alone
//! when an ID token names an unknown `kid` (OIDC Core §10.1.1 key rotation). While a provider
//! is down, a stale copy keeps serving and a failed fetch is not retried for [`RETRY_AFTER`], so
//! logins do not queue behind timeouts. Must not touch: the login flow or token checks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{AdditionalProviderMetadata, DiscoveryError, JsonWebKeySet, ProviderMetadata};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::OidcError;
use super::config::{Provider, url_allowed};
use super::http::{HttpClient, HttpError, error_chain};

/// How long a failed fetch is remembered before the next login tries again.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Metadata beyond OpenID Connect Discovery that imsgw reads.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    /// RFC 9207 §3: the provider puts `iss` in every authorization response.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: Option<bool>,
}
impl AdditionalProviderMetadata for ExtraMetadata {}

/// The provider metadata imsgw parses.
pub type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// One fetched copy of a provider's metadata and keys.
#[derive(Debug)]
pub struct Discovered {
    /// Metadata, with the JWK Set filled in.
    pub metadata: Metadata,
    /// When the metadata was fetched.
    pub fetched: Instant,
    /// When the JWK Set was fetched.
    pub jwks_fetched: Instant,
}

#[derive(Debug, Default)]
struct State {
    current: Option<Arc<Discovered>>,
    /// The last failed fetch: when, and why (for the error while nothing is cached).
    failed: Option<(Instant, String)>,
}

/// The cache of one provider. The lock is held across a fetch, so concurrent logins wait for
/// one fetch instead of each making their own.
#[derive(Debug, Default)]
pub struct Cache {
    state: Mutex<State>,
}

impl Cache {
    /// The provider's metadata: the cached copy while fresh, else a new fetch; a stale copy if
    /// that fetch fails.
    pub async fn get(&self, p: &Provider, http: &HttpClient) -> Result<Arc<Discovered>, OidcError> {
        let mut st = self.state.lock().await;
        let now = Instant::now();
        if let Some(cur) = &st.current
            && now.duration_since(cur.fetched) < p.refresh
        {
            return Ok(cur.clone());
        }
        if let Some((at, why)) = &st.failed
            && now.duration_since(*at) < RETRY_AFTER
        {
            return match &st.current {
                Some(stale) => Ok(stale.clone()),
                None => Err(unavailable(p, why.clone())),
            };
        }
        match discover(p, http).await {
            Ok(metadata) => {
                info!(provider = %p.name, issuer = %p.issuer.as_str(), keys = metadata.jwks().keys().len(), "fetched OpenID provider metadata");
                let now = Instant::now();
                let d = Arc::new(Discovered {
                    metadata,
                    fetched: now,
                    jwks_fetched: now,
                });
                st.current = Some(d.clone());
                st.failed = None;
                Ok(d)
            }
            Err(why) => {
                st.failed = Some((Instant::now(), why.clone()));
                match &st.current {
                    Some(stale) => {
                        warn!(provider = %p.name, error = %why, "OpenID provider metadata refresh failed; using the cached copy");
                        Ok(stale.clone())
                    }
                    None => {
                        warn!(provider = %p.name, error = %why, "OpenID provider metadata fetch failed");
                        Err(unavailable(p, why))
                    }
                }
            }
        }
    }

    /// Fetches the JWK Set again because a token named a key that `seen` does not have. If
    /// another login already refreshed it since `seen` was fetched, that copy is returned.
    pub async fn refresh_jwks(
        &self,
        p: &Provider,
        http: &HttpClient,
        seen: &Arc<Discovered>,
    ) -> Result<Arc<Discovered>, OidcError> {
        let mut st = self.state.lock().await;
        if let Some(cur) = &st.current
            && cur.jwks_fetched > seen.jwks_fetched
        {
            return Ok(cur.clone());
        }
        let jwks = JsonWebKeySet::<CoreJsonWebKey>::fetch_async(seen.metadata.jwks_uri(), http)
            .await
            .map_err(|e| unavailable(p, format!("JWKS: {}", describe(&e))))?;
        info!(provider = %p.name, keys = jwks.keys().len(), "refetched the OpenID provider's JWK Set for an unknown kid");
        let d = Arc::new(Discovered {
            metadata: seen.metadata.clone().set_jwks(jwks),
            fetched: seen.fetched,
            jwks_fetched: Instant::now(),
        });
        st.current = Some(d.clone());
        Ok(d)
    }
}

fn unavailable(p: &Provider, reason: String) -> OidcError {
    OidcError::Unavailable {
        provider: p.name.clone(),
        reason,
    }
}

/// Fetches and checks the discovery document and the JWK Set.
async fn discover(p: &Provider, http: &HttpClient) -> Result<Metadata, String> {
    // openidconnect checks that the document's `issuer` equals ours (Discovery §4.3).
    let m = Metadata::discover_async(p.issuer.clone(), http)
        .await
        .map_err(|e| format!("discovery: {}", describe(&e)))?;
    let mut urls = vec![
        ("authorization_endpoint", m.authorization_endpoint().url()),
        ("jwks_uri", m.jwks_uri().url()),
    ];
    if let Some(t) = m.token_endpoint() {
        urls.push(("token_endpoint", t.url()));
    }
    if let Some(u) = m.userinfo_endpoint() {
        urls.push(("userinfo_endpoint", u.url()));
    }
    for (field, url) in urls {
        if !url_allowed(url) {
            return Err(format!(
                "discovery: {field} {url} is neither https nor loopback http"
            ));
        }
    }
    Ok(m)
}

/// An operator-facing description of a fetch failure, without response bodies.
pub fn describe(e: &DiscoveryError<HttpError>) -> String {
    match e {
        DiscoveryError::Request(e) => error_chain(e),
        DiscoveryError::Response(status, _, _) => format!("answered HTTP {status}"),
        DiscoveryError::Parse(e) => format!("unreadable document at {}", e.path()),
        DiscoveryError::Validation(m) => m.clone(),
        DiscoveryError::UrlParse(e) => format!("bad URL: {e}"),
        DiscoveryError::Other(m) => m.clone(),
        other => other.to_string(),
    }
}
