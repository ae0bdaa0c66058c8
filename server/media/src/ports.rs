//! The IMS-side port pool (`media.rtp_ports`): one even RTP port and the odd RTCP port after it
//! per call (RFC 3550 §11), bound on `media.ims_address`.
//!
//! Owns: which even ports are free, and binding a pair. Must not touch: what flows on them.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;

/// A bound RTP/RTCP pair.
#[derive(Debug)]
pub struct PortPair {
    pub port: u16,
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
}

#[derive(Debug)]
pub struct PortPool {
    addr: IpAddr,
    free: VecDeque<u16>,
    total: usize,
}

impl PortPool {
    /// Every even port of the range whose odd neighbour is in the range too.
    pub fn new(addr: IpAddr, range: RangeInclusive<u16>) -> Result<PortPool, &'static str> {
        let free: VecDeque<u16> = range
            .clone()
            .filter(|p| {
                p % 2 == 0 && *p != 0 && p.checked_add(1).is_some_and(|q| range.contains(&q))
            })
            .collect();
        if free.is_empty() {
            return Err("holds no even port with its odd neighbour");
        }
        let total = free.len();
        Ok(PortPool { addr, free, total })
    }

    /// Takes the least recently used free pair that binds; ports another process holds are
    /// skipped (kept in the pool for later). None: the range is exhausted.
    pub fn take(&mut self) -> Option<PortPair> {
        for _ in 0..self.free.len() {
            let port = self.free.pop_front()?;
            match bind_pair(self.addr, port) {
                Ok((rtp, rtcp)) => return Some(PortPair { port, rtp, rtcp }),
                Err(e) => {
                    tracing::debug!(port, error = %e, "IMS-side port pair busy, skipped");
                    self.free.push_back(port);
                }
            }
        }
        None
    }

    /// Gives a pair's port back (its sockets are closed by dropping them).
    pub fn give_back(&mut self, port: u16) {
        if !self.free.contains(&port) && self.free.len() < self.total {
            self.free.push_back(port);
        }
    }

    pub fn in_use(&self) -> usize {
        self.total - self.free.len()
    }
}

fn bind_pair(addr: IpAddr, port: u16) -> std::io::Result<(UdpSocket, UdpSocket)> {
    let rtp = UdpSocket::bind(SocketAddr::new(addr, port))?;
    let rtcp = UdpSocket::bind(SocketAddr::new(addr, port + 1))?;
    rtp.set_nonblocking(true)?;
    rtcp.set_nonblocking(true)?;
    Ok((rtp, rtcp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn pool_hands_out_even_ports_with_rtcp_neighbour_rfc3550_11() {
        let mut pool = PortPool::new(LO, 41001..=41006).expect("range has pairs");
        let a = pool.take().expect("a pair");
        assert_eq!(a.port % 2, 0);
        assert_eq!(a.rtcp.local_addr().expect("bound").port(), a.port + 1);
        let b = pool.take().expect("a second pair");
        // 41001 is odd and 41006's neighbour is outside: exactly 41002 and 41004.
        assert!(pool.take().is_none(), "range exhausted");
        assert_eq!(pool.in_use(), 2);
        pool.give_back(a.port);
        drop(a);
        assert_eq!(pool.in_use(), 1);
        assert!(pool.take().is_some());
        drop(b);
    }

    #[test]
    fn range_without_pair_is_a_config_error() {
        assert!(PortPool::new(LO, 41011..=41011).is_err());
        assert!(PortPool::new(LO, 41012..=41012).is_err());
    }

    #[test]
    fn busy_port_is_skipped_not_fatal() {
        let _hold = UdpSocket::bind((Ipv4Addr::LOCALHOST, 41021)).expect("bind");
        let mut pool = PortPool::new(LO, 41020..=41023).expect("range");
        let p = pool.take().expect("41022 is free");
        assert_eq!(p.port, 41022);
        assert!(pool.take().is_none());
    }
}
