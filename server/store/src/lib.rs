//! WAF state behind one interface: revocations, and the records of the sign-in flows
//! (authorization codes, device codes, refresh-token families, sign-in sessions, logins in
//! progress), each with an expiry. Two stores implement it: [`DurableStore`] (one SQLite file,
//! the default: a restart forgets nothing) and [`MemoryStore`] (for tests and throw-away
//! gateways: **lost on restart** — people sign in again, refresh tokens stop working, and a
//! revoked access token is accepted again until it expires). A shared store (Redis) will
//! implement the same trait for several instances; `suite` (feature `test-suite`) is the test suite every store
//! passes. Keys of secrets (codes, tokens, session ids) are SHA-256 hashes, so the store never
//! holds a usable credential.
//!
//! Owns: what is kept and for how long. Must not touch: HTTP, SIP, what the records mean.

use std::collections::HashMap;
use std::sync::Mutex;

pub mod durable;
#[cfg(any(test, feature = "test-suite"))]
pub mod suite;

pub use durable::{DurableStore, OpenError};

/// A revoked token stays revoked this long past its `exp`: the verifiers' clock-skew leeway,
/// during which it would still verify.
pub const REVOKED_LEEWAY: u64 = 60;

/// Why the store could not do what was asked. Callers answer with a clear error (an OAuth
/// `temporarily_unavailable`, a 503 page) and nothing else changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A new `kind` record would pass its cap ([`Caps`]); records already held are untouched.
    #[error("the store already holds as many `{0}` records as it may")]
    Full(&'static str),
    /// The store cannot be read or written (a disk or a server); nothing was changed.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

/// The WAF's shared state.
pub trait Store: Send + Sync {
    /// Marks the token with `jti` revoked until `exp` (after which it is invalid anyway).
    fn revoke(&self, jti: &str, exp: u64, now: u64) -> Result<(), StoreError>;
    /// Whether the token with this `jti` was revoked.
    fn is_revoked(&self, jti: &str, now: u64) -> Result<bool, StoreError>;
    /// Every revocation still in force (`jti`, `exp`): what the SIP edge is told at start-up.
    fn revocations(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError>;
    /// How many revocations are held.
    fn revoked_count(&self) -> usize;
    /// Atomically reads and rewrites the record `key` of namespace `ns`: `f` sees the current
    /// value (`None` if absent or expired) and returns the new one (`None` removes it). This
    /// is the one primitive the flows need for single-use codes and refresh rotation.
    ///
    /// Creating a record (none before, `Some` after) when `ns` already holds its cap of live
    /// records fails with [`StoreError::Full`] and stores nothing; changing or removing an
    /// existing record never fails for a cap. On any error nothing was changed, whatever `f`
    /// returned, so the caller must not act on what `f` saw.
    fn modify(
        &self,
        ns: &'static str,
        key: &str,
        now: u64,
        f: &mut dyn FnMut(Option<Record>) -> Option<Record>,
    ) -> Result<(), StoreError>;
}

/// A stored value and when it expires (unix seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub value: serde_json::Value,
    pub expires: u64,
}

/// The most live records of each kind (namespace) a store holds. A kind not listed has
/// [`Caps::other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    pub per_kind: HashMap<&'static str, usize>,
    pub other: usize,
}

impl Caps {
    /// No cap at all: for tests of other things.
    pub fn unlimited() -> Self {
        Self {
            per_kind: HashMap::new(),
            other: usize::MAX,
        }
    }

    /// The cap of `ns`.
    pub fn of(&self, ns: &str) -> usize {
        self.per_kind.get(ns).copied().unwrap_or(self.other)
    }
}

impl Default for Caps {
    fn default() -> Self {
        Self::unlimited()
    }
}

/// Typed helpers over [`Store::modify`].
pub trait StoreExt: Store {
    /// Stores `value` under `key` until `expires`.
    fn put<T: serde::Serialize>(
        &self,
        ns: &'static str,
        key: &str,
        now: u64,
        value: &T,
        expires: u64,
    ) -> Result<(), StoreError> {
        let v = serde_json::to_value(value)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode a `{ns}` record: {e}")))?;
        let mut v = Some(v);
        self.modify(ns, key, now, &mut |_| {
            v.take().map(|value| Record { value, expires })
        })
    }

    /// The value under `key`, if any and not expired (a record that no longer decodes is
    /// treated as absent).
    fn get<T: serde::de::DeserializeOwned>(
        &self,
        ns: &'static str,
        key: &str,
        now: u64,
    ) -> Result<Option<T>, StoreError> {
        let mut out = None;
        self.modify(ns, key, now, &mut |r| {
            out = r.clone();
            r
        })?;
        Ok(out.and_then(|r| serde_json::from_value(r.value).ok()))
    }

    /// Removes and returns the value under `key` (single use).
    fn take<T: serde::de::DeserializeOwned>(
        &self,
        ns: &'static str,
        key: &str,
        now: u64,
    ) -> Result<Option<T>, StoreError> {
        let mut out = None;
        self.modify(ns, key, now, &mut |r| {
            out = r;
            None
        })?;
        Ok(out.and_then(|r| serde_json::from_value(r.value).ok()))
    }

    fn delete(&self, ns: &'static str, key: &str, now: u64) -> Result<(), StoreError> {
        self.modify(ns, key, now, &mut |_| None)
    }

    /// Reads, changes and writes back a typed value atomically; `f` returns what to answer.
    /// The expiry is kept unless `f` sets a new one.
    fn update<T, R>(
        &self,
        ns: &'static str,
        key: &str,
        now: u64,
        mut f: impl FnMut(Option<(T, u64)>) -> (Option<(T, u64)>, R),
    ) -> Result<R, StoreError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let mut out = None;
        self.modify(ns, key, now, &mut |r| {
            let current = r.and_then(|r| {
                serde_json::from_value::<T>(r.value)
                    .ok()
                    .map(|v| (v, r.expires))
            });
            let (next, answer) = f(current);
            out = Some(answer);
            next.and_then(|(v, expires)| {
                serde_json::to_value(v)
                    .ok()
                    .map(|value| Record { value, expires })
            })
        })?;
        out.ok_or_else(|| StoreError::Unavailable(format!("`{ns}` update did not run")))
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

/// SHA-256 of a secret, base64url: the store key for codes, tokens and session ids.
pub fn key_of(secret: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// The in-memory store.
#[derive(Default)]
pub struct MemoryStore {
    revoked: Mutex<Revoked>,
    records: Mutex<Records>,
    caps: Caps,
}

#[derive(Default)]
struct Records {
    map: HashMap<(&'static str, String), Record>,
    /// Records held per kind, expired ones included until purged.
    counts: HashMap<&'static str, usize>,
    purged_at: usize,
    /// When a full kind last caused a purge: at most one a second, so a flood against a full
    /// kind costs no more than a flood against an empty one.
    full_purge_at: u64,
}

impl Records {
    fn purge(&mut self, now: u64) {
        self.map.retain(|_, rec| rec.expires > now);
        self.counts.clear();
        for (ns, _) in self.map.keys() {
            *self.counts.entry(ns).or_default() += 1;
        }
        self.purged_at = self.map.len();
    }
}

#[derive(Default)]
struct Revoked {
    by_jti: HashMap<String, u64>,
    /// Size after the last purge: purge again when it doubles, so the cost stays amortised.
    purged_at: usize,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that holds at most `caps` live records of each kind.
    pub fn with_caps(caps: Caps) -> Self {
        Self {
            caps,
            ..Self::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Revoked> {
        // A panic while holding this lock leaves a consistent map (single inserts/removes):
        // recover the guard rather than propagate the poison.
        self.revoked.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn is_revoked(&self, jti: &str, now: u64) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .by_jti
            .get(jti)
            .is_some_and(|exp| *exp + REVOKED_LEEWAY >= now))
    }

    fn revocations(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self
            .lock()
            .by_jti
            .iter()
            .filter(|(_, exp)| **exp + REVOKED_LEEWAY >= now)
            .map(|(j, e)| (j.clone(), *e))
            .collect())
    }

    fn revoke(&self, jti: &str, exp: u64, now: u64) -> Result<(), StoreError> {
        let mut r = self.lock();
        r.by_jti.insert(jti.to_string(), exp);
        if r.by_jti.len() > (r.purged_at * 2).max(1024) {
            // Expired tokens fail verification anyway (past the leeway): forget them.
            r.by_jti.retain(|_, exp| *exp + REVOKED_LEEWAY >= now);
            r.purged_at = r.by_jti.len();
        }
        Ok(())
    }

    fn revoked_count(&self) -> usize {
        self.lock().by_jti.len()
    }

    fn modify(
        &self,
        ns: &'static str,
        key: &str,
        now: u64,
        f: &mut dyn FnMut(Option<Record>) -> Option<Record>,
    ) -> Result<(), StoreError> {
        // Consistent under a panic in `f`: the map is only changed after it returns.
        let mut r = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let k = (ns, key.to_string());
        let held = r.map.get(&k).cloned();
        let current = held.clone().filter(|rec| rec.expires > now);
        let next = f(current.clone());
        let cap = self.caps.of(ns);
        if current.is_none() && next.is_some() {
            let count = |r: &Records| r.counts.get(ns).copied().unwrap_or(0);
            let already = usize::from(held.is_some());
            if count(&r).saturating_sub(already) >= cap && r.full_purge_at != now {
                r.full_purge_at = now;
                r.purge(now);
            }
            let already = usize::from(r.map.contains_key(&k));
            if count(&r).saturating_sub(already) >= cap {
                return Err(StoreError::Full(ns));
            }
        }
        match next {
            Some(next) => {
                if r.map.insert(k, next).is_none() {
                    *r.counts.entry(ns).or_default() += 1;
                }
            }
            None => {
                if r.map.remove(&k).is_some()
                    && let Some(c) = r.counts.get_mut(ns)
                {
                    *c = c.saturating_sub(1);
                }
            }
        }
        if r.map.len() > (r.purged_at * 2).max(4096) {
            r.purge(now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store suite against the memory store (which keeps nothing across a restart).
    mod suite {
        use crate::suite::Harness;
        use crate::{Caps, MemoryStore};

        struct Memory;

        impl Harness for Memory {
            type S = MemoryStore;
            fn open(&mut self, caps: Caps, _now: u64) -> MemoryStore {
                MemoryStore::with_caps(caps)
            }
            fn reopen(&mut self, _: MemoryStore, _now: u64) -> Option<MemoryStore> {
                None
            }
        }

        crate::store_suite!(Memory);
    }

    #[test]
    fn rfc7009_revoked_until_expiry_then_forgotten() -> Result<(), StoreError> {
        let s = MemoryStore::new();
        s.revoke("a", 1000, 900)?;
        assert!(s.is_revoked("a", 950)?);
        assert!(!s.is_revoked("b", 950)?);
        // Past expiry plus leeway the token is dead on its own.
        assert!(!s.is_revoked("a", 1061)?);
        for i in 0..3000 {
            s.revoke(&format!("j{i}"), 500, 2000)?;
        }
        assert!(s.revoked_count() < 2000, "expired entries are purged");
        Ok(())
    }
}
