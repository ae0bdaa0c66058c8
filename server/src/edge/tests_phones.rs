//! Review 13b: SIP phones (UDP/TCP/TLS flows) and their Digest sign-in at the edge, seen from
//! the phone side. The WAF is played (as in `tests_grant`); flow 7 is a phone over UDP.

use std::net::SocketAddr;

use imsgw_token::AccessToken;
use sha2::Digest as _;

use super::digest::{Algorithm, DigestSettings};
use super::tests::sent_to;
use super::tests_trust::{H, NOW, header_lines, nothing_upstream, ok_for};
use super::*;
use crate::config::IdentityAssertion;

const PHONE: u64 = 7;
const PHONE_AT: &str = "198.51.100.7:40000";
const LISTENER: &str = "192.0.2.100:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

/// An edge with Digest for phones (MD5, as baresip wants) and flow 7 a phone over UDP.
fn phone_edge() -> H {
    let mut h = H::new(&[IdentityAssertion::Tna]);
    h.edge.auth.digest = Some(DigestSettings::with_algorithms(
        "ims.example".into(),
        vec![Algorithm::Md5],
    ));
    h.edge
        .flow_opened_as(FlowId(PHONE), addr(PHONE_AT), FlowKind::Udp(addr(LISTENER)));
    h
}

fn drain(h: &mut H) -> Vec<Output> {
    std::iter::from_fn(|| h.edge.poll_output()).collect()
}

fn asks(outs: &[Output]) -> Vec<(u64, GrantAsk)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Grant { ticket, ask } => Some((*ticket, ask.clone())),
            _ => None,
        })
        .collect()
}

fn to_phone(outs: &[Output]) -> Vec<imsgw_sip::Message> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send {
                to: Dest::Flow(FlowId(PHONE)),
                bytes,
                ..
            } => Some(imsgw_sip::Message::parse(bytes.clone()).expect("parses")),
            _ => None,
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn md5(s: &str) -> String {
    hex(&md5::Md5::digest(s.as_bytes()))
}

/// RFC 7616 §3.4.1 MD5 `qop=auth` credentials of alice with `password`.
fn digest_cred(nonce: &str, nc: u32, password: &str) -> String {
    let user = "alice@ims.example";
    let uri = "sip:ims.example";
    let cnonce = "0a4f113b";
    let nc = format!("{nc:08x}");
    let ha1 = md5(&format!("{user}:ims.example:{password}"));
    let ha2 = md5(&format!("REGISTER:{uri}"));
    let resp = md5(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"ims.example\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, cnonce=\"{cnonce}\", qop=auth, nc={nc}\r\n"
    )
}

/// A phone's REGISTER (UDP Via with rport, as baresip sends it).
fn phone_register(cseq: u32, expires: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:ims.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.7:5060;rport;branch=z9hG4bKph{cseq}\r\nMax-Forwards: 70\r\n\
To: <sip:alice@ims.example>\r\nFrom: <sip:alice@ims.example>;tag=ph1\r\n\
Call-ID: phone-reg-1\r\nCSeq: {cseq} REGISTER\r\n\
Contact: <sip:alice@10.0.0.7:5060>;+sip.instance=\"<urn:uuid:11111111-2222-4333-8444-555555555555>\"\r\n\
Expires: {expires}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// The nonce of the Digest challenge in `r`.
fn nonce_of(r: &imsgw_sip::Message) -> String {
    let ch = header_lines(r, "WWW-Authenticate");
    let line = ch
        .iter()
        .find(|l| l.contains("Digest"))
        .unwrap_or_else(|| panic!("a Digest challenge: {ch:?}"));
    line.split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("nonce")
        .to_string()
}

/// The phone gets its challenge, answers it, the played WAF signs it in with a token of
/// `ttl` seconds and the P-CSCF answers 200. Returns the nonce the phone holds.
fn phone_signed_in(h: &mut H, ttl: u64) -> String {
    let outs = h.send(PHONE, &phone_register(1, 3600, ""));
    let ch = sent_to(&outs, Dest::Flow(FlowId(PHONE)));
    assert_eq!(ch.status(), Some(401));
    let nonce = nonce_of(&ch);
    let outs = h.send(
        PHONE,
        &phone_register(2, 3600, &digest_cred(&nonce, 1, "12345678")),
    );
    let a = asks(&outs);
    assert_eq!(a.len(), 1, "{outs:#?}");
    assert!(matches!(a[0].1, GrantAsk::Phone { .. }), "{a:?}");
    let (t, _) = h.mint("sip:alice@ims.example", "sip", ttl);
    let g = Granted {
        access_token: AccessToken::new(t),
        refresh_token: None,
        // The WAF gives the H(A1) of the password that matched (waf::edge_grant).
        digest_ha1: Some(imsgw_token::Secret::new(md5(
            "alice@ims.example:ims.example:12345678",
        ))),
    };
    h.edge.granted(h.now, a[0].0, Ok(g));
    let outs = drain(h);
    let up = sent_to(&outs, Dest::Upstream);
    let outs = h.ims(&ok_for(&up, 200, ""));
    assert_eq!(
        sent_to(&outs, Dest::Flow(FlowId(PHONE))).status(),
        Some(200)
    );
    nonce
}

// ---- UDP transactions toward phones (RFC 3261 §17.2) ----------------------------------------

#[test]
fn review13b_a_udp_phone_retransmitting_its_register_while_the_waf_answers_gets_no_503() {
    let mut h = phone_edge();
    let outs = h.send(PHONE, &phone_register(1, 3600, ""));
    let nonce = nonce_of(&sent_to(&outs, Dest::Flow(FlowId(PHONE))));
    let reg = phone_register(2, 3600, &digest_cred(&nonce, 1, "12345678"));
    let outs = h.send(PHONE, &reg);
    assert_eq!(asks(&outs).len(), 1);
    // RFC 3261 §17.1.2.2 Timer E: 500 ms later the phone sends the very same datagram again
    // (the WAF's store is not done yet). It is the same transaction: absorbed (or answered
    // 100), never a final answer of its own.
    h.now += Duration::from_millis(500);
    let outs = h.send(PHONE, &reg);
    let finals: Vec<u16> = to_phone(&outs)
        .iter()
        .filter_map(|m| m.status())
        .filter(|s| *s >= 200)
        .collect();
    assert!(
        finals.is_empty(),
        "a retransmission of the REGISTER under way was answered {finals:?}: the phone's \
         transaction ends with it and the sign-in fails"
    );
}

#[test]
fn review13b_a_udp_phone_that_lost_the_200_gets_it_again_on_its_retransmission() {
    let mut h = phone_edge();
    h.edge.auth.digest = None; // the phone signs in with a token: only transactions matter here
    let tok = h.token("alice");
    let reg = phone_register(1, 600, &format!("Authorization: Bearer {tok}\r\n"));
    let outs = h.send(PHONE, &reg);
    let up = sent_to(&outs, Dest::Upstream);
    let outs = h.ims(&ok_for(&up, 200, ""));
    assert_eq!(
        sent_to(&outs, Dest::Flow(FlowId(PHONE))).status(),
        Some(200)
    );
    // The 200 was lost on the way to the phone; it retransmits (Timer E). RFC 3261 §17.2.2:
    // a server transaction in Completed answers a retransmission with its final response.
    h.now += Duration::from_millis(500);
    let outs = h.send(PHONE, &reg);
    nothing_upstream(&outs);
    let again = to_phone(&outs);
    assert_eq!(
        again.iter().filter_map(|m| m.status()).collect::<Vec<_>>(),
        vec![200],
        "the retransmitted REGISTER got no answer: the phone times out (Timer F) and \
         believes it is not registered: {outs:#?}"
    );
}

#[test]
fn review13b_a_junk_datagram_from_a_phones_udp_source_does_not_end_its_flow() {
    let mut h = phone_edge();
    phone_signed_in(&mut h, 600);
    // Anyone who can send one datagram with the phone's source address (its public NAT
    // mapping shows in the Via `received`/`rport` the edge writes and the far end sees) sends
    // something that is not SIP. A UDP source is not a connection: the datagram is dropped.
    let outs = h.send(PHONE, "OPTIONS sip:ims.example SIP/2.0\r\n\r\n");
    assert!(
        !outs.iter().any(|o| matches!(
            o,
            Output::CloseFlow {
                flow: FlowId(PHONE),
                ..
            }
        )),
        "one spoofed datagram ends the phone's flow (its grant is dropped, calls to it get \
         430): {outs:#?}"
    );
}

// ---- Digest sign-in and the held grant ----------------------------------------------------

#[test]
fn review13b_a_signed_in_phones_digest_re_register_rides_its_grant_not_the_waf() {
    let mut h = phone_edge();
    let nonce = phone_signed_in(&mut h, 600);
    // baresip (libre) keeps its credentials and answers the next REGISTER with nc=2 on the
    // same nonce. The flow already holds alice's grant; asking the WAF again for every
    // re-REGISTER makes the registration hostage to the IMPU's failure count, which any
    // stranger who knows alice's number fills with 5 wrong guesses per 10 minutes.
    h.now += Duration::from_secs(60);
    h.edge.set_wall_clock(NOW + 60);
    let outs = h.send(
        PHONE,
        &phone_register(3, 600, &digest_cred(&nonce, 2, "12345678")),
    );
    let a = asks(&outs);
    if let Some((ticket, _)) = a.first() {
        // What the WAF answers while a stranger holds the IMPU locked:
        let limited = GrantError::Limited {
            why: "too many wrong passwords; wait before trying again".into(),
            retry_after: 540,
        };
        h.edge.granted(h.now, *ticket, Err(limited));
        let outs = drain(&mut h);
        let r = sent_to(&outs, Dest::Flow(FlowId(PHONE)));
        panic!(
            "the re-REGISTER of a flow that holds a live grant went to the WAF and was \
             answered {:?} under a stranger's lockout",
            r.status()
        );
    }
    sent_to(&outs, Dest::Upstream);
}

#[test]
fn review13b_a_phone_whose_grant_ran_out_is_challenged_with_digest_not_bearer() {
    let mut h = phone_edge();
    phone_signed_in(&mut h, 300);
    h.edge.set_wall_clock(NOW + 301);
    // The phone re-REGISTERs without credentials first (most phones do).
    let outs = h.send(PHONE, &phone_register(3, 600, ""));
    nothing_upstream(&outs);
    let r = sent_to(&outs, Dest::Flow(FlowId(PHONE)));
    assert_eq!(r.status(), Some(401));
    let ch = header_lines(&r, "WWW-Authenticate");
    assert!(
        !ch.is_empty() && ch.iter().all(|l| l.contains("Digest")),
        "a Digest-only phone is sent a Bearer challenge and gives up (commit 2173119): {ch:?}"
    );
}

#[test]
fn review13b_requests_from_a_udp_source_without_credentials_do_not_ride_its_registration() {
    let mut h = phone_edge();
    phone_signed_in(&mut h, 600);
    // UDP source addresses are forgeable off-path. The phone's public mapping is no secret:
    // the edge writes it into the phone's Via (`received`, `rport`), which every callee sees.
    // A callee who spoofs it can call premium numbers as alice (it chose the To tag, so it
    // can send the ACK too) or remove her binding, with no credential at all.
    let invite = "INVITE sip:+19005550100@ims.example;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.7:5060;rport;branch=z9hG4bKspoof1\r\nMax-Forwards: 70\r\n\
To: <sip:+19005550100@ims.example;user=phone>\r\nFrom: <sip:alice@ims.example>;tag=sp1\r\n\
Call-ID: spoof-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@203.0.113.66:5060>\r\n\
Content-Length: 0\r\n\r\n";
    let outs = h.send(PHONE, invite);
    let up: Vec<_> = outs
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Send {
                    to: Dest::Upstream,
                    ..
                }
            )
        })
        .collect();
    assert!(
        up.is_empty(),
        "an INVITE with no credentials from a UDP source went upstream as alice: {up:#?}"
    );
    let unreg = phone_register(9, 0, "");
    let outs = h.send(PHONE, &unreg);
    nothing_upstream(&outs);
}

// ---- What the edge writes toward phones ---------------------------------------------------

#[test]
fn review13b_record_route_toward_a_phone_never_names_the_wildcard_address() {
    // deploy/imsgw.example.toml suggests `udp_listen = "0.0.0.0:5060"`; `run_udp` then makes
    // every phone flow `FlowKind::Udp(socket.local_addr())`, which is 0.0.0.0:5060.
    let mut h = H::new(&[IdentityAssertion::Tna]);
    h.edge.flow_opened_as(
        FlowId(PHONE),
        addr(PHONE_AT),
        FlowKind::Udp(addr("0.0.0.0:5060")),
    );
    let tok = h.token("alice");
    let reg = phone_register(1, 600, &format!("Authorization: Bearer {tok}\r\n"));
    let up = sent_to(&h.send(PHONE, &reg), Dest::Upstream);
    h.ims(&ok_for(&up, 200, ""));
    let invite = "INVITE sip:bob@ims.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.7:5060;rport;branch=z9hG4bKrr1\r\nMax-Forwards: 70\r\n\
To: <sip:bob@ims.example>\r\nFrom: <sip:alice@ims.example>;tag=rr1\r\n\
Call-ID: rr-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@10.0.0.7:5060>\r\n\
Content-Length: 0\r\n\r\n";
    let up = sent_to(&h.send(PHONE, invite), Dest::Upstream);
    let rr = header_lines(&up, "Record-Route").join(" ");
    // The phone's route set ends with this URI: a phone that does not use outbound sends its
    // BYE, re-INVITE and ACK there, i.e. to itself.
    assert!(
        !rr.contains("0.0.0.0"),
        "the Record-Route a phone will route by names 0.0.0.0: {rr}"
    );
}

#[test]
fn a_udp_phones_request_rides_nothing_without_digest_and_goes_on_with_the_right_answer() {
    let mut h = phone_edge();
    let nonce = phone_signed_in(&mut h, 600);
    let message = |auth: &str| {
        format!(
            "MESSAGE sip:bob@ims.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.7:5060;rport;branch=z9hG4bKmsg{}\r\nMax-Forwards: 70\r\n\
To: <sip:bob@ims.example>\r\nFrom: <sip:alice@ims.example>;tag=m1\r\n\
Call-ID: msg-1\r\nCSeq: 1 MESSAGE\r\n{auth}Content-Length: 0\r\n\r\n",
            auth.len()
        )
    };
    // Without credentials: 407 with a Digest challenge, nothing upstream.
    let outs = h.send(PHONE, &message(""));
    nothing_upstream(&outs);
    let r = sent_to(&outs, Dest::Flow(FlowId(PHONE)));
    assert_eq!(r.status(), Some(407));
    assert!(header_lines(&r, "Proxy-Authenticate")[0].contains("Digest"));
    // The right answer (MESSAGE, nc 2 on the nonce of the sign-in) goes on, once.
    let user = "alice@ims.example";
    let ha1 = md5(&format!("{user}:ims.example:12345678"));
    let ha2 = md5("MESSAGE:sip:bob@ims.example");
    let resp = md5(&format!("{ha1}:{nonce}:00000002:c1:auth:{ha2}"));
    let cred = format!(
        "Proxy-Authorization: Digest username=\"{user}\", realm=\"ims.example\", nonce=\"{nonce}\", uri=\"sip:bob@ims.example\", response=\"{resp}\", algorithm=MD5, cnonce=\"c1\", qop=auth, nc=00000002\r\n"
    );
    let outs = h.send(PHONE, &message(&cred));
    let up = sent_to(&outs, Dest::Upstream);
    assert!(
        header_lines(&up, "Proxy-Authorization").is_empty(),
        "the phone's Digest never crosses"
    );
    // The same answer again (a replay from a forged source): refused.
    let outs = h.send(PHONE, &message(&cred).replace("z9hG4bKmsg", "z9hG4bKmsgB"));
    nothing_upstream(&outs);
    assert_eq!(
        sent_to(&outs, Dest::Flow(FlowId(PHONE))).status(),
        Some(407)
    );
}
