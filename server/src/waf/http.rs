//! The WAF's HTTP endpoints: RFC 8414 metadata, the RFC 7517 JWK Set, RFC 7662 introspection
//! and RFC 7009 revocation. Errors are RFC 6749 §5.2 JSON and never echo a token or secret.
//!
//! Owns: request parsing and client authentication for these endpoints.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{Waf, unix_now};

/// Routes under the gateway's base URL.
pub fn router(waf: Arc<Waf>) -> Router {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/oauth/jwks", get(jwks))
        .route("/oauth/introspect", post(introspect))
        .route("/oauth/revoke", post(revoke))
        .route("/oauth/authorize", get(super::oauth::authorize))
        .route("/oauth/token", post(super::oauth::token))
        .route(
            "/oauth/device_authorization",
            post(super::oauth::device_authorization),
        )
        .route(
            "/device",
            get(super::oauth::device_page).post(super::oauth::device_submit),
        )
        .route("/auth/login", get(super::signin::login))
        .route("/auth/callback", get(super::signin::callback))
        .route("/auth/signed-in", get(super::signin::signed_in))
        .route("/auth/logout", post(super::signin::logout))
        .with_state(waf)
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

/// RFC 7662 §2.1: the caller authenticates; §2.2: an inactive token says only `active: false`.
async fn introspect(
    State(waf): State<Arc<Waf>>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let client = match authenticate(&waf, &headers, None) {
        Ok(Some(id)) => id,
        Ok(None) | Err(_) => return invalid_client(),
    };
    if !waf.clients.get(&client).is_some_and(|c| c.introspect) {
        return oauth_error(
            StatusCode::FORBIDDEN,
            "unauthorized_client",
            "this client may not introspect tokens",
        );
    }
    let form = match form_body(form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(token) = form.token.filter(|t| !t.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the `token` parameter is missing",
        );
    };
    let body = match waf.check(unix_now(), &token) {
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
            body
        }
        None => json!({ "active": false }),
    };
    no_store(Json(body).into_response())
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
    headers: HeaderMap,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = match form_body(form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let client_id = match authenticate(&waf, &headers, form.client_id.as_deref()) {
        Ok(Some(id)) => id,
        Ok(None) | Err(_) => return invalid_client(),
    };
    let Some(token) = form.token.filter(|t| !t.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the `token` parameter is missing",
        );
    };
    let now = unix_now();
    // An access token (a JWT of ours), else perhaps a refresh token (RFC 7009 §2.1: both).
    let outcome = match waf.check_for_revocation(now, &token) {
        Some(c) if c.client_id.as_deref() == Some(client_id.as_str()) => {
            waf.revoke_token(&c.jti, c.exp, now);
            tracing::info!(jti = %c.jti, sub = %c.sub, client_id, "token revoked");
            Revocation::Revoked
        }
        Some(c) => {
            tracing::info!(jti = %c.jti, client_id, owner = ?c.client_id, "not revoked: the token was issued to another client");
            Revocation::NotOwner
        }
        None => super::oauth::revoke_refresh_token(&waf, &client_id, &token, now),
    };
    let confidential = waf
        .clients
        .get(&client_id)
        .is_some_and(|c| c.secret.is_some());
    if outcome == Revocation::NotOwner && confidential {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "the token was not issued to this client",
        );
    }
    no_store(StatusCode::OK.into_response())
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

/// The client id if the request authenticates one: HTTP Basic for clients with a secret
/// (RFC 6749 §2.3.1), or `client_id` alone for public clients. `Err` for bad credentials.
pub(super) fn authenticate(
    waf: &Waf,
    headers: &HeaderMap,
    client_id: Option<&str>,
) -> Result<Option<String>, ()> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let auth = auth.to_str().map_err(|_| ())?;
        let (scheme, rest) = auth.split_once(' ').ok_or(())?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(());
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .map_err(|_| ())?;
        let decoded = String::from_utf8(decoded).map_err(|_| ())?;
        let (id, secret) = decoded.split_once(':').ok_or(())?;
        // RFC 6749 §2.3.1: both are form-urlencoded before the Basic encoding.
        let id = form_decode(id);
        let secret = form_decode(secret);
        let client = waf.clients.get(&id).ok_or(())?;
        let expected = client.secret.as_ref().ok_or(())?;
        if bool::from(expected.expose().ct_eq(secret.as_bytes())) {
            return Ok(Some(id));
        }
        return Err(());
    }
    match client_id {
        Some(id) => match waf.clients.get(id) {
            Some(c) if c.secret.is_none() => Ok(Some(id.to_string())),
            _ => Err(()),
        },
        None => Ok(None),
    }
}

fn form_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn invalid_client() -> Response {
    let mut r = oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "client authentication failed",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"imsgw\""),
    );
    r
}

/// The form of a POST, or the RFC 6749 §5.2 answer for a body that is not one.
// The error is the handler's answer itself; see the same allowance in `oauth`.
#[allow(clippy::result_large_err)]
pub(super) fn form_body<T>(
    form: Result<Form<T>, axum::extract::rejection::FormRejection>,
) -> Result<T, Response> {
    form.map(|Form(f)| f).map_err(|_| {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected a form body",
        )
    })
}

/// RFC 6749 §5.2 error body.
pub fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body: Value = json!({ "error": error, "error_description": description });
    no_store((status, Json(body)).into_response())
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::form_decode;

    #[test]
    fn rfc6749_2_3_1_basic_credentials_are_form_decoded() {
        assert_eq!(form_decode("a%3Ab+c"), "a:b c");
        assert_eq!(form_decode("100%"), "100%");
        assert_eq!(form_decode("%zz"), "%zz");
    }
}
