//! The device authorization grant (RFC 8628) for phones that only have a key pad: the phone
//! gets a device code and shows a user code; a signed-in person types the user code on the
//! `/device` page; the phone's polls at the token endpoint then get tokens.
//!
//! Guessing (RFC 8628 §5.1) is bounded twice. Each person may type a few wrong codes per
//! window, whatever session or address they come from. And each user code is a slot (its
//! first [`SLOT_DIGITS`] digits, unique among pending codes) and a secret (the rest): wrong
//! guesses at a pending code's slot are counted on that code, and past the limit the code is
//! dead (its phone hears `expired_token` and starts again). Nothing is counted per address, so
//! people behind one proxy cannot lock each other out.
//!
//! Owns: device codes, user codes, the `/device` page. Must not touch: token format.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::client::{Authenticated, Client, Grant, NamesClient};
use super::error::{ErrorCode, OAuthError, PageError, StoreResult};
use super::identity::Person;
use super::limits::{self, now_ms};
use super::pages::{self, esc, urlencode};
use super::signin::{self, random_secret};
use super::store::{StoreExt, key_of};
use super::token::{Planned, TokenForm, issue, token_response};
use super::{Waf, unix_now};
use crate::transport::client_addr::ClientAddr;

/// Wrong user codes allowed per person, and per pending code, per window.
const TRIES: u32 = 5;
const TRY_WINDOW: u64 = 600;
/// User codes are nine digits (RFC 8628 §6.1: numeric for key pads); the first four name the
/// pending code, so at most 10^4 are pending at once (`waf.limits.device_codes` is capped
/// below that).
pub const DIGITS: usize = 9;
pub const SLOT_DIGITS: usize = 4;
pub const MAX_PENDING: usize = 9000;

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Status {
    Pending,
    Approved(Person),
    Denied,
    /// Too many wrong guesses at its user code.
    Burned,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Device {
    client_id: String,
    scope: String,
    expires_at: u64,
    /// The polling interval first given to the phone (RFC 8628 §3.2).
    interval: u64,
    status: Status,
}

/// The record of a pending user code, under its slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Slot {
    /// Store key of the device code.
    device: String,
    /// Hash of the whole user code.
    check: String,
    fails: u32,
}

#[derive(Deserialize)]
pub struct DeviceForm {
    client_id: Option<String>,
    scope: Option<String>,
}

impl NamesClient for DeviceForm {
    fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }
}

/// `POST /oauth/device_authorization` (RFC 8628 §3.1–3.2). A public client is anonymous, so
/// its requests count against the address's budget.
pub async fn authorization(
    State(waf): State<Arc<Waf>>,
    ClientAddr(ip): ClientAddr,
    auth: Authenticated<DeviceForm>,
) -> Result<Response, OAuthError> {
    let client = auth.client(&waf)?;
    if !client.allows(Grant::DeviceCode) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the device grant",
        ));
    }
    limits::field("scope", auth.form.scope.as_deref(), limits::SCOPE)?;
    let scope = auth.form.scope.clone().unwrap_or_else(|| waf.scope.clone());
    if !client.allows_scope(&scope) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "the requested scope is not allowed for this client",
        ));
    }
    if client.is_public() {
        waf.anonymous.take(ip, now_ms()).map_err(|wait| {
            super::error::log_refusal(
                "address_budget",
                &format!("device authorizations from {ip} over budget"),
            );
            super::error::count_refusal("address_budget");
            OAuthError::too_many(wait)
        })?;
    }
    let now = unix_now();
    let device_code = random_secret();
    let ttl = waf.flows.device_ttl;
    let interval = waf.flows.device_poll;
    let dev = Device {
        client_id: auth.client_id.clone(),
        scope,
        expires_at: now + ttl,
        interval,
        status: Status::Pending,
    };
    let dkey = key_of(&device_code);
    // Kept past expiry so a late poll hears `expired_token` rather than `invalid_grant`.
    waf.store.put("device", &dkey, now, &dev, now + ttl + 600)?;
    let user_code = match new_user_code(&waf, &dkey, now + ttl) {
        Ok(c) => c,
        Err(e) => {
            waf.store.delete("device", &dkey, now)?;
            return Err(e);
        }
    };
    let shown = format!(
        "{}-{}-{}",
        &user_code[0..3],
        &user_code[3..6],
        &user_code[6..9]
    );
    Ok(token_response(json!({
        "device_code": device_code,
        "user_code": shown,
        "verification_uri": format!("{}/device", waf.issuer),
        "verification_uri_complete": format!("{}/device?user_code={}", waf.issuer, user_code),
        "expires_in": ttl,
        "interval": interval,
    })))
}

/// A fresh user code whose slot no pending code holds, stored for the device `dkey`.
fn new_user_code(waf: &Waf, dkey: &str, expires: u64) -> Result<String, OAuthError> {
    let now = unix_now();
    for _ in 0..32 {
        let n: u64 = rand::random_range(0..10u64.pow(DIGITS as u32));
        let code = format!("{n:0width$}", width = DIGITS);
        let slot = Slot {
            device: dkey.to_string(),
            check: key_of(&code),
            fails: 0,
        };
        let free = waf
            .store
            .update::<Slot, bool>("usercode", &code[..SLOT_DIGITS], now, |s| match s {
                None => (Some((slot.clone(), expires)), true),
                held => (held, false),
            })?;
        if free {
            return Ok(code);
        }
    }
    tracing::warn!("no free user-code slot: too many device codes pending");
    Err(OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "too many devices are waiting for approval; try again later",
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE))
}

/// Digits of a user code as a person may type it (`123-456-789`, spaces, dashes).
fn normalize(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// The token endpoint's device-code grant (RFC 8628 §3.4–3.5).
pub(super) fn poll(
    waf: &Waf,
    client: &Client,
    client_id: &str,
    now: u64,
    f: &TokenForm,
    dpop: Option<&imsgw_token::pop::Proof>,
) -> Result<serde_json::Value, OAuthError> {
    let dc = f
        .device_code
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("device_code is missing"))?;
    enum Poll {
        Pending,
        SlowDown,
        Expired,
        Denied,
        WrongClient,
        Approved(Person, String),
    }
    let dkey = key_of(dc);
    // A poll of a pending code only reads the store: how fast the phone polls is kept in this
    // process (`Waf::polls`), so polling costs no write, whoever polls and however often.
    let seen = waf.store.get::<Device>("device", &dkey, now)?;
    let outcome = match seen {
        None => Poll::Expired,
        Some(d) if d.client_id != client_id => Poll::WrongClient,
        Some(d) if now >= d.expires_at => Poll::Expired,
        Some(d) if matches!(d.status, Status::Pending) => {
            if waf
                .polls
                .too_fast(&dkey, now_ms(), d.interval, d.expires_at)
            {
                Poll::SlowDown
            } else {
                Poll::Pending
            }
        }
        Some(_) => {
            // Answered: the outcome is taken once, atomically (two polls at once: one wins).
            waf.polls.forget(&dkey);
            waf.store
                .update::<Device, Poll>("device", &dkey, now, |d| match d {
                    Some((d, _)) => match d.status {
                        Status::Denied => (None, Poll::Denied),
                        Status::Burned => (None, Poll::Expired),
                        Status::Approved(p) => (None, Poll::Approved(p, d.scope)),
                        Status::Pending => (None, Poll::Expired),
                    },
                    None => (None, Poll::Expired),
                })?
        }
    };
    let e = |code, d: &'static str| Err(OAuthError::new(code, d));
    match outcome {
        Poll::Pending => e(
            ErrorCode::AuthorizationPending,
            "the user has not yet approved",
        ),
        Poll::SlowDown => e(ErrorCode::SlowDown, "polling too fast"),
        Poll::Expired => e(ErrorCode::ExpiredToken, "the device code has expired"),
        Poll::Denied => e(ErrorCode::AccessDenied, "the user denied the request"),
        Poll::WrongClient => Err(OAuthError::invalid_grant(
            "the device code was issued to another client",
        )),
        Poll::Approved(person, scope) => {
            let planned = Planned::Fresh;
            Ok(issue(waf, client, client_id, now, &person, &scope, planned, dpop)?.0)
        }
    }
}

/// When each pending device code was last polled and the interval it must keep (RFC 8628
/// §3.5: too fast is `slow_down`, and the interval grows by 5 s). In memory: a restart only
/// forgets who polled last. Holds at most one entry per pending device code, fewer than
/// `waf.limits.device_codes`.
#[derive(Default)]
pub struct PollClock {
    by_code: std::sync::Mutex<std::collections::HashMap<String, Clock>>,
}

struct Clock {
    /// When the last poll came, in unix milliseconds: whole seconds would let two polls a
    /// moment apart on either side of a second's edge pass as an interval apart.
    last_ms: u64,
    interval: u64,
    expires_at: u64,
}

impl PollClock {
    /// Records a poll of `dkey` at `now_ms` (unix milliseconds); whether it came too fast.
    fn too_fast(&self, dkey: &str, now_ms: u64, interval: u64, expires_at: u64) -> bool {
        let now = now_ms / 1000;
        let mut m = self.by_code.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_PENDING && !m.contains_key(dkey) {
            m.retain(|_, c| c.expires_at > now);
        }
        let c = m.entry(dkey.to_string()).or_insert(Clock {
            last_ms: 0,
            interval,
            expires_at,
        });
        let fast = c.last_ms != 0 && now_ms < c.last_ms + c.interval * 1000;
        c.last_ms = now_ms;
        if fast {
            c.interval += 5;
        }
        fast
    }

    fn forget(&self, dkey: &str) {
        self.by_code
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(dkey);
    }
}

#[derive(Deserialize)]
pub struct DeviceQuery {
    user_code: Option<String>,
}

/// `GET /device`: the page where a signed-in person enters or confirms a device's code.
pub async fn page(
    State(waf): State<Arc<Waf>>,
    headers: HeaderMap,
    Query(q): Query<DeviceQuery>,
) -> Result<Response, PageError> {
    let code = q
        .user_code
        .filter(|c| c.len() <= limits::USER_CODE)
        .map(|c| normalize(&c))
        .filter(|c| !c.is_empty());
    let Some((skey, person)) = signin::current(&waf, &headers)? else {
        let back = match &code {
            Some(c) => format!("/device?user_code={}", urlencode(c)),
            None => "/device".to_string(),
        };
        return Ok(signin::ask_to_sign_in(&waf, &back));
    };
    Ok(form(
        &person,
        &signin::csrf_of(&skey),
        code.as_deref(),
        None,
    ))
}

fn form(person: &Person, csrf: &str, code: Option<&str>, error: Option<&str>) -> Response {
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

#[derive(Deserialize)]
pub struct DevicePost {
    user_code: Option<String>,
    action: Option<String>,
    csrf: Option<String>,
}

/// `POST /device`: approve or deny.
pub async fn submit(
    State(waf): State<Arc<Waf>>,
    headers: HeaderMap,
    form_in: Result<Form<DevicePost>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let Some((skey, person)) = signin::current(&waf, &headers)? else {
        return Ok(signin::ask_to_sign_in(&waf, "/device"));
    };
    let Ok(Form(f)) = form_in else {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "Something went wrong",
            "The form was incomplete.",
        ));
    };
    let csrf = signin::csrf_of(&skey);
    if !signin::csrf_matches(&skey, f.csrf.as_deref()) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Something went wrong",
            "This form has expired. Open the page again.",
        ));
    }
    let now = unix_now();
    let who = person.store_key();
    // The attempt is counted before it is checked, in one step, so parallel attempts cannot
    // pass the limit together; a right code gives its count back.
    let attempt = waf.store.update::<u32, u32>("devfail", &who, now, |c| {
        let (n, exp) = c.unwrap_or((0, now + TRY_WINDOW));
        if n >= TRIES {
            // Locked out: nothing to write (a locked-out person costs the store no commit).
            return (Some((n, exp)), n + 1);
        }
        (Some((n + 1, exp)), n + 1)
    })?;
    if attempt > TRIES {
        super::error::log_refusal(
            "device_guesses",
            &format!("too many wrong device codes from {}", person.impu),
        );
        return Err(PageError::too_many(
            "Too many wrong codes were entered. Wait ten minutes, then try again.",
            TRY_WINDOW,
        ));
    }
    let code = f
        .user_code
        .as_deref()
        .filter(|c| c.len() <= limits::USER_CODE)
        .map(normalize)
        .unwrap_or_default();
    let dkey = match guess(&waf, &code, now)? {
        Guess::Right(dkey) => {
            waf.store.update::<u32, ()>("devfail", &who, now, |c| {
                (c.map(|(n, exp)| (n.saturating_sub(1), exp)), ())
            })?;
            dkey
        }
        Guess::Wrong => {
            return Ok(form(
                &person,
                &csrf,
                Some(&code),
                Some("That code is not valid. Check the code on your phone."),
            ));
        }
    };
    let approve = f.action.as_deref() == Some("approve");
    if approve && let Err(wait) = waf.person_budget(&person) {
        super::error::log_refusal(
            "person_budget",
            &format!("device approvals of {} over budget", person.impu),
        );
        return Err(PageError::too_many(
            "Too many devices were connected in a short time. Wait a minute, then try again.",
            wait,
        ));
    }
    let done = waf
        .store
        .update::<Device, bool>("device", &dkey, now, |d| match d {
            Some((mut d, exp)) if matches!(d.status, Status::Pending) && now < d.expires_at => {
                d.status = if approve {
                    Status::Approved(person.clone())
                } else {
                    Status::Denied
                };
                (Some((d, exp)), true)
            }
            other => (other, false),
        })?;
    if !done {
        return Ok(form(
            &person,
            &csrf,
            None,
            Some("That code has expired or was already used."),
        ));
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
    Ok(pages::page(
        StatusCode::OK,
        title,
        &format!("<p>{}</p>", esc(text)),
    ))
}

enum Guess {
    /// The device code's store key; the user code is used up.
    Right(String),
    Wrong,
}

/// Checks a typed user code. A wrong guess at a pending code's slot counts against that code,
/// and kills it at the limit.
fn guess(waf: &Waf, code: &str, now: u64) -> StoreResult<Guess> {
    if code.len() != DIGITS {
        return Ok(Guess::Wrong);
    }
    let check = key_of(code);
    enum Seen {
        Right(String),
        Wrong,
        Burned(String),
    }
    let seen =
        waf.store
            .update::<Slot, Seen>("usercode", &code[..SLOT_DIGITS], now, |s| match s {
                None => (None, Seen::Wrong),
                Some((s, _)) if bool::from(s.check.as_bytes().ct_eq(check.as_bytes())) => {
                    (None, Seen::Right(s.device))
                }
                Some((mut s, exp)) => {
                    s.fails += 1;
                    if s.fails >= TRIES {
                        (None, Seen::Burned(s.device))
                    } else {
                        (Some((s, exp)), Seen::Wrong)
                    }
                }
            })?;
    Ok(match seen {
        Seen::Right(dkey) => Guess::Right(dkey),
        Seen::Wrong => Guess::Wrong,
        Seen::Burned(dkey) => {
            tracing::warn!("a pending user code was guessed at too often; it is dead");
            waf.store.update::<Device, ()>("device", &dkey, now, |d| {
                (
                    d.map(|(mut d, exp)| {
                        d.status = Status::Burned;
                        (d, exp)
                    }),
                    (),
                )
            })?;
            Guess::Wrong
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8628_6_1_typing_is_forgiven() {
        assert_eq!(normalize("123-456 789"), "123456789");
        assert_eq!(normalize("abc"), "");
    }
}
