//! What one client may make the WAF hold: the size of every field a client sends, and how
//! many records an address may create without authenticating (public clients' device codes).
//! Together with the store's per-kind caps (`waf.limits`) this bounds the WAF's memory and
//! disk whatever anonymous clients do, while people already signed in go on.
//!
//! Owns: field sizes and the per-address budget. Must not touch: what the records mean.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use super::error::OAuthError;

/// The longest `state` echoed back to a client (RFC 6749 §4.1.1 sets none; clients use a
/// random value of 16–64 bytes, a few carry a small signed blob).
pub const STATE: usize = 1024;
/// `client_id`.
pub const CLIENT_ID: usize = 128;
/// `redirect_uri` (it must also equal a registered one).
pub const REDIRECT_URI: usize = 2048;
/// `scope`.
pub const SCOPE: usize = 512;
/// Codes, refresh tokens, device codes: ours are 43 characters.
pub const CODE: usize = 128;
/// `code_verifier`: RFC 7636 §4.1 allows 43–128 characters.
pub const CODE_VERIFIER: usize = 128;
/// An access or refresh token at introspection and revocation.
pub const TOKEN: usize = 8192;
/// A user code as typed, separators included.
pub const USER_CODE: usize = 32;
/// A provider name.
pub const PROVIDER: usize = 64;
/// A whole WAF request URI and a form body.
pub const URI: usize = 8192;
pub const BODY: usize = 16 * 1024;

/// `invalid_request` when `value` is longer than `max` bytes.
pub fn field(name: &'static str, value: Option<&str>, max: usize) -> Result<(), OAuthError> {
    match value {
        Some(v) if v.len() > max => {
            super::error::count_refusal("oversize");
            Err(OAuthError::invalid_request(format!(
                "`{name}` is longer than {max} bytes"
            )))
        }
        _ => Ok(()),
    }
}

/// Token buckets by key: `burst` at once, then one every `60 / per_minute` seconds. A take
/// may name several keys, each with a scale (its burst and rate multiplied), and succeeds only
/// if every one of them has a token left.
pub struct Budget<K> {
    per_minute: u32,
    burst: u32,
    /// The most keys tracked; a full table forgets keys whose bucket is full again, and if
    /// none is, new keys are refused until one is.
    max_keys: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Tokens × 1000, so the refill needs no floats.
    milli: u64,
    at_ms: u64,
}

impl<K: std::hash::Hash + Eq + Clone> Budget<K> {
    pub fn new(per_minute: u32, burst: u32, max_keys: usize) -> Self {
        Self {
            per_minute,
            burst: burst.max(1),
            max_keys: max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from each of `keys` (key, scale) at `now_ms`, or none if any is spent:
    /// `Err(seconds)` to wait.
    pub fn take(&self, keys: &[(K, u32)], now_ms: u64) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let per_minute = u64::from(self.per_minute);
        let full = |scale: u32| u64::from(self.burst) * u64::from(scale.max(1)) * 1000;
        let refill = |b: &Bucket, scale: u32| {
            let gained = now_ms.saturating_sub(b.at_ms).saturating_mul(per_minute)
                * u64::from(scale.max(1))
                / 60;
            b.milli.saturating_add(gained).min(full(scale))
        };
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let new_keys = keys.iter().filter(|(k, _)| !map.contains_key(k)).count();
        if new_keys > 0 && map.len() + new_keys > self.max_keys {
            // Scale 1 is the most a forgotten bucket can have been below: one full at scale 1
            // is full at any scale only if it was never used, and either way forgetting a
            // bucket only errs towards letting a client through.
            map.retain(|_, b| refill(b, 1) < full(1));
            if map.len() + new_keys > self.max_keys {
                return Err(60);
            }
        }
        let mut wait = 0;
        for (k, scale) in keys {
            let level = map.get(k).map_or(full(*scale), |b| refill(b, *scale));
            if level < 1000 {
                let per_token_ms = 60_000 / (per_minute * u64::from((*scale).max(1)));
                wait = wait.max(((1000 - level) * per_token_ms / 1000).div_ceil(1000).max(1));
            }
        }
        if wait > 0 {
            return Err(wait);
        }
        for (k, scale) in keys {
            let level = map.get(k).map_or(full(*scale), |b| refill(b, *scale));
            map.insert(
                k.clone(),
                Bucket {
                    milli: level - 1000,
                    at_ms: now_ms,
                },
            );
        }
        Ok(())
    }
}

/// The budget of client addresses: each counts as a subscriber (an IPv4 address, an IPv6
/// /64) and as part of its network (an IPv4 /24, an IPv6 /48), whose budget is
/// [`NETWORK_SCALE`] times larger, so spreading over a subscriber's many IPv6 /64s or a few
/// neighbouring IPv4 addresses does not multiply what one party can make the WAF keep.
pub struct PerAddress(Budget<(IpAddr, u8)>);

/// How many subscribers' budgets a network's budget is.
pub const NETWORK_SCALE: u32 = 4;

impl PerAddress {
    pub fn new(per_minute: u32, burst: u32, max_addresses: usize) -> Self {
        Self(Budget::new(per_minute, burst, max_addresses))
    }

    /// Takes one from `ip`'s budget and its network's; `Err(seconds)` to wait.
    pub fn take(&self, ip: IpAddr, now_ms: u64) -> Result<(), u64> {
        let (subscriber, network) = prefixes(ip);
        self.0
            .take(&[(subscriber, 1), (network, NETWORK_SCALE)], now_ms)
    }
}

/// The subscriber an address counts as (an IPv4 address, an IPv6 /64) and its prefix length.
pub fn subscriber(ip: IpAddr) -> (IpAddr, u8) {
    prefixes(ip).0
}

/// The subscriber (IPv4 /32, IPv6 /64) and the network (IPv4 /24, IPv6 /48) of an address,
/// each with its prefix length (so a network never shares a bucket with a subscriber).
fn prefixes(ip: IpAddr) -> ((IpAddr, u8), (IpAddr, u8)) {
    match ip {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            (
                (IpAddr::V6((bits & !((1u128 << 64) - 1)).into()), 64),
                (IpAddr::V6((bits & !((1u128 << 80) - 1)).into()), 48),
            )
        }
        IpAddr::V4(v4) => (
            (IpAddr::V4(v4), 32),
            (IpAddr::V4((u32::from(v4) & 0xffff_ff00).into()), 24),
        ),
    }
}

/// Milliseconds of wall-clock time.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn a_burst_then_the_rate_per_address() {
        let l = PerAddress::new(6, 3, 100);
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(l.take(a, 0), Ok(()));
        }
        assert_eq!(l.take(a, 0), Err(10), "one every 10 s");
        // Another address has its own budget.
        assert_eq!(l.take(ip("192.0.2.2"), 0), Ok(()));
        assert_eq!(l.take(a, 10_000), Ok(()));
        assert!(l.take(a, 10_000).is_err());
        // The same /64 is one subscriber.
        let v6 = PerAddress::new(6, 1, 100);
        assert_eq!(v6.take(ip("2001:db8::1"), 0), Ok(()));
        assert!(v6.take(ip("2001:db8::2"), 0).is_err());
        assert_eq!(v6.take(ip("2001:db8:0:1::1"), 0), Ok(()));
    }

    #[test]
    fn a_full_table_forgets_idle_addresses_and_refuses_only_while_all_are_busy() {
        let l = PerAddress::new(60, 2, 2);
        assert_eq!(l.take(ip("192.0.2.1"), 0), Ok(()));
        assert_eq!(l.take(ip("192.0.2.2"), 0), Ok(()));
        assert_eq!(
            l.take(ip("192.0.2.3"), 0),
            Err(60),
            "both tracked ones are busy"
        );
        // After a second both buckets are full again and are forgotten.
        assert_eq!(l.take(ip("192.0.2.3"), 2_000), Ok(()));
    }

    #[test]
    fn oversize_fields_are_invalid_requests() {
        assert!(field("state", Some(&"x".repeat(STATE)), STATE).is_ok());
        let e = field("state", Some(&"x".repeat(STATE + 1)), STATE).err();
        assert_eq!(
            e.map(|e| e.description),
            Some("`state` is longer than 1024 bytes".into())
        );
        assert!(field("state", None, STATE).is_ok());
    }
}
