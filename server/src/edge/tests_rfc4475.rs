//! Every RFC 4475 torture message sent to the edge from a WebSocket, with tokens required and
//! none given: the answer is what RFC 4475 §3 says a proxy does, and the Bearer challenge (401)
//! only for the messages a proxy would forward (RFC 3261 §16.3 puts authorization last).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use imsgw_sip::Message;

use super::*;
use crate::config::IdentityAssertion;

/// An edge requiring tokens, with a real verifier (the harness of `tests_trust`).
fn edge() -> Edge {
    super::tests_trust::H::new(&[IdentityAssertion::Tna]).edge
}

/// What a proxy does with each message (RFC 4475 §3, section in the comment).
const EXPECTED: &[(&str, Option<u16>)] = &[
    // §3.1.1 valid: forwarded, so here they reach authorization.
    ("wsinv", Some(401)),      // 3.1.1.1
    ("intmeth", Some(401)),    // 3.1.1.2
    ("esc01", Some(401)),      // 3.1.1.3
    ("escnull", Some(401)),    // 3.1.1.4
    ("esc02", Some(401)),      // 3.1.1.5
    ("lwsdisp", Some(401)),    // 3.1.1.6
    ("longreq", Some(401)),    // 3.1.1.7
    ("dblreq", Some(401)),     // 3.1.1.8
    ("semiuri", Some(401)),    // 3.1.1.9
    ("transports", Some(401)), // 3.1.1.10
    ("mpart01", Some(401)),    // 3.1.1.11
    ("unreason", None),        // 3.1.1.12: a response matching no transaction is dropped
    ("noreason", None),        // 3.1.1.13: likewise
    // §3.1.2 invalid: 400 (505 for the version), responses dropped.
    ("badinv01", Some(400)),   // 3.1.2.1
    ("clerr", Some(400)),      // 3.1.2.2
    ("scalar02", Some(400)),   // 3.1.2.3
    ("scalarlg", None),        // 3.1.2.4: an invalid response, dropped
    ("quotbal", Some(400)),    // 3.1.2.5
    ("ltgtruri", Some(400)),   // 3.1.2.6
    ("lwsruri", Some(400)),    // 3.1.2.7
    ("lwsstart", Some(400)),   // 3.1.2.8
    ("trws", Some(400)),       // 3.1.2.9
    ("escruri", Some(400)),    // 3.1.2.10
    ("baddate", Some(401)),    // 3.1.2.11: a proxy does not read Date; it forwards
    ("regbadct", Some(400)),   // 3.1.2.12
    ("badaspec", Some(400)),   // 3.1.2.13
    ("baddn", Some(400)),      // 3.1.2.14
    ("badvers", Some(505)),    // 3.1.2.15
    ("mismatch01", Some(400)), // 3.1.2.16
    ("mismatch02", Some(400)), // 3.1.2.17
    ("bigcode", None),         // 3.1.2.18: a response, dropped
    // §3.2 transaction layer.
    ("badbranch", Some(401)), // 3.2.1: no magic cookie is RFC 2543 style, still forwarded
    // §3.3 application layer.
    ("insuf", Some(400)),    // 3.3.1
    ("unkscm", Some(416)),   // 3.3.2
    ("novelsc", Some(416)),  // 3.3.3
    ("unksm2", Some(401)),   // 3.3.4: unknown schemes in To/From do not stop a proxy
    ("bext01", Some(420)),   // 3.3.5: Proxy-Require the proxy does not support
    ("invut", Some(401)),    // 3.3.6: an unknown body type is forwarded
    ("regaut01", Some(401)), // 3.3.7: an unknown authorization scheme: the Bearer challenge
    ("multi01", Some(400)),  // 3.3.8
    ("mcl01", Some(400)),    // 3.3.9
    ("bcast", None),         // 3.3.10: a response
    ("zeromf", Some(483)),   // 3.3.11
    ("cparam01", Some(401)), // 3.3.12
    ("cparam02", Some(401)), // 3.3.13
    ("regescrt", Some(401)), // 3.3.14
    ("sdp01", Some(401)),    // 3.3.15: Accept is the UAS's business
    // §3.4 backward compatibility.
    ("inv2543", Some(401)), // 3.4.1
    ("ncl", Some(400)),     // 3.1.2.2's sibling: a negative Content-Length
];

fn load(name: &str) -> Bytes {
    let path = format!(
        "{}/sip/tests/rfc4475/{name}.dat",
        env!("CARGO_MANIFEST_DIR")
    );
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

#[test]
fn rfc4475_3_every_torture_message_gets_what_a_proxy_owes_it() {
    let dir = format!("{}/sip/tests/rfc4475", env!("CARGO_MANIFEST_DIR"));
    let on_disk = std::fs::read_dir(&dir)
        .expect("rfc4475 dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.ends_with(".dat") && n != "test.dat")
        .count();
    assert_eq!(on_disk, EXPECTED.len(), "every message has an expectation");
    let remote: SocketAddr = "192.0.2.7:5000".parse().expect("addr");
    let mut failures = Vec::new();
    for (i, (name, want)) in EXPECTED.iter().enumerate() {
        let mut e = edge();
        let flow = FlowId(i as u64 + 1);
        e.flow_opened(flow, remote);
        e.from_flow(Instant::now(), flow, load(name));
        let outs: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
        if outs.iter().any(|o| {
            matches!(
                o,
                Output::Send {
                    to: Dest::Upstream,
                    ..
                }
            )
        }) {
            failures.push(format!("{name}: went upstream without a token"));
        }
        let got: Vec<u16> = outs
            .iter()
            .filter_map(|o| match o {
                Output::Send {
                    to: Dest::Flow(f),
                    bytes,
                    ..
                } if *f == flow => Message::parse(bytes.clone()).ok().and_then(|m| m.status()),
                _ => None,
            })
            .collect();
        let got = got.first().copied();
        if got != *want {
            failures.push(format!("{name}: want {want:?}, got {got:?} ({outs:?})"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
