//! Measurements, not asserts (STYLE 10): run with `--ignored --nocapture`.

mod common;

use std::time::Duration;

use common::*;
use imsgw_media::Command;

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split(' ')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

#[test]
#[ignore = "measurement"]
fn memory_per_session_before_and_after_connect() {
    let mut cfg = config(44000..=44999);
    cfg.max_sessions = 1000;
    let mut gw = Gw::start(cfg);
    let ims = Ims::new();
    // Warm up allocator and str0m statics.
    gw.media.send(Command::ImsOffer {
        call: 0,
        req: 1,
        sdp: ims.sdp("0 PCMU/8000", "sendrecv"),
    });
    expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), 0, 1);
    let n = 300u64;
    let before = rss_kib();
    for call in 1..=n {
        gw.media.send(Command::ImsOffer {
            call,
            req: 1,
            sdp: ims.sdp("0 PCMU/8000", "sendrecv"),
        });
        expect_sdp(next_event(&mut gw, None, Duration::from_secs(2)), call, 1);
    }
    let after = rss_kib();
    println!(
        "offered (not connected): {} KiB per session",
        (after - before) / n
    );

    let m = 20u64;
    let mut browsers = Vec::new();
    let before = rss_kib();
    for i in 0..m {
        let mut b = Browser::new();
        let call = 10_000 + i;
        connect_from_browser(&mut gw, &mut b, &ims, call, "0 PCMU/8000");
        browsers.push(b);
    }
    let after = rss_kib();
    println!(
        "connected: {} KiB per call including the test's own browser Rtc (an upper bound)",
        (after - before) / m
    );
}

#[test]
#[ignore = "measurement"]
fn memory_of_a_connected_test_browser_alone() {
    // Pairs of test browsers connected to each other (no gateway): what one browser-side Rtc
    // costs, to subtract from the figure above.
    let m = 20u64;
    let mut pairs = Vec::new();
    let before = rss_kib();
    for _ in 0..m {
        let mut a = Browser::new();
        let mut b = Browser::new();
        let (offer, pending) = a.offer(str0m::media::Direction::SendRecv);
        let answer = b.accept_offer(&offer);
        a.accept_answer(pending, &answer);
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while !(a.connected && b.connected) && std::time::Instant::now() < end {
            a.step();
            b.step();
        }
        assert!(a.connected && b.connected);
        pairs.push((a, b));
    }
    let after = rss_kib();
    println!(
        "one connected test browser Rtc: {} KiB",
        (after - before) / (2 * m)
    );
}
