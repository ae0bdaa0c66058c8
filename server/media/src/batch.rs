//! Reading many datagrams with one system call (recvmmsg(2)).
//!
//! Owns: the receive buffers and the kernel's message headers for one kind of socket. Must not
//! touch: what the datagrams mean.
//!
//! With mio's edge-triggered readiness a socket must be read until it is empty: one datagram
//! per `recv_from` costs a last call that only says "would block". A batch that comes back
//! short of its size has emptied the socket at that moment (a datagram arriving later raises
//! a new readiness event), so no such call is needed, and a busy socket yields many datagrams
//! per call.
//!
//! One batch per address family of socket: the kernel writes back each header's address length
//! and nix reuses it for the next call, so a batch that read IPv4 sources would cut IPv6 ones.

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};

/// Datagram buffer: larger than any RTP/RTCP/DTLS datagram a path MTU of 1500 lets through.
pub(crate) const BUF: usize = 2048;

pub(crate) struct RecvBatch {
    bufs: Vec<[u8; BUF]>,
    headers: MultiHeaders<SockaddrStorage>,
    /// (length, source) of each datagram of the last read.
    got: Vec<(usize, SocketAddr)>,
}

impl RecvBatch {
    pub fn new(size: usize) -> RecvBatch {
        let size = size.max(1);
        RecvBatch {
            bufs: vec![[0u8; BUF]; size],
            headers: MultiHeaders::preallocate(size, None),
            got: Vec::with_capacity(size),
        }
    }

    pub fn size(&self) -> usize {
        self.bufs.len()
    }

    /// Reads what the socket holds, up to the batch size, without blocking; returns how many
    /// datagrams came (0 when none was waiting). A datagram from an address that is not IPv4
    /// or IPv6 is skipped.
    pub fn read(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.got.clear();
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self
            .bufs
            .iter_mut()
            .map(|b| [IoSliceMut::new(&mut b[..])])
            .collect();
        let results = match recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(r) => r,
            Err(Errno::EAGAIN) => return Ok(0),
            Err(e) => return Err(io::Error::from(e)),
        };
        let mut n = 0;
        for r in results {
            n += 1;
            let src = r.address.as_ref().and_then(to_socket_addr);
            // A datagram cut to the buffer is not one we can use (MSG_TRUNC): skip it.
            if let Some(src) = src
                && !r.flags.contains(MsgFlags::MSG_TRUNC)
            {
                self.got.push((r.bytes, src));
            } else {
                self.got.push((0, SocketAddr::from(([0, 0, 0, 0], 0))));
            }
        }
        Ok(n)
    }

    /// Datagram `i` of the last read: its bytes and source; `None` for one that was skipped.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let &(len, src) = self.got.get(i)?;
        if len == 0 {
            return None;
        }
        Some((&self.bufs[i][..len], src))
    }
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn reads_everything_waiting_in_one_call_then_reports_none() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("loopback socket");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("loopback socket");
        for i in 0..5u8 {
            tx.send_to(&[i; 10], rx.local_addr().expect("loopback socket"))
                .expect("loopback socket");
        }
        let mut b = RecvBatch::new(4);
        assert_eq!(
            b.read(&rx).expect("loopback socket"),
            4,
            "a full batch: more may wait"
        );
        for i in 0..4 {
            let (data, src) = b.get(i).expect("loopback socket");
            assert_eq!(data, &[i as u8; 10]);
            assert_eq!(src, tx.local_addr().expect("loopback socket"));
        }
        assert_eq!(
            b.read(&rx).expect("loopback socket"),
            1,
            "a short batch: the socket is empty"
        );
        assert_eq!(b.get(0).expect("loopback socket").0, &[4u8; 10]);
        assert!(b.get(1).is_none());
        assert_eq!(b.read(&rx).expect("loopback socket"), 0);
    }

    #[test]
    fn ipv6_sources_come_back_whole() {
        let Ok(rx) = UdpSocket::bind("[::1]:0") else {
            return; // no IPv6 loopback on this host
        };
        let tx = UdpSocket::bind("[::1]:0").expect("loopback socket");
        tx.send_to(b"x", rx.local_addr().expect("loopback socket"))
            .expect("loopback socket");
        tx.send_to(b"y", rx.local_addr().expect("loopback socket"))
            .expect("loopback socket");
        let mut b = RecvBatch::new(8);
        assert_eq!(b.read(&rx).expect("loopback socket"), 2);
        assert_eq!(
            b.get(1).expect("loopback socket"),
            (&b"y"[..], tx.local_addr().expect("loopback socket"))
        );
    }

    #[test]
    fn a_datagram_longer_than_the_buffer_is_skipped() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("loopback socket");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("loopback socket");
        tx.send_to(&[1u8; BUF + 100], rx.local_addr().expect("loopback socket"))
            .expect("loopback socket");
        tx.send_to(&[2u8; 20], rx.local_addr().expect("loopback socket"))
            .expect("loopback socket");
        let mut b = RecvBatch::new(8);
        assert_eq!(b.read(&rx).expect("loopback socket"), 2);
        assert!(b.get(0).is_none(), "cut datagram skipped");
        assert_eq!(b.get(1).expect("loopback socket").0, &[2u8; 20]);
    }
}
