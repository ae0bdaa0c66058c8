//! `/phone-code`: the page where a signed-in person makes phone codes, sees their codes and
//! app passwords, and revokes them. Forms carry the session's CSRF token, as on `/device`.
//!
//! Owns: the page's markup and form handling. Must not touch: how codes are kept (the parent
//! module's).

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use imsgw_token::Secret;
use serde::Deserialize;

use super::{Held, Made, State as Kept, impu_key, make, revoke_where};
use crate::config::PhoneCodeConfig;
use crate::waf::error::{PageError, StoreResult};
use crate::waf::identity::Person;
use crate::waf::pages::{self, esc};
use crate::waf::signin;
use crate::waf::store::StoreExt;
use crate::waf::{Waf, unix_now};

/// The longest entry id taken from a form (ours are 16 characters).
const ID_MAX: usize = 64;

/// `GET /phone-code`.
pub async fn page(State(waf): State<Arc<Waf>>, headers: HeaderMap) -> Result<Response, PageError> {
    let Some(cfg) = waf.phone_code.as_ref() else {
        return Ok(not_found());
    };
    let Some((skey, person)) = signin::current(&waf, &headers)? else {
        return Ok(signin::ask_to_sign_in(&waf, "/phone-code"));
    };
    Ok(view(&waf, cfg, &skey, &person, unix_now(), Shown::Nothing)?)
}

#[derive(Deserialize)]
pub struct PhoneCodePost {
    action: Option<String>,
    id: Option<String>,
    csrf: Option<String>,
}

/// `POST /phone-code`: `action=new` makes a code; `action=revoke&id=…` revokes one.
pub async fn submit(
    State(waf): State<Arc<Waf>>,
    headers: HeaderMap,
    form_in: Result<Form<PhoneCodePost>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let Some(cfg) = waf.phone_code.as_ref() else {
        return Ok(not_found());
    };
    let Some((skey, person)) = signin::current(&waf, &headers)? else {
        return Ok(signin::ask_to_sign_in(&waf, "/phone-code"));
    };
    let bad_form = || {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "Something went wrong",
            "The form was incomplete.",
        )
    };
    let Ok(Form(f)) = form_in else {
        return Err(bad_form());
    };
    if !signin::csrf_matches(&skey, f.csrf.as_deref()) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Something went wrong",
            "This form has expired. Open the page again.",
        ));
    }
    let now = unix_now();
    let shown = match f.action.as_deref() {
        Some("new") => {
            if let Err(wait) = waf.person_budget(&person) {
                crate::waf::error::log_refusal(
                    "person_budget",
                    &format!("phone codes of {} over budget", person.impu),
                );
                return Err(PageError::too_many(
                    "Too many phone codes were made in a short time. Wait a minute, then try again.",
                    wait,
                ));
            }
            match make(&waf, cfg, &skey, &person, now)? {
                Made::Code(code) => {
                    return Ok(view(&waf, cfg, &skey, &person, now, Shown::Code(&code))?);
                }
                Made::Full(n) => Shown::Error(
                    format!(
                        "You already have {n} phone codes and app passwords, the most allowed. Revoke one you no longer use, then make a new one."
                    ),
                    StatusCode::CONFLICT,
                ),
            }
        }
        Some("revoke") => {
            let id = f.id.filter(|i| i.len() <= ID_MAX).unwrap_or_default();
            if revoke_where(&waf, &person, now, &|e| !id.is_empty() && e.id == id)? > 0 {
                Shown::Note("Revoked. A phone that used it can no longer sign in with it.")
            } else {
                Shown::Error(
                    "That code was already revoked or has expired.".into(),
                    StatusCode::NOT_FOUND,
                )
            }
        }
        _ => return Err(bad_form()),
    };
    Ok(view(&waf, cfg, &skey, &person, now, shown)?)
}

/// What the page shows above the list.
enum Shown<'a> {
    Nothing,
    /// A code just made: shown this once.
    Code(&'a Secret),
    Note(&'static str),
    Error(String, StatusCode),
}

fn view(
    waf: &Waf,
    cfg: &PhoneCodeConfig,
    skey: &str,
    person: &Person,
    now: u64,
    shown: Shown<'_>,
) -> StoreResult<Response> {
    let held = waf
        .store
        .get::<Held>("phonecode", &impu_key(&person.impu), now)?
        .unwrap_or_default();
    let csrf = esc(&signin::csrf_of(skey));
    let impu = esc(person.impu.as_str());
    let mut body = format!(
        "<p>Signed in as {} ({impu}). A phone that only takes a user name and a password can sign in as you with a phone code: its user name is <strong>{impu}</strong>, its password the code.</p>",
        esc(&person.display),
    );
    let mut status = StatusCode::OK;
    match shown {
        Shown::Nothing => {}
        Shown::Code(code) => body.push_str(&format!(
            "<p>Your phone code:</p><p style=\"font-size:2rem;letter-spacing:.2rem\"><strong>{}</strong></p>\
<p>Enter it on your phone as the password, without spaces, within {}. It is shown only this once. The first phone that uses it keeps it as its password, until you revoke it here or sign out of this browser.</p>",
            esc(&grouped(code.expose_str().unwrap_or(""))),
            duration(cfg.ttl_secs),
        )),
        Shown::Note(note) => body.push_str(&format!("<p role=\"status\">{}</p>", esc(note))),
        Shown::Error(e, s) => {
            status = s;
            body.push_str(&format!(
                "<p class=\"error\" role=\"alert\">{}</p>",
                esc(&e)
            ));
        }
    }
    let who = person.store_key();
    let mut items = String::new();
    for e in held.entries.iter().filter(|e| e.person.store_key() == who) {
        let what = match &e.state {
            Kept::Pending { until } => format!(
                "A code waiting for a phone, for {} more",
                duration(until.saturating_sub(now))
            ),
            Kept::Bound { phone, at, .. } => format!(
                "The password of phone {}, for {}",
                esc(phone),
                duration(now.saturating_sub(*at))
            ),
            Kept::Revoked { .. } => continue,
        };
        let here = if e.session == skey {
            " (made in this browser)"
        } else {
            ""
        };
        items.push_str(&format!(
            "<li>{what}{here}, made {} ago.<form method=\"post\" action=\"/phone-code\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"id\" value=\"{}\">\
<button class=\"secondary\" name=\"action\" value=\"revoke\">Revoke</button></form></li>",
            duration(now.saturating_sub(e.made)),
            esc(&e.id),
        ));
    }
    if items.is_empty() {
        body.push_str("<p>You have no phone codes.</p>");
    } else {
        body.push_str(&format!("<ul>{items}</ul>"));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/phone-code\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<button name=\"action\" value=\"new\">Make a phone code</button></form>"
    ));
    Ok(pages::page(status, "Phone codes", &body))
}

fn not_found() -> Response {
    pages::error(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page here.",
    )
}

/// A code in groups of at most four digits, as even as can be (`1234 5678`, `123 456 789`).
pub(super) fn grouped(code: &str) -> String {
    let n = code.len();
    let groups = n.div_ceil(4).max(1);
    let (size, longer) = (n / groups, n % groups);
    let mut out = String::with_capacity(n + groups);
    let mut at = 0;
    for g in 0..groups {
        let len = size + usize::from(g < longer);
        if g > 0 {
            out.push(' ');
        }
        out.push_str(code.get(at..at + len).unwrap_or(""));
        at += len;
    }
    out
}

/// A span of time, roughly, for people.
fn duration(secs: u64) -> String {
    let (n, unit) = match secs {
        0..7200 => (secs.div_ceil(60).max(1), "minute"),
        7200..172_800 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}{}", plural(n))
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
