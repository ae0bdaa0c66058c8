//! Sign-in sessions: a person signs in at an OpenID provider (OIDC Core §3.1, through
//! [`crate::oidc`]), is mapped to an IMS identity, and gets a session cookie (HttpOnly,
//! SameSite=Lax, Secure over https) that `/oauth/authorize` and `/device` rely on. Until the
//! person is back from the provider nothing is kept here: the login in progress is a sealed
//! cookie (`sealed`) and the page to return to a plain one, checked again on return.
//!
//! Owns: `/auth/login`, `/auth/callback`, `/auth/logout`, the session cookie. Must not touch:
//! tokens (see `token`), the provider protocol (see `crate::oidc`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use subtle::ConstantTimeEq;

use super::error::{PageError, StoreResult};
use super::identity::{self, Person};
use super::limits;
use super::pages;
use super::store::{StoreExt, key_of};
use super::{Waf, unix_now};

pub const SESSION_COOKIE: &str = "imsgw_session";
const LOGIN_COOKIE: &str = "imsgw_login";
/// How long a person has at the provider before the login must start again.
const LOGIN_TTL: u64 = 600;

const RETURN_COOKIE: &str = "imsgw_return";
/// The longest return path kept in its cookie (browsers keep 4096 bytes per cookie); a longer
/// one is dropped and the person lands on the signed-in page.
const RETURN_MAX: usize = 3000;
/// The purpose a pending login is sealed for.
const LOGIN_PURPOSE: &str = "imsgw login v1";

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
pub fn current(waf: &Waf, headers: &HeaderMap) -> StoreResult<Option<(String, Person)>> {
    let Some(id) = cookie(headers, SESSION_COOKIE).filter(|id| id.len() <= limits::CODE) else {
        return Ok(None);
    };
    let key = key_of(id);
    Ok(waf
        .store
        .get::<Person>("session", &key, unix_now())?
        .map(|person| (key, person)))
}

/// A per-session token for the forms of signed-in people (the cookie is SameSite=Lax too).
pub fn csrf_of(session_key: &str) -> String {
    key_of(&format!("csrf:{session_key}"))
}

/// Whether `sent` is the session's CSRF token (compared in constant time).
pub fn csrf_matches(session_key: &str, sent: Option<&str>) -> bool {
    let want = csrf_of(session_key);
    sent.is_some_and(|c| bool::from(c.as_bytes().ct_eq(want.as_bytes())))
}

/// Shows the sign-in page; after signing in the person goes back to `ret` (a path of this
/// gateway, checked again by [`return_path`] when it comes back). Nothing is stored.
pub fn ask_to_sign_in(waf: &Waf, ret: &str) -> Response {
    pages::signin(&waf.providers.list(), ret)
}

/// `ret` if it is a page a person may be sent back to after signing in: the authorization
/// endpoint (its request is checked again there), the device page, the phone-code page, or the
/// signed-in page.
/// Anything else, an absolute URL above all, is refused: never an open redirect.
fn return_path(ret: &str) -> Option<&str> {
    let ok_path = |p: &str| {
        ret == p
            || ret
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('?'))
    };
    let allowed = ok_path("/oauth/authorize")
        || ok_path("/device")
        || ret == "/phone-code"
        || ret == "/auth/signed-in";
    let clean = ret.len() <= limits::URI
        && ret
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'#');
    (allowed && clean).then_some(ret)
}

#[derive(Deserialize)]
pub struct LoginQuery {
    provider: String,
    #[serde(rename = "return")]
    ret: Option<String>,
}

/// `GET /auth/login?provider=…&return=…`: off to the provider. What the callback must check
/// (state, nonce, PKCE verifier) goes to the browser sealed in a cookie, and where to return in
/// another: an anonymous client starting sign-ins makes the WAF keep nothing.
pub async fn login(
    State(waf): State<Arc<Waf>>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, PageError> {
    if q.provider.len() > limits::PROVIDER {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "There is no such sign-in provider here.",
        ));
    }
    // The cookie holds it URL-encoded: the encoded length is what must fit.
    let ret = q
        .ret
        .as_deref()
        .and_then(return_path)
        .filter(|r| pages::urlencode(r).len() <= RETURN_MAX)
        .unwrap_or("/auth/signed-in");
    let now = unix_now();
    let redirect_uri = format!("{}/auth/callback", waf.issuer);
    let (url, pending) = match waf.providers.begin(&q.provider, &redirect_uri).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(provider = ?q.provider, error = %e, "sign-in could not start");
            let status = match e {
                crate::oidc::OidcError::UnknownProvider(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::BAD_GATEWAY,
            };
            return Err(PageError::new(status, "Sign-in failed", e.user_message()));
        }
    };
    let sealed = waf
        .sealer
        .seal(LOGIN_PURPOSE, &pending, now + LOGIN_TTL)
        .ok_or_else(|| {
            PageError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in failed",
                "The sign-in could not be started. Please try again.",
            )
        })?;
    let mut r = Redirect::to(&url).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&waf, LOGIN_COOKIE, &sealed, LOGIN_TTL),
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&waf, RETURN_COOKIE, &pages::urlencode(ret), LOGIN_TTL),
    );
    Ok(r)
}

/// `GET /auth/callback`: back from the provider (OIDC Core §3.1.2.5–§3.1.3).
pub async fn callback(
    State(waf): State<Arc<Waf>>,
    headers: HeaderMap,
    Query(q): Query<crate::oidc::Callback>,
) -> Result<Response, PageError> {
    let now = unix_now();
    let pending = cookie(&headers, LOGIN_COOKIE).and_then(|c| {
        waf.sealer
            .open::<crate::oidc::PendingLogin>(LOGIN_PURPOSE, c, now)
    });
    let Some(pending) = pending else {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in was not started here or took too long. Please start again.",
        ));
    };
    // The state is checked before anything else the callback says, so a forged `error=` cannot
    // show a page (OIDC Core §3.1.2.7, RFC 9207 `iss` too).
    let claims = match waf.providers.finish_callback(&pending, &q).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(provider = %pending.provider, error = %e, "sign-in failed");
            let status = match e {
                crate::oidc::OidcError::Unavailable { .. } => StatusCode::BAD_GATEWAY,
                crate::oidc::OidcError::ProviderError { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            };
            return Err(PageError::new(status, "Sign-in failed", e.user_message()));
        }
    };
    let person = match identity::map(
        &waf.flows.identity,
        &waf.flows.domain,
        &pending.provider,
        &claims,
    ) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(provider = %pending.provider, error = %e, "account cannot be mapped to an IMS identity");
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "This account cannot be used for calling",
                format!("{e}. Ask your operator, or sign in with another account."),
            ));
        }
    };
    if let Err(wait) = waf.person_budget(&person) {
        super::error::log_refusal(
            "person_budget",
            &format!("sign-ins of {} over budget", person.impu),
        );
        return Err(PageError::too_many(
            "You signed in too many times in a short time. Wait a minute, then try again.",
            wait,
        ));
    }
    // Signing in again replaces the browser's session: the old one goes at once rather than
    // lingering until it expires.
    if let Some(old) = cookie(&headers, SESSION_COOKIE).filter(|id| id.len() <= limits::CODE) {
        waf.store.delete("session", &key_of(old), now)?;
    }
    let sid = random_secret();
    let ttl = waf.flows.session_ttl;
    waf.store
        .put("session", &key_of(&sid), now, &person, now + ttl)?;
    tracing::info!(impu = %person.impu, provider = %person.provider, "signed in");
    let back = cookie(&headers, RETURN_COOKIE).map(pages::urldecode);
    let target = back
        .as_deref()
        .and_then(return_path)
        .unwrap_or("/auth/signed-in");
    let mut r = Redirect::to(target).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&waf, SESSION_COOKIE, &sid, ttl),
    );
    for gone in [LOGIN_COOKIE, RETURN_COOKIE] {
        r.headers_mut()
            .append(header::SET_COOKIE, set_cookie(&waf, gone, "", 0));
    }
    Ok(r)
}

/// `GET /auth/signed-in`: who is signed in, and a sign-out form carrying the CSRF token.
pub async fn signed_in(
    State(waf): State<Arc<Waf>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    Ok(match current(&waf, &headers)? {
        Some((key, p)) => pages::page(
            StatusCode::OK,
            "Signed in",
            &format!(
                "<p>You are signed in as {} ({}).</p><form method=\"post\" action=\"/auth/logout\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\"><button class=\"secondary\">Sign out</button></form>",
                pages::esc(&p.display),
                pages::esc(p.impu.as_str()),
                pages::esc(&csrf_of(&key)),
            ),
        ),
        None => ask_to_sign_in(&waf, "/auth/signed-in"),
    })
}

/// `GET /auth/me`: the signed-in person's IMPU as JSON (`{"impu": …}`, or `{"impu": null}` when
/// no one is: a cookie session names no authentication scheme for a 401, RFC 9110 §15.5.2), for
/// the web client that signs in with `wwsf.sign_in = "code_in_register"` and so never sees a
/// token to read it from. Same-origin only in effect: no CORS header is ever sent.
pub async fn me(State(waf): State<Arc<Waf>>, headers: HeaderMap) -> Result<Response, PageError> {
    let impu = current(&waf, &headers)?.map(|(_, p)| p.impu.as_str().to_string());
    let mut r = axum::Json(serde_json::json!({ "impu": impu })).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
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
) -> Result<Response, PageError> {
    let session = current(&waf, &headers)?;
    let csrf = form.ok().and_then(|f| f.0.csrf);
    let token_ok = session
        .as_ref()
        .is_some_and(|(key, _)| csrf_matches(key, csrf.as_deref()));
    if !token_ok && !same_origin(&waf.issuer, &headers) {
        tracing::warn!(
            origin = ?headers.get(header::ORIGIN),
            "sign-out refused: neither the CSRF token nor a same-origin Origin"
        );
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Sign-out refused",
            "This request to sign out did not come from this site. To sign out, open the sign-in page again and press Sign out there.",
        ));
    }
    if let Some((key, p)) = session {
        // First, so a store that fails leaves the session to sign out of again.
        super::phone_code::end_session(&waf, &key, &p, unix_now())?;
        waf.store.delete("session", &key, unix_now())?;
        tracing::info!(impu = %p.impu, "signed out");
    }
    let mut r = pages::page(StatusCode::OK, "Signed out", "<p>You are signed out.</p>");
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&waf, SESSION_COOKIE, "", 0));
    Ok(r)
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
    fn only_the_gateways_own_pages_are_returned_to_after_sign_in() {
        for ok in [
            "/phone-code",
            "/device",
            "/device?user_code=123",
            "/oauth/authorize?client_id=wic",
            "/auth/signed-in",
        ] {
            assert_eq!(return_path(ok), Some(ok));
        }
        for bad in [
            "/phone-codes",
            "/phone-code/x",
            "https://evil.example/phone-code",
            "//evil.example/device",
            "/device#x",
        ] {
            assert_eq!(return_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn csrf_tokens_differ_per_session() {
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert_eq!(csrf_of("a"), csrf_of("a"));
        assert!(csrf_matches("a", Some(&csrf_of("a"))));
        assert!(!csrf_matches("a", Some(&csrf_of("b"))));
        assert!(!csrf_matches("a", None));
    }
}
