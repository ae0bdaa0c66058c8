//! Fuzz target: arbitrary bytes into the edge core as WebSocket messages, IMS datagrams and
//! stream messages, timer ticks and flow events, with tokens required or not. Must never panic;
//! everything the edge sends must parse (see `imsgw::edge::fuzz`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = imsgw::edge::fuzz::exercise(data);
});
