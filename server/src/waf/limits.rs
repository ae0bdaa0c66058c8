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
        Some(v) if v.len() > max => Err(OAuthError::invalid_request(format!(
            "`{name}` is longer than {max} bytes"
        ))),
        _ => Ok(()),
    }
}

/// A token bucket per client address: `burst` records at once, then one every
/// `60 / per_minute` seconds. IPv6 addresses count per /64, what one subscriber gets.
pub struct PerAddress {
    per_minute: u32,
    burst: u32,
    /// The most addresses tracked; a full table forgets addresses whose bucket is full again,
    /// and if none is, new addresses are refused until one is.
    max_addresses: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Tokens × 1000, so the refill needs no floats.
    milli: u64,
    at_ms: u64,
}

impl PerAddress {
    pub fn new(per_minute: u32, burst: u32, max_addresses: usize) -> Self {
        Self {
            per_minute,
            burst: burst.max(1),
            max_addresses: max_addresses.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one from `ip`'s budget at `now_ms`; `Err(seconds)` to wait when it is spent.
    pub fn take(&self, ip: IpAddr, now_ms: u64) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let key = per_subscriber(ip);
        let full = u64::from(self.burst) * 1000;
        let refill = |b: &Bucket| {
            let gained = now_ms.saturating_sub(b.at_ms) * u64::from(self.per_minute) / 60;
            (b.milli + gained).min(full)
        };
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(&key) && map.len() >= self.max_addresses {
            map.retain(|_, b| refill(b) < full);
            if map.len() >= self.max_addresses {
                return Err(60);
            }
        }
        let b = map.entry(key).or_insert(Bucket {
            milli: full,
            at_ms: now_ms,
        });
        b.milli = refill(b);
        b.at_ms = now_ms;
        if b.milli >= 1000 {
            b.milli -= 1000;
            Ok(())
        } else {
            let per_token_ms = 60_000 / u64::from(self.per_minute);
            Err(((1000 - b.milli) * per_token_ms / 1000)
                .div_ceil(1000)
                .max(1))
        }
    }
}

/// The key an address is counted under: itself, or its /64 for IPv6.
fn per_subscriber(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
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
