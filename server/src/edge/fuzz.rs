//! The fuzzing entry point of the edge (`server/fuzz`, target `edge`): arbitrary bytes driven
//! into the core as WebSocket messages, IMS datagrams and stream messages, timer ticks and flows
//! opening and closing, with tokens required or not. The edge must never panic, and everything
//! it sends must parse as SIP.
//!
//! Input: one mode byte (bit 0: tokens required; bit 1: TCP upstream), then records of
//! `[op][len lo][len hi][len bytes]`. In a WebSocket message the bytes `$TOK` become a valid
//! token for `sip:alice@ims.example`, so the fuzzer gets past the Bearer check. Requests the edge
//! sends upstream are answered with a 200 from the IMS side when the op byte's top bit is set.
//!
//! Owns: nothing the gateway uses. Must not touch: sockets, the clock.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use imsgw_sip::{Message, response_to};
use imsgw_token::{KeyRing, MintRequest, Minter, MinterConfig, Verifier, VerifierConfig};

use super::{
    Auth, AuthSettings, Dest, Edge, EdgeSettings, FlowId, FlowKey, Link, Local, Output, Revoked,
    Stats, StripList,
};
use crate::config::{Challenge, IdentityAssertion, UpstreamTransport};

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://waf.ims.example";
const AUD: &str = "sip:ims.example";

/// One key ring and one token for the whole run: key generation per input would drown the
/// fuzzer.
fn keys() -> &'static (KeyRing, String) {
    static KEYS: OnceLock<(KeyRing, String)> = OnceLock::new();
    KEYS.get_or_init(|| {
        // An in-memory key and a token minted with fixed, valid fields cannot fail.
        let ring = KeyRing::ephemeral(NOW).expect("ephemeral key");
        let minter = Minter::new(MinterConfig::new(ISS, AUD), &ring);
        let (token, _) = minter
            .mint(
                NOW,
                MintRequest {
                    sub: "fuzz".into(),
                    impu: "sip:alice@ims.example".into(),
                    impi: "alice@ims.example".into(),
                    scope: "sip".into(),
                    client_id: "fuzz".into(),
                    ttl: Some(3600),
                },
            )
            .expect("mint");
        (ring, token.expose().to_string())
    })
}

fn edge(required: bool, tcp: bool) -> Edge {
    let (ring, _) = keys();
    let mut vc = VerifierConfig::new(ISS, AUD);
    vc.required_scope = Some("sip".into());
    let auth = if required {
        Auth {
            settings: AuthSettings {
                required: true,
                realm: "ims.example".into(),
                authz_server: ISS.into(),
                scope: "sip".into(),
                challenge: Challenge::Www,
                assertion: vec![
                    IdentityAssertion::Tna,
                    IdentityAssertion::Pai,
                    IdentityAssertion::Passthrough,
                ],
                tna_header: "Authorization: Digest username=\"{impi}\", realm=\"{realm}\", integrity-protected=\"auth-done\"".into(),
            },
            verifier: Verifier::new(vc, ring).ok(),
            revoked: Revoked::default(),
            digest: Some(super::digest::DigestSettings::new("ims.example".into())),
            proofs: super::pop::ProofSettings::default(),
            elsewhere: Default::default(),
        }
    } else {
        Auth::disabled()
    };
    let settings = EdgeSettings {
        local: Local {
            listen: "127.0.0.1:5062".parse().expect("literal address"),
            tls_listen: None,
            transport: if tcp {
                UpstreamTransport::Tcp
            } else {
                UpstreamTransport::Udp
            },
            ws_host: "ims-example.invalid".into(),
            clients: Vec::new(),
            phone_advertise: None,
        },
        t1: Duration::from_millis(500),
        strip: StripList::default(),
        media: None,
        register_timeout: None,
    };
    // A fixed key, so inputs can carry valid flow tokens the fuzzer found once.
    let key = FlowKey::from_secret(&[7u8; 32]).expect("32 bytes");
    let mut e = Edge::new(settings, key, auth);
    e.set_wall_clock(NOW);
    e
}

/// Runs one input. Panics only on a broken invariant (that is the point). Returns the edge's
/// counters, for tests that check a seed goes as deep as meant.
pub fn exercise(data: &[u8]) -> Option<Stats> {
    let (&mode, mut rest) = data.split_first()?;
    let mut e = edge(mode & 1 == 1, mode & 2 == 2);
    let pcscf: SocketAddr = "127.0.0.1:5070".parse().expect("literal address");
    let mut now = Instant::now();
    for f in 1..=2 {
        e.flow_opened(FlowId(f), SocketAddr::from(([192, 0, 2, f as u8], 5000)));
    }
    // Flow 3 is a phone over UDP: Digest challenges, Via and Record-Route toward it.
    let phone_at = SocketAddr::from(([127, 0, 0, 1], 5080));
    e.flow_opened_as(
        FlowId(3),
        SocketAddr::from(([192, 0, 2, 3], 5000)),
        super::FlowKind::Udp(phone_at),
    );
    let token = &keys().1;
    while rest.len() >= 3 {
        let op = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let chunk = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let flow = FlowId(1 + u64::from(op >> 3 & 3));
        match op & 7 {
            0 | 1 => {
                let bytes = replace_token(chunk, token);
                e.from_flow(now, flow, bytes);
            }
            2 => e.from_ims(now, Link::Udp(pcscf), pcscf, Bytes::copy_from_slice(chunk)),
            3 => e.from_ims(now, Link::Conn(9), pcscf, Bytes::copy_from_slice(chunk)),
            4 => {
                let ms = chunk
                    .iter()
                    .take(4)
                    .fold(0u64, |a, b| a * 256 + u64::from(*b))
                    % 300_000;
                now += Duration::from_millis(ms.max(1));
                e.handle_timeout(now);
            }
            5 => e.flow_closed(now, flow),
            6 if chunk.first() == Some(&b'R') => e.revoke(
                now,
                String::from_utf8_lossy(&chunk[1..]).into_owned(),
                u64::MAX,
            ),
            6 => e.flow_opened(flow, SocketAddr::from(([192, 0, 2, 9], 5000))),
            _ => e.upstream_failed(now),
        }
        drain(&mut e, now, pcscf, op & 0x80 != 0, token);
    }
    Some(e.stats())
}

/// Checks every output and, if asked, answers requests sent upstream with a 200.
fn drain(e: &mut Edge, now: Instant, pcscf: SocketAddr, answer: bool, token: &str) {
    let mut answers = Vec::new();
    let mut grants = Vec::new();
    while let Some(o) = e.poll_output() {
        if let Output::Grant { ticket, ask } = &o
            && !matches!(ask, super::GrantAsk::Revoke { .. })
        {
            grants.push(*ticket);
        }
        let Output::Send { to, bytes, txn } = o else {
            continue;
        };
        if bytes.as_ref() == b"\r\n" {
            continue;
        }
        let m = match Message::parse(bytes.clone()) {
            Ok(m) => m,
            Err(err) => panic!(
                "the edge sent unparseable SIP to {to:?} ({err}): {:?}",
                String::from_utf8_lossy(&bytes)
            ),
        };
        if to == Dest::Upstream && m.is_request() && answer && answers.len() < 4 {
            answers.push(response_to(&m, 200, "OK", Some("ims"), &[]));
        }
        if let (Some(t), true) = (txn, answer && bytes.len() % 7 == 0) {
            e.send_failed(now, t);
        }
    }
    for a in answers {
        e.from_ims(now, Link::Udp(pcscf), pcscf, a);
    }
    // The WAF's answers: tokens, a refusal, or none at all (the edge's timer answers 503).
    for (i, ticket) in grants.into_iter().enumerate() {
        let r = match (ticket + i as u64) % 4 {
            0 => Ok(super::Granted {
                access_token: imsgw_token::AccessToken::new(token.to_string()),
                refresh_token: Some(imsgw_token::Secret::new("fam.rt")),
                digest_ha1: None,
            }),
            1 => Err(super::GrantError::Refused("no".into())),
            2 => Err(super::GrantError::Unavailable("down".into())),
            _ => continue,
        };
        e.granted(now, ticket, r);
    }
}

fn replace_token(chunk: &[u8], token: &str) -> Bytes {
    const MARK: &[u8] = b"$TOK";
    if !chunk.windows(MARK.len()).any(|w| w == MARK) {
        return Bytes::copy_from_slice(chunk);
    }
    let mut out = Vec::with_capacity(chunk.len() + token.len());
    let mut i = 0;
    while i < chunk.len() {
        if chunk[i..].starts_with(MARK) {
            out.extend_from_slice(token.as_bytes());
            i += MARK.len();
        } else {
            out.push(chunk[i]);
            i += 1;
        }
    }
    Bytes::from(out)
}

/// Inputs to start a corpus from: a registration with a valid token answered by the IMS side,
/// requests riding it, an INVITE with CANCEL and ACK, an IMS-side INVITE down a flow token and
/// its answer from the flow, timers, a closed flow; in every mode.
pub fn seeds() -> Vec<Vec<u8>> {
    let key = FlowKey::from_secret(&[7u8; 32]).expect("32 bytes");
    let t1 = key.token(FlowId(1));
    let req = |method: &str, n: u32, extra: &str| {
        format!(
            "{method} sip:bob@ims.example SIP/2.0\r\nVia: SIP/2.0/WSS c1.invalid;branch=z9hG4bKs{n}\r\n\
Max-Forwards: 70\r\nTo: <sip:bob@ims.example>\r\nFrom: <sip:alice@ims.example>;tag=s{n}\r\n\
Call-ID: seed-{n}\r\nCSeq: 1 {method}\r\nContact: <sip:alice@c1.invalid;transport=ws>\r\n\
{extra}Content-Length: 0\r\n\r\n"
        )
    };
    let register = "REGISTER sip:ims.example SIP/2.0\r\nVia: SIP/2.0/WSS c1.invalid;branch=z9hG4bKr1\r\n\
Max-Forwards: 70\r\nTo: <sip:alice@ims.example>\r\nFrom: <sip:alice@ims.example>;tag=r1\r\n\
Call-ID: reg-1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@c1.invalid;transport=ws>;reg-id=1;expires=600\r\n\
Authorization: Bearer $TOK\r\nP-Asserted-Identity: <sip:x@y>\r\nContent-Length: 0\r\n\r\n";
    let from_ims = format!(
        "INVITE sip:alice@c1.invalid;transport=ws SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKi1\r\n\
Route: <sip:{t1}@127.0.0.1:5062;transport=udp;lr;ob>\r\nMax-Forwards: 69\r\n\
From: <sip:carol@ims.example>;tag=c1\r\nTo: <sip:alice@ims.example>\r\nCall-ID: ims-1\r\n\
CSeq: 1 INVITE\r\nContact: <sip:carol@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n"
    );
    let answer = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/WS ims-example.invalid;branch=z9hG4bK0\r\n\
From: <sip:carol@ims.example>;tag=c1\r\nTo: <sip:alice@ims.example>;tag=a1\r\nCall-ID: ims-1\r\n\
CSeq: 1 INVITE\r\nP-Asserted-Identity: <sip:x@y>\r\nContent-Length: 0\r\n\r\n";
    let invite = req("INVITE", 2, "");
    let cancel = invite
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("1 INVITE", "1 CANCEL");
    let ack = req("ACK", 2, "").replace(
        "To: <sip:bob@ims.example>",
        "To: <sip:bob@ims.example>;tag=b",
    );
    let mut out = Vec::new();
    for mode in 0..4u8 {
        let mut input = vec![mode];
        input.extend(record(0x80, register.as_bytes()));
        input.extend(record(
            0x80,
            req(
                "MESSAGE",
                1,
                "P-Preferred-Identity: <sip:alice@ims.example>\r\n",
            )
            .as_bytes(),
        ));
        input.extend(record(1, invite.as_bytes()));
        input.extend(record(0x08, cancel.as_bytes()));
        input.extend(record(0, cancel.as_bytes()));
        input.extend(record(0, ack.as_bytes()));
        input.extend(record(2, from_ims.as_bytes()));
        input.extend(record(0, answer.as_bytes()));
        input.extend(record(4, &[0x40, 0x00]));
        input.extend(record(6, b"Rjti"));
        input.extend(record(5, b""));
        out.push(input);
    }
    out
}

/// Builds one input record (for seeds and tests).
pub fn record(op: u8, bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut v = vec![op];
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&bytes[..usize::from(len)]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &str = "REGISTER sip:ims.example SIP/2.0\r\n\
Via: SIP/2.0/WSS c1.invalid;branch=z9hG4bKf1\r\nMax-Forwards: 70\r\n\
To: <sip:alice@ims.example>\r\nFrom: <sip:alice@ims.example>;tag=1\r\nCall-ID: f1\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:alice@c1.invalid;transport=ws>;reg-id=1\r\n\
Authorization: Bearer $TOK\r\nP-Asserted-Identity: <sip:x@y>\r\nContent-Length: 0\r\n\r\n";

    /// The seeds the fuzz corpus starts from run clean, and a registration gets through.
    #[test]
    fn seeds_run_clean_in_both_modes() {
        for mode in 0..4u8 {
            let mut input = vec![mode];
            input.extend(record(0x80, REGISTER.as_bytes()));
            input.extend(record(
                0x80,
                REGISTER
                    .replace("REGISTER sip", "MESSAGE sip")
                    .replace("1 REGISTER", "1 MESSAGE")
                    .as_bytes(),
            ));
            input.extend(record(4, &[0x10, 0x00]));
            input.extend(record(5, b""));
            exercise(&input);
        }
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sip/tests/rfc4475"))
            .expect("rfc4475 dir")
            .flatten()
        {
            let bytes = std::fs::read(entry.path()).expect("read");
            for op in [0u8, 2, 3] {
                let mut input = vec![1];
                input.extend(record(op, &bytes));
                exercise(&input);
            }
        }
    }
}
