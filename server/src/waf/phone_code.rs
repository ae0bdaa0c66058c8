//! Phone codes (issue 13 §2): a person signed in on the web asks `/phone-code` for a short
//! numeric code bound to their IMPU, and types their IMPU as a legacy SIP phone's user name and
//! the code as its password. The SIP edge challenges the phone with Digest and, for each
//! REGISTER with credentials, calls [`sign_in`] with a closure that checks a candidate
//! password against the Digest response. The first success binds the code to that phone: from
//! then on it is the phone's "app password", good for that phone alone until the refresh-token
//! family made at binding is revoked (the revoke button on the page, or signing out of the web
//! session that made the code).
//!
//! Each IMPU's codes are one store record (`phonecode`, keyed by the IMPU's hash), so a
//! redemption reads one record and tries each live code on the Digest response; a code typed
//! with another IMPU finds nothing. Digest needs the code itself, not a hash, so each code is
//! kept sealed (`sealed`, AES-256-GCM) rather than hashed like the WAF's other secrets.
//!
//! Guessing (the reasoning of RFC 8628 §5.1): every attempt is counted before its code is
//! checked, per IMPU (`max_failures` per `failure_window_secs`, defaults 5 per 600 s, counted
//! only for IMPUs that hold codes) and per source address (`max_failures_per_source`, default
//! 20, per IPv4 address or IPv6 /64); past either, the attempt is refused without checking. A
//! success gives back only its own attempt, so an attacker who also owns an account cannot
//! clear a count with their own successes. With `d` digits, at most `n` live codes per IMPU
//! (`per_person`) and `m` tries per window of `w` seconds, a guess at one IMPU succeeds with
//! probability `n / 10^d`, and there are at most `m * 86400 / w` guesses a day:
//!
//! - defaults (d = 8, n = 5, m = 5, w = 600): 720 guesses a day, each 5 in 10^8: at most
//!   3.6e-5 a day (1 in about 28 000), 1.1e-3 over the 30 days an app password lives (the
//!   default `waf.refresh_ttl_secs`), for an attacker guessing without pause all that time,
//!   during which new phones of the IMPU are refused too, which shows;
//! - a pending code (600 s): at most 5 guesses, 2.5e-7;
//! - 12 digits make each of these 10^4 times smaller.
//!
//! While an IMPU is locked out, a phone's own app password still works: the attempt is counted
//! again for that IMPU and phone identity (same limit), and only that phone's bound password is
//! tried, so a stranger's wrong guesses at an IMPU (a public name) cannot take its phones'
//! registrations away. An attacker who also knows a phone's identity gets at most `m` more
//! guesses a window at that phone's password: the figures above at most double.
//!
//! These bound online guessing only. A Digest response seen on the wire lets an eavesdropper
//! search all 10^d codes offline in seconds: phones must reach the edge over TLS or a network
//! the operator trusts.
//!
//! Owns: phone codes and their records, [`sign_in`], the `/phone-code` page (`page`), the
//! counting of attempts (`guesses`). Must not touch: SIP and Digest (the edge's), token format
//! and families (`token`'s).

use std::net::IpAddr;

use imsgw_token::{AccessToken, Secret};
use serde::{Deserialize, Serialize};

use super::Waf;
use super::error::{OAuthError, StoreResult};
use super::identity::Person;
use super::store::{StoreError, StoreExt, key_of};
use super::token::{self, Planned};
use crate::config::PhoneCodeConfig;
use guesses::Attempt;

mod guesses;
mod page;
#[cfg(test)]
mod tests;

pub use page::{PhoneCodePost, page, submit};

/// What the edge knows of a phone signing in.
#[derive(Debug, Clone, Copy)]
pub struct PhoneSignIn<'a> {
    /// The IMPU the phone gave as its Digest user name.
    pub impu: &'a imsgw_sip::Impu,
    /// The phone's identity as the edge sees it: its `+sip.instance`, else its Contact's
    /// `user@host`. At most [`PHONE_MAX`] bytes.
    pub phone: &'a str,
    /// Where the REGISTER came from.
    pub source: IpAddr,
}

/// A phone signed in: an access token of the family its app password is bound to.
#[derive(Debug)]
pub struct PhoneGrant {
    pub access_token: AccessToken,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// The refresh-token family id: revoking it revokes the phone's tokens.
    pub family: String,
    /// Whether this sign-in bound a pending code to the phone.
    pub first_use: bool,
}

/// Why a phone was not signed in.
#[derive(Debug, thiserror::Error)]
pub enum PhoneCodeError {
    /// `[waf.phone_code]` is not configured.
    #[error("phone codes are not enabled")]
    Disabled,
    /// No live code of the IMPU matched, or the one that matched is another phone's.
    #[error("wrong user name or password")]
    BadCredentials,
    /// Too many failures for the IMPU or from the address: refused without checking.
    #[error("too many failed attempts; retry after {retry_after} s")]
    TooManyAttempts { retry_after: u64 },
    /// The phone's app password was revoked.
    #[error("the app password was revoked")]
    Revoked,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No token could be issued (the description is safe to log; it never holds a secret).
    #[error("no token could be issued: {0}")]
    Unavailable(std::borrow::Cow<'static, str>),
}

impl From<OAuthError> for PhoneCodeError {
    fn from(e: OAuthError) -> Self {
        Self::Unavailable(e.description)
    }
}

/// The longest phone identity kept.
pub const PHONE_MAX: usize = 256;
/// What codes are sealed for.
const PURPOSE: &str = "imsgw phone code v1";
/// How long a revoked app password is remembered, so its phone hears `Revoked` rather than
/// failing like a guess and using up its IMPU's failures.
const REVOKED_KEEP: u64 = 86_400;

/// The record of one IMPU's codes (`phonecode`, keyed by [`key_of`] the IMPU).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Held {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    /// Names the entry on the page; proves nothing to a phone.
    id: String,
    /// The code, sealed for [`PURPOSE`]. `Debug` shows only that it is there.
    code: Sealed,
    person: Person,
    /// Store key of the sign-in session that made it.
    session: String,
    made: u64,
    state: State,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum State {
    /// Waiting for its first phone until `until`.
    Pending { until: u64 },
    /// The app password of `phone`, in refresh-token family `family`, since `at`.
    Bound {
        phone: String,
        family: String,
        at: u64,
        until: u64,
    },
    /// Revoked: its phone hears so until `until`.
    Revoked { phone: String, until: u64 },
}

impl State {
    fn until(&self) -> u64 {
        match self {
            Self::Pending { until } | Self::Bound { until, .. } | Self::Revoked { until, .. } => {
                *until
            }
        }
    }
}

/// A sealed code: only the sealer opens it, and `Debug` never shows it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
struct Sealed(String);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed(<redacted>)")
    }
}

impl Held {
    /// Drops what has expired, and the oldest tombstones past `per_person`.
    fn prune(&mut self, now: u64, per_person: usize) {
        self.entries.retain(|e| e.state.until() > now);
        let dead = self
            .entries
            .iter()
            .filter(|e| matches!(e.state, State::Revoked { .. }))
            .count();
        let mut drop = dead.saturating_sub(per_person);
        self.entries.retain(|e| {
            let gone = drop > 0 && matches!(e.state, State::Revoked { .. });
            drop -= usize::from(gone);
            !gone
        });
    }

    /// Pending codes and app passwords: what `per_person` counts.
    fn live(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| !matches!(e.state, State::Revoked { .. }))
            .count()
    }
}

/// The store key of an IMPU's record.
fn impu_key(impu: &imsgw_sip::Impu) -> String {
    key_of(impu.as_str())
}

/// Reads, changes and writes back an IMPU's record in one atomic step; expired entries go
/// first. The record lives as long as its longest-lived entry.
fn change<R>(
    waf: &Waf,
    ikey: &str,
    per_person: usize,
    now: u64,
    mut f: impl FnMut(&mut Held) -> R,
) -> StoreResult<R> {
    waf.store.update::<Held, R>("phonecode", ikey, now, |held| {
        let mut h = held.map(|(h, _)| h).unwrap_or_default();
        h.prune(now, per_person);
        let answer = f(&mut h);
        let until = h.entries.iter().map(|e| e.state.until()).max();
        (until.map(|u| (h, u)), answer)
    })
}

/// Redeems a phone's credentials: `check` says whether a candidate password is the one the
/// phone used (the edge's Digest check). See the module documentation for what is counted.
pub fn sign_in(
    waf: &Waf,
    req: &PhoneSignIn<'_>,
    now: u64,
    check: &dyn Fn(&str) -> bool,
) -> Result<PhoneGrant, PhoneCodeError> {
    let Some(cfg) = &waf.phone_code else {
        return Err(PhoneCodeError::Disabled);
    };
    if req.phone.is_empty() || req.phone.len() > PHONE_MAX {
        return Err(PhoneCodeError::BadCredentials);
    }
    let ikey = impu_key(req.impu);
    let held = waf.store.get::<Held>("phonecode", &ikey, now)?;
    let ikey_held = held.is_some().then_some(&ikey);
    let attempt = Attempt::take(waf, cfg, req.source, ikey_held, req.phone, now)?;
    match find(waf, held, req.phone, now, attempt.bound_only, check) {
        // A locked-out IMPU: whatever this was, it was not the asking phone's app password.
        Found::Nothing | Found::OtherPhone if attempt.bound_only => {
            Err(PhoneCodeError::TooManyAttempts {
                retry_after: attempt.locked_for,
            })
        }
        Found::Nothing | Found::OtherPhone => Err(PhoneCodeError::BadCredentials),
        Found::Revoked => {
            attempt.give_back(waf, now)?;
            Err(PhoneCodeError::Revoked)
        }
        Found::Pending(entry) => {
            let grant = bind(waf, cfg, &ikey, &entry, req.phone, now)?;
            attempt.give_back(waf, now)?;
            tracing::info!(impu = %req.impu, phone = ?req.phone, "a phone code was used by a phone; it is now its app password");
            Ok(grant)
        }
        Found::Bound { id, family } => match token::mint_in_family(waf, &family, now)? {
            Some(t) => {
                attempt.give_back(waf, now)?;
                Ok(PhoneGrant {
                    expires_in: t.claims.exp.saturating_sub(now),
                    access_token: t.access,
                    family,
                    first_use: false,
                })
            }
            None => {
                // Revoked elsewhere: kept as revoked, so the phone keeps hearing so.
                change(waf, &ikey, cfg.per_person, now, |h| {
                    for e in h.entries.iter_mut().filter(|e| e.id == id) {
                        tombstone(e, now);
                    }
                })?;
                attempt.give_back(waf, now)?;
                Err(PhoneCodeError::Revoked)
            }
        },
    }
}

enum Found {
    Nothing,
    /// A code that is another phone's app password (or was).
    OtherPhone,
    Pending(Box<Entry>),
    Bound {
        id: String,
        family: String,
    },
    Revoked,
}

/// The entry whose code `check` accepts, among those still live.
fn find(
    waf: &Waf,
    held: Option<Held>,
    phone: &str,
    now: u64,
    bound_only: bool,
    check: &dyn Fn(&str) -> bool,
) -> Found {
    let entries = held.map(|h| h.entries).unwrap_or_default();
    for e in entries {
        // Expired codes are not tried: they fail like wrong ones.
        if e.state.until() <= now {
            continue;
        }
        // While the IMPU is locked out, only this phone's own app password is tried.
        let mine = matches!(&e.state, State::Bound { phone: p, .. } | State::Revoked { phone: p, .. } if p == phone);
        if bound_only && !mine {
            continue;
        }
        let Some(code) = waf.sealer.open::<Secret>(PURPOSE, &e.code.0, now) else {
            continue;
        };
        if !code.expose_str().is_some_and(check) {
            continue;
        }
        return match e.state {
            State::Pending { .. } => Found::Pending(Box::new(e)),
            State::Bound {
                phone: p, family, ..
            } if p == phone => Found::Bound { id: e.id, family },
            State::Revoked { phone: p, .. } if p == phone => Found::Revoked,
            _ => Found::OtherPhone,
        };
    }
    Found::Nothing
}

/// Binds a pending code to `phone`: a new family first, then the binding, in one update that
/// only one phone can win; the loser's family is revoked and it hears `BadCredentials`.
fn bind(
    waf: &Waf,
    cfg: &PhoneCodeConfig,
    ikey: &str,
    entry: &Entry,
    phone: &str,
    now: u64,
) -> Result<PhoneGrant, PhoneCodeError> {
    let client = waf.clients.get(&cfg.client_id).ok_or_else(|| {
        // Config loading refuses this; a Waf built otherwise hears it here.
        PhoneCodeError::Unavailable("waf.phone_code.client_id names no client".into())
    })?;
    let t = token::issue_tokens(
        waf,
        client,
        &cfg.client_id,
        now,
        &entry.person,
        &waf.scope,
        Planned::Fresh,
        None,
    )?;
    let Some(family) = t.family.clone() else {
        waf.revoke_token(&t.claims.jti, t.claims.exp, now)?;
        return Err(PhoneCodeError::Unavailable(
            "waf.phone_code.client_id does not allow the refresh_token grant".into(),
        ));
    };
    let until = now + waf.flows.refresh_ttl;
    let won = change(waf, ikey, cfg.per_person, now, |h| {
        let Some(e) = h.entries.iter_mut().find(|e| e.id == entry.id) else {
            return false;
        };
        if !matches!(e.state, State::Pending { until } if until > now) {
            return false;
        }
        e.state = State::Bound {
            phone: phone.to_string(),
            family: family.clone(),
            at: now,
            until,
        };
        true
    });
    if won.as_ref().ok() != Some(&true) {
        token::revoke_family(waf, &family, now)?;
        won?;
        return Err(PhoneCodeError::BadCredentials);
    }
    Ok(PhoneGrant {
        expires_in: t.claims.exp.saturating_sub(now),
        access_token: t.access,
        family,
        first_use: true,
    })
}

/// What [`make`] did.
enum Made {
    /// A new code, shown once.
    Code(Secret),
    /// The IMPU already holds this many codes and app passwords.
    Full(usize),
}

/// Makes a code for `person` in the session `session`.
fn make(
    waf: &Waf,
    cfg: &PhoneCodeConfig,
    session: &str,
    person: &Person,
    now: u64,
) -> StoreResult<Made> {
    let ikey = impu_key(&person.impu);
    let until = now + cfg.ttl_secs;
    // Kept sealed as long as the code could be an app password, then remembered as revoked.
    let sealed_until = until + waf.flows.refresh_ttl + REVOKED_KEEP;
    for _ in 0..8 {
        let code = new_code(cfg.digits);
        let Some(sealed) = waf.sealer.seal(PURPOSE, &code, sealed_until) else {
            return Err(StoreError::Unavailable(
                "a phone code could not be sealed".into(),
            ));
        };
        let entry = Entry {
            id: new_id(),
            code: Sealed(sealed),
            person: person.clone(),
            session: session.to_string(),
            made: now,
            state: State::Pending { until },
        };
        enum Put {
            Done,
            Full(usize),
            Taken,
        }
        let put = change(waf, &ikey, cfg.per_person, now, |h| {
            if h.live() >= cfg.per_person {
                return Put::Full(h.live());
            }
            // Two live codes of one IMPU never match one password, so a match names one entry.
            let taken = h.entries.iter().any(|e| {
                waf.sealer
                    .open::<Secret>(PURPOSE, &e.code.0, now)
                    .is_some_and(|c| c.ct_eq(code.expose()))
            });
            if taken {
                return Put::Taken;
            }
            h.entries.push(entry.clone());
            Put::Done
        })?;
        match put {
            Put::Done => {
                tracing::info!(impu = %person.impu, "phone code made");
                return Ok(Made::Code(code));
            }
            Put::Full(n) => return Ok(Made::Full(n)),
            Put::Taken => {}
        }
    }
    Err(StoreError::Unavailable(
        "no phone code could be made that differs from the IMPU's others".into(),
    ))
}

/// A code of `digits` digits, uniform over all 10^digits of them: rand's thread generator is a
/// CSPRNG, and `random_range` samples a range without bias.
fn new_code(digits: u32) -> Secret {
    let n: u64 = rand::random_range(0..10u64.pow(digits));
    Secret::new(format!("{n:0width$}", width = digits as usize))
}

/// An entry's id on the page (random: ids of other people's entries cannot be guessed).
fn new_id() -> String {
    let mut id = super::signin::random_secret();
    id.truncate(16);
    id
}

/// Revokes `person`'s entries that `pick` chooses: pending codes go at once; app passwords
/// have their family revoked first and are then kept as revoked (a crash in between leaves an
/// app password whose family is revoked, which its phone hears as `Revoked` too). How many.
fn revoke_where(
    waf: &Waf,
    person: &Person,
    now: u64,
    pick: &dyn Fn(&Entry) -> bool,
) -> StoreResult<usize> {
    let per_person = waf.phone_code.as_ref().map_or(20, |c| c.per_person);
    let ikey = impu_key(&person.impu);
    let who = person.store_key();
    let mine = |e: &Entry| e.person.store_key() == who && pick(e);
    let (pending, bound) = change(waf, &ikey, per_person, now, |h| {
        let before = h.entries.len();
        h.entries
            .retain(|e| !(mine(e) && matches!(e.state, State::Pending { .. })));
        let bound: Vec<(String, String)> = h
            .entries
            .iter()
            .filter(|e| mine(e))
            .filter_map(|e| match &e.state {
                State::Bound { family, .. } => Some((e.id.clone(), family.clone())),
                _ => None,
            })
            .collect();
        (before - h.entries.len(), bound)
    })?;
    for (_, family) in &bound {
        token::revoke_family(waf, family, now)?;
    }
    if !bound.is_empty() {
        change(waf, &ikey, per_person, now, |h| {
            for e in &mut h.entries {
                if bound.iter().any(|(id, _)| *id == e.id) {
                    tombstone(e, now);
                }
            }
        })?;
    }
    Ok(pending + bound.len())
}

/// Marks an app password revoked (its family must be revoked already).
fn tombstone(e: &mut Entry, now: u64) {
    if let State::Bound { phone, .. } = &e.state {
        e.state = State::Revoked {
            phone: phone.clone(),
            until: now + REVOKED_KEEP,
        };
    }
}

/// `POST /auth/logout`: the codes and app passwords the session made are revoked.
pub fn end_session(waf: &Waf, session: &str, person: &Person, now: u64) -> StoreResult<()> {
    let n = revoke_where(waf, person, now, &|e| e.session == session)?;
    if n > 0 {
        tracing::info!(impu = %person.impu, revoked = n, "signed out: the session's phone codes are revoked");
    }
    Ok(())
}
