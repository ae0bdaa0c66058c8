//! A bounded cache of verified tokens keyed by the SHA-256 of the token text, so a re-REGISTER
//! with the same token does not pay for the signature again. Only successfully verified tokens
//! enter it. Entries leave when they can no longer be accepted (`exp` + leeway), when a key they
//! were verified with is removed, or, when the cache is full, soonest-expiring first (the entries
//! worth least). All operations are O(log n) but `retain`, which runs on key changes only.

use std::collections::{BTreeSet, HashMap};

use crate::claims::Claims;

/// Which key verified a cached token, so a key removal can drop its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifiedBy {
    /// `None` for our issuer.
    pub(crate) external_issuer: Option<String>,
    /// `None` for our HMAC key.
    pub(crate) kid: Option<String>,
}

struct Entry {
    claims: Claims,
    by: VerifiedBy,
    /// Last second at which the token is still acceptable.
    until: u64,
}

pub(crate) struct Cache {
    capacity: usize,
    map: HashMap<[u8; 32], Entry>,
    by_expiry: BTreeSet<(u64, [u8; 32])>,
    hits: u64,
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Cache {
        Cache {
            capacity,
            // Grows as needed; do not reserve the whole capacity up front.
            map: HashMap::new(),
            by_expiry: BTreeSet::new(),
            hits: 0,
        }
    }

    /// The cached claims of a token, counting a hit.
    pub(crate) fn get(&mut self, hash: &[u8; 32]) -> Option<&Claims> {
        let e = self.map.get(hash)?;
        self.hits += 1;
        Some(&e.claims)
    }

    /// Remembers a verified token that stays acceptable through second `until`.
    pub(crate) fn insert(&mut self, hash: [u8; 32], until: u64, claims: Claims, by: VerifiedBy) {
        if self.capacity == 0 || self.map.contains_key(&hash) {
            return;
        }
        while self.map.len() >= self.capacity {
            let Some(first) = self.by_expiry.pop_first() else {
                break;
            };
            self.map.remove(&first.1);
        }
        self.by_expiry.insert((until, hash));
        self.map.insert(hash, Entry { claims, by, until });
    }

    /// Drops entries no longer acceptable at `now`.
    pub(crate) fn purge(&mut self, now: u64) {
        while let Some(&(until, hash)) = self.by_expiry.first() {
            if until >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.map.remove(&hash);
        }
    }

    /// Keeps only entries whose verifying key still satisfies `keep`.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&VerifiedBy) -> bool) {
        let by_expiry = &mut self.by_expiry;
        self.map.retain(|hash, e| {
            let k = keep(&e.by);
            if !k {
                by_expiry.remove(&(e.until, *hash));
            }
            k
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn hits(&self) -> u64 {
        self.hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            iss: "i".into(),
            aud: "a".into(),
            sub: "s".into(),
            // A literal canonical IMPU: cannot fail.
            impu: imsgw_sip::Impu::parse("sip:a@b.example").expect("canonical"),
            impi: "a@b".into(),
            scope: String::new(),
            iat: 0,
            nbf: 0,
            exp,
            jti: String::new(),
            client_id: None,
            cnf_jkt: None,
        }
    }

    fn ours(kid: &str) -> VerifiedBy {
        VerifiedBy {
            external_issuer: None,
            kid: Some(kid.into()),
        }
    }

    fn h(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn full_cache_evicts_soonest_expiring_and_stays_within_capacity() {
        let mut c = Cache::new(3);
        for (n, until) in [(1, 50), (2, 10), (3, 30), (4, 40)] {
            c.insert(h(n), until, claims(until), ours("k"));
            assert!(c.len() <= 3);
        }
        assert!(c.get(&h(2)).is_none(), "until=10 was evicted first");
        assert!(c.get(&h(1)).is_some() && c.get(&h(3)).is_some() && c.get(&h(4)).is_some());
        assert_eq!(c.hits(), 3);
    }

    #[test]
    fn purge_drops_entries_past_their_last_second() {
        let mut c = Cache::new(10);
        c.insert(h(1), 100, claims(40), ours("k"));
        c.insert(h(2), 200, claims(140), ours("k"));
        c.purge(100);
        assert_eq!(c.len(), 2);
        c.purge(101);
        assert_eq!(c.len(), 1);
        assert!(c.get(&h(1)).is_none());
    }

    #[test]
    fn retain_drops_tokens_of_removed_keys() {
        let mut c = Cache::new(10);
        c.insert(h(1), 100, claims(40), ours("old"));
        c.insert(h(2), 100, claims(40), ours("new"));
        c.retain(|by| by.kid.as_deref() == Some("new"));
        assert_eq!(c.len(), 1);
        assert_eq!(c.by_expiry.len(), 1);
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut c = Cache::new(0);
        c.insert(h(1), 100, claims(40), ours("k"));
        assert_eq!(c.len(), 0);
    }
}
