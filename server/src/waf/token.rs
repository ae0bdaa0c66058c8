//! The token endpoint (RFC 6749 §3.2): codes (with PKCE, RFC 7636 §4.6), refresh tokens
//! (rotated; a reused one revokes its whole family, RFC 9700 §4.14) and device codes (RFC
//! 8628 §3.4, see `device`).
//!
//! A refresh token is `<family id>.<secret>`: the family record knows the hash of the one
//! token that may still be used, so a rotated token is recognised as reuse without keeping a
//! record per token ever issued.
//!
//! A request with a good DPoP proof (RFC 9449 §5, see `dpop`) gets an access token bound to the
//! proof's key (`cnf.jkt`, `token_type` `DPoP`), and a refresh family bound to it too: from then
//! on the family is refreshed only with a proof by that key (§5.8). A family made without a
//! proof is bound by the first refresh that brings one.
//!
//! Owns: what a grant is exchanged for, refresh-token families. Must not touch: how codes are
//! given (see `authorize`, `device`), token format (see `imsgw-token`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use imsgw_token::pop::Proof;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::authorize::{Code, Issued, REPLAY_WINDOW, pkce_matches};
use super::client::{Authenticated, Client, Grant, NamesClient};
use super::error::{ErrorCode, OAuthError, StoreResult};
use super::http::Revocation;
use super::identity::Person;
use super::limits;
use super::signin::random_secret;
use super::store::{StoreExt, key_of};
use super::{Waf, unix_now};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Family {
    client_id: String,
    person: Person,
    scope: String,
    /// Store key of the one refresh token of the family that may still be used.
    current: String,
    /// Store keys of the tokens it replaced, newest last, at most [`REMEMBERED`]: presenting
    /// one of them is reuse and revokes the family; a token that is neither is just unknown,
    /// so a guessed or truncated token never harms a family.
    #[serde(default)]
    previous: Vec<String>,
    revoked: bool,
    /// Access tokens issued in this family and not yet expired, at most [`LIVE_TOKENS`];
    /// revoked with it.
    jtis: Vec<(String, u64)>,
    /// The thumbprint of the DPoP key the family is bound to (RFC 9449 §5.8): its refresh
    /// needs a proof by that key, and its access tokens are bound to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jkt: Option<String>,
}

/// Rotated refresh tokens a family remembers, to recognise their reuse.
const REMEMBERED: usize = 8;
/// Access tokens of a family kept to revoke with it; a family refreshed faster than its
/// tokens expire has its oldest ones revoked at once.
const LIVE_TOKENS: usize = 8;

#[derive(Deserialize, Default)]
pub struct TokenForm {
    pub(super) grant_type: Option<String>,
    pub(super) code: Option<String>,
    pub(super) redirect_uri: Option<String>,
    pub(super) code_verifier: Option<String>,
    pub(super) refresh_token: Option<String>,
    pub(super) device_code: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) scope: Option<String>,
}

impl NamesClient for TokenForm {
    fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }
}

impl TokenForm {
    fn check_sizes(&self) -> Result<(), OAuthError> {
        limits::field("code", self.code.as_deref(), limits::CODE)?;
        limits::field(
            "redirect_uri",
            self.redirect_uri.as_deref(),
            limits::REDIRECT_URI,
        )?;
        limits::field(
            "code_verifier",
            self.code_verifier.as_deref(),
            limits::CODE_VERIFIER,
        )?;
        limits::field("refresh_token", self.refresh_token.as_deref(), limits::CODE)?;
        limits::field("device_code", self.device_code.as_deref(), limits::CODE)?;
        limits::field("scope", self.scope.as_deref(), limits::SCOPE)
    }
}

/// `POST /oauth/token`.
pub async fn token(
    State(waf): State<Arc<Waf>>,
    headers: HeaderMap,
    auth: Authenticated<TokenForm>,
) -> Result<Response, OAuthError> {
    let client = auth.client(&waf)?;
    let (client_id, f) = (auth.client_id.as_str(), &auth.form);
    f.check_sizes()?;
    // RFC 6749 §5.2: a missing parameter is invalid_request; an unknown one unsupported.
    let grant = match f.grant_type.as_deref().filter(|g| !g.is_empty()) {
        None => return Err(OAuthError::invalid_request("grant_type is missing")),
        Some(g) => g.parse::<Grant>().map_err(|_| {
            OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "grant_type is not supported",
            )
        })?,
    };
    if !client.allows(grant) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use this grant",
        ));
    }
    let now = unix_now();
    let dpop = super::dpop::proof_of(&waf, &headers, now)?;
    let dpop = dpop.as_ref();
    let body = match grant {
        Grant::AuthorizationCode => exchange_code(&waf, client, client_id, now, f, dpop)?,
        Grant::RefreshToken => refresh(&waf, client, client_id, now, f, dpop)?,
        Grant::DeviceCode => super::device::poll(&waf, client, client_id, now, f, dpop)?,
    };
    Ok(token_response(body))
}

/// The code grant; `dpop` is the request's checked DPoP proof, if any.
pub(super) fn exchange_code(
    waf: &Waf,
    client: &Client,
    client_id: &str,
    now: u64,
    f: &TokenForm,
    dpop: Option<&Proof>,
) -> Result<serde_json::Value, OAuthError> {
    let code = f
        .code
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
    let key = key_of(code);
    // What this exchange will issue is chosen now and written in the same commit that marks
    // the code used: a replay at any moment after (or after a crash) knows what to revoke,
    // even before it exists (RFC 6749 §4.1.2).
    let planned = Issued {
        jti: imsgw_token::new_jti(),
        // An upper bound: the revocation is kept at least as long as the token could live.
        exp: now + waf.max_token_ttl,
        family: client.allows(Grant::RefreshToken).then(random_secret),
    };
    // Single use: the first exchange marks the code used, whatever its outcome.
    let found = waf
        .store
        .update::<Code, Option<Code>>("code", &key, now, |c| match c {
            Some((code, exp)) => {
                let before = code.clone();
                let mut used = code;
                if used.used {
                    used.replayed = true;
                    (Some((used, exp)), Some(before))
                } else {
                    used.used = true;
                    used.issued = Some(planned.clone());
                    // A used code is kept a while, to recognise and punish its replay.
                    (Some((used, exp.max(now + REPLAY_WINDOW))), Some(before))
                }
            }
            None => (None, None),
        })?;
    let Some(code_rec) = found else {
        return Err(OAuthError::invalid_grant(
            "the code is unknown or has expired",
        ));
    };
    if code_rec.used {
        // RFC 6749 §4.1.2: a code used twice revokes what it gave.
        if let Some(issued) = &code_rec.issued {
            revoke_issued(waf, issued, now)?;
        }
        tracing::warn!(
            client_id,
            "authorization code replayed; its tokens are revoked"
        );
        return Err(OAuthError::invalid_grant("the code was already used"));
    }
    if now >= code_rec.valid_until {
        return Err(OAuthError::invalid_grant("the code has expired"));
    }
    if code_rec.req.client_id != client_id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if f.redirect_uri
        .as_deref()
        .is_some_and(|u| u != code_rec.req.redirect_uri)
    {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request",
        ));
    }
    let Some(verifier) = f.code_verifier.as_deref() else {
        return Err(OAuthError::invalid_grant("code_verifier is missing (PKCE)"));
    };
    if !pkce_matches(verifier, &code_rec.req.challenge) {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    // RFC 9449 §10: a code asked for with `dpop_jkt` is exchanged only with a proof by that key.
    super::dpop::check_bound(
        code_rec.req.dpop_jkt.as_deref(),
        dpop,
        "the authorization code",
    )?;
    let (body, _) = issue(
        waf,
        client,
        client_id,
        now,
        &code_rec.person,
        &code_rec.req.scope,
        Planned::New(&planned),
        dpop,
    )?;
    // A replay while this exchange ran revoked what it could find; what was made after it
    // goes now.
    if waf
        .store
        .get::<Code>("code", &key, now)?
        .is_some_and(|c| c.replayed)
    {
        revoke_issued(waf, &planned, now)?;
        return Err(OAuthError::invalid_grant("the code was already used"));
    }
    Ok(body)
}

/// Revokes what a grant gave: its access token and its refresh family.
fn revoke_issued(waf: &Waf, issued: &Issued, now: u64) -> StoreResult<()> {
    waf.revoke_token(&issued.jti, issued.exp, now)?;
    if let Some(fam) = &issued.family {
        revoke_family(waf, fam, now)?;
    }
    Ok(())
}

/// How [`issue`] names what it makes: a rotation of a family (its id and the presented token's
/// key), the jti and family id an exchange chose beforehand, or nothing chosen.
pub(super) enum Planned<'a> {
    Rotate(&'a str, String),
    New(&'a Issued),
    Fresh,
}

/// The family id of a refresh token, and the token's store key.
fn family_of(rt: &str) -> Option<(&str, String)> {
    let (family, secret) = rt.split_once('.')?;
    (!family.is_empty() && !secret.is_empty()).then(|| (family, key_of(rt)))
}

/// The refresh grant; `dpop` is the request's checked DPoP proof, if any.
pub(super) fn refresh(
    waf: &Waf,
    client: &Client,
    client_id: &str,
    now: u64,
    f: &TokenForm,
    dpop: Option<&Proof>,
) -> Result<serde_json::Value, OAuthError> {
    let rt = f
        .refresh_token
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
    let unknown = || OAuthError::invalid_grant("the refresh token is unknown or has expired");
    let (family_id, presented) = family_of(rt).ok_or_else(unknown)?;
    let fam = waf
        .store
        .get::<Family>("family", &key_of(family_id), now)?
        .ok_or_else(unknown)?;
    if fam.client_id != client_id {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if fam.revoked {
        return Err(OAuthError::invalid_grant("the refresh token was revoked"));
    }
    if fam.previous.contains(&presented) {
        // RFC 6819 §5.2.2.3 / RFC 9700 §4.14.2: reuse of a rotated token.
        revoke_family(waf, family_id, now)?;
        tracing::warn!(client_id, impu = %fam.person.impu, "refresh token reused; its family is revoked");
        return Err(OAuthError::invalid_grant(
            "the refresh token was already used; all tokens from it are revoked",
        ));
    }
    if fam.current != presented {
        return Err(unknown());
    }
    // RFC 9449 §5.8: a bound family is refreshed only with a proof by its key. Checked after
    // reuse, so a thief's replay of a rotated token still revokes the family.
    super::dpop::check_bound(fam.jkt.as_deref(), dpop, "the refresh token")?;
    let scope = match f.scope.as_deref() {
        Some(s) if s.split(' ').all(|w| fam.scope.split(' ').any(|x| x == w)) => s.to_string(),
        Some(_) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "scope exceeds the original grant",
            ));
        }
        None => fam.scope.clone(),
    };
    let (body, _) = issue(
        waf,
        client,
        client_id,
        now,
        &fam.person,
        &scope,
        Planned::Rotate(family_id, presented),
        dpop,
    )?;
    Ok(body)
}

/// What [`issue_tokens`] and [`mint_in_family`] made: an access token and its claims, and the
/// refresh-token family it belongs to (with the new refresh token, when one was made).
pub(super) struct Tokens {
    pub access: imsgw_token::AccessToken,
    /// Bound to a DPoP key (RFC 9449 §5: a DPoP token).
    bound: bool,
    pub claims: imsgw_token::Claims,
    /// The family id, when the access token is one of a refresh-token family's.
    pub family: Option<String>,
    refresh_token: Option<String>,
}

impl Tokens {
    /// The token response (RFC 6749 §5.1).
    fn body(&self, now: u64) -> serde_json::Value {
        let mut body = json!({
            "access_token": self.access.expose(),
            "token_type": if self.bound { "DPoP" } else { "Bearer" },
            "expires_in": self.claims.exp.saturating_sub(now),
            "scope": self.claims.scope,
        });
        if let Some(rt) = &self.refresh_token {
            body["refresh_token"] = json!(rt);
        }
        body
    }
}

/// Mints an access token and, for clients with the refresh grant, a refresh token in a new
/// family or (when `rotate` names a family and the presented token's key) the next of that
/// family; as a token response. With a DPoP proof (`dpop`, already checked against the grant's
/// binding) the proof is spent, and the access token and the family are bound to its key.
#[allow(clippy::too_many_arguments)] // each is one fact of the grant; a struct would only wrap them
pub(super) fn issue(
    waf: &Waf,
    client: &Client,
    client_id: &str,
    now: u64,
    person: &Person,
    scope: &str,
    planned: Planned<'_>,
    dpop: Option<&Proof>,
) -> Result<(serde_json::Value, Issued), OAuthError> {
    // The grant passed its checks: only now is the proof remembered (RFC 9449 §11.1).
    if let Some(p) = dpop {
        super::dpop::remember(waf, p, now)?;
    }
    let jkt = dpop.map(|p| &p.jkt);
    let t = issue_tokens(waf, client, client_id, now, person, scope, planned, jkt)?;
    let issued = Issued {
        jti: t.claims.jti.clone(),
        exp: t.claims.exp,
        family: t.family.clone(),
    };
    Ok((t.body(now), issued))
}

/// [`issue`], with what it made rather than a token response; bound to `jkt` if given.
#[allow(clippy::too_many_arguments)] // each is one fact of the grant; a struct would only wrap them
pub(super) fn issue_tokens(
    waf: &Waf,
    client: &Client,
    client_id: &str,
    now: u64,
    person: &Person,
    scope: &str,
    planned: Planned<'_>,
    jkt: Option<&imsgw_token::pop::Jkt>,
) -> Result<Tokens, OAuthError> {
    let jti = match &planned {
        Planned::New(p) => p.jti.clone(),
        _ => imsgw_token::new_jti(),
    };
    let (access, claims) = mint_access(waf, client_id, now, person, scope, jti, jkt)?;
    let mut refresh = None;
    if client.allows(Grant::RefreshToken) {
        refresh = Some(match planned {
            Planned::Rotate(fam_id, presented) => {
                let rt = format!("{fam_id}.{}", random_secret());
                let next = key_of(&rt);
                // Rotation is atomic: only one of two concurrent uses of a token can win.
                let won = record_in_family(waf, fam_id, now, &claims, |f| {
                    let key_ok = f
                        .jkt
                        .as_deref()
                        .is_none_or(|j| jkt.is_some_and(|k| k.binds(Some(j))));
                    if f.revoked || f.current != presented || !key_ok {
                        return false;
                    }
                    // Bound from the first proof on; a bound family keeps its key.
                    if f.jkt.is_none() {
                        f.jkt = jkt.map(|k| k.as_str().to_owned());
                    }
                    let old = std::mem::replace(&mut f.current, next.clone());
                    f.previous.push(old);
                    let over = f.previous.len().saturating_sub(REMEMBERED);
                    f.previous.drain(..over);
                    true
                });
                if won.as_ref().ok() != Some(&true) {
                    waf.revoke_token(&claims.jti, claims.exp, now)?;
                    won?;
                    return Err(OAuthError::invalid_grant(
                        "the refresh token was already used",
                    ));
                }
                (fam_id.to_string(), rt)
            }
            Planned::New(_) | Planned::Fresh => {
                let id = match &planned {
                    Planned::New(p) => p.family.clone().unwrap_or_else(random_secret),
                    _ => random_secret(),
                };
                let rt = format!("{id}.{}", random_secret());
                let fam = Family {
                    client_id: client_id.to_string(),
                    person: person.clone(),
                    scope: scope.to_string(),
                    current: key_of(&rt),
                    previous: Vec::new(),
                    revoked: false,
                    jtis: vec![(claims.jti.clone(), claims.exp)],
                    jkt: jkt.map(|k| k.as_str().to_owned()),
                };
                let expires = now + waf.flows.refresh_ttl;
                if let Err(e) = waf.store.put("family", &key_of(&id), now, &fam, expires) {
                    // No refresh token without its family: the access token goes too.
                    waf.revoke_token(&claims.jti, claims.exp, now)?;
                    return Err(e.into());
                }
                (id, rt)
            }
        });
    }
    let (family, refresh_token) = refresh.unzip();
    Ok(Tokens {
        access,
        bound: jkt.is_some(),
        claims,
        family,
        refresh_token,
    })
}

/// A new access token in the family `family_id`, for the family's person, scope and client,
/// recorded in its `jtis` so that revoking the family revokes it too; no refresh token. `None`
/// when the family is revoked or gone (a token minted while it was being revoked is revoked at
/// once).
pub(super) fn mint_in_family(
    waf: &Waf,
    family_id: &str,
    now: u64,
) -> Result<Option<Tokens>, OAuthError> {
    let Some(fam) = waf.store.get::<Family>("family", &key_of(family_id), now)? else {
        return Ok(None);
    };
    if fam.revoked {
        return Ok(None);
    }
    let jti = imsgw_token::new_jti();
    // A family bound to a key gives no unbound token (the phone families this is for never are).
    if fam.jkt.is_some() {
        return Ok(None);
    }
    let (access, claims) =
        mint_access(waf, &fam.client_id, now, &fam.person, &fam.scope, jti, None)?;
    let admitted = record_in_family(waf, family_id, now, &claims, |f| !f.revoked);
    if admitted.as_ref().ok() != Some(&true) {
        waf.revoke_token(&claims.jti, claims.exp, now)?;
        admitted?;
        return Ok(None);
    }
    Ok(Some(Tokens {
        access,
        bound: false,
        claims,
        family: Some(family_id.to_string()),
        refresh_token: None,
    }))
}

/// Mints an access token of ours for `person`.
fn mint_access(
    waf: &Waf,
    client_id: &str,
    now: u64,
    person: &Person,
    scope: &str,
    jti: String,
    jkt: Option<&imsgw_token::pop::Jkt>,
) -> Result<(imsgw_token::AccessToken, imsgw_token::Claims), OAuthError> {
    let req = imsgw_token::MintRequest {
        sub: format!("{}:{}", person.provider, person.sub),
        impu: person.impu.to_string(),
        impi: person.impi.clone(),
        scope: scope.to_string(),
        client_id: client_id.to_string(),
        ttl: None,
    };
    waf.mint_bound(now, req, jti, jkt).map_err(|e| {
        tracing::warn!(error = %e, "minting failed");
        OAuthError::new(ErrorCode::ServerError, "the token could not be made")
    })
}

/// Adds the access token of `claims` to the family `fam_id`'s `jtis` if `admit` accepts the
/// family (and makes its own changes), in one atomic update; whether it was added. The family
/// keeps at most [`LIVE_TOKENS`] live access tokens. Those it will let go are revoked first, in
/// their own commits, so a crash between the two steps can never leave a live token the family
/// no longer knows.
fn record_in_family(
    waf: &Waf,
    fam_id: &str,
    now: u64,
    claims: &imsgw_token::Claims,
    mut admit: impl FnMut(&mut Family) -> bool,
) -> StoreResult<bool> {
    let fkey = key_of(fam_id);
    let evict: Vec<(String, u64)> = waf
        .store
        .get::<Family>("family", &fkey, now)?
        .map(|f| {
            let live: Vec<_> = f.jtis.into_iter().filter(|(_, e)| *e + 60 >= now).collect();
            let over = (live.len() + 1).saturating_sub(LIVE_TOKENS);
            live.into_iter().take(over).collect()
        })
        .unwrap_or_default();
    for (jti, exp) in &evict {
        waf.revoke_token(jti, *exp, now)?;
    }
    waf.store
        .update::<Family, bool>("family", &fkey, now, |f| match f {
            Some((mut f, exp)) => {
                if !admit(&mut f) {
                    return (Some((f, exp)), false);
                }
                f.jtis
                    .retain(|(j, e)| *e + 60 >= now && !evict.iter().any(|(x, _)| x == j));
                f.jtis.push((claims.jti.clone(), claims.exp));
                (Some((f, exp)), true)
            }
            None => (None, false),
        })
}

/// RFC 7009 for a refresh token: its whole family goes, with the access tokens it gave. Only
/// the client it was issued to may revoke it (§2.1); the caller decides what to answer.
pub(super) fn revoke_refresh_token(
    waf: &Waf,
    client_id: &str,
    token: &str,
    now: u64,
) -> StoreResult<Revocation> {
    let Some((family_id, presented)) = family_of(token) else {
        return Ok(Revocation::Unknown);
    };
    let Some(family) = waf.store.get::<Family>("family", &key_of(family_id), now)? else {
        return Ok(Revocation::Unknown);
    };
    // Only a token of the family revokes it, not its id with any secret.
    if family.current != presented && !family.previous.contains(&presented) {
        return Ok(Revocation::Unknown);
    }
    if family.client_id != client_id {
        return Ok(Revocation::NotOwner);
    }
    revoke_family(waf, family_id, now)?;
    tracing::info!(client_id, "refresh token revoked with its family");
    Ok(Revocation::Revoked)
}

pub(super) fn revoke_family(waf: &Waf, family_id: &str, now: u64) -> StoreResult<()> {
    let fkey = key_of(family_id);
    // Its access tokens are revoked first, each in its own commit, and the family is marked
    // revoked only by an update that finds no token not yet revoked: a crash at any point
    // leaves a family that still works and can be revoked again, never a revoked family with
    // a live token.
    let mut done: Vec<(String, u64)> = Vec::new();
    loop {
        let todo =
            waf.store
                .update::<Family, Vec<(String, u64)>>("family", &fkey, now, |f| match f {
                    Some((mut f, exp)) => {
                        let todo: Vec<_> = f
                            .jtis
                            .iter()
                            .filter(|j| !done.contains(j))
                            .cloned()
                            .collect();
                        if !todo.is_empty() {
                            return (Some((f, exp)), todo);
                        }
                        f.revoked = true;
                        // Kept only while its tokens could still be used, then it frees its place
                        // under the cap.
                        let last = f.jtis.iter().map(|(_, e)| e + 60).max().unwrap_or(now + 60);
                        (Some((f, exp.min(last.max(now + 60)))), Vec::new())
                    }
                    None => (None, Vec::new()),
                })?;
        if todo.is_empty() {
            return Ok(());
        }
        for (jti, exp) in todo {
            waf.revoke_token(&jti, exp, now)?;
            done.push((jti, exp));
        }
    }
}

/// A token response: never cached (RFC 6749 §5.1).
pub(super) fn token_response(body: serde_json::Value) -> Response {
    let mut r = Json(body).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_token_names_its_family() {
        let (fam, key) = family_of("abc.def").unwrap_or_else(|| panic!());
        assert_eq!(fam, "abc");
        assert_eq!(key, key_of("abc.def"));
        for bad in ["abc", ".def", "abc.", ""] {
            assert!(family_of(bad).is_none(), "{bad}");
        }
    }
}
