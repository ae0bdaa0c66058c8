//! Who the HTTP client is: the peer address, or, when the peer is one of the operator's
//! proxies (`http.trusted_proxies`), the address that proxy says it forwarded for
//! (`X-Forwarded-For`). Every per-client limit in the gateway keys on this address; a header
//! from anyone else is ignored, so a client cannot pick the address it is counted under.
//!
//! Owns: the trusted-proxy rule. Must not touch: what the limits are.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

/// An address block: an IP address and a prefix length (`10.0.0.0/8`, `::1/128`, or a bare
/// address for one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or IP/prefix"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has a prefix length that is not 0–{max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl<'de> serde::Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack socket reports) is the
/// IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The operator's proxies, from `http.trusted_proxies`.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    /// Whether `ip` is one of the operator's proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client of a request that came from `peer`: the peer itself unless it is trusted;
    /// then the right-most `X-Forwarded-For` entry that is not a trusted proxy (entries left
    /// of it were written by the client and prove nothing). A trusted peer that forwards
    /// nothing usable is the client itself.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                // A garbled hop (`unknown`, a name): whatever lies left of it cannot be trusted
                // either, and the last trusted hop is counted as the client.
                tracing::debug!(hop, %client, "X-Forwarded-For entry is not an address");
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, perhaps in brackets, with a port or with an IPv6
/// zone (`192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`, `fe80::1%eth0`).
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(canonical(a.ip()));
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    let no_zone = bare.split_once('%').map_or(bare, |(ip, _)| ip);
    no_zone.parse::<IpAddr>().ok().map(canonical)
}

/// The client address of an HTTP request (see the module). Needs the server to be run with
/// connect info and the [`TrustedProxies`] as an extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let ip = match parts.extensions.get::<Arc<TrustedProxies>>() {
            Some(t) => t.client_of(peer, &parts.headers),
            None => canonical(peer),
        };
        Ok(Self(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn blocks_contain_their_addresses_only() {
        assert!(net("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!net("192.0.2.7").contains(ip("192.0.2.8")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(net("2001:db8::/32").contains(ip("2001:db8:1::5")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::5")));
        assert!(net("127.0.0.1").contains(ip("::ffff:127.0.0.1")));
        assert!(!net("10.0.0.0/8").contains(ip("2001:db8::1")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host",
            "10.0.0.1/x",
            "",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let t = TrustedProxies(vec![net("10.0.0.0/8")]);
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "198.51.100.1, 203.0.113.5"
                .parse()
                .unwrap_or_else(|_| panic!()),
        );
        // A stranger's header is ignored.
        assert_eq!(t.client_of(ip("192.0.2.9"), &h), ip("192.0.2.9"));
        // From the proxy: the right-most entry, not the client-written left one.
        assert_eq!(t.client_of(ip("10.1.1.1"), &h), ip("203.0.113.5"));
        // Chained proxies are skipped.
        h.insert(
            "x-forwarded-for",
            "198.51.100.1, 203.0.113.5, 10.2.2.2"
                .parse()
                .unwrap_or_else(|_| panic!()),
        );
        assert_eq!(t.client_of(ip("10.1.1.1"), &h), ip("203.0.113.5"));
        // Ports and IPv6 brackets.
        h.insert(
            "x-forwarded-for",
            "[2001:db8::7]:4711".parse().unwrap_or_else(|_| panic!()),
        );
        assert_eq!(t.client_of(ip("10.1.1.1"), &h), ip("2001:db8::7"));
        // Brackets without a port, and zones.
        h.insert(
            "x-forwarded-for",
            "[2001:db8::9]".parse().unwrap_or_else(|_| panic!()),
        );
        assert_eq!(t.client_of(ip("10.1.1.1"), &h), ip("2001:db8::9"));
        h.insert(
            "x-forwarded-for",
            "fe80::1%eth0".parse().unwrap_or_else(|_| panic!()),
        );
        assert_eq!(t.client_of(ip("10.1.1.1"), &h), ip("fe80::1"));
        // Garbage right of the last proxy: the proxy itself is the client.
        h.insert(
            "x-forwarded-for",
            "198.51.100.1, junk".parse().unwrap_or_else(|_| panic!()),
        );
        assert_eq!(t.client_of(ip("10.1.1.1"), &h), ip("10.1.1.1"));
        // No header at all.
        assert_eq!(
            t.client_of(ip("10.1.1.1"), &HeaderMap::new()),
            ip("10.1.1.1")
        );
    }
}
