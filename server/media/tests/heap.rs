//! Measurement, not asserts (STYLE 10): the live heap per connected call, counted exactly
//! (RSS is too coarse for a few dozen sessions). The totals printed include the test's own
//! str0m browsers; the gateway's share is in the dhat profile by allocation site (frames in
//! `imsgw_media`), written to `$HEAP_PROFILE`
//! (default `dhat-heap.json`; `tools/heap-sites.py PROFILE CALLS eb` sums it by site).
//! Run with `cargo test --release -p imsgw-media --test heap -- --ignored --nocapture`.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn live() -> i64 {
    dhat::HeapStats::get().curr_bytes as i64
}

#[test]
#[ignore = "measurement"]
fn media_heap_per_connected_call() {
    let path = std::env::var("HEAP_PROFILE").unwrap_or_else(|_| "dhat-heap.json".into());
    let profiler = dhat::Profiler::builder().file_name(path).build();
    let mut cfg = config(45000..=45999);
    cfg.max_sessions = 1000;
    let mut gw = Gw::start(cfg);
    let ims = Ims::new();
    let n = 40u64;
    let base = live();
    let mut browsers = Vec::new();
    for call in 0..n {
        let mut b = Browser::new();
        let port = connect_from_browser(&mut gw, &mut b, &ims, call, "0 PCMU/8000");
        browsers.push((b, port));
    }
    std::thread::sleep(Duration::from_millis(200));
    let connected = live();
    println!(
        "connected, no media yet: {} bytes per call (with the test browser)",
        (connected - base) / n as i64
    );
    // Two seconds of 50 packets/s each way per call (buffers, registers and reports fill).
    let payload = [0x55u8; 160];
    let start = Instant::now();
    let mut tick = 0u32;
    while start.elapsed() < Duration::from_secs(2) {
        for (b, port) in browsers.iter_mut() {
            b.send_rtp(0, tick * 160, &payload);
            ims.send_rtp(ims_to(*port), 0, tick as u16, tick * 160, &payload);
            b.step();
        }
        tick += 1;
        let next = start + Duration::from_millis(20) * tick;
        while Instant::now() < next {
            for (b, _) in browsers.iter_mut() {
                b.step();
            }
            let mut buf = [0u8; 2000];
            while ims.sock.recv_from(&mut buf).is_ok() {}
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    let flowing = live();
    println!(
        "after 2 s of media both ways: {} bytes per call (with the test browser)",
        (flowing - base) / n as i64
    );
    // The profile is written here, with every session still live ("eb": bytes at the end).
    drop(profiler);
    drop(browsers);
    drop(gw);
}
