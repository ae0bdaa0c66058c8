//! Hold/resume, retransmitted answers, hostile or stray packets, limits, several calls on the
//! one WebRTC socket.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;
use imsgw_media::{Command, EndReason, Event};
use str0m::media::Direction;

fn line<'a>(sdp: &'a str, prefix: &str) -> Option<&'a str> {
    sdp.lines()
        .find(|l| l.starts_with(prefix))
        .map(str::trim_end)
}

fn wait_stats(gw: &Gw, pred: impl Fn(&imsgw_media::MediaStats) -> bool) -> imsgw_media::MediaStats {
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        let st = gw.media.stats();
        if pred(&st) || Instant::now() > end {
            return st;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn browser_hold_and_resume_keep_ice_dtls_and_port_and_stop_held_direction_rfc3264_8_4() {
    let mut gw = Gw::start(config(42100..=42109));
    let mut b = Browser::new();
    let ims = Ims::new();
    let port = connect_from_browser(&mut gw, &mut b, &ims, 1, "0 PCMU/8000");

    // Hold: the browser re-offers sendonly.
    let (reoffer, pending) = b.reoffer(Direction::SendOnly);
    gw.media.send(Command::BrowserOffer {
        call: 1,
        req: 3,
        sdp: reoffer,
    });
    let ims_offer = expect_sdp(
        next_event(&mut gw, Some(&mut b), Duration::from_secs(2)),
        1,
        3,
    );
    assert_eq!(ims_port(&ims_offer), port, "same IMS port on a re-offer");
    assert!(ims_offer.contains("a=sendonly"), "{ims_offer}");
    assert!(
        ims_offer.contains(" 2 IN IP4"),
        "o= version incremented: {ims_offer}"
    );
    gw.media.send(Command::ImsAnswer {
        call: 1,
        req: 4,
        sdp: ims.sdp("0 PCMU/8000", "recvonly"),
    });
    let answer = expect_sdp(
        next_event(&mut gw, Some(&mut b), Duration::from_secs(2)),
        1,
        4,
    );
    assert!(
        answer.contains("a=recvonly"),
        "IMS recvonly → browser answer recvonly: {answer}"
    );
    b.accept_answer(pending, &answer);

    // Held toward the browser: IMS media is not forwarded; browser → IMS still flows.
    b.rtp.clear();
    ims.send_rtp(ims_to(port), 0, 100, 16000, b"held");
    pump(&mut b, Duration::from_millis(300), |_| false);
    assert!(b.rtp.is_empty(), "nothing forwarded in the held direction");
    b.send_rtp(0, 8000, b"still-up");
    let pkt = ims
        .recv_rtp(&mut b, Duration::from_secs(2))
        .expect("browser → IMS flows on hold");
    assert_eq!(&pkt[12..], b"still-up");

    // Resume.
    let (reoffer, pending) = b.reoffer(Direction::SendRecv);
    gw.media.send(Command::BrowserOffer {
        call: 1,
        req: 5,
        sdp: reoffer,
    });
    let ims_offer = expect_sdp(
        next_event(&mut gw, Some(&mut b), Duration::from_secs(2)),
        1,
        5,
    );
    assert!(ims_offer.contains("a=sendrecv"), "{ims_offer}");
    assert_eq!(ims_port(&ims_offer), port);
    gw.media.send(Command::ImsAnswer {
        call: 1,
        req: 6,
        sdp: ims.sdp("0 PCMU/8000", "sendrecv"),
    });
    let answer2 = expect_sdp(
        next_event(&mut gw, Some(&mut b), Duration::from_secs(2)),
        1,
        6,
    );
    for attr in ["a=ice-ufrag", "a=ice-pwd", "a=fingerprint", "a=setup"] {
        assert_eq!(
            line(&answer, attr),
            line(&answer2, attr),
            "{attr} kept: no ICE/DTLS restart"
        );
    }
    b.accept_answer(pending, &answer2);
    ims.send_rtp(ims_to(port), 0, 101, 16160, b"resumed");
    assert!(
        pump(&mut b, Duration::from_secs(2), |b| !b.rtp.is_empty()),
        "media flows after resume"
    );
    assert_eq!(&b.rtp[0].payload[..], b"resumed");
    assert!(b.failed.is_none());
}

#[test]
fn retransmitted_ims_answer_gets_same_answer_and_another_answer_moves_the_peer() {
    let mut gw = Gw::start(config(42110..=42119));
    let mut b = Browser::new();
    let ims = Ims::new();
    let (offer, pending) = b.offer(Direction::SendRecv);
    gw.media.send(Command::BrowserOffer {
        call: 2,
        req: 1,
        sdp: offer,
    });
    expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), 2, 1);
    let sdp183 = ims.sdp("0 PCMU/8000", "sendrecv");
    gw.media.send(Command::ImsAnswer {
        call: 2,
        req: 2,
        sdp: sdp183.clone(),
    });
    let a1 = expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), 2, 2);
    gw.media.send(Command::ImsAnswer {
        call: 2,
        req: 3,
        sdp: sdp183,
    });
    let a2 = expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), 2, 3);
    assert_eq!(a1, a2, "183 then 200 with the same body: the same answer");

    // A 200 from another early dialog: another peer, PCMU still.
    let other = Ims::new();
    gw.media.send(Command::ImsAnswer {
        call: 2,
        req: 4,
        sdp: other.sdp("0 PCMU/8000", "sendrecv"),
    });
    let a3 = expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), 2, 4);
    assert_eq!(line(&a1, "a=ice-ufrag"), line(&a3, "a=ice-ufrag"));
    b.accept_answer(pending, &a3);
    assert!(pump(&mut b, Duration::from_secs(5), |b| b.connected));
    b.send_rtp(0, 160, b"to-new-peer");
    let pkt = other
        .recv_rtp(&mut b, Duration::from_secs(2))
        .expect("RTP goes to the new peer");
    assert_eq!(&pkt[12..], b"to-new-peer");
}

#[test]
fn rtp_from_foreign_source_is_dropped_and_counted_without_latch() {
    let mut gw = Gw::start(config(42120..=42129));
    let mut b = Browser::new();
    let ims = Ims::new();
    let port = connect_from_browser(&mut gw, &mut b, &ims, 3, "0 PCMU/8000");
    let before = gw.media.stats().dropped;
    let intruder = Ims::new();
    intruder.send_rtp(ims_to(port), 0, 1, 160, b"hijack");
    pump(&mut b, Duration::from_millis(300), |_| false);
    assert!(
        b.rtp.is_empty(),
        "nothing from the intruder reaches the browser"
    );
    assert!(wait_stats(&gw, |s| s.dropped > before).dropped > before);
    // The call is undisturbed.
    ims.send_rtp(ims_to(port), 0, 2, 320, b"legit");
    assert!(pump(&mut b, Duration::from_secs(2), |b| !b.rtp.is_empty()));
    assert_eq!(&b.rtp[0].payload[..], b"legit");
}

#[test]
fn stun_with_unknown_ufrag_and_stray_packets_are_dropped_rfc8445_7_3() {
    let gw = Gw::start(config(42130..=42139));
    let stray = UdpSocket::bind((LO, 0)).expect("bind");
    let mut m = vec![0x00, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xA4, 0x42];
    m.extend_from_slice(&[9; 12]);
    m.extend_from_slice(&[0x00, 0x06, 0x00, 0x08]);
    m.extend_from_slice(b"nope:abc");
    stray.send_to(&m, gw.media.local_addr()).expect("send");
    stray
        .send_to(
            &[0x80, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4],
            gw.media.local_addr(),
        )
        .expect("send");
    stray
        .send_to(&[22, 254, 253], gw.media.local_addr())
        .expect("send");
    let st = wait_stats(&gw, |s| s.dropped >= 3);
    assert_eq!(st.dropped, 3, "{st:?}");
    assert_eq!(st.sessions, 0);
}

#[test]
fn two_calls_share_the_webrtc_socket_without_crosstalk() {
    let mut gw = Gw::start(config(42140..=42149));
    let (mut b1, mut b2) = (Browser::new(), Browser::new());
    let (i1, i2) = (Ims::new(), Ims::new());
    let p1 = connect_from_browser(&mut gw, &mut b1, &i1, 11, "0 PCMU/8000");
    let p2 = connect_from_browser(&mut gw, &mut b2, &i2, 12, "0 PCMU/8000");
    assert_ne!(p1, p2);
    i1.send_rtp(ims_to(p1), 0, 1, 160, b"for-one");
    i2.send_rtp(ims_to(p2), 0, 1, 160, b"for-two");
    let end = Instant::now() + Duration::from_secs(2);
    while (b1.rtp.is_empty() || b2.rtp.is_empty()) && Instant::now() < end {
        b1.step();
        b2.step();
    }
    assert_eq!(
        b1.rtp.iter().map(|p| &p.payload[..]).collect::<Vec<_>>(),
        vec![&b"for-one"[..]]
    );
    assert_eq!(
        b2.rtp.iter().map(|p| &p.payload[..]).collect::<Vec<_>>(),
        vec![&b"for-two"[..]]
    );
    b2.send_rtp(0, 160, b"up-two");
    let pkt = i2
        .recv_rtp(&mut b2, Duration::from_secs(2))
        .expect("call 2 up");
    assert_eq!(&pkt[12..], b"up-two");
    b1.step();
    assert!(
        i1.recv_rtp(&mut b1, Duration::from_millis(200)).is_none(),
        "nothing of call 2 at call 1's peer"
    );
}

#[test]
fn exhausted_port_range_refuses_new_offer_503() {
    // One even port with its neighbour: one call at most.
    let mut gw = Gw::start(config(42150..=42151));
    let mut b = Browser::new();
    let (offer, _p) = b.offer(Direction::SendRecv);
    gw.media.send(Command::BrowserOffer {
        call: 1,
        req: 1,
        sdp: offer.clone(),
    });
    expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), 1, 1);
    gw.media.send(Command::BrowserOffer {
        call: 2,
        req: 1,
        sdp: offer,
    });
    match next_event(&mut gw, None, Duration::from_secs(2)) {
        Event::Refused {
            call: 2,
            req: 1,
            status: 503,
            warning,
        } => {
            assert_eq!(warning, "no media port free")
        }
        other => panic!("expected 503, got {other:?}"),
    }
    let st = gw.media.stats();
    assert_eq!(
        (st.sessions, st.ports_in_use, st.refused_offers),
        (1, 1, 1),
        "{st:?}"
    );
    // Released, the port is offered again.
    gw.media.send(Command::Release { call: 1 });
    let mut b3 = Browser::new();
    let (offer, _p) = b3.offer(Direction::SendRecv);
    gw.media.send(Command::BrowserOffer {
        call: 3,
        req: 1,
        sdp: offer,
    });
    let sdp = expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), 3, 1);
    assert_eq!(ims_port(&sdp), 42150);
}

#[test]
fn past_max_sessions_a_new_offer_is_refused_503() {
    let mut cfg = config(42160..=42169);
    cfg.max_sessions = 1;
    let mut gw = Gw::start(cfg);
    let ims = Ims::new();
    let offer = ims.sdp("0 PCMU/8000", "sendrecv");
    gw.media.send(Command::ImsOffer {
        call: 1,
        req: 1,
        sdp: offer.clone(),
    });
    expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), 1, 1);
    gw.media.send(Command::ImsOffer {
        call: 2,
        req: 1,
        sdp: offer,
    });
    assert!(matches!(
        next_event(&mut gw, None, Duration::from_secs(2)),
        Event::Refused {
            call: 2,
            status: 503,
            ..
        }
    ));
}

#[test]
fn amr_wb_only_ims_offer_is_refused_488_naming_codecs() {
    let mut gw = Gw::start(config(42170..=42179));
    let ims = Ims::new();
    let offer = ims.sdp("97 AMR-WB/16000,98 telephone-event/16000", "sendrecv");
    gw.media.send(Command::ImsOffer {
        call: 5,
        req: 9,
        sdp: offer,
    });
    match next_event(&mut gw, None, Duration::from_secs(2)) {
        Event::Refused {
            call: 5,
            req: 9,
            status: 488,
            warning,
        } => {
            assert!(warning.contains("AMR-WB/16000"), "{warning}");
            assert!(warning.contains("offered; imsgw carries PCMA"), "{warning}");
        }
        other => panic!("expected 488, got {other:?}"),
    }
    let st = gw.media.stats();
    assert_eq!(
        (st.sessions, st.ports_in_use),
        (0, 0),
        "a refused offer holds no port"
    );
}

#[test]
fn forged_fingerprint_ends_call_dtls_failed_rfc8842_5() {
    let mut gw = Gw::start(config(42180..=42189));
    let mut b = Browser::new();
    let ims = Ims::new();
    let (offer, pending) = b.offer(Direction::SendRecv);
    // Another certificate's fingerprint: the DTLS handshake must fail, not connect.
    let forged: String = offer
        .lines()
        .map(|l| {
            if let Some(rest) = l.strip_prefix("a=fingerprint:sha-256 ") {
                let flipped: String = rest
                    .chars()
                    .map(|c| match c {
                        '0' => '1',
                        '1' => '0',
                        'A' => 'B',
                        'B' => 'A',
                        c => c,
                    })
                    .collect();
                format!("a=fingerprint:sha-256 {flipped}\r\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    gw.media.send(Command::BrowserOffer {
        call: 6,
        req: 1,
        sdp: forged,
    });
    expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), 6, 1);
    gw.media.send(Command::ImsAnswer {
        call: 6,
        req: 2,
        sdp: ims.sdp("0 PCMU/8000", "sendrecv"),
    });
    let answer = expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), 6, 2);
    b.accept_answer(pending, &answer);
    let e = next_event(&mut gw, Some(&mut b), Duration::from_secs(5));
    assert_eq!(
        e,
        Event::Ended {
            call: 6,
            reason: EndReason::DtlsFailed
        }
    );
    assert_eq!(gw.media.stats().sessions, 0);
}

#[test]
fn forged_stun_with_right_ufrag_does_not_keep_consent_rfc7675_5_1() {
    let mut gw = Gw::start(config(42190..=42199));
    let mut b = Browser::new();
    let ims = Ims::new();
    let (offer, pending) = b.offer(Direction::SendRecv);
    gw.media.send(Command::BrowserOffer {
        call: 8,
        req: 1,
        sdp: offer,
    });
    expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), 8, 1);
    gw.media.send(Command::ImsAnswer {
        call: 8,
        req: 2,
        sdp: ims.sdp("0 PCMU/8000", "sendrecv"),
    });
    let answer = expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), 8, 2);
    let ufrag = line(&answer, "a=ice-ufrag:").expect("ufrag")["a=ice-ufrag:".len()..].to_string();
    b.accept_answer(pending, &answer);
    assert!(pump(&mut b, Duration::from_secs(5), |b| b.connected));
    b.alive = false;

    // Someone who learnt the ufrag but not the password keeps sending checks.
    let user = format!("{ufrag}:evil");
    let mut attrs = vec![0x00, 0x06];
    attrs.extend_from_slice(&(user.len() as u16).to_be_bytes());
    attrs.extend_from_slice(user.as_bytes());
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    attrs.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
    attrs.extend_from_slice(&[0x5a; 20]);
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    m.extend_from_slice(&[3; 12]);
    m.extend_from_slice(&attrs);
    let forger = UdpSocket::bind((LO, 0)).expect("bind");
    let before = gw.media.stats().dropped;
    let end = Instant::now() + Duration::from_secs(4);
    let ended = loop {
        forger.send_to(&m, gw.media.local_addr()).expect("send");
        if let Ok(e) = gw.events.try_recv() {
            break Some(e);
        }
        if Instant::now() > end {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        ended,
        Some(Event::Ended {
            call: 8,
            reason: EndReason::ConsentLost
        })
    );
    assert!(
        gw.media.stats().dropped > before,
        "forged checks are counted"
    );
}

#[test]
fn browser_closing_dtls_is_a_hangup_not_a_dtls_failure_rfc8842() {
    let mut gw = Gw::start(config(42250..=42259));
    let mut b = Browser::new();
    let ims = Ims::new();
    connect_from_browser(&mut gw, &mut b, &ims, 9, "0 PCMU/8000");
    b.rtc.close().expect("close");
    pump(&mut b, Duration::from_millis(300), |_| false);
    b.alive = false;
    let end = Instant::now() + Duration::from_millis(700);
    while Instant::now() < end {
        assert!(
            gw.events.try_recv().is_err(),
            "no Ended{{DtlsFailed}} for a hang-up; the edge's Release comes with the BYE"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    gw.media.send(Command::Release { call: 9 });
    let st = wait_stats(&gw, |s| s.sessions == 0);
    assert_eq!((st.sessions, st.ports_in_use), (0, 0));
}

#[test]
fn ims_sequence_jump_after_long_hold_still_reaches_browser_no_srtp_replay_rfc3711_3_3_2() {
    let mut gw = Gw::start(config(42260..=42269));
    let mut b = Browser::new();
    let ims = Ims::new();
    let port = connect_from_browser(&mut gw, &mut b, &ims, 10, "0 PCMU/8000");
    ims.send_rtp(ims_to(port), 0, 10, 1600, b"before-hold");
    assert!(pump(&mut b, Duration::from_secs(2), |b| b.rtp.len() == 1));
    // The peer kept counting through a long hold: 40000 numbers later (looks "behind"
    // in 16 bits), and then a new SSRC as well.
    ims.send_rtp(ims_to(port), 0, 40010, 6_401_600, b"after-hold");
    assert!(
        pump(&mut b, Duration::from_secs(2), |b| b.rtp.len() == 2),
        "the browser's SRTP replay check accepts the resumed stream"
    );
    assert_eq!(&b.rtp[1].payload[..], b"after-hold");
    assert!(*b.rtp[1].seq_no > *b.rtp[0].seq_no);
}

/// A client that can forge its UDP source sends valid consent checks for its own session from
/// another browser's address: that address stays with its session while the other browser's
/// consent is fresh (RFC 7675 §5.1), so the other call's media is not taken over.
#[test]
fn stun_for_another_session_from_a_live_browsers_address_does_not_take_it_over() {
    // Consent lasts longer than the set-up of the second call (the victim is not stepped
    // meanwhile).
    let mut cfg = config(42290..=42299);
    cfg.inactivity = Duration::from_secs(10);
    let mut gw = Gw::start(cfg);
    let (mut victim, mut attacker) = (Browser::new(), Browser::new());
    let (i1, i2) = (Ims::new(), Ims::new());
    let _p1 = connect_from_browser(&mut gw, &mut victim, &i1, 21, "0 PCMU/8000");
    let _p2 = connect_from_browser(&mut gw, &mut attacker, &i2, 22, "0 PCMU/8000");
    // From now on the attacker's datagrams (its consent checks among them) leave from the
    // victim's address.
    attacker.send_from = Some(victim.sock.try_clone().expect("clone"));
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        attacker.step();
        victim.step();
    }
    victim.send_rtp(0, 160, b"victim-audio");
    let got = i1
        .recv_rtp(&mut victim, Duration::from_secs(2))
        .expect("the victim's audio still reaches its own IMS peer");
    assert_eq!(&got[12..], b"victim-audio");
}
