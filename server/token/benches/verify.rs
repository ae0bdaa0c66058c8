//! Cost of the token operations on the REGISTER path and the WAF's token endpoint: ES256
//! verification on a cache miss (signature checked), on a cache hit (a re-REGISTER with the same
//! token), and minting.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use imsgw_token::{KeyRing, MintRequest, Minter, MinterConfig, Verifier, VerifierConfig};

const NOW: u64 = 1_778_581_800;

fn request() -> MintRequest {
    MintRequest {
        sub: "web-user-42".into(),
        impu: "sip:alice@ims.example".into(),
        impi: "alice@ims.example".into(),
        scope: "sip openid".into(),
        client_id: "wic".into(),
        ttl: Some(600),
    }
}

fn benches(c: &mut Criterion) {
    let ring = KeyRing::ephemeral(NOW).expect("keygen");
    let minter = Minter::new(MinterConfig::new("https://waf", "sip:ims"), &ring);
    let token = minter.mint(NOW, request()).expect("mint").0;

    // Capacity 0: every call is a miss and pays for parsing and the signature.
    let mut cold_cfg = VerifierConfig::new("https://waf", "sip:ims");
    cold_cfg.cache_capacity = 0;
    let mut cold = Verifier::new(cold_cfg, &ring).expect("verifier");
    c.bench_function("verify_es256_cold", |b| {
        b.iter(|| {
            cold.verify(black_box(NOW), black_box(token.expose()))
                .expect("ok")
        })
    });

    let mut warm =
        Verifier::new(VerifierConfig::new("https://waf", "sip:ims"), &ring).expect("verifier");
    warm.verify(NOW, token.expose()).expect("prime");
    c.bench_function("verify_es256_cached", |b| {
        b.iter(|| {
            warm.verify(black_box(NOW), black_box(token.expose()))
                .expect("ok")
        })
    });

    c.bench_function("mint_es256", |b| {
        b.iter(|| minter.mint(black_box(NOW), request()).expect("mint"))
    });
}

criterion_group!(token, benches);
criterion_main!(token);
