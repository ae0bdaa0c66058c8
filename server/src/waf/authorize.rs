//! The authorization endpoint (RFC 6749 §4.1.1, RFC 7636 §4.3, RFC 9207, RFC 9449 §10's
//! `dpop_jkt`): a signed-in person gets a single-use code for a registered client, after
//! consenting once to a client that is not first-party. A signed-out request is stored nowhere:
//! the sign-in page carries the request's own URL back, and it is checked again when the person
//! returns.
//!
//! Owns: authorization requests, codes, consent. Must not touch: how a person signs in (see
//! `signin`), what a code is exchanged for (see `token`).

use std::borrow::Cow;
use std::sync::Arc;

use axum::Form;
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::client::Grant;
use super::error::{PageError, StoreResult};
use super::identity::Person;
use super::limits;
use super::pages::{self, esc, urlencode};
use super::signin::{self, random_secret};
use super::store::{StoreExt, key_of};
use super::{Waf, unix_now};

/// RFC 6749 §4.1.2: codes live at most 10 minutes; here 60 s.
pub const CODE_TTL: u64 = 60;
/// How long a used code is remembered, so its replay revokes what it gave (RFC 6749 §4.1.2).
/// A code never used is forgotten once it expires.
pub const REPLAY_WINDOW: u64 = 600;
/// How long a consent is remembered.
const CONSENT_TTL: u64 = 365 * 24 * 3600;

/// What a code was asked for with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub challenge: String,
    pub scope: String,
    /// RFC 9449 §10: the thumbprint of the DPoP key the code may only be exchanged with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

/// An authorization code's record, under the hash of the code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Code {
    pub req: AuthRequest,
    pub person: Person,
    /// The code is good until then; it stays stored longer only to catch replays.
    pub valid_until: u64,
    pub used: bool,
    /// What the code was exchanged for, revoked if it is ever replayed (RFC 6749 §4.1.2).
    /// Written in the same commit that marks the code used, before the tokens exist.
    pub issued: Option<Issued>,
    /// A replay was seen: an exchange still under way revokes what it has just issued.
    #[serde(default)]
    pub replayed: bool,
}

/// Tokens a grant gave: revoked together if the grant is replayed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Issued {
    pub jti: String,
    pub exp: u64,
    pub family: Option<String>,
}

/// Why no code is given: a page for the person (unknown client, unregistered redirect URI, a
/// store that refuses), or an error sent back to the client's redirect URI.
#[derive(Debug)]
pub enum Refusal {
    Page(PageError),
    Back(String),
}

impl From<PageError> for Refusal {
    fn from(e: PageError) -> Self {
        Self::Page(e)
    }
}

impl From<super::store::StoreError> for Refusal {
    fn from(e: super::store::StoreError) -> Self {
        Self::Page(e.into())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Page(p) => p.into_response(),
            Self::Back(to) => Redirect::to(&to).into_response(),
        }
    }
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
    dpop_jkt: Option<String>,
}

/// `GET /oauth/authorize`.
pub async fn authorize(
    State(waf): State<Arc<Waf>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<AuthorizeQuery>,
) -> Result<Response, Refusal> {
    let req = check(&waf, q)?;
    let now = unix_now();
    let Some((skey, person)) = signin::current(&waf, &headers)? else {
        return Ok(signin::ask_to_sign_in(&waf, &return_path(&uri)));
    };
    let client = waf.clients.get(&req.client_id).ok_or_else(no_client)?;
    if !client.first_party && !consented(&waf, &person, &req.client_id, now)? {
        return Ok(consent_page(&req, &person, &uri, &signin::csrf_of(&skey)));
    }
    give_code(&waf, req, person, now)
}

#[derive(Deserialize)]
pub struct ConsentForm {
    csrf: Option<String>,
    action: Option<String>,
}

/// `POST /oauth/authorize`: the person's answer on the consent page, with the authorization
/// request in the URL as it came.
pub async fn consent(
    State(waf): State<Arc<Waf>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<AuthorizeQuery>,
    form: Result<Form<ConsentForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Refusal> {
    let req = check(&waf, q)?;
    let now = unix_now();
    let Some((skey, person)) = signin::current(&waf, &headers)? else {
        return Ok(signin::ask_to_sign_in(&waf, &return_path(&uri)));
    };
    let Ok(Form(f)) = form else {
        return Err(incomplete());
    };
    if !signin::csrf_matches(&skey, f.csrf.as_deref()) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Something went wrong",
            "This form has expired. Go back to the application and try again.",
        )
        .into());
    }
    if f.action.as_deref() != Some("allow") {
        tracing::info!(impu = %person.impu, client_id = %req.client_id, "consent refused");
        return Err(back(
            &waf,
            &req.redirect_uri,
            req.state.as_deref(),
            "access_denied",
            "the person did not allow this application",
        ));
    }
    let key = consent_key(&person, &req.client_id);
    waf.store
        .put("consent", &key, now, &true, now + CONSENT_TTL)?;
    tracing::info!(impu = %person.impu, client_id = %req.client_id, "consent given");
    give_code(&waf, req, person, now)
}

fn give_code(waf: &Waf, req: AuthRequest, person: Person, now: u64) -> Result<Response, Refusal> {
    if let Err(wait) = waf.person_budget(&person) {
        super::error::log_refusal(
            "person_budget",
            &format!("codes for {} over budget", person.impu),
        );
        return Err(Refusal::Page(PageError::too_many(
            "Too many sign-ins to applications in a short time. Wait a minute, then try again.",
            wait,
        )));
    }
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
    let (redirect_uri, state) = (req.redirect_uri.clone(), req.state.clone());
    let stored = waf.store.put(
        "code",
        &key_of(&code),
        now,
        &Code {
            req,
            person,
            valid_until: now + CODE_TTL,
            used: false,
            issued: None,
            replayed: false,
        },
        // Unused, it is forgotten soon after its use-by time; once used, the exchange keeps it
        // for REPLAY_WINDOW.
        now + CODE_TTL + 5,
    );
    if let Err(e) = stored {
        super::error::log_refusal("store", &format!("no code could be stored: {e}"));
        super::error::count_store(&e);
        // RFC 6749 §4.1.2.1: the client hears `temporarily_unavailable`.
        return Err(back(
            waf,
            &redirect_uri,
            state.as_deref(),
            "temporarily_unavailable",
            "the service is at capacity; try again later",
        ));
    }
    Ok(Redirect::to(&target).into_response())
}

fn consent_key(person: &Person, client_id: &str) -> String {
    key_of(&format!(
        "{}\n{}\n{}",
        person.provider, person.sub, client_id
    ))
}

fn consented(waf: &Waf, person: &Person, client_id: &str, now: u64) -> StoreResult<bool> {
    Ok(waf
        .store
        .get::<bool>("consent", &consent_key(person, client_id), now)?
        .unwrap_or(false))
}

fn consent_page(req: &AuthRequest, person: &Person, uri: &axum::http::Uri, csrf: &str) -> Response {
    let body = format!(
        "<p>Signed in as {who} ({impu}).</p>\
<p>The application <strong>{client}</strong> asks to make and receive calls and messages as you ({scope}).</p>\
<form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<button name=\"action\" value=\"allow\">Allow</button>\
<button class=\"secondary\" name=\"action\" value=\"deny\">Deny</button></form>",
        who = esc(&person.display),
        impu = esc(person.impu.as_str()),
        client = esc(&req.client_id),
        scope = esc(&req.scope),
        action = esc(&return_path(uri)),
        csrf = esc(csrf),
    );
    // The answer to the form redirects to the client: the page's CSP must allow that target.
    let target = openidconnect::url::Url::parse(&req.redirect_uri)
        .ok()
        .map(|u| match u.origin() {
            o @ openidconnect::url::Origin::Tuple(..) => o.ascii_serialization(),
            openidconnect::url::Origin::Opaque(_) => format!("{}:", u.scheme()),
        });
    pages::page_posting_to(
        StatusCode::OK,
        "Allow this application?",
        &body,
        target.as_deref(),
    )
}

/// The path and query of this request, to come back to after signing in.
fn return_path(uri: &axum::http::Uri) -> String {
    uri.path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/oauth/authorize".into())
}

fn no_client() -> Refusal {
    bad("The application (client_id) is not known here.")
}

fn incomplete() -> Refusal {
    PageError::new(
        StatusCode::BAD_REQUEST,
        "Something went wrong",
        "The form was incomplete.",
    )
    .into()
}

fn bad(message: &'static str) -> Refusal {
    PageError::new(
        StatusCode::BAD_REQUEST,
        "This sign-in request is not valid",
        message,
    )
    .into()
}

/// An error sent back to the client's redirect URI (RFC 6749 §4.1.2.1), with `iss` (RFC 9207).
fn back(
    waf: &Waf,
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
) -> Refusal {
    let mut t = format!(
        "{}{}error={}&error_description={}&iss={}",
        redirect_uri,
        if redirect_uri.contains('?') { "&" } else { "?" },
        error,
        urlencode(description),
        urlencode(&waf.issuer)
    );
    if let Some(s) = state {
        t.push_str(&format!("&state={}", urlencode(s)));
    }
    Refusal::Back(t)
}

/// The checks of RFC 6749 §4.1.2.1: an unknown client or a redirect URI that is not
/// registered gets an error page (never a redirect); everything else goes back to the client.
fn check(waf: &Waf, q: AuthorizeQuery) -> Result<AuthRequest, Refusal> {
    let client_id = q
        .client_id
        .filter(|c| c.len() <= limits::CLIENT_ID)
        .ok_or_else(|| bad("The request names no application (client_id)."))?;
    let client = waf.clients.get(&client_id).ok_or_else(no_client)?;
    let redirect_uri = match q.redirect_uri {
        Some(u) if client.redirect_uris.contains(&u) => u,
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        _ => {
            return Err(bad(
                "The return address (redirect_uri) is not registered for this application.",
            ));
        }
    };
    if q.state.as_ref().is_some_and(|s| s.len() > limits::STATE) {
        super::error::count_refusal("oversize");
        // Not sent back: echoing a state this long is what it would be sent for.
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "This sign-in request is not valid",
            Cow::Owned(format!(
                "The application's request is too long (`state` over {} bytes).",
                limits::STATE
            )),
        )
        .into());
    }
    let back = |error: &str, description: &str| {
        back(waf, &redirect_uri, q.state.as_deref(), error, description)
    };
    if !client.allows(Grant::AuthorizationCode) {
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
    if scope.len() > limits::SCOPE || !client.allows_scope(&scope) {
        return Err(back(
            "invalid_scope",
            "the requested scope is not allowed for this client",
        ));
    }
    // RFC 9449 §10: binds the code to a DPoP key, named by its RFC 7638 thumbprint.
    let dpop_jkt = match q.dpop_jkt.as_deref().map(imsgw_token::pop::Jkt::parse) {
        None => None,
        Some(Some(jkt)) => Some(jkt.into_string()),
        Some(None) => {
            return Err(back(
                "invalid_request",
                "dpop_jkt is not a SHA-256 JWK thumbprint (RFC 7638)",
            ));
        }
    };
    Ok(AuthRequest {
        client_id,
        redirect_uri,
        state: q.state,
        challenge,
        scope,
        dpop_jkt,
    })
}

fn is_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge, compared in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    use base64::Engine;
    use sha2::Digest;
    if verifier.len() < 43 || verifier.len() > limits::CODE_VERIFIER {
        return false;
    }
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
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
}
