//! WAF state behind one interface: revocations, and the records of the sign-in flows
//! (authorization codes, device codes, refresh-token families, sign-in sessions, logins in
//! progress), each with an expiry. In memory by default: **lost on restart** — people sign in
//! again, refresh tokens stop working, and a revoked access token is accepted again until it
//! expires (minutes), as the operator docs say. A shared store (Redis) implements the same
//! trait for several instances. Keys of secrets (codes, tokens, session ids) are SHA-256
//! hashes, so the store never holds a usable credential.
//!
//! Owns: what is kept and for how long. Must not touch: HTTP, SIP, what the records mean.

use std::collections::HashMap;
use std::sync::Mutex;

/// The WAF's shared state.
pub trait Store: Send + Sync {
    /// Marks the token with `jti` revoked until `exp` (after which it is invalid anyway).
    fn revoke(&self, jti: &str, exp: u64, now: u64);
    /// Whether the token with this `jti` was revoked.
    fn is_revoked(&self, jti: &str, now: u64) -> bool;
    /// Every revocation still in force (`jti`, `exp`): what the SIP edge is told at start-up.
    fn revocations(&self, now: u64) -> Vec<(String, u64)>;
    /// How many revocations are held.
    fn revoked_count(&self) -> usize;
    /// Atomically reads and rewrites the record `key` of namespace `ns`: `f` sees the current
    /// value (`None` if absent or expired) and returns the new one (`None` removes it). This
    /// is the one primitive the flows need for single-use codes and refresh rotation.
    fn modify(
        &self,
        ns: &'static str,
        key: &str,
        now: u64,
        f: &mut dyn FnMut(Option<Record>) -> Option<Record>,
    );
}

/// A stored value and when it expires (unix seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub value: serde_json::Value,
    pub expires: u64,
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
    ) {
        let Ok(v) = serde_json::to_value(value) else {
            return;
        };
        let mut v = Some(v);
        self.modify(ns, key, now, &mut |_| {
            v.take().map(|value| Record { value, expires })
        });
    }

    /// The value under `key`, if any and not expired.
    fn get<T: serde::de::DeserializeOwned>(
        &self,
        ns: &'static str,
        key: &str,
        now: u64,
    ) -> Option<T> {
        let mut out = None;
        self.modify(ns, key, now, &mut |r| {
            out = r.clone();
            r
        });
        out.and_then(|r| serde_json::from_value(r.value).ok())
    }

    /// Removes and returns the value under `key` (single use).
    fn take<T: serde::de::DeserializeOwned>(
        &self,
        ns: &'static str,
        key: &str,
        now: u64,
    ) -> Option<T> {
        let mut out = None;
        self.modify(ns, key, now, &mut |r| {
            out = r;
            None
        });
        out.and_then(|r| serde_json::from_value(r.value).ok())
    }

    fn delete(&self, ns: &'static str, key: &str, now: u64) {
        self.modify(ns, key, now, &mut |_| None);
    }

    /// Reads, changes and writes back a typed value atomically; `f` returns what to answer.
    /// The expiry is kept unless `f` sets a new one.
    fn update<T, R>(
        &self,
        ns: &'static str,
        key: &str,
        now: u64,
        mut f: impl FnMut(Option<(T, u64)>) -> (Option<(T, u64)>, R),
    ) -> Option<R>
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
        });
        out
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
}

#[derive(Default)]
struct Records {
    map: HashMap<(&'static str, String), Record>,
    purged_at: usize,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Revoked> {
        // A panic while holding this lock leaves a consistent map (single inserts/removes):
        // recover the guard rather than propagate the poison.
        self.revoked.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn is_revoked(&self, jti: &str, now: u64) -> bool {
        self.lock()
            .by_jti
            .get(jti)
            .is_some_and(|exp| *exp + 60 >= now)
    }

    fn revocations(&self, now: u64) -> Vec<(String, u64)> {
        self.lock()
            .by_jti
            .iter()
            .filter(|(_, exp)| **exp + 60 >= now)
            .map(|(j, e)| (j.clone(), *e))
            .collect()
    }

    fn revoke(&self, jti: &str, exp: u64, now: u64) {
        let mut r = self.lock();
        r.by_jti.insert(jti.to_string(), exp);
        if r.by_jti.len() > (r.purged_at * 2).max(1024) {
            // Expired tokens fail verification anyway (60 s leeway): forget them.
            r.by_jti.retain(|_, exp| *exp + 60 >= now);
            r.purged_at = r.by_jti.len();
        }
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
    ) {
        // Consistent under a panic in `f` (the entry is only replaced after it returns).
        let mut r = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let k = (ns, key.to_string());
        let current = r.map.remove(&k).filter(|rec| rec.expires > now);
        if let Some(next) = f(current) {
            r.map.insert(k, next);
        }
        if r.map.len() > (r.purged_at * 2).max(4096) {
            r.map.retain(|_, rec| rec.expires > now);
            r.purged_at = r.map.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7009_revoked_until_expiry_then_forgotten() {
        let s = MemoryStore::new();
        s.revoke("a", 1000, 900);
        assert!(s.is_revoked("a", 950));
        assert!(!s.is_revoked("b", 950));
        // Past expiry plus leeway the token is dead on its own.
        assert!(!s.is_revoked("a", 1061));
        for i in 0..3000 {
            s.revoke(&format!("j{i}"), 500, 2000);
        }
        assert!(s.revoked_count() < 2000, "expired entries are purged");
    }

    #[test]
    fn records_expire_and_take_is_single_use() {
        let s = MemoryStore::new();
        s.put("code", "k", 100, &"v".to_string(), 160);
        assert_eq!(s.get::<String>("code", "k", 150).as_deref(), Some("v"));
        assert_eq!(s.get::<String>("code", "k", 160), None, "expired at 160");
        s.put("code", "k", 100, &"v".to_string(), 160);
        assert_eq!(s.take::<String>("code", "k", 120).as_deref(), Some("v"));
        assert_eq!(s.take::<String>("code", "k", 121), None);
        let n = s.update::<u32, u32>("ctr", "x", 100, |c| {
            let n = c.map(|(n, _)| n).unwrap_or(0) + 1;
            (Some((n, 200)), n)
        });
        assert_eq!(n, Some(1));
        assert_eq!(s.get::<u32>("ctr", "x", 150), Some(1));
    }
}
