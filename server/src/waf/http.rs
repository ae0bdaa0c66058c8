//! The WAF's HTTP endpoints: RFC 8414 metadata, the RFC 7517 JWK Set, RFC 7662 introspection
//! and RFC 7009 revocation. Errors are RFC 6749 §5.2 JSON and never echo a token or secret.
//!
//! Owns: request parsing and client authentication for these endpoints.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::client::{Authenticated, NamesClient};
use super::error::{ErrorCode, OAuthError};
use super::limits;
use super::{Waf, unix_now};

/// Routes under the gateway's base URL. Every request is bounded: its URI to
/// [`limits::URI`] and its body to [`limits::BODY`].
pub fn router(waf: Arc<Waf>) -> Router {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/oauth/jwks", get(jwks))
        .route("/oauth/introspect", post(introspect))
        .route("/oauth/revoke", post(revoke))
        .route(
            "/oauth/authorize",
            get(super::authorize::authorize).post(super::authorize::consent),
        )
        .route("/oauth/token", post(super::token::token))
        .route(
            "/oauth/device_authorization",
            post(super::device::authorization),
        )
        .route(
            "/device",
            get(super::device::page).post(super::device::submit),
        )
        .route(
            "/phone-code",
            get(super::phone_code::page).post(super::phone_code::submit),
        )
        .route("/auth/login", get(super::signin::login))
        .route("/auth/callback", get(super::signin::callback))
        .route("/auth/signed-in", get(super::signin::signed_in))
        .route("/auth/me", get(super::signin::me))
        .route("/auth/logout", post(super::signin::logout))
        .layer(DefaultBodyLimit::max(limits::BODY))
        .layer(middleware::from_fn(uri_limit))
        .with_state(waf)
}

/// 414 for a URI longer than any request of these endpoints needs (RFC 9110 §15.5.15).
async fn uri_limit(req: Request, next: Next) -> Response {
    let len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if len > limits::URI {
        super::error::count_refusal("oversize");
        return OAuthError::invalid_request(format!(
            "the request URI is longer than {} bytes",
            limits::URI
        ))
        .with_status(StatusCode::URI_TOO_LONG)
        .into_response();
    }
    next.run(req).await
}

/// RFC 8414 §2: what exists, and nothing that does not.
async fn metadata(State(waf): State<Arc<Waf>>) -> Response {
    let base = &waf.issuer;
    let body = json!({
        "issuer": base,
        "jwks_uri": format!("{base}/oauth/jwks"),
        "introspection_endpoint": format!("{base}/oauth/introspect"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        "device_authorization_endpoint": format!("{base}/oauth/device_authorization"),
        "scopes_supported": [waf.scope],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code"
        ],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        // RFC 9449 §5.1: the token endpoint binds tokens to ES256 DPoP keys.
        "dpop_signing_alg_values_supported": ["ES256"],
    });
    cached(Json(body).into_response(), 300)
}

async fn jwks(State(waf): State<Arc<Waf>>) -> Response {
    // Short caching: a rotated key must reach external verifiers well before it signs alone.
    cached(Json(waf.keys().jwks()).into_response(), 60)
}

fn cached(mut r: Response, secs: u32) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={secs}")) {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    r
}

#[derive(Deserialize)]
struct TokenForm {
    token: Option<String>,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
    client_id: Option<String>,
}

impl NamesClient for TokenForm {
    fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// RFC 7662 §2.1 and RFC 7009 §2.1: these endpoints are for authenticated clients.
    fn no_client() -> OAuthError {
        OAuthError::invalid_client()
    }
}

impl TokenForm {
    fn token(&self) -> Result<&str, OAuthError> {
        limits::field("token", self.token.as_deref(), limits::TOKEN)?;
        self.token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("the `token` parameter is missing"))
    }
}

/// RFC 7662 §2.1: the caller authenticates (a public client cannot introspect); §2.2: an
/// inactive token says only `active: false`.
async fn introspect(
    State(waf): State<Arc<Waf>>,
    auth: Authenticated<TokenForm>,
) -> Result<Response, OAuthError> {
    let client = auth.client(&waf)?;
    if client.is_public() {
        return Err(OAuthError::invalid_client());
    }
    if !client.introspect {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not introspect tokens",
        )
        .with_status(StatusCode::FORBIDDEN));
    }
    let token = auth.form.token()?;
    let body = match waf.check(unix_now(), token)? {
        Some(c) => {
            let mut body = json!({
                "active": true,
                "scope": c.scope,
                "token_type": "Bearer",
                "sub": c.sub,
                "aud": c.aud,
                "iss": c.iss,
                "exp": c.exp,
                "iat": c.iat,
                "nbf": c.nbf,
                "jti": c.jti,
                "impu": c.impu,
                "impi": c.impi,
            });
            // RFC 7662 §2.2: the client the token was issued to, when it names one.
            if let Some(id) = c.client_id {
                body["client_id"] = json!(id);
            }
            // RFC 9449 §6.2: a bound token says which key it is bound to.
            if let Some(jkt) = c.cnf_jkt {
                body["cnf"] = json!({ "jkt": jkt });
                body["token_type"] = json!("DPoP");
            }
            body
        }
        None => json!({ "active": false }),
    };
    Ok(no_store(Json(body).into_response()))
}

/// RFC 7009 §2: a confidential client authenticates; a public client names itself with
/// `client_id`. §2.1: only the client a token was issued to may revoke it. §2.2: 200 whether
/// the token was revoked or was not valid.
///
/// A token issued to another client is refused, as §2.1 says, when the caller proved who it is
/// (HTTP Basic): 400 `unauthorized_client` (RFC 6749 §5.2, which §2.2.1 refers to). A public
/// client proves nothing (anyone can send its `client_id`), so it hears 200 and nothing is
/// revoked: an error would tell a stranger that a guessed string is someone's live token.
async fn revoke(
    State(waf): State<Arc<Waf>>,
    auth: Authenticated<TokenForm>,
) -> Result<Response, OAuthError> {
    let token = auth.form.token()?;
    let now = unix_now();
    // An access token (a JWT of ours), else perhaps a refresh token (RFC 7009 §2.1: both).
    let client_id = auth.client_id.as_str();
    let outcome = match waf.check_for_revocation(now, token) {
        Some(c) if c.client_id.as_deref() == Some(client_id) => {
            waf.revoke_token(&c.jti, c.exp, now)?;
            tracing::info!(jti = %c.jti, sub = %c.sub, client_id, "token revoked");
            Revocation::Revoked
        }
        Some(c) => {
            tracing::info!(jti = %c.jti, client_id, owner = ?c.client_id, "not revoked: the token was issued to another client");
            Revocation::NotOwner
        }
        None => super::token::revoke_refresh_token(&waf, client_id, token, now)?,
    };
    let confidential = auth.client(&waf)?.secret.is_some();
    if outcome == Revocation::NotOwner && confidential {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the token was not issued to this client",
        ));
    }
    Ok(no_store(StatusCode::OK.into_response()))
}

/// What a revocation request found (RFC 7009 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Revocation {
    /// The token was the caller's and is revoked now.
    Revoked,
    /// The token is valid but was issued to another client; nothing was revoked.
    NotOwner,
    /// Not a token of ours (or expired): nothing to do.
    Unknown,
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
