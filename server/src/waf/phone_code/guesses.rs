//! Counting attempts at phone codes before they are checked (the arithmetic is in the parent
//! module's documentation): per source address, and per IMPU for IMPUs that hold codes, each
//! in one atomic store update so parallel attempts cannot pass a limit together.
//!
//! Owns: the `phonesrc` and `phonefail` counters. Must not touch: the codes.

use std::net::IpAddr;

use super::PhoneCodeError;
use crate::config::PhoneCodeConfig;
use crate::waf::Waf;
use crate::waf::error::StoreResult;
use crate::waf::limits;
use crate::waf::store::{StoreError, StoreExt};

/// An attempt counted before its code is checked, per source and (for IMPUs that hold codes)
/// per IMPU, each in one atomic step so parallel attempts cannot pass a limit together.
pub(super) struct Attempt {
    source: Option<String>,
    impu: Option<String>,
    /// The IMPU was locked out: only an app password bound to the asking phone is tried, with
    /// failures counted for that IMPU and phone, so a stranger's wrong guesses at an IMPU (a
    /// public name) cannot lock its phones out of their own registrations.
    pub(super) bound_only: bool,
    /// Seconds the IMPU stays locked out, when `bound_only`.
    pub(super) locked_for: u64,
}

impl Attempt {
    pub(super) fn take(
        waf: &Waf,
        cfg: &PhoneCodeConfig,
        source: IpAddr,
        ikey: Option<&String>,
        phone: &str,
        now: u64,
    ) -> Result<Self, PhoneCodeError> {
        let window = cfg.failure_window_secs;
        let (ip, len) = limits::subscriber(source);
        let skey = format!("{ip}/{len}");
        let source = match count(
            "phonesrc",
            waf,
            &skey,
            cfg.max_failures_per_source,
            window,
            now,
        ) {
            Ok(None) => Some(skey),
            Ok(Some(retry_after)) => return Err(refused("from one address", retry_after)),
            // The per-IMPU count is what bounds guessing; addresses flooding the table of
            // sources must not stop every phone from signing in.
            Err(StoreError::Full(_)) => {
                crate::waf::error::log_refusal(
                    "phone_sources",
                    &"the table of phone sources is full",
                );
                None
            }
            Err(e) => return Err(e.into()),
        };
        let mut attempt = Self {
            source,
            impu: None,
            bound_only: false,
            locked_for: 0,
        };
        if let Some(ikey) = ikey {
            match count("phonefail", waf, ikey, cfg.max_failures, window, now) {
                Ok(None) => attempt.impu = Some(ikey.clone()),
                Ok(Some(retry_after)) => {
                    let pkey = crate::waf::store::key_of(&format!("{ikey}\n{phone}"));
                    match count("phonefail", waf, &pkey, cfg.max_failures, window, now) {
                        Ok(None) => {
                            attempt.impu = Some(pkey);
                            attempt.bound_only = true;
                            attempt.locked_for = retry_after;
                        }
                        Ok(Some(r)) => {
                            return Err(refused("for one IMPU", retry_after.max(r)));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(attempt)
    }

    /// A success: its own attempt is not a failure.
    pub(super) fn give_back(&self, waf: &Waf, now: u64) -> StoreResult<()> {
        for (ns, key) in [("phonesrc", &self.source), ("phonefail", &self.impu)] {
            if let Some(key) = key {
                waf.store.update::<u32, ()>(ns, key, now, |c| {
                    (c.map(|(n, exp)| (n.saturating_sub(1), exp)), ())
                })?;
            }
        }
        Ok(())
    }
}

/// Counts one attempt under `key`, or `Some(seconds)` to wait when `max` are already counted
/// in the window (which starts at the first attempt).
fn count(
    ns: &'static str,
    waf: &Waf,
    key: &str,
    max: u32,
    window: u64,
    now: u64,
) -> StoreResult<Option<u64>> {
    waf.store.update::<u32, Option<u64>>(ns, key, now, |c| {
        let (n, exp) = c.unwrap_or((0, now + window));
        if n >= max {
            // Locked out: nothing to write.
            return (Some((n, exp)), Some(exp.saturating_sub(now).max(1)));
        }
        (Some((n + 1, exp)), None)
    })
}

fn refused(what: &str, retry_after: u64) -> PhoneCodeError {
    crate::waf::error::log_refusal(
        "phone_code_guesses",
        &format!("too many wrong phone codes {what}"),
    );
    crate::waf::error::count_refusal("phone_code_guesses");
    PhoneCodeError::TooManyAttempts { retry_after }
}
