//! A cheap stable stand-in for the fuzzer: a few thousand pseudo-random mutations of the
//! RFC 4475 torture messages go through [`crate::exercise`], which must not panic.

/// The torture messages, read at compile time from the integration-test copy.
const SEEDS: &[&[u8]] = &[
    include_bytes!("../tests/rfc4475/wsinv.dat"),
    include_bytes!("../tests/rfc4475/intmeth.dat"),
    include_bytes!("../tests/rfc4475/esc01.dat"),
    include_bytes!("../tests/rfc4475/escnull.dat"),
    include_bytes!("../tests/rfc4475/longreq.dat"),
    include_bytes!("../tests/rfc4475/dblreq.dat"),
    include_bytes!("../tests/rfc4475/mpart01.dat"),
    include_bytes!("../tests/rfc4475/unreason.dat"),
    include_bytes!("../tests/rfc4475/badinv01.dat"),
    include_bytes!("../tests/rfc4475/quotbal.dat"),
    include_bytes!("../tests/rfc4475/baddn.dat"),
    include_bytes!("../tests/rfc4475/multi01.dat"),
    include_bytes!("../tests/rfc4475/regescrt.dat"),
    include_bytes!("../tests/rfc4475/inv2543.dat"),
    include_bytes!("../tests/rfc4475/test.dat"),
];

/// Bytes that tend to hit parser edge cases.
const INTERESTING: &[u8] = b"\r\n\t ;:,<>\"\\@%=?[]/0\x00\xff";

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        // n > 0 at every call site; u64 -> usize cannot truncate a value below n.
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut XorShift, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if at < v.len() => v[at] = INTERESTING[rng.below(INTERESTING.len())],
            1 => v.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 if at < v.len() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            3 => v.truncate(at),
            4 if at < v.len() => v[at] ^= 1 << rng.below(8),
            _ => {
                // Duplicate a slice (repeats headers, values, separators).
                let end = (at + rng.below(40)).min(v.len());
                let chunk = v[at..end].to_vec();
                let to = rng.below(v.len() + 1);
                v.splice(to..to, chunk);
            }
        }
    }
    v
}

#[test]
fn mutated_torture_messages_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for seed in SEEDS {
        crate::exercise(seed);
    }
    for _ in 0..5000 {
        let seed = SEEDS[rng.below(SEEDS.len())];
        crate::exercise(&mutate(&mut rng, seed));
    }
}
