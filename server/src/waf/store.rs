//! WAF state behind one interface (issue: revocations now; codes, device codes, refresh-token
//! families and sign-in sessions as the sign-in flows arrive). In memory by default: **lost on
//! restart** — a revoked token is then accepted again until it expires (minutes), which the
//! operator docs say. A shared store (Redis) implements the same trait for several instances.
//!
//! Owns: what has been revoked. Must not touch: HTTP, SIP.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::edge::Revocations;

/// The WAF's shared state.
pub trait Store: Revocations {
    /// Marks the token with `jti` revoked until `exp` (after which it is invalid anyway).
    fn revoke(&self, jti: &str, exp: u64, now: u64);
    /// How many revocations are held.
    fn revoked_count(&self) -> usize;
}

/// The in-memory store.
#[derive(Default)]
pub struct MemoryStore {
    revoked: Mutex<Revoked>,
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

impl Revocations for MemoryStore {
    fn is_revoked(&self, jti: &str, now: u64) -> bool {
        self.lock()
            .by_jti
            .get(jti)
            .is_some_and(|exp| *exp + 60 >= now)
    }
}

impl Store for MemoryStore {
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
}
