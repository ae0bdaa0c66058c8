//! Fuzz target: every entry point of imsgw-sip on arbitrary bytes (framing, both parsers,
//! validate, every typed accessor, remove_value_range, splicing, response_to). Must never panic;
//! the invariants checked are in `imsgw_sip::exercise`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imsgw_sip::exercise(data);
});
