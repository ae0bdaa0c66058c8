//! Which sources may talk to imsgw's IMS-side sockets (`sip.listen`, `sip.tls_listen`): the
//! P-CSCF named by `sip.upstream` and the entries of `sip.trusted_peers`, nobody else.
//!
//! Flow tokens are not secret from other users (they appear in Path and Record-Route), so the
//! HMAC alone does not stop a stranger who can reach `sip.listen` from aiming a request (or a
//! forged response) at someone's WebSocket. RFC 5626 §5.3 assumes the edge proxy only takes
//! requests for a flow from the next hop it registered through; in TS 24.229 terms the P-CSCF
//! is this edge's only IMS-side neighbour.
//!
//! Owns: parsing trusted-peer entries and the yes/no decision for a source address.
//! Must not touch: sockets, logging, metrics (the transport drivers do those).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// One `sip.trusted_peers` entry, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum TrustedPeer {
    /// `IP`: any port on that address.
    Ip(IpAddr),
    /// `IP:PORT` (`[IPv6]:PORT`): only that source port. Over TCP/TLS a peer's source port is
    /// usually ephemeral, so this form fits UDP peers that send from their listening port.
    Socket(SocketAddr),
    /// `IP/len`: a CIDR network, any port. Host bits must be zero.
    Net { base: IpAddr, len: u8 },
}

/// Why a `sip.trusted_peers` entry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerParseError {
    #[error("`{0}` is not an IP address, IP:PORT or IP/prefix-length")]
    Syntax(String),
    #[error("`{entry}`: prefix length {len} is longer than the address ({max} bits)")]
    PrefixTooLong { entry: String, len: u8, max: u8 },
    #[error("`{entry}`: host bits are set; did you mean `{suggest}`?")]
    HostBits { entry: String, suggest: String },
}

impl FromStr for TrustedPeer {
    type Err = PeerParseError;

    fn from_str(s: &str) -> Result<Self, PeerParseError> {
        let t = s.trim();
        if let Some((ip, len)) = t.split_once('/') {
            let syntax = || PeerParseError::Syntax(s.to_string());
            let ip: IpAddr = ip.parse().map_err(|_| syntax())?;
            let len: u8 = len.parse().map_err(|_| syntax())?;
            let max = bits(ip);
            if len > max {
                return Err(PeerParseError::PrefixTooLong {
                    entry: s.to_string(),
                    len,
                    max,
                });
            }
            let base = mask(ip, len);
            if base != ip {
                return Err(PeerParseError::HostBits {
                    entry: s.to_string(),
                    suggest: format!("{base}/{len}"),
                });
            }
            return Ok(Self::Net { base, len });
        }
        if let Ok(ip) = t.parse::<IpAddr>() {
            return Ok(Self::Ip(ip.to_canonical()));
        }
        if let Ok(sa) = t.parse::<SocketAddr>() {
            return Ok(Self::Socket(SocketAddr::new(
                sa.ip().to_canonical(),
                sa.port(),
            )));
        }
        Err(PeerParseError::Syntax(s.to_string()))
    }
}

impl TryFrom<String> for TrustedPeer {
    type Error = PeerParseError;

    fn try_from(s: String) -> Result<Self, PeerParseError> {
        s.parse()
    }
}

impl fmt::Display for TrustedPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Socket(sa) => write!(f, "{sa}"),
            Self::Net { base, len } => write!(f, "{base}/{len}"),
        }
    }
}

impl TrustedPeer {
    fn matches(&self, ip: IpAddr, port: u16) -> bool {
        match *self {
            Self::Ip(want) => want == ip,
            Self::Socket(want) => want.ip() == ip && want.port() == port,
            // Different families never match: a v4 network does not cover v6 sources.
            Self::Net { base, len } => bits(base) == bits(ip) && mask(ip, len) == base,
        }
    }
}

/// The decision "may this source talk to the IMS-side sockets?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFilter {
    /// The upstream P-CSCF's IP: trusted on any port, because its TCP/TLS connections to us come
    /// from ephemeral ports and a UDP P-CSCF may send from another socket than the one it
    /// listens on.
    upstream: IpAddr,
    extra: Vec<TrustedPeer>,
}

impl PeerFilter {
    /// Trusts `upstream`'s IP (any port) and every entry of `extra`.
    pub fn new(upstream: IpAddr, extra: Vec<TrustedPeer>) -> Self {
        Self {
            upstream: upstream.to_canonical(),
            extra,
        }
    }

    /// True when a datagram or connection from `addr` may be read. IPv4-mapped IPv6 sources
    /// (a dual-stack `[::]` listener) are compared as the IPv4 address they carry.
    pub fn allows(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        ip == self.upstream || self.extra.iter().any(|p| p.matches(ip, addr.port()))
    }
}

fn bits(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `ip` with all but the first `len` bits cleared (`len` at most the address length).
fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & m).into())
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & m).into())
        }
    }
}

/// Lets one warning through per `every`, counting the ones held back, so a flood of refused
/// sources cannot flood the log. Time is passed in; the caller owns the limiter.
#[derive(Debug)]
pub struct WarnLimiter {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl WarnLimiter {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            held: 0,
        }
    }

    /// `Some(held back since the last warning)` when a warning may be written at `now`;
    /// `None` when this one should go to debug instead.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn filter(extra: &[&str]) -> PeerFilter {
        let extra = extra
            .iter()
            .map(|e| e.parse().expect("test entry"))
            .collect();
        PeerFilter::new("192.0.2.10".parse().expect("test ip"), extra)
    }

    #[test]
    fn upstream_ip_is_trusted_on_any_port_rfc5626_5_3() {
        let f = filter(&[]);
        assert!(f.allows(sa("192.0.2.10:5060")));
        assert!(
            f.allows(sa("192.0.2.10:40123")),
            "TCP from an ephemeral port"
        );
        assert!(!f.allows(sa("192.0.2.11:5060")));
        assert!(!f.allows(sa("[2001:db8::1]:5060")));
    }

    #[test]
    fn v4_mapped_source_matches_the_v4_upstream() {
        let f = filter(&["198.51.100.0/24"]);
        assert!(f.allows(sa("[::ffff:192.0.2.10]:5060")));
        assert!(f.allows(sa("[::ffff:198.51.100.7]:5060")));
        assert!(!f.allows(sa("[::ffff:203.0.113.7]:5060")));
    }

    #[test]
    fn ip_entry_trusts_every_port() {
        let f = filter(&["203.0.113.5"]);
        assert!(f.allows(sa("203.0.113.5:1")));
        assert!(f.allows(sa("203.0.113.5:5060")));
        assert!(!f.allows(sa("203.0.113.6:5060")));
    }

    #[test]
    fn ip_port_entry_trusts_only_that_port() {
        let f = filter(&["203.0.113.5:5070", "[2001:db8::5]:5060"]);
        assert!(f.allows(sa("203.0.113.5:5070")));
        assert!(!f.allows(sa("203.0.113.5:5071")));
        assert!(f.allows(sa("[2001:db8::5]:5060")));
        assert!(!f.allows(sa("[2001:db8::5]:5061")));
    }

    #[test]
    fn cidr_entry_trusts_its_network_and_nothing_beside_it() {
        let f = filter(&["10.1.0.0/16", "2001:db8:aa::/48"]);
        assert!(f.allows(sa("10.1.0.1:5060")));
        assert!(f.allows(sa("10.1.255.254:9")));
        assert!(!f.allows(sa("10.2.0.1:5060")));
        assert!(f.allows(sa("[2001:db8:aa:1::9]:5060")));
        assert!(!f.allows(sa("[2001:db8:ab::9]:5060")));
        let all = filter(&["0.0.0.0/0"]);
        assert!(all.allows(sa("8.8.8.8:53")));
        assert!(
            !all.allows(sa("[2001:db8::1]:53")),
            "a v4 network does not cover v6"
        );
        let one = filter(&["10.0.0.7/32"]);
        assert!(one.allows(sa("10.0.0.7:1")) && !one.allows(sa("10.0.0.8:1")));
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        assert!(matches!(
            "pcscf.example".parse::<TrustedPeer>(),
            Err(PeerParseError::Syntax(_))
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<TrustedPeer>(),
            Err(PeerParseError::PrefixTooLong { max: 32, .. })
        ));
        assert!(matches!(
            "10.0.0.0/x".parse::<TrustedPeer>(),
            Err(PeerParseError::Syntax(_))
        ));
        assert!(matches!(
            "1.2.3.4:99999".parse::<TrustedPeer>(),
            Err(PeerParseError::Syntax(_))
        ));
        let e = "10.1.2.3/8".parse::<TrustedPeer>().expect_err("host bits");
        assert!(e.to_string().contains("10.0.0.0/8"), "{e}");
    }

    #[test]
    fn entries_print_as_written() {
        for s in [
            "10.0.0.0/8",
            "192.0.2.1",
            "192.0.2.1:5060",
            "[2001:db8::1]:5060",
        ] {
            let p: TrustedPeer = s.parse().expect("valid");
            assert_eq!(p.to_string(), s);
        }
    }

    #[test]
    fn warn_limiter_lets_one_through_per_period_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut w = WarnLimiter::new(Duration::from_secs(10));
        assert_eq!(w.admit(t0), Some(0));
        assert_eq!(w.admit(t0 + Duration::from_secs(1)), None);
        assert_eq!(w.admit(t0 + Duration::from_secs(9)), None);
        assert_eq!(w.admit(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(w.admit(t0 + Duration::from_secs(11)), None);
    }
}
