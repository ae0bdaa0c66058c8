//! Offer/answer both ways through the gateway and RTP relayed with the right payload types
//! (TS 23.334 §5.20, RFC 3264, RFC 8842 DTLS-SRTP, RFC 8445 ICE-lite).

mod common;

use std::time::Duration;

use common::*;
use imsgw_media::{Command, Event};

#[test]
fn browser_offer_ims_answer_connects_and_relays_rtp_both_ways_with_pt_mapping() {
    let mut gw = Gw::start(config(42000..=42009));
    let mut b = Browser::new();
    let ims = Ims::new();
    // The IMS numbers opus 96 where the browser said 111 (RFC 3264 §6.1 lets it).
    let port = connect_from_browser(&mut gw, &mut b, &ims, 1, "96 opus/48000/2");
    assert_eq!(port % 2, 0, "RTP on an even port (RFC 3550 §11)");

    // Browser → IMS: decrypted, PT 111 → 96, payload intact, timestamp passed through.
    b.send_rtp(111, 4800, b"opus-frame-1");
    let pkt = ims
        .recv_rtp(&mut b, Duration::from_secs(2))
        .expect("RTP reaches the IMS");
    assert_eq!(pkt[1] & 0x7f, 96);
    assert_eq!(&pkt[4..8], &4800u32.to_be_bytes());
    assert_eq!(&pkt[12..], b"opus-frame-1");

    // IMS → browser: PT 96 → 111, encrypted by str0m, payload intact.
    ims.send_rtp(ims_to(port), 96, 7, 960, b"from-ims");
    assert!(
        pump(&mut b, Duration::from_secs(2), |b| !b.rtp.is_empty()),
        "RTP reaches the browser"
    );
    let p = &b.rtp[0];
    assert_eq!(*p.header.payload_type, 111);
    assert_eq!(&p.payload[..], b"from-ims");
    assert_eq!(p.header.timestamp, 960);

    let st = gw.media.stats();
    assert_eq!(st.sessions, 1);
    assert!(
        st.packets_to_ims >= 1 && st.packets_to_browser >= 1,
        "{st:?}"
    );
}

#[test]
fn ims_offer_becomes_webrtc_offer_and_browser_answer_becomes_ims_answer() {
    let mut gw = Gw::start(config(42010..=42019));
    let mut b = Browser::new();
    let ims = Ims::new();
    // IMS offers AMR-WB first (dropped) then PCMU and events; sendonly (the IMS holds us).
    let offer = ims.sdp(
        "97 AMR-WB/16000,0 PCMU/8000,101 telephone-event/8000",
        "sendrecv",
    );
    gw.media.send(Command::ImsOffer {
        call: 7,
        req: 1,
        sdp: offer,
    });
    let webrtc_offer = expect_sdp(next_event(&mut gw, None, Duration::from_secs(3)), 7, 1);
    assert!(webrtc_offer.contains("UDP/TLS/RTP/SAVPF"), "{webrtc_offer}");
    assert!(
        webrtc_offer.contains("a=ice-lite"),
        "gateway is ICE-lite: {webrtc_offer}"
    );
    assert!(webrtc_offer.contains("a=setup:actpass"), "{webrtc_offer}");
    assert!(!webrtc_offer.contains("AMR-WB"), "{webrtc_offer}");

    let answer = b.accept_offer(&webrtc_offer);
    gw.media.send(Command::BrowserAnswer {
        call: 7,
        req: 2,
        sdp: answer,
    });
    let ims_answer = expect_sdp(
        next_event(&mut gw, Some(&mut b), Duration::from_secs(3)),
        7,
        2,
    );
    assert!(ims_answer.contains("RTP/AVP 0 101"), "{ims_answer}");
    assert!(ims_answer.contains("a=sendrecv"), "{ims_answer}");
    for forbidden in [
        "ice-",
        "fingerprint",
        "setup:",
        "group:BUNDLE",
        "a=mid",
        "msid",
        "ssrc",
        "rtcp-fb",
        "extmap",
        "SAVPF",
    ] {
        assert!(
            !ims_answer.contains(forbidden),
            "{forbidden} in {ims_answer}"
        );
    }
    assert!(
        pump(&mut b, Duration::from_secs(5), |b| b.connected),
        "browser connects"
    );
    let port = ims_port(&ims_answer);
    ims.send_rtp(ims_to(port), 0, 1, 160, b"pcmu");
    assert!(
        pump(&mut b, Duration::from_secs(2), |b| !b.rtp.is_empty()),
        "RTP reaches the browser"
    );
    assert_eq!(*b.rtp[0].header.payload_type, 0);
    b.send_rtp(0, 320, b"up");
    let pkt = ims
        .recv_rtp(&mut b, Duration::from_secs(2))
        .expect("RTP reaches the IMS");
    assert_eq!(pkt[1] & 0x7f, 0);
    assert_eq!(&pkt[12..], b"up");
}

#[test]
fn release_frees_session_and_ports() {
    let mut gw = Gw::start(config(42020..=42029));
    let mut b = Browser::new();
    let ims = Ims::new();
    connect_from_browser(&mut gw, &mut b, &ims, 3, "0 PCMU/8000");
    assert_eq!(gw.media.stats().ports_in_use, 1);
    gw.media.send(Command::Release { call: 3 });
    let end = std::time::Instant::now() + Duration::from_secs(2);
    while gw.media.stats().sessions != 0 && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = gw.media.stats();
    assert_eq!((st.sessions, st.ports_in_use), (0, 0), "{st:?}");
    // Release of an unknown call is ignored, and no event follows a Release.
    gw.media.send(Command::Release { call: 99 });
    std::thread::sleep(Duration::from_millis(50));
    assert!(gw.events.try_recv().is_err());
}

#[test]
fn browser_silent_ends_call_consent_lost_rfc7675_5_1() {
    let mut gw = Gw::start(config(42030..=42039));
    let mut b = Browser::new();
    let ims = Ims::new();
    connect_from_browser(&mut gw, &mut b, &ims, 4, "0 PCMU/8000");
    b.alive = false;
    let t0 = std::time::Instant::now();
    let e = next_event(&mut gw, Some(&mut b), Duration::from_secs(4));
    assert_eq!(
        e,
        Event::Ended {
            call: 4,
            reason: imsgw_media::EndReason::ConsentLost
        }
    );
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "within inactivity (+ slack)"
    );
    let st = gw.media.stats();
    assert_eq!(
        (st.sessions, st.ports_in_use, st.consent_lost),
        (0, 0, 1),
        "{st:?}"
    );
}

#[test]
fn latch_follows_the_ims_peers_real_source_when_enabled() {
    let mut cfg = config(42040..=42049);
    cfg.latch = true;
    let mut gw = Gw::start(cfg);
    let mut b = Browser::new();
    let signalled = Ims::new();
    let port = connect_from_browser(&mut gw, &mut b, &signalled, 9, "0 PCMU/8000");
    // The peer is behind a NAT: its media comes from another address than its SDP names.
    let natted = Ims::new();
    natted.send_rtp(ims_to(port), 0, 1, 160, b"via-nat");
    assert!(pump(&mut b, Duration::from_secs(2), |b| !b.rtp.is_empty()));
    assert_eq!(&b.rtp[0].payload[..], b"via-nat");
    b.send_rtp(0, 160, b"back-via-nat");
    let pkt = natted
        .recv_rtp(&mut b, Duration::from_secs(2))
        .expect("latched peer gets media");
    assert_eq!(&pkt[12..], b"back-via-nat");
    // Once latched, a third source is not followed.
    let third = Ims::new();
    let before = gw.media.stats().dropped;
    third.send_rtp(ims_to(port), 0, 2, 320, b"hijack");
    let end = std::time::Instant::now() + Duration::from_secs(1);
    while gw.media.stats().dropped == before && std::time::Instant::now() < end {
        b.step();
    }
    assert!(gw.media.stats().dropped > before);
}

#[test]
fn burst_of_ims_packets_all_reach_the_browser_in_order() {
    let mut gw = Gw::start(config(42050..=42059));
    let mut b = Browser::new();
    let ims = Ims::new();
    let port = connect_from_browser(&mut gw, &mut b, &ims, 12, "0 PCMU/8000");
    let n = 300u16;
    // Sent in bursts of 30 with the browser read between them: what is checked is the relay's
    // order and completeness, not how many back-to-back datagrams the kernel's loopback buffers
    // hold on a busy machine (300 at once overflowed them under a parallel build).
    for i in 0..n {
        ims.send_rtp(
            ims_to(port),
            0,
            1000 + i,
            160 * u32::from(i),
            &i.to_be_bytes(),
        );
        if i % 30 == 29 {
            let got = usize::from(i) + 1;
            pump(&mut b, Duration::from_secs(2), |b| b.rtp.len() >= got);
        }
    }
    assert!(
        pump(&mut b, Duration::from_secs(5), |b| b.rtp.len()
            >= usize::from(n)),
        "got {} of {n}",
        b.rtp.len()
    );
    for (i, p) in b.rtp.iter().enumerate() {
        assert_eq!(
            &p.payload[..],
            &(i as u16).to_be_bytes(),
            "packet {i} in order, intact"
        );
    }
    assert_eq!(gw.media.stats().packets_to_browser, u64::from(n));
}
