//! Sign-in sessions: a person signs in at an OpenID provider (OIDC Core §3.1, through
//! [`crate::oidc`]), is mapped to an IMS identity, and gets a session cookie (HttpOnly,
//! SameSite=Lax, Secure over https) that `/oauth/authorize` and `/device` rely on.
//!
//! Owns: `/auth/login`, `/auth/callback`, `/auth/logout`, the session cookie. Must not touch:
//! tokens (see `oauth`), the provider protocol (see `crate::oidc`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::identity::{self, Person};
use super::pages;
use super::store::{StoreExt, key_of};
use super::{Waf, unix_now};

pub const SESSION_COOKIE: &str = "imsgw_session";
const LOGIN_COOKIE: &str = "imsgw_login";
/// How long a person has at the provider before the login must start again.
const LOGIN_TTL: u64 = 600;

/// Where to go once signed in. Kept server-side, so the return is never an open redirect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Return {
    /// Finish an `/oauth/authorize` request stored under this id.
    Authorize(String),
    /// The device approval page, with the code the person came with.
    Device(Option<String>),
    /// Nowhere in particular.
    Home,
}

#[derive(Serialize, Deserialize)]
struct Login {
    pending: crate::oidc::PendingLogin,
    ret: Return,
}

/// A random URL-safe secret of 32 bytes.
pub fn random_secret() -> String {
    use base64::Engine;
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(waf: &Waf, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = if waf.flows.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let v = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    // Names are constants and values base64url: always a valid header value.
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The signed-in person of this request and their session's store key.
pub fn current(waf: &Waf, headers: &HeaderMap) -> Option<(String, Person)> {
    let id = cookie(headers, SESSION_COOKIE)?;
    let key = key_of(id);
    let person = waf.store.get::<Person>("session", &key, unix_now())?;
    Some((key, person))
}

/// Shows the sign-in page; after signing in the person goes to `ret`.
pub fn ask_to_sign_in(waf: &Waf, ret: Return) -> Response {
    let id = random_secret();
    let now = unix_now();
    waf.store.put("return", &id, now, &ret, now + LOGIN_TTL);
    pages::signin(&waf.providers.list(), &id)
}

#[derive(Deserialize)]
pub struct LoginQuery {
    provider: String,
    #[serde(rename = "return")]
    ret: Option<String>,
}

/// `GET /auth/login?provider=…&return=…`: off to the provider.
pub async fn login(State(waf): State<Arc<Waf>>, Query(q): Query<LoginQuery>) -> Response {
    let now = unix_now();
    let ret = q
        .ret
        .and_then(|id| waf.store.take::<Return>("return", &id, now))
        .unwrap_or(Return::Home);
    let redirect_uri = format!("{}/auth/callback", waf.issuer);
    let (url, pending) = match waf.providers.begin(&q.provider, &redirect_uri).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(provider = %q.provider, error = %e, "sign-in could not start");
            return pages::error(StatusCode::BAD_GATEWAY, "Sign-in failed", &e.user_message());
        }
    };
    let id = random_secret();
    waf.store.put(
        "login",
        &key_of(&id),
        now,
        &Login { pending, ret },
        now + LOGIN_TTL,
    );
    let mut r = Redirect::to(&url).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&waf, LOGIN_COOKIE, &id, LOGIN_TTL),
    );
    r
}

/// `GET /auth/callback`: back from the provider (OIDC Core §3.1.2.5–§3.1.3).
pub async fn callback(
    State(waf): State<Arc<Waf>>,
    headers: HeaderMap,
    Query(q): Query<crate::oidc::Callback>,
) -> Response {
    let now = unix_now();
    let Some(login) = cookie(&headers, LOGIN_COOKIE)
        .and_then(|id| waf.store.take::<Login>("login", &key_of(id), now))
    else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in was not started here or took too long. Please start again.",
        );
    };
    // The state is checked before anything else the callback says, so a forged `error=` cannot
    // show a page (OIDC Core §3.1.2.7, RFC 9207 `iss` too).
    let claims = match waf.providers.finish_callback(&login.pending, &q).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(provider = %login.pending.provider, error = %e, "sign-in failed");
            let status = match e {
                crate::oidc::OidcError::Unavailable { .. } => StatusCode::BAD_GATEWAY,
                crate::oidc::OidcError::ProviderError { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            };
            return pages::error(status, "Sign-in failed", &e.user_message());
        }
    };
    let person = match identity::map(
        &waf.flows.identity,
        &waf.flows.domain,
        &login.pending.provider,
        &claims,
    ) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(provider = %login.pending.provider, error = %e, "account cannot be mapped to an IMS identity");
            return pages::error(
                StatusCode::FORBIDDEN,
                "This account cannot be used for calling",
                &format!("{e}. Ask your operator, or sign in with another account."),
            );
        }
    };
    tracing::info!(impu = %person.impu, provider = %person.provider, "signed in");
    let sid = random_secret();
    let ttl = waf.flows.session_ttl;
    waf.store
        .put("session", &key_of(&sid), now, &person, now + ttl);
    let target = match login.ret {
        Return::Authorize(id) => format!("/oauth/authorize?resume={}", pages::urlencode(&id)),
        Return::Device(Some(code)) => format!("/device?user_code={}", pages::urlencode(&code)),
        Return::Device(None) => "/device".to_string(),
        Return::Home => "/auth/signed-in".to_string(),
    };
    let mut r = Redirect::to(&target).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&waf, SESSION_COOKIE, &sid, ttl),
    );
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&waf, LOGIN_COOKIE, "", 0));
    r
}

/// `GET /auth/signed-in`: who is signed in, and a sign-out form carrying the CSRF token.
pub async fn signed_in(State(waf): State<Arc<Waf>>, headers: HeaderMap) -> Response {
    match current(&waf, &headers) {
        Some((key, p)) => pages::page(
            StatusCode::OK,
            "Signed in",
            &format!(
                "<p>You are signed in as {} ({}).</p><form method=\"post\" action=\"/auth/logout\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\"><button class=\"secondary\">Sign out</button></form>",
                pages::esc(&p.display),
                pages::esc(p.impu.as_str()),
                pages::esc(&logout_csrf(&key)),
            ),
        ),
        None => ask_to_sign_in(&waf, Return::Home),
    }
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: Option<String>,
}

/// `POST /auth/logout`: ends the session. A POST, so no link signs anyone out, and one that
/// must prove it comes from the gateway's own pages: the session's CSRF token (the signed-in
/// page's form) or an `Origin` equal to the gateway's (the web client's `fetch`, which a browser
/// always labels). SameSite=Lax alone is not enough: a sibling site (another port or subdomain)
/// is "same-site" and would carry the cookie. Anything else gets 403 and the session stays.
pub async fn logout(
    State(waf): State<Arc<Waf>>,
    headers: HeaderMap,
    form: Result<axum::Form<LogoutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let session = current(&waf, &headers);
    let csrf = form.ok().and_then(|f| f.0.csrf);
    let token_ok = match (&session, &csrf) {
        (Some((key, _)), Some(given)) => {
            bool::from(given.as_bytes().ct_eq(logout_csrf(key).as_bytes()))
        }
        _ => false,
    };
    if !token_ok && !same_origin(&waf.issuer, &headers) {
        tracing::warn!(
            origin = ?headers.get(header::ORIGIN),
            "sign-out refused: neither the CSRF token nor a same-origin Origin"
        );
        return pages::error(
            StatusCode::FORBIDDEN,
            "Sign-out refused",
            "This request to sign out did not come from this site. To sign out, open the sign-in page again and press Sign out there.",
        );
    }
    if let Some((key, p)) = session {
        waf.store.delete("session", &key, unix_now());
        tracing::info!(impu = %p.impu, "signed out");
    }
    let mut r = pages::page(StatusCode::OK, "Signed out", "<p>You are signed out.</p>");
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&waf, SESSION_COOKIE, "", 0));
    r
}

/// The sign-out form's CSRF token of a session: derived from the session's store key, which
/// only the holder of the HttpOnly session cookie can know.
fn logout_csrf(session_key: &str) -> String {
    key_of(&format!("logout-csrf:{session_key}"))
}

/// Whether the request's `Origin` (RFC 6454 §7) is the gateway's own, as `waf.issuer` names it.
fn same_origin(issuer: &str, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    match reqwest::Url::parse(issuer) {
        Ok(u) => {
            let own = u.origin();
            own.is_tuple() && own.ascii_serialization() == origin
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_origin(o: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(o).expect("header"));
        h
    }

    #[test]
    fn only_the_gateways_own_origin_counts_rfc6454_7() {
        let iss = "https://webrtc.example:8443/base";
        assert!(same_origin(
            iss,
            &with_origin("https://webrtc.example:8443")
        ));
        for other in [
            "https://evil.example",
            "https://webrtc.example",
            "http://webrtc.example:8443",
            "https://webrtc.example:8443.evil.example",
            "null",
            "",
        ] {
            assert!(!same_origin(iss, &with_origin(other)), "{other}");
        }
        assert!(!same_origin(iss, &HeaderMap::new()));
        // The default port is not written in an Origin.
        assert!(same_origin(
            "https://webrtc.example:443",
            &with_origin("https://webrtc.example")
        ));
    }

    #[test]
    fn csrf_tokens_differ_per_session() {
        assert_ne!(logout_csrf("a"), logout_csrf("b"));
        assert_eq!(logout_csrf("a"), logout_csrf("a"));
    }
}
