//! In-memory tests of the edge's trust rules with a real token verifier and an ephemeral key
//! ring: RFC 8898 (every refusal, the Expires cap, each assertion mode, revocation), what a
//! WebSocket may not write (TS 24.229 §4.4), who owns an ACK, a CANCEL and a response, and the
//! order of RFC 3261 §16.3. Virtual time, no sockets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use imsgw_sip::Message;
use imsgw_token::{KeyRing, MintRequest, Minter, MinterConfig, Verifier, VerifierConfig};

use super::tests::{sent_to, text};
use super::*;
use crate::config::{Challenge, IdentityAssertion, UpstreamTransport};

pub(super) const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://waf.ims.example";
const AUD: &str = "sip:ims.example";
const PCSCF: &str = "127.0.0.1:5070";

pub(super) struct H {
    pub(super) edge: Edge,
    pub(super) now: Instant,
    minter: Minter,
    seq: u32,
}

impl H {
    pub(super) fn new(assertion: &[IdentityAssertion]) -> Self {
        Self::with(assertion, Challenge::Www)
    }

    fn with(assertion: &[IdentityAssertion], challenge: Challenge) -> Self {
        let ring = KeyRing::ephemeral(NOW).expect("ephemeral key");
        let minter = Minter::new(MinterConfig::new(ISS, AUD), &ring);
        let mut vc = VerifierConfig::new(ISS, AUD);
        vc.required_scope = Some("sip".into());
        let verifier = Verifier::new(vc, &ring).expect("verifier");
        let auth = Auth {
            settings: AuthSettings {
                required: true,
                realm: "ims.example".into(),
                authz_server: ISS.into(),
                scope: "sip".into(),
                challenge,
                assertion: assertion.to_vec(),
                tna_header: "Authorization: Digest username=\"{impi}\", realm=\"{realm}\", uri=\"sip:{realm}\", nonce=\"\", response=\"\", integrity-protected=\"auth-done\"".into(),
            },
            verifier: Some(verifier),
            revoked: Revoked::default(),
            digest: None,
            proofs: super::pop::ProofSettings::default(),
            elsewhere: Default::default(),
        };
        let settings = EdgeSettings {
            local: super::tests::local(UpstreamTransport::Udp),
            t1: Duration::from_millis(500),
            strip: StripList::default(),
            media: None,
            register_timeout: None,
        };
        let mut edge = Edge::new(settings, FlowKey::random(), auth);
        edge.set_wall_clock(NOW);
        for f in 1..=3 {
            edge.flow_opened(
                FlowId(f),
                format!("192.0.2.{f}:5000").parse().expect("addr"),
            );
        }
        Self {
            edge,
            now: Instant::now(),
            minter,
            seq: 0,
        }
    }

    pub(super) fn mint(&self, impu: &str, scope: &str, ttl: u64) -> (String, String) {
        let (t, c) = self
            .minter
            .mint(
                NOW,
                MintRequest {
                    sub: "web-user".into(),
                    impu: impu.into(),
                    impi: impu.trim_start_matches("sip:").to_string(),
                    scope: scope.into(),
                    client_id: "wic".into(),
                    ttl: Some(ttl),
                },
            )
            .expect("mint");
        (t.expose().to_string(), c.jti)
    }

    /// A token for `user` bound to the key `jkt` (`cnf.jkt`, RFC 9449 §6.1).
    pub(super) fn bound_token(&self, user: &str, jkt: &imsgw_token::pop::Jkt) -> String {
        let req = MintRequest {
            sub: "web-user".into(),
            impu: format!("sip:{user}@ims.example"),
            impi: format!("{user}@ims.example"),
            scope: "sip".into(),
            client_id: "wic".into(),
            ttl: Some(600),
        };
        let (t, _) = self
            .minter
            .mint_bound(NOW, req, imsgw_token::new_jti(), Some(jkt))
            .expect("mint");
        t.expose().to_string()
    }

    pub(super) fn token(&self, user: &str) -> String {
        self.mint(&format!("sip:{user}@ims.example"), "sip", 600).0
    }

    pub(super) fn send(&mut self, flow: u64, text: &str) -> Vec<Output> {
        self.edge
            .from_flow(self.now, FlowId(flow), Bytes::from(text.to_string()));
        std::iter::from_fn(|| self.edge.poll_output()).collect()
    }

    pub(super) fn ims(&mut self, text: &str) -> Vec<Output> {
        let a: SocketAddr = PCSCF.parse().expect("addr");
        self.edge
            .from_ims(self.now, Link::Udp(a), a, Bytes::from(text.to_string()));
        std::iter::from_fn(|| self.edge.poll_output()).collect()
    }

    fn next(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// A REGISTER for `user` on `flow` with `extra` header lines (each ending in CRLF).
    pub(super) fn register(&mut self, flow: u64, user: &str, extra: &str) -> Vec<Output> {
        let n = self.next();
        let msg = format!(
            "REGISTER sip:ims.example SIP/2.0\r\n\
Via: SIP/2.0/WSS c{flow}.invalid;branch=z9hG4bKreg{n}\r\nMax-Forwards: 70\r\n\
To: <sip:{user}@ims.example>\r\nFrom: <sip:{user}@ims.example>;tag=r{n}\r\n\
Call-ID: reg-{n}\r\nCSeq: {n} REGISTER\r\n\
Contact: <sip:{user}@c{flow}.invalid;transport=ws>;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-00000000000{flow}>\"\r\n\
Expires: 3600\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        self.send(flow, &msg)
    }

    /// Registers `user` on `flow` with a valid token and answers 200 from the P-CSCF.
    pub(super) fn registered(&mut self, flow: u64, user: &str) {
        let tok = self.token(user);
        let outs = self.register(flow, user, &format!("Authorization: Bearer {tok}\r\n"));
        let up = sent_to(&outs, Dest::Upstream);
        let ok = ok_for(&up, 200, "");
        let outs = self.ims(&ok);
        assert_eq!(sent_to(&outs, Dest::Flow(FlowId(flow))).status(), Some(200));
    }

    /// A request `method` from carol on the IMS side, routed down flow 1 by its Path token.
    pub(super) fn ims_request_to_alice(&self, method: &str, call_id: &str) -> String {
        let token = self.edge.key.token(FlowId(1));
        format!(
            "{method} sip:alice@c1.invalid;transport=ws SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{call_id}\r\n\
Route: <sip:{token}@127.0.0.1:5062;transport=udp;lr;ob>\r\n\
Max-Forwards: 69\r\nFrom: <sip:carol@ims.example>;tag=c1\r\nTo: <sip:alice@ims.example>\r\n\
Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContact: <sip:carol@127.0.0.1:5097>\r\n\
Content-Length: 0\r\n\r\n"
        )
    }

    /// A request `method` from `from_user` on `flow` (out of dialog unless `to_tag`).
    pub(super) fn request(
        &mut self,
        flow: u64,
        method: &str,
        from_user: &str,
        extra: &str,
    ) -> String {
        let n = self.next();
        format!(
            "{method} sip:bob@ims.example SIP/2.0\r\n\
Via: SIP/2.0/WSS c{flow}.invalid;branch=z9hG4bKm{n}\r\nMax-Forwards: 70\r\n\
To: <sip:bob@ims.example>\r\nFrom: <sip:{from_user}@ims.example>;tag=f{n}\r\n\
Call-ID: call-{n}\r\nCSeq: 1 {method}\r\n\
Contact: <sip:{from_user}@c{flow}.invalid;transport=ws>\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    }
}

/// A response to what the edge sent upstream, as the P-CSCF would send it.
pub(super) fn ok_for(up: &Message, code: u16, extra: &str) -> String {
    let b = up.as_bytes();
    let mut out = format!("SIP/2.0 {code} Whatever\r\n");
    for h in up.headers() {
        use imsgw_sip::HeaderName as N;
        if matches!(h.name, N::Via | N::From | N::CallId | N::CSeq) {
            out.push_str(&String::from_utf8_lossy(&b[h.line.clone()]));
        }
        if h.name == N::To {
            let line = String::from_utf8_lossy(&b[h.line.clone()]).into_owned();
            out.push_str(&line.replace("\r\n", ";tag=pcscf\r\n"));
        }
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

pub(super) fn status_to(outs: &[Output], flow: u64) -> u16 {
    sent_to(outs, Dest::Flow(FlowId(flow)))
        .status()
        .expect("a response")
}

pub(super) fn nothing_upstream(outs: &[Output]) {
    assert!(
        !outs.iter().any(|o| matches!(
            o,
            Output::Send {
                to: Dest::Upstream,
                ..
            }
        )),
        "nothing may go upstream: {outs:#?}"
    );
}

pub(super) fn header_lines(m: &Message, name: &str) -> Vec<String> {
    let t = text(m);
    t.split("\r\n")
        .filter(|l| {
            l.split(':')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
        })
        .map(|l| l.to_string())
        .collect()
}

pub(super) const TNA_ALICE: &str = "Authorization: Digest username=\"alice@ims.example\", realm=\"ims.example\", uri=\"sip:ims.example\", nonce=\"\", response=\"\", integrity-protected=\"auth-done\"";

// ---- RFC 8898 at the edge -------------------------------------------------------------------

#[test]
fn rfc8898_2_2_register_without_token_gets_the_bearer_challenge() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let outs = h.register(1, "alice", "");
    nothing_upstream(&outs);
    let r = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(r.status(), Some(401));
    assert_eq!(
        header_lines(&r, "WWW-Authenticate"),
        vec![format!(
            "WWW-Authenticate: Bearer realm=\"ims.example\", authz_server=\"{ISS}\", scope=\"sip\""
        )]
    );
}

#[test]
fn rfc8898_2_3_proxy_challenge_is_407() {
    let mut h = H::with(&[IdentityAssertion::Tna], Challenge::Proxy);
    let outs = h.register(1, "alice", "");
    let r = sent_to(&outs, Dest::Flow(FlowId(1)));
    assert_eq!(r.status(), Some(407));
    assert_eq!(header_lines(&r, "Proxy-Authenticate").len(), 1);
    assert!(header_lines(&r, "WWW-Authenticate").is_empty());
}

#[test]
fn rfc6750_3_1_every_bad_token_is_refused_with_its_error() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let (expired, _) = h.mint("sip:alice@ims.example", "sip", 1);
    h.edge.set_wall_clock(NOW + 2);
    let (noscope, _) = h.mint("sip:alice@ims.example", "profile", 600);
    let (revoked, jti) = h.mint("sip:alice@ims.example", "sip", 600);
    h.edge.revoke(h.now, jti, NOW + 600);
    let other = h.token("mallory");
    let cases: Vec<(String, u16, Option<&str>)> = vec![
        ("Bearer abc.def.ghi".into(), 401, Some("invalid_token")),
        ("Bearer".into(), 401, Some("invalid_token")),
        (format!("Bearer {expired}"), 401, Some("invalid_token")),
        (format!("Bearer {revoked}"), 401, Some("invalid_token")),
        (format!("Bearer {noscope}"), 403, Some("insufficient_scope")),
        (format!("Bearer {other}"), 403, None),
    ];
    for (cred, code, error) in cases {
        let outs = h.register(1, "alice", &format!("Authorization: {cred}\r\n"));
        nothing_upstream(&outs);
        let r = sent_to(&outs, Dest::Flow(FlowId(1)));
        assert_eq!(r.status(), Some(code), "{cred:.40}: {}", text(&r));
        let ch = header_lines(&r, "WWW-Authenticate");
        match error {
            Some(e) => assert!(
                ch.len() == 1 && ch[0].ends_with(&format!(", error=\"{e}\"")),
                "{ch:?}"
            ),
            None => assert!(ch.is_empty(), "{ch:?}"),
        }
    }
}

#[test]
fn rfc8898_register_expires_is_capped_to_the_token() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let (tok, _) = h.mint("sip:alice@ims.example", "sip", 300);
    let outs = h.register(1, "alice", &format!("Authorization: Bearer {tok}\r\n"));
    let up = sent_to(&outs, Dest::Upstream);
    assert_eq!(up.expires().expect("expires"), Some(300), "{}", text(&up));
}

#[test]
fn tna_is_asserted_on_register_and_on_every_later_request() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let tok = h.token("alice");
    let outs = h.register(1, "alice", &format!("Authorization: Bearer {tok}\r\n"));
    let up = sent_to(&outs, Dest::Upstream);
    assert_eq!(
        header_lines(&up, "Authorization"),
        vec![TNA_ALICE.to_string()]
    );
    assert!(!text(&up).contains("Bearer"), "{}", text(&up));
    h.ims(&ok_for(&up, 200, ""));
    let m = h.request(1, "MESSAGE", "alice", "");
    let up = sent_to(&h.send(1, &m), Dest::Upstream);
    assert_eq!(
        header_lines(&up, "Authorization"),
        vec![TNA_ALICE.to_string()]
    );
    assert!(header_lines(&up, "P-Asserted-Identity").is_empty());
}

#[test]
fn pai_is_asserted_on_requests_but_not_on_register() {
    let mut h = H::new(&[IdentityAssertion::Pai]);
    let tok = h.token("alice");
    let outs = h.register(1, "alice", &format!("Authorization: Bearer {tok}\r\n"));
    let up = sent_to(&outs, Dest::Upstream);
    assert!(header_lines(&up, "P-Asserted-Identity").is_empty());
    assert!(header_lines(&up, "Authorization").is_empty());
    h.ims(&ok_for(&up, 200, ""));
    let m = h.request(1, "MESSAGE", "alice", "");
    let up = sent_to(&h.send(1, &m), Dest::Upstream);
    assert_eq!(
        header_lines(&up, "P-Asserted-Identity"),
        vec!["P-Asserted-Identity: <sip:alice@ims.example>".to_string()]
    );
}

#[test]
fn passthrough_rewrites_the_checked_bearer_token_without_extra_parameters() {
    let mut h = H::new(&[IdentityAssertion::Passthrough]);
    let tok = h.token("alice");
    // TS 24.371's quoted form with a parameter the client added: imsgw writes the plain form.
    let outs = h.register(
        1,
        "alice",
        &format!("Authorization: Bearer {tok}\r\nAuthorization: Digest username=\"bob\", integrity-protected=\"auth-done\"\r\n"),
    );
    let up = sent_to(&outs, Dest::Upstream);
    assert_eq!(
        header_lines(&up, "Authorization"),
        vec![format!("Authorization: Bearer {tok}")]
    );
    h.ims(&ok_for(&up, 200, ""));
    // A MESSAGE riding the registration carries the registration's token.
    let m = h.request(1, "MESSAGE", "alice", "");
    let up = sent_to(&h.send(1, &m), Dest::Upstream);
    assert_eq!(
        header_lines(&up, "Authorization"),
        vec![format!("Authorization: Bearer {tok}")]
    );
}

#[test]
fn rfc8898_2_1_4_revoked_registration_no_longer_carries_requests() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let (tok, jti) = h.mint("sip:alice@ims.example", "sip", 600);
    let outs = h.register(1, "alice", &format!("Authorization: Bearer {tok}\r\n"));
    let up = sent_to(&outs, Dest::Upstream);
    h.ims(&ok_for(&up, 200, ""));
    h.edge.revoke(h.now, jti, NOW + 600);
    let m = h.request(1, "MESSAGE", "alice", "");
    let outs = h.send(1, &m);
    nothing_upstream(&outs);
    assert_eq!(status_to(&outs, 1), 401);
}

// ---- Nothing the client writes about identity or trust reaches the IMS -----------------------

const FORGED: &str = "P-Asserted-Identity: <sip:admin@ims.example>\r\n\
P-Preferred-Identity: <sip:bob@ims.example>\r\n\
P-Served-User: <sip:bob@ims.example>;sescase=orig;regstate=reg\r\n\
Authorization: Digest username=\"bob@ims.example\", realm=\"ims.example\", integrity-protected=\"auth-done\"\r\n\
Proxy-Authorization: Digest username=\"bob@ims.example\", integrity-protected=\"yes\"\r\n\
Path: <sip:evil@203.0.113.9;lr>\r\n\
Record-Route: <sip:evil@203.0.113.9;lr>\r\n\
P-Charging-Vector: icid-value=forged\r\n\
P-Charging-Function-Addresses: ccf=evil\r\n\
P-Visited-Network-ID: evil\r\n\
P-Profile-Key: <sip:bob@ims.example>\r\n\
X-Innocent: stays\r\n";

fn assert_only_ours(up: &Message, expected_auth: &[&str], pai: &[&str]) {
    let t = text(up);
    for name in [
        "P-Preferred-Identity",
        "P-Served-User",
        "Proxy-Authorization",
        "Path",
        "Record-Route",
        "P-Charging-Vector",
        "P-Charging-Function-Addresses",
        "P-Visited-Network-ID",
        "P-Profile-Key",
    ] {
        // The edge's own Path (REGISTER) and Record-Route (INVITE, SUBSCRIBE) are the only ones.
        let lines = header_lines(up, name);
        let ours = lines.iter().all(|l| {
            l.split(',')
                .all(|v| v.contains("@127.0.0.1:5062;") || v.contains("<sip:127.0.0.1:5062;"))
        });
        let edge_writes = matches!(name, "Path" | "Record-Route");
        assert!(
            lines.is_empty() || (edge_writes && ours),
            "{name} crossed:\n{t}"
        );
    }
    assert_eq!(header_lines(up, "Authorization"), expected_auth, "{t}");
    assert_eq!(header_lines(up, "P-Asserted-Identity"), pai, "{t}");
    assert!(
        !t.contains("evil") && !t.contains("forged") && !t.contains("admin@"),
        "{t}"
    );
    assert!(t.contains("X-Innocent: stays\r\n"), "{t}");
}

#[test]
fn ts24229_client_identity_and_trust_headers_never_cross_in_any_mode() {
    for mode in [
        IdentityAssertion::Tna,
        IdentityAssertion::Pai,
        IdentityAssertion::Passthrough,
    ] {
        let mut h = H::new(&[mode]);
        let tok = h.token("alice");
        let outs = h.register(
            1,
            "alice",
            &format!("Authorization: Bearer {tok}\r\n{FORGED}"),
        );
        let up = sent_to(&outs, Dest::Upstream);
        let bearer = format!("Authorization: Bearer {tok}");
        let reg_auth: Vec<&str> = match mode {
            IdentityAssertion::Tna => vec![TNA_ALICE],
            IdentityAssertion::Pai => vec![],
            IdentityAssertion::Passthrough => vec![bearer.as_str()],
        };
        assert_only_ours(&up, &reg_auth, &[]);
        h.ims(&ok_for(&up, 200, ""));
        let pai: &[&str] = if mode == IdentityAssertion::Pai {
            &["P-Asserted-Identity: <sip:alice@ims.example>"]
        } else {
            &[]
        };
        for method in ["MESSAGE", "INVITE", "SUBSCRIBE", "OPTIONS"] {
            let m = h.request(1, method, "alice", FORGED);
            let up = sent_to(&h.send(1, &m), Dest::Upstream);
            assert_only_ours(&up, &reg_auth, pai);
        }
    }
}

#[test]
fn client_pai_in_a_response_does_not_cross_and_pai_mode_asserts_the_callee() {
    for (mode, want) in [
        (IdentityAssertion::Tna, vec![]),
        (
            IdentityAssertion::Pai,
            vec!["P-Asserted-Identity: <sip:alice@ims.example>".to_string()],
        ),
    ] {
        let mut h = H::new(&[mode]);
        h.registered(1, "alice");
        let outs = h.ims(&h.ims_request_to_alice("INVITE", "inv-resp"));
        let down = sent_to(&outs, Dest::Flow(FlowId(1)));
        let resp = ok_for(
            &down,
            180,
            "P-Asserted-Identity: <sip:admin@ims.example>\r\n",
        );
        let outs = h.send(1, &resp);
        let up = sent_to(&outs, Dest::Link(Link::Udp(PCSCF.parse().expect("addr"))));
        assert_eq!(up.status(), Some(180));
        assert_eq!(
            header_lines(&up, "P-Asserted-Identity"),
            want,
            "{}",
            text(&up)
        );
    }
}

// ---- No request without an owner ---------------------------------------------------------------

#[test]
fn ack_on_a_fresh_unregistered_flow_is_dropped() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let ack = h.request(2, "ACK", "bob", "Route: <sip:victim@203.0.113.7;lr>\r\n");
    let ack = ack.replace(
        "To: <sip:bob@ims.example>",
        "To: <sip:bob@ims.example>;tag=x",
    );
    let outs = h.send(2, &ack);
    assert!(outs.is_empty(), "{outs:#?}");
    assert_eq!(h.edge.stats().unowned_ack_dropped, 1);
}

#[test]
fn ack_from_a_registered_flow_for_another_identity_is_dropped() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    h.registered(1, "alice");
    let ack = h.request(1, "ACK", "bob", "");
    assert!(h.send(1, &ack).is_empty());
    let ack = h.request(1, "ACK", "alice", "");
    let up = sent_to(&h.send(1, &ack), Dest::Upstream);
    assert_eq!(
        header_lines(&up, "Authorization"),
        vec![TNA_ALICE.to_string()]
    );
}

#[test]
fn ack_of_an_invite_authorized_by_its_own_token_is_forwarded() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let tok = h.token("carol");
    let inv = h.request(
        2,
        "INVITE",
        "carol",
        &format!("Authorization: Bearer {tok}\r\n"),
    );
    let outs = h.send(2, &inv);
    let up = sent_to(&outs, Dest::Upstream);
    let call_id = up.call_id().expect("call-id").to_string();
    let invite_tag = format!("tag=f{}", h.seq);
    // RFC 3261 §13.2.2.4: the ACK has the INVITE's Call-ID and From (tag included).
    let ack = h.request(2, "ACK", "carol", "");
    let ack = ack
        .replace(
            &format!("Call-ID: call-{}", h.seq),
            &format!("Call-ID: {call_id}"),
        )
        .replace(&format!("tag=f{}", h.seq), &invite_tag);
    let up = sent_to(&h.send(2, &ack), Dest::Upstream);
    assert_eq!(up.call_id().expect("call-id"), call_id);
    // The same ACK from another flow is nobody's.
    assert!(h.send(3, &ack).is_empty());
}

#[test]
fn rfc3261_9_2_cancel_only_reaches_the_flows_own_pending_invite() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    h.registered(1, "alice");
    let inv = h.request(1, "INVITE", "alice", "");
    let outs = h.send(1, &inv);
    sent_to(&outs, Dest::Upstream);
    let cancel = inv
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace(" INVITE\r\n", " CANCEL\r\n");
    // A stranger on flow 2 with alice's branch and sent-by: 481, nothing upstream.
    let outs = h.send(2, &cancel);
    nothing_upstream(&outs);
    assert_eq!(status_to(&outs, 2), 481);
    // Alice herself: 200, and the edge cancels its branch once a provisional arrived.
    let outs = h.send(1, &cancel);
    assert_eq!(status_to(&outs, 1), 200);
    assert_eq!(h.edge.stats().unmatched_cancel, 1);
}

#[test]
fn rfc3261_18_1_2_only_the_link_a_request_went_down_may_answer_it() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    h.registered(1, "alice");
    let outs = h.ims(&h.ims_request_to_alice("MESSAGE", "stray-1"));
    let down = sent_to(&outs, Dest::Flow(FlowId(1)));
    let answer = ok_for(&down, 200, "");
    // Flow 2 answers alice's transaction: dropped, the P-CSCF hears nothing.
    assert!(h.send(2, &answer).is_empty());
    assert_eq!(h.edge.stats().stray_responses_dropped, 1);
    // The IMS side cannot answer it either.
    assert!(h.ims(&answer).is_empty());
    // Alice's own answer goes through.
    let outs = h.send(1, &answer);
    assert_eq!(
        sent_to(&outs, Dest::Link(Link::Udp(PCSCF.parse().expect("addr")))).status(),
        Some(200)
    );
}

#[test]
fn request_from_ims_naming_two_flows_is_refused() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    h.registered(1, "alice");
    h.registered(2, "bob");
    let (t1, t2) = (h.edge.key.token(FlowId(1)), h.edge.key.token(FlowId(2)));
    let msg = format!(
        "MESSAGE sip:bob@c2.invalid;transport=ws SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKtwo\r\n\
Route: <sip:{t1}@127.0.0.1:5062;transport=udp;lr;ob>, <sip:{t2}@127.0.0.1:5062;transport=udp;lr;ob>\r\n\
Max-Forwards: 69\r\nFrom: <sip:carol@ims.example>;tag=c1\r\nTo: <sip:bob@ims.example>\r\n\
Call-ID: two-flows\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
    );
    let outs = h.ims(&msg);
    assert_eq!(outs.len(), 1, "{outs:#?}");
    let r = sent_to(&outs, Dest::Link(Link::Udp(PCSCF.parse().expect("addr"))));
    assert_eq!(r.status(), Some(403));
    // A Request-URI that names another flow than the Route does is refused the same way.
    let msg2 = msg
        .replace(
            &format!("<sip:{t1}@127.0.0.1:5062;transport=udp;lr;ob>, "),
            "",
        )
        .replace(
            "MESSAGE sip:bob@c2.invalid;transport=ws",
            &format!("MESSAGE sip:{t1}@127.0.0.1:5062"),
        )
        .replace("z9hG4bKtwo", "z9hG4bKtwo2");
    let outs = h.ims(&msg2);
    assert_eq!(outs.len(), 1, "{outs:#?}");
    assert_eq!(
        sent_to(&outs, Dest::Link(Link::Udp(PCSCF.parse().expect("addr")))).status(),
        Some(403)
    );
}

// ---- RFC 3261 §16.3 order: proxy checks before the Bearer challenge --------------------------

#[test]
fn rfc3261_16_3_proxy_checks_come_before_authorization() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let base = h.request(2, "OPTIONS", "anon", "");
    let cases = [
        (base.replacen("SIP/2.0\r\n", "SIP/7.0\r\n", 1), 505),
        (
            base.replacen(
                "OPTIONS sip:bob@ims.example",
                "OPTIONS nobodyKnowsThisScheme:x",
                1,
            ),
            416,
        ),
        (base.replace("Max-Forwards: 70", "Max-Forwards: 0"), 483),
        (
            base.replace(
                "Content-Length: 0",
                "Proxy-Require: foo, bar\r\nContent-Length: 0",
            ),
            420,
        ),
        (base.clone(), 401),
    ];
    for (msg, code) in cases {
        let outs = h.send(2, &msg);
        nothing_upstream(&outs);
        let r = sent_to(&outs, Dest::Flow(FlowId(2)));
        assert_eq!(r.status(), Some(code), "{}", text(&r));
        if code == 420 {
            assert_eq!(
                header_lines(&r, "Unsupported"),
                vec!["Unsupported: foo, bar".to_string()]
            );
        }
    }
}

// ---- One canonical IMS identity (RFC 3261 §19.1.4) ------------------------------------------

#[test]
fn rfc3261_19_1_4_the_token_identity_is_compared_whole() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    let tok = h.token("bob");
    let auth = format!("Authorization: Bearer {tok}\r\n");
    // Odd-shaped URIs that name bob by their pieces but are not bob's IMPU: refused, never sent.
    for to in [
        "sip:bob:x@ims.example",
        "sip:bob:@ims.example",
        "sip:bob@ims.example;user=phone",
        "sip:bob@ims.example:5060",
        "sips:bob@ims.example",
        "sip:Bob@ims.example",
        "sip:bob@ims.example?subject=x",
    ] {
        let n = h.next();
        let reg = format!(
            "REGISTER sip:ims.example SIP/2.0\r\nVia: SIP/2.0/WSS c1.invalid;branch=z9hG4bKodd{n}\r\n\
Max-Forwards: 70\r\nTo: <{to}>\r\nFrom: <{to}>;tag=o{n}\r\nCall-ID: odd-{n}\r\nCSeq: 1 REGISTER\r\n\
Contact: <sip:bob@c1.invalid;transport=ws>\r\n{auth}Content-Length: 0\r\n\r\n"
        );
        let outs = h.send(1, &reg);
        nothing_upstream(&outs);
        let code = status_to(&outs, 1);
        assert_eq!(code, 403, "{to}");
    }
    // The same identity spelled with an escape and an upper-case host is bob (§19.1.4).
    let n = h.next();
    let reg = format!(
        "REGISTER sip:ims.example SIP/2.0\r\nVia: SIP/2.0/WSS c1.invalid;branch=z9hG4bKesc{n}\r\n\
Max-Forwards: 70\r\nTo: <sip:%62ob@IMS.example>\r\nFrom: <sip:%62ob@IMS.example>;tag=e{n}\r\n\
Call-ID: esc-{n}\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@c1.invalid;transport=ws>\r\n{auth}\
Content-Length: 0\r\n\r\n"
    );
    sent_to(&h.send(1, &reg), Dest::Upstream);
}

// ---- Found by review: smuggling, control characters, ACK identity, CANCEL assertion, floods --

#[test]
fn rfc3261_18_3_bytes_after_the_body_are_never_forwarded() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    h.registered(1, "alice");
    let smuggled = "MESSAGE sip:victim@ims.example SIP/2.0\r\n\
Via: SIP/2.0/TCP 127.0.0.1:5062;branch=z9hG4bKsmuggled\r\nMax-Forwards: 70\r\n\
To: <sip:victim@ims.example>\r\nFrom: <sip:boss@ims.example>;tag=s\r\nCall-ID: smuggled\r\n\
CSeq: 1 MESSAGE\r\nP-Asserted-Identity: <sip:boss@ims.example>\r\nContent-Length: 0\r\n\r\n";
    let m = format!("{}{smuggled}", h.request(1, "MESSAGE", "alice", ""));
    let up = sent_to(&h.send(1, &m), Dest::Upstream);
    let t = text(&up);
    assert!(!t.contains("smuggled") && !t.contains("boss"), "{t}");
    assert!(t.ends_with("Content-Length: 0\r\n\r\n"), "{t}");
    // The same trailer after a REGISTER that carries its own token.
    let tok = h.token("alice");
    let n = h.next();
    let reg = format!(
        "REGISTER sip:ims.example SIP/2.0\r\nVia: SIP/2.0/WSS c1.invalid;branch=z9hG4bKsm{n}\r\n\
Max-Forwards: 70\r\nTo: <sip:alice@ims.example>\r\nFrom: <sip:alice@ims.example>;tag=sm{n}\r\n\
Call-ID: sm-{n}\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@c1.invalid;transport=ws>\r\n\
Authorization: Bearer {tok}\r\nContent-Length: 0\r\n\r\n{smuggled}"
    );
    let t = text(&sent_to(&h.send(1, &reg), Dest::Upstream));
    assert!(!t.contains("smuggled"), "{t}");
}

#[test]
fn rfc3261_25_1_a_bare_cr_or_nul_in_a_header_is_refused() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    h.registered(1, "alice");
    for extra in [
        "X-A: a\rP-Asserted-Identity: <sip:admin@ims.example>\r\n",
        "X-A: a\0b\r\n",
        // Next to the colon or the line end too, where trimming a value would hide it.
        "Subject:\rP-Asserted-Identity: <sip:victim@ims.example>\r\n",
        "Subject: x\r\r\n",
    ] {
        let m = h.request(1, "MESSAGE", "alice", extra);
        let outs = h.send(1, &m);
        nothing_upstream(&outs);
        assert_eq!(status_to(&outs, 1), 400, "{extra:?}");
    }
}

#[test]
fn ack_by_call_needs_the_invites_from_tag_and_an_unrevoked_token() {
    let mut h = H::new(&[IdentityAssertion::Pai]);
    let (tok, jti) = h.mint("sip:carol@ims.example", "sip", 600);
    let inv = h.request(
        2,
        "INVITE",
        "carol",
        &format!("Authorization: Bearer {tok}\r\n"),
    );
    let call_id = sent_to(&h.send(2, &inv), Dest::Upstream)
        .call_id()
        .expect("call-id")
        .to_string();
    let tag = format!("tag=f{}", h.seq);
    let ack = |h: &mut H, from: &str, tag: &str| {
        let a = h.request(2, "ACK", from, "");
        let seq = h.seq;
        a.replace(
            &format!("Call-ID: call-{seq}"),
            &format!("Call-ID: {call_id}"),
        )
        .replace(&format!("tag=f{seq}"), tag)
    };
    // Another From tag, or another From identity with the INVITE's tag: not that call's ACK.
    let a = ack(&mut h, "carol", "tag=other");
    assert!(h.send(2, &a).is_empty());
    let a = ack(&mut h, "boss", &tag);
    assert!(h.send(2, &a).is_empty());
    // The INVITE's own: forwarded, asserted.
    let a = ack(&mut h, "carol", &tag);
    let up = sent_to(&h.send(2, &a), Dest::Upstream);
    assert_eq!(
        header_lines(&up, "P-Asserted-Identity"),
        vec!["P-Asserted-Identity: <sip:carol@ims.example>".to_string()]
    );
    // Once the token is revoked, no more.
    h.edge.revoke(h.now, jti, NOW + 600);
    let a = ack(&mut h, "carol", &tag);
    assert!(h.send(2, &a).is_empty());
}

#[test]
fn the_cancel_the_edge_sends_for_a_flow_carries_the_assertion() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    h.registered(1, "alice");
    let inv = h.request(1, "INVITE", "alice", "");
    let up = sent_to(&h.send(1, &inv), Dest::Upstream);
    h.ims(&ok_for(&up, 180, ""));
    let cancel = inv
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace(" INVITE\r\n", " CANCEL\r\n");
    let outs = h.send(1, &cancel);
    let c = sent_to(&outs, Dest::Upstream);
    assert_eq!(c.method(), Some(&imsgw_sip::Method::Cancel));
    assert_eq!(
        header_lines(&c, "Authorization"),
        vec![TNA_ALICE.to_string()]
    );
}

#[test]
fn a_flow_with_too_many_pending_requests_gets_503_and_others_go_on() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    h.registered(1, "alice");
    h.registered(3, "dave");
    for _ in 0..MAX_PENDING_PER_FLOW {
        let m = h.request(1, "MESSAGE", "alice", "");
        sent_to(&h.send(1, &m), Dest::Upstream);
    }
    let m = h.request(1, "MESSAGE", "alice", "");
    let outs = h.send(1, &m);
    nothing_upstream(&outs);
    assert_eq!(status_to(&outs, 1), 503);
    assert_eq!(h.edge.stats().flow_busy_503, 1);
    let m = h.request(3, "MESSAGE", "dave", "");
    sent_to(&h.send(3, &m), Dest::Upstream);
}

// ---- Found by the second review: responses, ACK limits -------------------------------------

#[test]
fn a_malformed_response_from_a_websocket_is_dropped_and_a_missing_length_added() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    h.registered(1, "alice");
    let pcscf = Dest::Link(Link::Udp(PCSCF.parse().expect("addr")));
    let down = sent_to(
        &h.ims(&h.ims_request_to_alice("MESSAGE", "resp-1")),
        Dest::Flow(FlowId(1)),
    );
    let bad = ok_for(
        &down,
        200,
        "X-A: a\rP-Asserted-Identity: <sip:v@ims.example>\r\n",
    );
    assert!(h.send(1, &bad).is_empty());
    let bad = ok_for(&down, 200, "").replacen("Whatever", "OK\rP-Asserted-Identity: <sip:v@d>", 1);
    assert!(h.send(1, &bad).is_empty());
    assert_eq!(h.edge.stats().malformed_responses_dropped, 2);
    // Without Content-Length, it gets one, so a body cannot pass for the next message.
    let down = sent_to(
        &h.ims(&h.ims_request_to_alice("MESSAGE", "resp-2")),
        Dest::Flow(FlowId(1)),
    );
    let ok = ok_for(&down, 200, "").replace("Content-Length: 0\r\n\r\n", "\r\nhi");
    let up = sent_to(&h.send(1, &ok), pcscf);
    assert_eq!(
        up.content_length().expect("length"),
        Some(2),
        "{}",
        text(&up)
    );
}

#[test]
fn an_ack_is_never_refused_for_the_pending_limit_and_call_memory_expires() {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    h.registered(1, "alice");
    let inv = h.request(1, "INVITE", "alice", "");
    let (call, tag) = (format!("call-{}", h.seq), format!("tag=f{}", h.seq));
    sent_to(&h.send(1, &inv), Dest::Upstream);
    for _ in 1..MAX_PENDING_PER_FLOW {
        let m = h.request(1, "MESSAGE", "alice", "");
        sent_to(&h.send(1, &m), Dest::Upstream);
    }
    let ack = |h: &mut H| {
        let a = h.request(1, "ACK", "alice", "");
        let seq = h.seq;
        a.replace(&format!("Call-ID: call-{seq}"), &format!("Call-ID: {call}"))
            .replace(&format!("tag=f{seq}"), &tag)
    };
    let a = ack(&mut h);
    sent_to(&h.send(1, &a), Dest::Upstream);
    assert_eq!(h.edge.stats().flow_busy_503, 0);
    // A call's ACK is remembered for Timer C and a little more, not for ever: carol's INVITE
    // rode its own token on an unregistered flow, so once the memory is gone her ACK is no one's.
    let tok = h.token("carol");
    let inv = h.request(
        2,
        "INVITE",
        "carol",
        &format!("Authorization: Bearer {tok}\r\n"),
    );
    let (call, tag) = (format!("call-{}", h.seq), format!("tag=f{}", h.seq));
    sent_to(&h.send(2, &inv), Dest::Upstream);
    let late_ack = |h: &mut H| {
        let a = h.request(2, "ACK", "carol", "");
        let seq = h.seq;
        a.replace(&format!("Call-ID: call-{seq}"), &format!("Call-ID: {call}"))
            .replace(&format!("tag=f{seq}"), &tag)
    };
    let a = late_ack(&mut h);
    sent_to(&h.send(2, &a), Dest::Upstream);
    h.now += Duration::from_secs(300);
    let a = late_ack(&mut h);
    assert!(h.send(2, &a).is_empty());
}
