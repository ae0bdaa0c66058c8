//! The WAF's OAuth 2.0 grants (RFC 6749): `/oauth/authorize` with PKCE (RFC 7636) for the
//! browser client, `/oauth/token` for codes, refresh tokens (rotated, reuse revokes the
//! family) and device codes, and the device authorization grant (RFC 8628) with its `/device`
//! page for phones that only have a key pad.
//!
//! Owns: codes, refresh-token families, device codes and their rules. Must not touch: how a
//! person signs in (see `signin`), token format (see `imsgw-token`).

// Handlers answer with an axum `Response` on every path, errors included; boxing it in the
// `Err` of these helpers would add noise for no gain on paths that run once per sign-in.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::http::{Revocation, authenticate, form_body, invalid_client, oauth_error};
use super::identity::Person;
use super::pages::{self, esc, urlencode};
use super::signin::{self, Return, random_secret};
use super::store::{StoreExt, key_of};
use super::{Client, Waf, unix_now};

pub const GRANT_CODE: &str = "authorization_code";
pub const GRANT_REFRESH: &str = "refresh_token";
pub const GRANT_DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 6749 §4.1.2: codes live at most 10 minutes; here 60 s.
const CODE_TTL: u64 = 60;
/// RFC 8628 §5.1: wrong user codes allowed per window, per session and per address.
const DEVICE_TRIES: u32 = 5;
const DEVICE_TRY_WINDOW: u64 = 600;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AuthRequest {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    challenge: String,
    scope: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Code {
    req: AuthRequest,
    person: Person,
    /// The code is good until then; it stays stored longer only to catch replays.
    valid_until: u64,
    used: bool,
    /// What the code was exchanged for, revoked if it is ever replayed (RFC 6749 §4.1.2).
    issued: Option<Issued>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Issued {
    jti: String,
    exp: u64,
    family: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Family {
    client_id: String,
    person: Person,
    scope: String,
    /// Store key of the one refresh token of the family that may still be used.
    current: String,
    revoked: bool,
    /// Access tokens issued in this family, revoked with it.
    jtis: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum DeviceStatus {
    Pending,
    Approved(Person),
    Denied,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Device {
    client_id: String,
    scope: String,
    expires_at: u64,
    interval: u64,
    last_poll: u64,
    status: DeviceStatus,
}

#[derive(Deserialize)]
pub struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    scope: Option<String>,
    /// Internal: continue a request stored while the person signed in.
    resume: Option<String>,
}

/// `GET /oauth/authorize` (RFC 6749 §4.1.1, RFC 7636 §4.3).
pub async fn authorize(
    State(waf): State<Arc<Waf>>,
    headers: HeaderMap,
    Query(q): Query<AuthorizeQuery>,
) -> Response {
    let now = unix_now();
    let req = match q.resume.as_deref() {
        Some(id) => match waf.store.take::<AuthRequest>("authreq", id, now) {
            Some(r) => r,
            None => {
                return pages::error(
                    StatusCode::BAD_REQUEST,
                    "Sign-in expired",
                    "This request is no longer valid. Go back to the application and try again.",
                );
            }
        },
        None => match check_authorize(&waf, q) {
            Ok(r) => r,
            Err(resp) => return resp,
        },
    };
    let Some((_, person)) = signin::current(&waf, &headers) else {
        let id = random_secret();
        waf.store.put("authreq", &id, now, &req, now + 600);
        return signin::ask_to_sign_in(&waf, Return::Authorize(id));
    };
    let code = random_secret();
    let mut target = format!(
        "{}{}code={}&iss={}",
        req.redirect_uri,
        if req.redirect_uri.contains('?') {
            "&"
        } else {
            "?"
        },
        urlencode(&code),
        urlencode(&waf.issuer)
    );
    if let Some(state) = &req.state {
        target.push_str(&format!("&state={}", urlencode(state)));
    }
    waf.store.put(
        "code",
        &key_of(&code),
        now,
        &Code {
            req,
            person,
            valid_until: now + CODE_TTL,
            used: false,
            issued: None,
        },
        // Kept past its use-by time, marked used, so a replay is recognised and punished.
        now + CODE_TTL * 10,
    );
    Redirect::to(&target).into_response()
}

/// The checks of RFC 6749 §4.1.2.1: an unknown client or a redirect URI that is not
/// registered gets an error page (never a redirect); everything else goes back to the client.
fn check_authorize(waf: &Waf, q: AuthorizeQuery) -> Result<AuthRequest, Response> {
    let bad = |m: &str| {
        pages::error(
            StatusCode::BAD_REQUEST,
            "This sign-in request is not valid",
            m,
        )
    };
    let client_id = q
        .client_id
        .ok_or_else(|| bad("The request names no application (client_id)."))?;
    let client = waf
        .clients
        .get(&client_id)
        .ok_or_else(|| bad("The application (client_id) is not known here."))?;
    let redirect_uri = match q.redirect_uri {
        Some(u) if client.redirect_uris.contains(&u) => u,
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        _ => {
            return Err(bad(
                "The return address (redirect_uri) is not registered for this application.",
            ));
        }
    };
    let back = |error: &str, description: &str| {
        let mut t = format!(
            "{}{}error={}&error_description={}&iss={}",
            redirect_uri,
            if redirect_uri.contains('?') { "&" } else { "?" },
            error,
            urlencode(description),
            urlencode(&waf.issuer)
        );
        if let Some(s) = &q.state {
            t.push_str(&format!("&state={}", urlencode(s)));
        }
        Redirect::to(&t).into_response()
    };
    if !client.allows(GRANT_CODE) {
        return Err(back(
            "unauthorized_client",
            "this client may not use the authorization code grant",
        ));
    }
    if q.response_type.as_deref() != Some("code") {
        return Err(back(
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    // RFC 7636 §4.3: a missing method means `plain`, which is not accepted here.
    let challenge = match (q.code_challenge, q.code_challenge_method.as_deref()) {
        (Some(c), Some("S256")) if is_challenge(&c) => c,
        (None, _) => {
            return Err(back(
                "invalid_request",
                "PKCE is required: code_challenge with code_challenge_method=S256",
            ));
        }
        (Some(_), Some("S256")) => {
            return Err(back(
                "invalid_request",
                "code_challenge is not a S256 challenge",
            ));
        }
        _ => {
            return Err(back(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not accepted)",
            ));
        }
    };
    let scope = q.scope.unwrap_or_else(|| waf.scope.clone());
    if !scope_allowed(client, &scope) {
        return Err(back(
            "invalid_scope",
            "the requested scope is not allowed for this client",
        ));
    }
    Ok(AuthRequest {
        client_id,
        redirect_uri,
        state: q.state,
        challenge,
        scope,
    })
}

fn is_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn scope_allowed(client: &Client, scope: &str) -> bool {
    let words: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    !words.is_empty() && words.iter().all(|w| client.scopes.iter().any(|s| s == w))
}

#[derive(Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    device_code: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
}

/// `POST /oauth/token` (RFC 6749 §3.2).
pub async fn token(
    State(waf): State<Arc<Waf>>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let f = match form_body(form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (client_id, client) = match client_of(&waf, &headers, f.client_id.as_deref()) {
        Ok(c) => c,
        Err(r) => return r,
    };
    // RFC 6749 §5.2: a missing parameter is invalid_request; an unknown one unsupported.
    let Some(grant) = f.grant_type.clone().filter(|g| !g.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is missing",
        );
    };
    if ![GRANT_CODE, GRANT_REFRESH, GRANT_DEVICE].contains(&grant.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type is not supported",
        );
    }
    if !client.allows(&grant) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "this client may not use this grant",
        );
    }
    let now = unix_now();
    match grant.as_str() {
        GRANT_CODE => exchange_code(&waf, client, &client_id, now, &f),
        GRANT_REFRESH => refresh(&waf, client, &client_id, now, &f),
        _ => poll_device(&waf, client, &client_id, now, &f),
    }
}

/// A client that authenticated (HTTP Basic) or, if public, named itself. A client with a
/// secret must authenticate (RFC 6749 §3.2.1).
fn client_of<'a>(
    waf: &'a Waf,
    headers: &HeaderMap,
    client_id: Option<&str>,
) -> Result<(String, &'a Client), Response> {
    match authenticate(waf, headers, client_id) {
        Ok(Some(id)) if client_id.is_none_or(|c| c == id) => match waf.clients.get(&id) {
            Some(client) => Ok((id, client)),
            None => Err(invalid_client()),
        },
        Ok(Some(_)) | Err(()) => Err(invalid_client()),
        Ok(None) => Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id is missing",
        )),
    }
}

fn invalid_grant(why: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why)
}

fn exchange_code(waf: &Waf, client: &Client, client_id: &str, now: u64, f: &TokenForm) -> Response {
    let Some(code) = f.code.as_deref() else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code is missing",
        );
    };
    let key = key_of(code);
    // Single use: the first exchange marks the code used, whatever its outcome.
    let found = waf
        .store
        .update::<Code, Option<Code>>("code", &key, now, |c| match c {
            Some((code, exp)) => {
                let before = code.clone();
                let mut used = code;
                used.used = true;
                (Some((used, exp)), Some(before))
            }
            None => (None, None),
        });
    let Some(Some(code_rec)) = found else {
        return invalid_grant("the code is unknown or has expired");
    };
    if code_rec.used {
        // RFC 6749 §4.1.2: a code used twice revokes what it gave.
        if let Some(issued) = &code_rec.issued {
            waf.revoke_token(&issued.jti, issued.exp, now);
            if let Some(fam) = &issued.family {
                revoke_family(waf, fam, now);
            }
        }
        tracing::warn!(
            client_id,
            "authorization code replayed; its tokens are revoked"
        );
        return invalid_grant("the code was already used");
    }
    if now >= code_rec.valid_until {
        return invalid_grant("the code has expired");
    }
    if code_rec.req.client_id != client_id {
        return invalid_grant("the code was issued to another client");
    }
    if f.redirect_uri
        .as_deref()
        .is_some_and(|u| u != code_rec.req.redirect_uri)
    {
        return invalid_grant("redirect_uri differs from the authorization request");
    }
    let Some(verifier) = f.code_verifier.as_deref() else {
        return invalid_grant("code_verifier is missing (PKCE)");
    };
    if !pkce_matches(verifier, &code_rec.req.challenge) {
        return invalid_grant("code_verifier does not match the code_challenge");
    }
    let (body, issued) = match issue(
        waf,
        client,
        client_id,
        now,
        &code_rec.person,
        &code_rec.req.scope,
        None,
    ) {
        Ok(v) => v,
        Err(r) => return r,
    };
    waf.store.update::<Code, ()>("code", &key, now, |c| {
        (
            c.map(|(mut code, exp)| {
                code.issued = Some(issued.clone());
                (code, exp)
            }),
            (),
        )
    });
    token_response(body)
}

/// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge, compared in constant time.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    use sha2::Digest;
    if verifier.len() < 43 || verifier.len() > 128 {
        return false;
    }
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

fn refresh(waf: &Waf, client: &Client, client_id: &str, now: u64, f: &TokenForm) -> Response {
    let Some(rt) = f.refresh_token.as_deref() else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token is missing",
        );
    };
    let presented = key_of(rt);
    let Some(family_id) = waf.store.get::<String>("refresh", &presented, now) else {
        return invalid_grant("the refresh token is unknown or has expired");
    };
    let Some(fam) = waf.store.get::<Family>("family", &family_id, now) else {
        return invalid_grant("the refresh token is unknown or has expired");
    };
    if fam.client_id != client_id {
        return invalid_grant("the refresh token was issued to another client");
    }
    if fam.revoked {
        return invalid_grant("the refresh token was revoked");
    }
    if fam.current != presented {
        // RFC 6819 §5.2.2.3 / OAuth 2.0 Security BCP §4.14: reuse of a rotated token.
        revoke_family(waf, &family_id, now);
        tracing::warn!(client_id, impu = %fam.person.impu, "refresh token reused; its family is revoked");
        return invalid_grant("the refresh token was already used; all tokens from it are revoked");
    }
    let scope = match f.scope.as_deref() {
        Some(s) if s.split(' ').all(|w| fam.scope.split(' ').any(|x| x == w)) => s.to_string(),
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "scope exceeds the original grant",
            );
        }
        None => fam.scope.clone(),
    };
    match issue(
        waf,
        client,
        client_id,
        now,
        &fam.person,
        &scope,
        Some((family_id, presented)),
    ) {
        Ok((body, _)) => token_response(body),
        Err(r) => r,
    }
}

/// Mints an access token and, for clients with the refresh grant, a refresh token in a new
/// family or (when `rotate` names a family and the presented token) the next of that family.
fn issue(
    waf: &Waf,
    client: &Client,
    client_id: &str,
    now: u64,
    person: &Person,
    scope: &str,
    rotate: Option<(String, String)>,
) -> Result<(serde_json::Value, Issued), Response> {
    let req = imsgw_token::MintRequest {
        sub: format!("{}:{}", person.provider, person.sub),
        impu: person.impu.to_string(),
        impi: person.impi.clone(),
        scope: scope.to_string(),
        client_id: client_id.to_string(),
        ttl: None,
    };
    let (token, claims) = waf.mint(now, req).map_err(|e| {
        tracing::warn!(error = %e, "minting failed");
        oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the token could not be made",
        )
    })?;
    let mut body = json!({
        "access_token": token.expose(),
        "token_type": "Bearer",
        "expires_in": claims.exp.saturating_sub(now),
        "scope": claims.scope,
    });
    let mut family = None;
    if client.allows(GRANT_REFRESH) {
        let rt = random_secret();
        let rt_key = key_of(&rt);
        let expires = now + waf.flows.refresh_ttl;
        let fam_id = match rotate {
            Some((fam_id, presented)) => {
                // Rotation is atomic: only one of two concurrent uses of a token can win.
                let won = waf
                    .store
                    .update::<Family, bool>("family", &fam_id, now, |f| match f {
                        Some((mut f, exp)) if !f.revoked && f.current == presented => {
                            f.current = rt_key.clone();
                            f.jtis.push((claims.jti.clone(), claims.exp));
                            (Some((f, exp)), true)
                        }
                        other => (other, false),
                    });
                if won != Some(true) {
                    waf.revoke_token(&claims.jti, claims.exp, now);
                    return Err(invalid_grant("the refresh token was already used"));
                }
                fam_id
            }
            None => {
                let id = random_secret();
                let fam = Family {
                    client_id: client_id.to_string(),
                    person: person.clone(),
                    scope: scope.to_string(),
                    current: rt_key.clone(),
                    revoked: false,
                    jtis: vec![(claims.jti.clone(), claims.exp)],
                };
                waf.store.put("family", &id, now, &fam, expires);
                id
            }
        };
        let fam_exp = waf
            .store
            .update::<Family, u64>("family", &fam_id, now, |f| {
                let exp = f.as_ref().map(|(_, e)| *e).unwrap_or(expires);
                (f, exp)
            })
            .unwrap_or(expires);
        waf.store.put("refresh", &rt_key, now, &fam_id, fam_exp);
        body["refresh_token"] = json!(rt);
        family = Some(fam_id);
    }
    Ok((
        body,
        Issued {
            jti: claims.jti,
            exp: claims.exp,
            family,
        },
    ))
}

/// RFC 7009 for a refresh token: its whole family goes, with the access tokens it gave. Only
/// the client it was issued to may revoke it (§2.1); the caller decides what to answer.
pub(super) fn revoke_refresh_token(
    waf: &Waf,
    client_id: &str,
    token: &str,
    now: u64,
) -> Revocation {
    let Some(family_id) = waf.store.get::<String>("refresh", &key_of(token), now) else {
        return Revocation::Unknown;
    };
    let Some(family) = waf.store.get::<Family>("family", &family_id, now) else {
        return Revocation::Unknown;
    };
    if family.client_id != client_id {
        return Revocation::NotOwner;
    }
    revoke_family(waf, &family_id, now);
    tracing::info!(client_id, "refresh token revoked with its family");
    Revocation::Revoked
}

fn revoke_family(waf: &Waf, family_id: &str, now: u64) {
    let jtis =
        waf.store
            .update::<Family, Vec<(String, u64)>>("family", family_id, now, |f| match f {
                Some((mut f, exp)) => {
                    f.revoked = true;
                    let j = f.jtis.clone();
                    (Some((f, exp)), j)
                }
                None => (None, Vec::new()),
            });
    for (jti, exp) in jtis.unwrap_or_default() {
        waf.revoke_token(&jti, exp, now);
    }
}

fn token_response(body: serde_json::Value) -> Response {
    let mut r = Json(body).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}

#[derive(Deserialize)]
pub struct DeviceForm {
    client_id: Option<String>,
    scope: Option<String>,
}

/// `POST /oauth/device_authorization` (RFC 8628 §3.1–3.2).
pub async fn device_authorization(
    State(waf): State<Arc<Waf>>,
    headers: HeaderMap,
    form: Result<Form<DeviceForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let f = match form_body(form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (client_id, client) = match client_of(&waf, &headers, f.client_id.as_deref()) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !client.allows(GRANT_DEVICE) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "this client may not use the device grant",
        );
    }
    let scope = f.scope.unwrap_or_else(|| waf.scope.clone());
    if !scope_allowed(client, &scope) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "the requested scope is not allowed for this client",
        );
    }
    let now = unix_now();
    let device_code = random_secret();
    let user_code = new_user_code();
    let ttl = waf.flows.device_ttl;
    let interval = waf.flows.device_poll;
    let dev = Device {
        client_id,
        scope,
        expires_at: now + ttl,
        interval,
        last_poll: 0,
        status: DeviceStatus::Pending,
    };
    let dkey = key_of(&device_code);
    // Kept past expiry so a late poll hears `expired_token` rather than `invalid_grant`.
    waf.store.put("device", &dkey, now, &dev, now + ttl + 600);
    waf.store.put("usercode", &user_code, now, &dkey, now + ttl);
    let shown = format!(
        "{}-{}-{}",
        &user_code[0..3],
        &user_code[3..6],
        &user_code[6..9]
    );
    let body = json!({
        "device_code": device_code,
        "user_code": shown,
        "verification_uri": format!("{}/device", waf.issuer),
        "verification_uri_complete": format!("{}/device?user_code={}", waf.issuer, user_code),
        "expires_in": ttl,
        "interval": interval,
    });
    token_response(body)
}

/// Nine random digits (RFC 8628 §6.1: a numeric code for key pads; 10^9 values against a few
/// guesses per window).
fn new_user_code() -> String {
    let n: u32 = rand::random_range(0..1_000_000_000);
    format!("{n:09}")
}

/// Digits of a user code as a person may type it (`123-456-789`, spaces, dashes).
fn normalize_user_code(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn poll_device(waf: &Waf, client: &Client, client_id: &str, now: u64, f: &TokenForm) -> Response {
    let Some(dc) = f.device_code.as_deref() else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "device_code is missing",
        );
    };
    enum Poll {
        Pending,
        SlowDown,
        Expired,
        Denied,
        WrongClient,
        Approved(Person, String),
    }
    let outcome = waf
        .store
        .update::<Device, Poll>("device", &key_of(dc), now, |d| match d {
            None => (None, Poll::Expired),
            Some((d, _)) if d.client_id != client_id => {
                (Some((d.clone(), d.expires_at + 600)), Poll::WrongClient)
            }
            Some((d, exp)) if now >= d.expires_at => (Some((d, exp)), Poll::Expired),
            Some((mut d, exp)) => match d.status.clone() {
                DeviceStatus::Denied => (None, Poll::Denied),
                DeviceStatus::Approved(p) => (None, Poll::Approved(p, d.scope.clone())),
                DeviceStatus::Pending => {
                    // RFC 8628 §3.5: too fast -> slow_down, and the interval grows by 5 s.
                    let fast = d.last_poll != 0 && now < d.last_poll + d.interval;
                    d.last_poll = now;
                    if fast {
                        d.interval += 5;
                        (Some((d, exp)), Poll::SlowDown)
                    } else {
                        (Some((d, exp)), Poll::Pending)
                    }
                }
            },
        });
    match outcome.unwrap_or(Poll::Expired) {
        Poll::Pending => oauth_error(
            StatusCode::BAD_REQUEST,
            "authorization_pending",
            "the user has not yet approved",
        ),
        Poll::SlowDown => oauth_error(StatusCode::BAD_REQUEST, "slow_down", "polling too fast"),
        Poll::Expired => oauth_error(
            StatusCode::BAD_REQUEST,
            "expired_token",
            "the device code has expired",
        ),
        Poll::Denied => oauth_error(
            StatusCode::BAD_REQUEST,
            "access_denied",
            "the user denied the request",
        ),
        Poll::WrongClient => invalid_grant("the device code was issued to another client"),
        Poll::Approved(person, scope) => {
            match issue(waf, client, client_id, now, &person, &scope, None) {
                Ok((body, _)) => token_response(body),
                Err(r) => r,
            }
        }
    }
}

#[derive(Deserialize)]
pub struct DeviceQuery {
    user_code: Option<String>,
}

/// `GET /device`: the page where a signed-in person enters or confirms a device's code.
pub async fn device_page(
    State(waf): State<Arc<Waf>>,
    headers: HeaderMap,
    Query(q): Query<DeviceQuery>,
) -> Response {
    let code = q
        .user_code
        .map(|c| normalize_user_code(&c))
        .filter(|c| !c.is_empty());
    let Some((skey, person)) = signin::current(&waf, &headers) else {
        return signin::ask_to_sign_in(&waf, Return::Device(code));
    };
    device_form(&person, &csrf_of(&skey), code.as_deref(), None)
}

fn device_form(person: &Person, csrf: &str, code: Option<&str>, error: Option<&str>) -> Response {
    let err = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "<p>Signed in as {who} ({impu}). Enter the code shown on your phone to let it call as you.</p>{err}\
<form method=\"post\" action=\"/device\"><label for=\"user_code\">Code</label>\
<input id=\"user_code\" name=\"user_code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" autofocus value=\"{code}\" placeholder=\"123-456-789\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<button name=\"action\" value=\"approve\">Allow this phone</button>\
<button class=\"secondary\" name=\"action\" value=\"deny\">Deny</button></form>",
        who = esc(&person.display),
        impu = esc(person.impu.as_str()),
        code = esc(code.unwrap_or("")),
        csrf = esc(csrf),
    );
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    pages::page(status, "Connect a phone", &body)
}

/// A per-session token for the device form (the cookie is SameSite=Lax too).
fn csrf_of(session_key: &str) -> String {
    key_of(&format!("csrf:{session_key}"))
}

#[derive(Deserialize)]
pub struct DevicePost {
    user_code: Option<String>,
    action: Option<String>,
    csrf: Option<String>,
}

/// `POST /device`: approve or deny. Wrong codes are counted per session and per address
/// (RFC 8628 §5.1); past the limit the page refuses for a while.
pub async fn device_submit(
    State(waf): State<Arc<Waf>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<DevicePost>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some((skey, person)) = signin::current(&waf, &headers) else {
        return signin::ask_to_sign_in(&waf, Return::Device(None));
    };
    let Ok(Form(f)) = form else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Something went wrong",
            "The form was incomplete.",
        );
    };
    let csrf = csrf_of(&skey);
    if !f
        .csrf
        .as_deref()
        .is_some_and(|c| bool::from(c.as_bytes().ct_eq(csrf.as_bytes())))
    {
        return pages::error(
            StatusCode::FORBIDDEN,
            "Something went wrong",
            "This form has expired. Open the page again.",
        );
    }
    let now = unix_now();
    let counters = [format!("s:{skey}"), format!("ip:{}", peer.ip())];
    let tries = |k: &str| waf.store.get::<u32>("devfail", k, now).unwrap_or(0);
    if counters.iter().any(|k| tries(k) >= DEVICE_TRIES) {
        tracing::warn!(impu = %person.impu, peer = %peer.ip(), "too many wrong device codes");
        return pages::error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong codes",
            "Too many wrong codes were entered. Wait ten minutes, then try again.",
        );
    }
    let code = normalize_user_code(f.user_code.as_deref().unwrap_or(""));
    let dkey = (code.len() == 9)
        .then(|| waf.store.get::<String>("usercode", &code, now))
        .flatten();
    let Some(dkey) = dkey else {
        for k in &counters {
            waf.store.update::<u32, ()>("devfail", k, now, |c| {
                let (n, exp) = c.unwrap_or((0, now + DEVICE_TRY_WINDOW));
                (Some((n + 1, exp)), ())
            });
        }
        return device_form(
            &person,
            &csrf,
            Some(&code),
            Some("That code is not valid. Check the code on your phone."),
        );
    };
    let approve = f.action.as_deref() == Some("approve");
    let done = waf
        .store
        .update::<Device, bool>("device", &dkey, now, |d| match d {
            Some((mut d, exp))
                if matches!(d.status, DeviceStatus::Pending) && now < d.expires_at =>
            {
                d.status = if approve {
                    DeviceStatus::Approved(person.clone())
                } else {
                    DeviceStatus::Denied
                };
                (Some((d, exp)), true)
            }
            other => (other, false),
        });
    waf.store.delete("usercode", &code, now);
    if done != Some(true) {
        return device_form(
            &person,
            &csrf,
            None,
            Some("That code has expired or was already used."),
        );
    }
    tracing::info!(impu = %person.impu, approve, "device code answered");
    let (title, text) = if approve {
        (
            "Phone connected",
            "Your phone can now sign in as you. You can close this page.",
        )
    } else {
        (
            "Request denied",
            "The phone was not allowed to sign in. You can close this page.",
        )
    };
    pages::page(StatusCode::OK, title, &format!("<p>{}</p>", esc(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_s256_example() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(!pkce_matches(
            "short",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    #[test]
    fn rfc8628_6_1_user_codes_are_nine_digits_and_typing_is_forgiven() {
        for _ in 0..100 {
            let c = new_user_code();
            assert_eq!(c.len(), 9);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
        assert_eq!(normalize_user_code("123-456 789"), "123456789");
    }
}
