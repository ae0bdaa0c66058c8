//! Unit tests of ims_leg.rs.

use super::*;
use crate::ports::PortPool;
use std::net::{IpAddr, Ipv4Addr};

fn leg(ports: std::ops::RangeInclusive<u16>, latch: bool) -> ImsLeg {
    let mut pool = PortPool::new(IpAddr::V4(Ipv4Addr::LOCALHOST), ports).expect("pool");
    ImsLeg::new(
        pool.take().expect("pair"),
        latch,
        0x1234_5678,
        Instant::now(),
    )
}

fn sa(p: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p)
}

#[test]
fn rtp_header_parses_csrc_extension_and_padding_rfc3550_5_1() {
    let mut p = vec![
        0x80 | 0x20 | 0x10 | 1,
        0x80 | 96,
        0,
        5,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        9,
    ];
    p.extend_from_slice(&[0xaa; 4]); // one CSRC
    p.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension, one word
    p.extend_from_slice(b"data");
    p.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding, the last its count
    let v = parse_rtp(&p).expect("valid RTP");
    assert_eq!(
        (v.pt, v.marker, v.seq, v.timestamp, v.ssrc),
        (96, true, 5, 256, 9)
    );
    assert_eq!(v.payload, b"data");
}

#[test]
fn malformed_rtp_is_none_never_a_panic() {
    assert!(parse_rtp(&[0x80; 11]).is_none());
    assert!(parse_rtp(&[0x40; 12]).is_none(), "version 1");
    assert!(
        parse_rtp(&[0x80, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_none(),
        "RTCP SR"
    );
    let mut p = vec![0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(parse_rtp(&p).is_none(), "15 CSRCs announced, none present");
    p[0] = 0xa0;
    p.push(200);
    assert!(parse_rtp(&p).is_none(), "padding longer than the packet");
    let base = [
        0x90u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0xff, 0xff,
    ];
    for n in 0..base.len() {
        let _ = parse_rtp(&base[..n]);
    }
}

#[test]
fn header_written_is_read_back() {
    let mut h = [0u8; 12];
    write_rtp_header(&mut h, 8, true, 65535, 0xdead_beef, 42);
    let v = parse_rtp(&h).expect("valid");
    assert_eq!(
        (v.pt, v.marker, v.seq, v.timestamp, v.ssrc),
        (8, true, 65535, 0xdead_beef, 42)
    );
}

#[test]
fn foreign_source_refused_without_latch() {
    let mut l = leg(43000..=43003, false);
    l.set_peer(sa(5000), None, false);
    assert!(l.accept_source(sa(5000), false));
    assert!(
        l.accept_source(sa(5001), true),
        "RTCP from port+1 (RFC 3550 §11)"
    );
    assert!(!l.accept_source(sa(6000), false));
    assert!(
        !l.accept_source(sa(5000), true),
        "RTP address on the RTCP port"
    );
}

#[test]
fn latch_follows_first_source_then_holds_it() {
    let mut l = leg(43004..=43007, true);
    assert!(
        !l.accept_source(sa(6000), false),
        "no peer known yet: nothing latched"
    );
    l.set_peer(sa(5000), None, false);
    assert!(l.accept_source(sa(6000), false), "NATed peer latched");
    assert!(l.accept_source(sa(6000), false));
    assert!(
        !l.accept_source(sa(7000), false),
        "a second source is not followed"
    );
    assert!(l.accept_source(sa(6001), true));
}

#[test]
fn rtcp_mux_sends_rtcp_to_the_rtp_address_rfc5761() {
    let mut l = leg(43008..=43011, false);
    l.set_peer(sa(5000), Some(sa(5999)), true);
    assert!(l.accept_source(sa(5000), true));
}

#[test]
fn sender_report_carries_counts_and_a_report_block_rfc3550_6_4_1() {
    let mut l = leg(43012..=43015, false);
    let peer = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    l.set_peer(peer.local_addr().expect("addr"), None, true);
    let now = Instant::now();
    let mut pkt = [0u8; 12 + 160];
    let mut h = [0u8; 12];
    write_rtp_header(&mut h, 0, false, 1, 160, l.ssrc);
    pkt[..12].copy_from_slice(&h);
    assert!(l.send_rtp(&pkt, 160, now));
    // Received: seq 10, 11, 13 (12 lost).
    for seq in [10u16, 11, 13] {
        let mut r = [0u8; 12];
        write_rtp_header(&mut r, 0, false, seq, u32::from(seq) * 160, 0xabcd);
        let v = parse_rtp(&r).expect("rtp");
        l.on_rtp(&v, now, now);
    }
    let mut out = [0u8; 128];
    let n = l.build_report(now, SystemTime::now(), &mut out);
    assert_eq!(out[1], 200, "SR: we sent");
    assert_eq!(out[0] & 0x1f, 1, "one report block");
    assert_eq!(
        u32::from_be_bytes(out[20..24].try_into().expect("4")),
        1,
        "packet count"
    );
    assert_eq!(
        u32::from_be_bytes(out[24..28].try_into().expect("4")),
        160,
        "octet count"
    );
    assert_eq!(
        u32::from_be_bytes(out[28..32].try_into().expect("4")),
        0xabcd,
        "source"
    );
    assert_eq!(&out[33..36], &[0, 0, 1], "one packet lost");
    assert_eq!(
        u32::from_be_bytes(out[36..40].try_into().expect("4")),
        13,
        "highest seq"
    );
    assert_eq!(out[53], 202, "SDES follows (compound, RFC 3550 §6.1)");
    assert_eq!(n % 4, 0);
    // A leg that only receives sends RR.
    let mut quiet = leg(43016..=43019, false);
    quiet.set_peer(sa(5000), None, false);
    let n = quiet.build_report(now, SystemTime::now(), &mut out);
    assert_eq!(out[1], 201);
    assert_eq!(out[0] & 0x1f, 0);
    assert_eq!(n, 8 + 16);
}

#[test]
fn report_goes_out_on_the_rtcp_port_every_interval() {
    let mut l = leg(43020..=43023, false);
    let peer = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    peer.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let rtp_addr = sa(9);
    l.set_peer(rtp_addr, Some(peer.local_addr().expect("addr")), false);
    let now = Instant::now();
    assert!(l.next_report() > now);
    l.report(now);
    let mut buf = [0u8; 256];
    let (n, from) = peer.recv_from(&mut buf).expect("RTCP arrives");
    assert_eq!(from.port(), l.port + 1, "RTCP from port+1");
    assert_eq!(buf[1], 201);
    assert!(n >= 8);
    assert!(l.next_report() >= now + RTCP_INTERVAL);
}

#[test]
fn incoming_sender_report_sets_lsr_for_our_report_blocks_rfc3550_6_4_1() {
    let mut l = leg(43024..=43027, false);
    let mut sr = [0u8; 28];
    sr[0] = 0x80;
    sr[1] = 200;
    sr[3] = 6;
    sr[10..14].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    let now = Instant::now();
    l.on_rtcp(&sr, now);
    let mut r = [0u8; 12];
    write_rtp_header(&mut r, 0, false, 1, 1, 7);
    l.on_rtp(&parse_rtp(&r).expect("rtp"), now, now);
    let mut out = [0u8; 128];
    l.build_report(now, SystemTime::now(), &mut out);
    assert_eq!(
        u32::from_be_bytes(out[24..28].try_into().expect("4")),
        0x0102_0304
    );
    // Garbage never panics.
    l.on_rtcp(&[0x80, 200, 0xff, 0xff], now);
    l.on_rtcp(&[], now);
}
