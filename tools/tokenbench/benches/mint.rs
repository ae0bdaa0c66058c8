//! Signing one access token (the WAF mints one per sign-in and refresh): ES256 through
//! imsgw-token's `Minter` (today) and jsonwebtoken, EdDSA (RFC 8037) through jsonwebtoken,
//! and the signature alone in aws-lc-rs and RustCrypto.

use std::hint::black_box;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use criterion::{Criterion, criterion_group, criterion_main};
use imsgw_token::{Algorithm, Minter, MinterConfig};
use imsgw_tokenbench::{
    AUDIENCE, Fixtures, ISSUER, ThreadCpu, cpu_config, mint_request, p256_keypair, sign_eddsa,
    signing_input_and_signature,
};
use jsonwebtoken::{EncodingKey, Header};

fn mint(c: &mut Criterion<ThreadCpu>) {
    let f = Fixtures::new();
    let now = f.now;
    let mut g = c.benchmark_group("mint");

    // The whole of the WAF's step: request checks, claims, jti, JSON, base64, signature.
    let minter = Minter::new(MinterConfig::new(ISSUER, AUDIENCE), &f.ring);
    g.bench_function("es256_imsgw_minter", |b| {
        b.iter(|| minter.mint(black_box(now), mint_request()).expect("mint"))
    });
    let (_, claims) = minter.mint(now, mint_request()).expect("mint");

    let (_, p256_pkcs8) = p256_keypair();
    let es_key = EncodingKey::from_ec_der(&p256_pkcs8);
    let mut es_header = Header::new(Algorithm::ES256);
    es_header.typ = Some("at+jwt".into());
    es_header.kid = Some(f.ring.signing_kid().into());
    g.bench_function("es256_jsonwebtoken_encode", |b| {
        b.iter(|| jsonwebtoken::encode(&es_header, black_box(&claims), &es_key).expect("sign"))
    });
    let ed_key = EncodingKey::from_ed_der(&f.ed25519_pkcs8);
    g.bench_function("eddsa_jsonwebtoken_encode", |b| {
        b.iter(|| sign_eddsa(black_box(&claims), &ed_key))
    });
    g.finish();
}

fn sign_only(c: &mut Criterion<ThreadCpu>) {
    let f = Fixtures::new();
    let (input, _) = signing_input_and_signature(&f.es256);
    let mut g = c.benchmark_group("sign_only");

    let (p256_pair, p256_pkcs8) = p256_keypair();
    let rng = SystemRandom::new();
    g.bench_function("es256_awslc_parsed_key", |b| {
        b.iter(|| p256_pair.sign(&rng, black_box(&input)).expect("sign"))
    });
    // What jsonwebtoken does per token: parse the PKCS#8 key, then sign.
    g.bench_function("es256_awslc_key_from_pkcs8_each_time", |b| {
        b.iter(|| {
            let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                black_box(&p256_pkcs8),
            )
            .expect("pkcs8");
            pair.sign(&rng, black_box(&input)).expect("sign")
        })
    });
    let ed_pair = Ed25519KeyPair::from_pkcs8(&f.ed25519_pkcs8).expect("pkcs8");
    g.bench_function("ed25519_awslc_parsed_key", |b| {
        b.iter(|| ed_pair.sign(black_box(&input)))
    });
    g.bench_function("ed25519_awslc_key_from_pkcs8_each_time", |b| {
        b.iter(|| {
            Ed25519KeyPair::from_pkcs8(black_box(&f.ed25519_pkcs8))
                .expect("pkcs8")
                .sign(black_box(&input))
        })
    });

    {
        use p256::ecdsa::signature::Signer as _;
        use p256::ecdsa::{Signature, SigningKey};
        use p256::pkcs8::DecodePrivateKey as _;
        let key = SigningKey::from_pkcs8_der(&p256_pkcs8).expect("pkcs8");
        g.bench_function("es256_rustcrypto_p256", |b| {
            b.iter(|| -> Signature { key.sign(black_box(&input)) })
        });
    }
    {
        use ed25519_dalek::Signer as _;
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        g.bench_function("ed25519_dalek", |b| b.iter(|| key.sign(black_box(&input))));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = cpu_config();
    targets = mint, sign_only
}
criterion_main!(benches);
