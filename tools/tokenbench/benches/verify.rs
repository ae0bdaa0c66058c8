//! Verifying one access token the edge has not seen before (issue 11 §3): ES256 through
//! imsgw-token (what the edge runs today), through jsonwebtoken alone, and without
//! jsonwebtoken; the signature alone in aws-lc-rs and RustCrypto `p256`; EdDSA (RFC 8037) the
//! same ways; and the floor, the claim work with no signature at all.
//!
//! Every full row checks the signature and validates the claims of a token of the real shape.

use std::hint::black_box;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ED25519, ParsedPublicKey, UnparsedPublicKey};
use criterion::{Criterion, criterion_group, criterion_main};
use imsgw_token::{Algorithm, Claims};
use imsgw_tokenbench::{
    EXTERNAL_ISSUER, Fixtures, ISSUER, LeanEs256, ThreadCpu, check_claims, cpu_config,
    jsonwebtoken_validation, self_check, signing_input_and_signature,
};

fn es256(c: &mut Criterion<ThreadCpu>) {
    let f = Fixtures::new();
    self_check(&f);
    let now = f.now;
    let mut g = c.benchmark_group("verify_es256");

    // Capacity 0: every call is a miss, as for a new client.
    let mut cold = f.verifier(0);
    g.bench_function("imsgw_verifier", |b| {
        b.iter(|| cold.verify(now, black_box(&f.es256)).expect("ok"))
    });
    g.bench_function("imsgw_verifier_external_issuer", |b| {
        b.iter(|| cold.verify(now, black_box(&f.es256_external)).expect("ok"))
    });
    let mut warm = f.verifier(1000);
    warm.verify(now, &f.es256).expect("prime");
    g.bench_function("imsgw_verifier_cache_hit", |b| {
        b.iter(|| warm.verify(now, black_box(&f.es256)).expect("ok"))
    });

    let key = f.es256_decoding_key();
    let validation = jsonwebtoken_validation(Algorithm::ES256, ISSUER);
    g.bench_function("jsonwebtoken_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<Claims>(black_box(&f.es256), &key, &validation).expect("ok")
        })
    });
    let lean = LeanEs256::new(&f.es256_public);
    g.bench_function("lean_awslc_parsed_key", |b| {
        b.iter(|| lean.verify(now, black_box(&f.es256)).expect("ok"))
    });

    let (input, sig) = signing_input_and_signature(&f.es256);
    g.bench_function("sig_only_awslc_unparsed_key", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &f.es256_public)
                .verify(black_box(&input), black_box(&sig))
                .expect("ok")
        })
    });
    let parsed = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &f.es256_public).expect("key");
    g.bench_function("sig_only_awslc_parsed_key", |b| {
        b.iter(|| {
            parsed
                .verify_sig(black_box(&input), black_box(&sig))
                .expect("ok")
        })
    });
    rustcrypto_p256(&mut g, &f.es256_public, &input, &sig);
    g.finish();
}

fn rustcrypto_p256(
    g: &mut criterion::BenchmarkGroup<'_, ThreadCpu>,
    public: &[u8],
    input: &[u8],
    sig: &[u8],
) {
    use p256::ecdsa::signature::Verifier as _;
    use p256::ecdsa::{Signature, VerifyingKey};
    let key = VerifyingKey::from_sec1_bytes(public).expect("P-256 point");
    let sig = Signature::from_slice(sig).expect("r||s");
    g.bench_function("sig_only_rustcrypto_p256", |b| {
        b.iter(|| key.verify(black_box(input), black_box(&sig)).expect("ok"))
    });
}

fn eddsa(c: &mut Criterion<ThreadCpu>) {
    let f = Fixtures::new();
    self_check(&f);
    let now = f.now;
    let mut g = c.benchmark_group("verify_eddsa");

    let mut cold = f.verifier(0);
    g.bench_function("imsgw_verifier_external_issuer", |b| {
        b.iter(|| cold.verify(now, black_box(&f.eddsa)).expect("ok"))
    });
    let key = f.eddsa_decoding_key();
    let validation = jsonwebtoken_validation(Algorithm::EdDSA, EXTERNAL_ISSUER);
    g.bench_function("jsonwebtoken_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<Claims>(black_box(&f.eddsa), &key, &validation).expect("ok")
        })
    });

    let (input, sig) = signing_input_and_signature(&f.eddsa);
    g.bench_function("sig_only_awslc_unparsed_key", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&ED25519, &f.ed25519_public)
                .verify(black_box(&input), black_box(&sig))
                .expect("ok")
        })
    });
    let parsed = ParsedPublicKey::new(&ED25519, &f.ed25519_public).expect("key");
    g.bench_function("sig_only_awslc_parsed_key", |b| {
        b.iter(|| {
            parsed
                .verify_sig(black_box(&input), black_box(&sig))
                .expect("ok")
        })
    });

    let public: [u8; 32] = f.ed25519_public.as_slice().try_into().expect("32 bytes");
    let dalek = ed25519_dalek::VerifyingKey::from_bytes(&public).expect("Ed25519 point");
    let dalek_sig = ed25519_dalek::Signature::from_slice(&sig).expect("64 bytes");
    g.bench_function("sig_only_ed25519_dalek", |b| {
        b.iter(|| {
            dalek
                .verify_strict(black_box(&input), black_box(&dalek_sig))
                .expect("ok")
        })
    });
    g.finish();
}

fn floor(c: &mut Criterion<ThreadCpu>) {
    let f = Fixtures::new();
    self_check(&f);
    let now = f.now;
    let mut g = c.benchmark_group("verify_floor");
    g.bench_function("claims_only_no_signature", |b| {
        b.iter(|| check_claims(now, black_box(&f.es256), "ES256").expect("ok"))
    });
    // HS256 is one HMAC-SHA-256 over ~600 bytes (about 1 µs): the rest is imsgw's path.
    let mut cold = f.verifier(0);
    g.bench_function("imsgw_verifier_hs256", |b| {
        b.iter(|| cold.verify(now, black_box(&f.hs256)).expect("ok"))
    });
    g.finish();
}

criterion_group! {
    name = verify;
    config = cpu_config();
    targets = es256, eddsa, floor
}
criterion_main!(verify);
