//! IMS-side re-offers (hold from the IMS), video m-lines from the browser, one certificate.

mod common;

use std::time::Duration;

use common::*;
use imsgw_media::Command;

fn line<'a>(sdp: &'a str, prefix: &str) -> Option<&'a str> {
    sdp.lines()
        .find(|l| l.starts_with(prefix))
        .map(str::trim_end)
}

#[test]
fn ims_hold_reoffer_reaches_browser_as_offer_without_ice_restart_rfc3264_8_4() {
    let mut gw = Gw::start(config(42200..=42209));
    let mut b = Browser::new();
    let ims = Ims::new();
    let port = connect_from_browser(&mut gw, &mut b, &ims, 1, "0 PCMU/8000");
    // The IMS puts us on hold: sendonly (it will only send).
    gw.media.send(Command::ImsOffer {
        call: 1,
        req: 3,
        sdp: ims.sdp("0 PCMU/8000", "sendonly"),
    });
    let offer = expect_sdp(
        next_event(&mut gw, Some(&mut b), Duration::from_secs(2)),
        1,
        3,
    );
    assert!(
        offer.contains("a=sendonly"),
        "gateway stands as the IMS does: {offer}"
    );
    let answer = b.accept_offer(&offer);
    assert!(answer.contains("a=recvonly"), "{answer}");
    gw.media.send(Command::BrowserAnswer {
        call: 1,
        req: 4,
        sdp: answer,
    });
    let ims_answer = expect_sdp(
        next_event(&mut gw, Some(&mut b), Duration::from_secs(2)),
        1,
        4,
    );
    assert!(ims_answer.contains("a=recvonly"), "{ims_answer}");
    assert_eq!(ims_port(&ims_answer), port, "same IMS port");

    // Held: the browser's media does not reach the IMS; the IMS's still reaches the browser.
    b.send_rtp(0, 160, b"held-up");
    assert!(ims.recv_rtp(&mut b, Duration::from_millis(300)).is_none());
    ims.send_rtp(ims_to(port), 0, 50, 8000, b"music-on-hold");
    assert!(pump(&mut b, Duration::from_secs(2), |b| !b.rtp.is_empty()));

    // Resume from the IMS, after a pause long enough for str0m's stream to be idle.
    gw.media.send(Command::ImsOffer {
        call: 1,
        req: 5,
        sdp: ims.sdp("0 PCMU/8000", "sendrecv"),
    });
    let offer2 = expect_sdp(
        next_event(&mut gw, Some(&mut b), Duration::from_secs(2)),
        1,
        5,
    );
    for attr in ["a=ice-ufrag", "a=ice-pwd", "a=fingerprint"] {
        assert_eq!(line(&offer, attr), line(&offer2, attr), "{attr} kept");
    }
    assert!(offer2.contains("a=sendrecv"), "{offer2}");
    let answer2 = b.accept_offer(&offer2);
    gw.media.send(Command::BrowserAnswer {
        call: 1,
        req: 6,
        sdp: answer2,
    });
    let ims_answer2 = expect_sdp(
        next_event(&mut gw, Some(&mut b), Duration::from_secs(2)),
        1,
        6,
    );
    assert!(ims_answer2.contains("a=sendrecv"), "{ims_answer2}");
    b.send_rtp(0, 320, b"back");
    let pkt = ims
        .recv_rtp(&mut b, Duration::from_secs(2))
        .expect("flows again after resume");
    assert_eq!(&pkt[12..], b"back");
    assert!(b.failed.is_none(), "{:?}", b.failed);
}

#[test]
fn ims_reoffer_with_nothing_new_still_gets_a_webrtc_offer() {
    let mut gw = Gw::start(config(42210..=42219));
    let mut b = Browser::new();
    let ims = Ims::new();
    connect_from_browser(&mut gw, &mut b, &ims, 2, "0 PCMU/8000");
    // A session refresh re-INVITE: same SDP as before.
    gw.media.send(Command::ImsOffer {
        call: 2,
        req: 3,
        sdp: ims.sdp("0 PCMU/8000", "sendrecv"),
    });
    let offer = expect_sdp(
        next_event(&mut gw, Some(&mut b), Duration::from_secs(2)),
        2,
        3,
    );
    assert!(offer.contains("a=sendrecv"), "{offer}");
    // The call's Rtc knows opus, PCMU and events (the browser's first offer); the IMS
    // re-offers PCMU only, so only PCMU may be offered to the browser.
    let m = line(&offer, "m=audio").expect("m=audio");
    assert!(m.ends_with(" 0"), "only the IMS's codecs: {m}");
    let answer = b.accept_offer(&offer);
    gw.media.send(Command::BrowserAnswer {
        call: 2,
        req: 4,
        sdp: answer,
    });
    expect_sdp(
        next_event(&mut gw, Some(&mut b), Duration::from_secs(2)),
        2,
        4,
    );
}

#[test]
fn browser_video_m_line_is_rejected_with_port_zero_rfc3264_6() {
    let mut gw = Gw::start(config(42220..=42229));
    let mut b = Browser::with_video();
    let ims = Ims::new();
    let (offer, pending) = b.offer_audio_video();
    gw.media.send(Command::BrowserOffer {
        call: 3,
        req: 1,
        sdp: offer,
    });
    let ims_offer = expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), 3, 1);
    assert!(!ims_offer.contains("m=video"), "{ims_offer}");
    gw.media.send(Command::ImsAnswer {
        call: 3,
        req: 2,
        sdp: ims.sdp("0 PCMU/8000", "sendrecv"),
    });
    let answer = expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), 3, 2);
    let video = line(&answer, "m=video").expect("the answer keeps the m-line count");
    assert!(
        video.starts_with("m=video 0 "),
        "video refused with port 0: {answer}"
    );
    b.accept_answer(pending, &answer);
    assert!(
        pump(&mut b, Duration::from_secs(5), |b| b.connected),
        "audio still connects"
    );
}

#[test]
fn all_sessions_share_one_dtls_certificate() {
    let mut gw = Gw::start(config(42230..=42239));
    let ims = Ims::new();
    let mut fps = Vec::new();
    for call in [1, 2] {
        gw.media.send(Command::ImsOffer {
            call,
            req: 1,
            sdp: ims.sdp("0 PCMU/8000", "sendrecv"),
        });
        let offer = expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), call, 1);
        fps.push(line(&offer, "a=fingerprint").map(str::to_string));
        assert!(line(&offer, "a=ice-ufrag").is_some());
    }
    assert!(fps[0].is_some());
    assert_eq!(fps[0], fps[1]);
}

#[test]
fn late_browser_answer_does_not_lose_consent_before_ice_starts() {
    let mut gw = Gw::start(config(42240..=42249));
    let mut b = Browser::new();
    let ims = Ims::new();
    gw.media.send(Command::ImsOffer {
        call: 4,
        req: 1,
        sdp: ims.sdp("0 PCMU/8000", "sendrecv"),
    });
    let offer = expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), 4, 1);
    // The user lets it ring longer than the inactivity period (1.5 s here).
    std::thread::sleep(Duration::from_millis(1800));
    assert!(
        gw.events.try_recv().is_err(),
        "no Ended while the browser has not answered"
    );
    let answer = b.accept_offer(&offer);
    gw.media.send(Command::BrowserAnswer {
        call: 4,
        req: 2,
        sdp: answer,
    });
    expect_sdp(
        next_event(&mut gw, Some(&mut b), Duration::from_secs(2)),
        4,
        2,
    );
    assert!(pump(&mut b, Duration::from_secs(5), |b| b.connected));
    assert_eq!(gw.media.stats().sessions, 1);
}

#[test]
fn answers_out_of_turn_are_refused_and_leave_the_call_as_it_was() {
    let mut gw = Gw::start(config(42270..=42279));
    let mut b = Browser::new();
    let ims = Ims::new();
    gw.media.send(Command::ImsOffer {
        call: 5,
        req: 1,
        sdp: ims.sdp("0 PCMU/8000", "sendrecv"),
    });
    let offer = expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), 5, 1);
    // An IMS answer while the browser's answer is awaited: nothing of ours to answer.
    gw.media.send(Command::ImsAnswer {
        call: 5,
        req: 2,
        sdp: ims.sdp("0 PCMU/8000", "sendrecv"),
    });
    assert!(matches!(
        next_event(&mut gw, None, Duration::from_secs(2)),
        imsgw_media::Event::Refused {
            call: 5,
            req: 2,
            status: 488,
            ..
        }
    ));
    // The awaited answer still works.
    let answer = b.accept_offer(&offer);
    gw.media.send(Command::BrowserAnswer {
        call: 5,
        req: 3,
        sdp: answer.clone(),
    });
    expect_sdp(
        next_event(&mut gw, Some(&mut b), Duration::from_secs(2)),
        5,
        3,
    );
    // The same browser answer again: no offer is outstanding any more.
    gw.media.send(Command::BrowserAnswer {
        call: 5,
        req: 4,
        sdp: answer,
    });
    assert!(matches!(
        next_event(&mut gw, Some(&mut b), Duration::from_secs(2)),
        imsgw_media::Event::Refused {
            call: 5,
            req: 4,
            status: 488,
            ..
        }
    ));
    assert!(pump(&mut b, Duration::from_secs(5), |b| b.connected));
    assert_eq!(gw.media.stats().refused_offers, 0, "answers are not offers");
}

/// RFC 3264 §8: an IMS re-offer that moves its media takes effect with the browser's answer. If
/// the browser never accepts it (the edge answers the re-INVITE 488 or 491), RTP keeps going to
/// the address the last completed negotiation named.
#[test]
fn ims_reoffer_moving_the_media_takes_effect_only_with_the_browsers_answer_rfc3264_8() {
    let mut gw = Gw::start(config(42280..=42289));
    let mut b = Browser::new();
    let ims = Ims::new();
    let port = connect_from_browser(&mut gw, &mut b, &ims, 1, "0 PCMU/8000");
    let elsewhere = Ims::new();
    gw.media.send(Command::ImsOffer {
        call: 1,
        req: 3,
        sdp: elsewhere.sdp("0 PCMU/8000", "sendrecv"),
    });
    let _offer = expect_sdp(
        next_event(&mut gw, Some(&mut b), Duration::from_secs(2)),
        1,
        3,
    );
    // The browser's answer never comes: media still flows to the old peer.
    b.send_rtp(0, 160, b"still-here");
    let got = ims
        .recv_rtp(&mut b, Duration::from_secs(2))
        .expect("RTP still reaches the IMS peer of the last completed offer/answer");
    assert_eq!(&got[12..], b"still-here");
    assert!(
        elsewhere
            .recv_rtp(&mut b, Duration::from_millis(300))
            .is_none(),
        "nothing goes to the address of an offer not answered"
    );
    let _ = port;
}
