//! Who may open a WebSocket: the global cap and the per-address caps, taken in the upgrade
//! handler before the 101 goes out, so a burst cannot overshoot them and a refused client never
//! holds a place.
//!
//! Owns: the counts of open and of not yet registered WebSockets, in all and per client address
//! (an IPv4 address, an IPv6 /64: one subscriber, as the WAF counts them).
//! Must not touch: sockets (the caller answers the refusal).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Why a WebSocket was refused its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `websocket.max_connections` are open.
    Total,
    /// `websocket.max_connections_per_address` are open from this address.
    AddressOpen,
    /// `websocket.max_unregistered_per_address` from this address have not registered yet.
    AddressUnregistered,
}

impl Refusal {
    /// The `reason` label of `imsgw_ws_rejected_total`.
    pub fn metric(self) -> &'static str {
        match self {
            Self::Total => "too_many_connections",
            Self::AddressOpen => "address_connections",
            Self::AddressUnregistered => "address_unregistered",
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    open: usize,
    unregistered: usize,
}

#[derive(Debug, Default)]
struct Inner {
    total: usize,
    by_address: HashMap<IpAddr, Counts>,
}

/// The caps and the counts (see the module).
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    per_address_open: usize,
    per_address_unregistered: usize,
    inner: Mutex<Inner>,
}

impl Admission {
    /// Caps of 0 per address turn that cap off.
    pub fn new(max_total: usize, per_address_open: usize, per_address_unregistered: usize) -> Self {
        Self {
            max_total,
            per_address_open,
            per_address_unregistered,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The counts are plain integers: a panic elsewhere cannot leave them half-written.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a new, not yet registered WebSocket from `ip`, or why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Place, Refusal> {
        let key = crate::waf::limits::subscriber(ip).0;
        let mut inner = self.lock();
        if inner.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let c = inner.by_address.get(&key).copied().unwrap_or_default();
        if self.per_address_open > 0 && c.open >= self.per_address_open {
            return Err(Refusal::AddressOpen);
        }
        if self.per_address_unregistered > 0 && c.unregistered >= self.per_address_unregistered {
            return Err(Refusal::AddressUnregistered);
        }
        inner.total += 1;
        let c = inner.by_address.entry(key).or_default();
        c.open += 1;
        c.unregistered += 1;
        Ok(Place {
            admission: self.clone(),
            key,
            registered: false,
        })
    }

    /// WebSockets holding a place.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// Addresses with a place (for tests: entries go when their last place does).
    pub fn addresses(&self) -> usize {
        self.lock().by_address.len()
    }
}

/// One WebSocket's place; given back when dropped.
#[derive(Debug)]
pub struct Place {
    admission: Arc<Admission>,
    key: IpAddr,
    registered: bool,
}

impl Place {
    /// The connection registered: it no longer counts against its address's unregistered cap.
    pub fn registered(&mut self) {
        if std::mem::replace(&mut self.registered, true) {
            return;
        }
        let mut inner = self.admission.lock();
        if let Some(c) = inner.by_address.get_mut(&self.key) {
            c.unregistered = c.unregistered.saturating_sub(1);
        }
    }

    /// The connection's registration was removed: it counts against its address's
    /// unregistered cap again (past the cap if need be: it is open already).
    pub fn unregistered(&mut self) {
        if !std::mem::replace(&mut self.registered, false) {
            return;
        }
        let mut inner = self.admission.lock();
        if let Some(c) = inner.by_address.get_mut(&self.key) {
            c.unregistered += 1;
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut inner = self.admission.lock();
        inner.total = inner.total.saturating_sub(1);
        if let Some(c) = inner.by_address.get_mut(&self.key) {
            c.open = c.open.saturating_sub(1);
            if !self.registered {
                c.unregistered = c.unregistered.saturating_sub(1);
            }
            if c.open == 0 {
                inner.by_address.remove(&self.key);
            }
        }
        // A flood's entries are gone; give their table back too.
        crate::edge::shrink_sparse(&mut inner.by_address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn caps_hold_per_address_and_in_all_and_places_come_back() {
        let a = Arc::new(Admission::new(5, 3, 2));
        let mut one = a.admit(ip("192.0.2.1")).expect("first");
        let _two = a.admit(ip("192.0.2.1")).expect("second");
        // Two unregistered from one address: the third waits for one of them to register.
        assert_eq!(
            a.admit(ip("192.0.2.1")).err(),
            Some(Refusal::AddressUnregistered)
        );
        one.registered();
        one.registered(); // twice counts once
        let mut three = a
            .admit(ip("192.0.2.1"))
            .expect("third, after one registered");
        assert_eq!(a.admit(ip("192.0.2.1")).err(), Some(Refusal::AddressOpen));
        // Another address is not harmed; the global cap holds for everyone.
        let _b1 = a.admit(ip("192.0.2.2")).expect("b1");
        let b2 = a.admit(ip("192.0.2.2")).expect("b2");
        assert_eq!(a.admit(ip("192.0.2.3")).err(), Some(Refusal::Total));
        drop(b2);
        assert_eq!(a.open(), 4);
        let _c = a.admit(ip("192.0.2.3")).expect("a freed place is reused");
        drop(one);
        assert_eq!(a.open(), 4);
        // Two unregistered again (two, three) after the registered one left: still full.
        assert_eq!(
            a.admit(ip("192.0.2.1")).err(),
            Some(Refusal::AddressUnregistered)
        );
        three.registered();
        let _again = a
            .admit(ip("192.0.2.1"))
            .expect("the registered one's place came back");
    }

    #[test]
    fn an_ipv6_slash_64_is_one_address_and_entries_go_with_their_last_place() {
        let a = Arc::new(Admission::new(100, 2, 0));
        let p1 = a.admit(ip("2001:db8:1:2::1")).expect("p1");
        let p2 = a.admit(ip("2001:db8:1:2:ffff::9")).expect("p2, same /64");
        assert_eq!(
            a.admit(ip("2001:db8:1:2::77")).err(),
            Some(Refusal::AddressOpen)
        );
        let _other = a.admit(ip("2001:db8:1:3::1")).expect("another /64");
        drop(p1);
        drop(p2);
        assert_eq!(a.addresses(), 1);
        assert_eq!(a.open(), 1);
    }
}
