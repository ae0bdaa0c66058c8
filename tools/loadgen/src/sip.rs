//! The SIP a load client speaks: builds REGISTERs the way JsSIP does (RFC 7118 §5, RFC 5626),
//! classifies what comes down the WebSocket and builds the 200 OK a real client would send back
//! to an in-dialog or out-of-dialog request (OPTIONS keep-alives, NOTIFY…).
//!
//! No I/O and no clock: randomness comes in through [`Identity`], so tests are deterministic.
//! It parses only what the tool reasons about (status code, CSeq, Call-ID); it is not a SIP stack.

use std::fmt::Write as _;

/// Random values that make one client distinct, drawn once per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User part of the AOR: `--user-prefix` + index.
    pub user: String,
    /// RFC 7118 §5.2: a client without a resolvable host uses a random `.invalid` domain.
    pub via_host: String,
    /// Random user and host of the Contact URI, like JsSIP.
    pub contact_user: String,
    pub contact_host: String,
    pub from_tag: String,
    pub call_id: String,
    /// RFC 5626 §4.1: `+sip.instance`, a URN UUID stable for this client.
    pub instance_uuid: String,
}

impl Identity {
    /// Draws fresh random values for user `user`.
    pub fn random(user: String) -> Self {
        Self {
            user,
            via_host: format!("{}.invalid", token(12)),
            contact_user: token(8),
            contact_host: format!("{}.invalid", token(12)),
            from_tag: token(10),
            call_id: token(22),
            instance_uuid: uuid_v4(rand::random(), rand::random()),
        }
    }
}

/// One client's `Authorization: Bearer` header line (RFC 8898 §3, RFC 6750 §2.1), built once and
/// sent on each of its REGISTERs. Its `Debug` hides the token: it lets anyone register the user.
#[derive(Clone, PartialEq, Eq)]
pub struct Bearer(String);

/// The token is not an RFC 6750 §2.1 `b64token`, so it cannot go in the header as it is.
#[derive(Debug, PartialEq, Eq)]
pub struct NotB64Token;

impl Bearer {
    /// The header line for `token`. RFC 6750 §2.1:
    /// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`;
    /// anything else (spaces, CR/LF, quotes) would break or smuggle header fields.
    pub fn new(token: &str) -> Result<Bearer, NotB64Token> {
        let body = token.trim_end_matches('=');
        let b64 = |c: u8| c.is_ascii_alphanumeric() || b"-._~+/".contains(&c);
        if body.is_empty() || !body.bytes().all(b64) {
            return Err(NotB64Token);
        }
        Ok(Bearer(format!("Authorization: Bearer {token}")))
    }

    /// The header line, without CRLF.
    pub fn line(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bearer(<redacted, {} bytes>)", self.0.len())
    }
}

/// Static parts of every REGISTER of the run.
#[derive(Debug, Clone)]
pub struct RegisterTemplate {
    pub domain: String,
    /// `WS` for ws:// edges, `WSS` for wss:// (RFC 7118 §5.2).
    pub via_transport: &'static str,
    /// Extra header lines (`Name: value`), already checked to hold no CR/LF.
    pub extra_headers: Vec<String>,
}

impl RegisterTemplate {
    /// Builds REGISTER number `cseq` of `id` with Contact expiry `expires` (0 un-registers).
    /// `branch` must be unique per transaction (RFC 3261 §8.1.1.7 magic cookie `z9hG4bK`).
    /// Its response is matched by Call-ID and CSeq, which is enough for one transaction at a time.
    /// `auth` is the client's token, sent on every REGISTER including the un-REGISTER.
    pub fn build(
        &self,
        id: &Identity,
        cseq: u32,
        expires: u32,
        branch: &str,
        auth: Option<&Bearer>,
    ) -> String {
        let d = &self.domain;
        let mut t = String::with_capacity(640);
        // `write!` to a String cannot fail; the results are ignored on purpose.
        let _ = write!(t, "REGISTER sip:{d} SIP/2.0\r\n");
        let _ = write!(
            t,
            "Via: SIP/2.0/{} {};branch={branch}\r\n",
            self.via_transport, id.via_host
        );
        t.push_str("Max-Forwards: 70\r\n");
        let _ = write!(t, "To: <sip:{}@{d}>\r\n", id.user);
        let _ = write!(t, "From: <sip:{}@{d}>;tag={}\r\n", id.user, id.from_tag);
        let _ = write!(t, "Call-ID: {}\r\n", id.call_id);
        let _ = write!(t, "CSeq: {cseq} REGISTER\r\n");
        // RFC 5626 §4.2: instance id + reg-id make this an outbound flow; RFC 7118 §5.3.
        let _ = write!(
            t,
            "Contact: <sip:{}@{};transport=ws>;+sip.instance=\"<urn:uuid:{}>\";reg-id=1;expires={expires}\r\n",
            id.contact_user, id.contact_host, id.instance_uuid
        );
        t.push_str("Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY\r\n");
        t.push_str("Supported: path,outbound,gruu\r\n");
        t.push_str("User-Agent: imsgw-loadgen\r\n");
        if let Some(b) = auth {
            t.push_str(b.line());
            t.push_str("\r\n");
        }
        for h in &self.extra_headers {
            t.push_str(h);
            t.push_str("\r\n");
        }
        t.push_str("Content-Length: 0\r\n\r\n");
        t
    }
}

/// A new RFC 3261 branch.
pub fn new_branch() -> String {
    format!("z9hG4bK{}", token(16))
}

/// What came down the socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    Response {
        code: u16,
        call_id: Option<&'a str>,
        cseq: Option<u32>,
    },
    Request {
        method: &'a str,
    },
}

/// Why a message could not be classified.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// Classifies one SIP message (RFC 7118 §5.1: one message per WebSocket message).
pub fn classify(msg: &str) -> Result<Incoming<'_>, Malformed> {
    let (start, rest) = msg.split_once("\r\n").ok_or(Malformed)?;
    if let Some(status) = start.strip_prefix("SIP/2.0 ") {
        let code = status
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (100..700).contains(c))
            .ok_or(Malformed)?;
        let call_id = header(rest, "call-id", Some("i"));
        let cseq = header(rest, "cseq", None)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok());
        return Ok(Incoming::Response {
            code,
            call_id,
            cseq,
        });
    }
    let mut parts = start.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(_uri), Some("SIP/2.0")) if !method.is_empty() => {
            Ok(Incoming::Request { method })
        }
        _ => Err(Malformed),
    }
}

/// Builds a 200 OK to `request` (RFC 3261 §8.2.6): Via, From, To, Call-ID and CSeq copied, a
/// To-tag added when the request had none. `None` for ACK, which is never answered.
pub fn ok_response(request: &str, to_tag: &str) -> Option<String> {
    let (start, rest) = request.split_once("\r\n")?;
    if start.starts_with("ACK ") {
        return None;
    }
    let head = rest.split("\r\n\r\n").next().unwrap_or(rest);
    let mut out = String::with_capacity(request.len().min(1024) + 64);
    out.push_str("SIP/2.0 200 OK\r\n");
    for line in head.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let n = name.trim().to_ascii_lowercase();
        match n.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "to" | "t" => {
                out.push_str(line);
                if !has_tag(value) {
                    out.push_str(";tag=");
                    out.push_str(to_tag);
                }
                out.push_str("\r\n");
            }
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out)
}

/// Value of the first header `name` (lower case) or its compact form, trimmed.
fn header<'a>(rest: &'a str, name: &str, compact: Option<&str>) -> Option<&'a str> {
    let head = rest.split("\r\n\r\n").next().unwrap_or(rest);
    head.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        let n = n.trim();
        (n.eq_ignore_ascii_case(name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c)))
            .then(|| v.trim())
    })
}

/// Whether a To/From value carries a `tag` parameter (outside the `<…>` URI).
pub fn has_tag(value: &str) -> bool {
    let params = match value.rfind('>') {
        Some(i) => &value[i..],
        None => value,
    };
    params
        .split(';')
        .skip(1)
        .any(|p| p.trim().to_ascii_lowercase().starts_with("tag="))
}

/// Random lowercase alphanumeric token.
pub fn token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect()
}

/// RFC 9562 §5.4 version-4 UUID from 128 random bits.
fn uuid_v4(hi: u64, lo: u64) -> String {
    let hi = (hi & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let lo = (lo & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            user: "load7".into(),
            via_host: "abc.invalid".into(),
            contact_user: "cu".into(),
            contact_host: "ch.invalid".into(),
            from_tag: "ft".into(),
            call_id: "cid".into(),
            instance_uuid: "00000000-0000-4000-8000-000000000001".into(),
        }
    }

    fn template() -> RegisterTemplate {
        RegisterTemplate {
            domain: "ims.example".into(),
            via_transport: "WS",
            extra_headers: vec!["X-Test: 1".into()],
        }
    }

    #[test]
    fn register_has_rfc7118_and_rfc5626_headers() {
        let r = template().build(&identity(), 1, 3600, "z9hG4bKb1", None);
        let expected = "REGISTER sip:ims.example SIP/2.0\r\n\
            Via: SIP/2.0/WS abc.invalid;branch=z9hG4bKb1\r\n\
            Max-Forwards: 70\r\n\
            To: <sip:load7@ims.example>\r\n\
            From: <sip:load7@ims.example>;tag=ft\r\n\
            Call-ID: cid\r\n\
            CSeq: 1 REGISTER\r\n\
            Contact: <sip:cu@ch.invalid;transport=ws>;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-000000000001>\";reg-id=1;expires=3600\r\n\
            Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY\r\n\
            Supported: path,outbound,gruu\r\n\
            User-Agent: imsgw-loadgen\r\n\
            X-Test: 1\r\n\
            Content-Length: 0\r\n\r\n";
        assert_eq!(r, expected);
    }

    #[test]
    fn unregister_reuses_contact_with_expires_zero() {
        let id = identity();
        let reg = template().build(&id, 1, 3600, &new_branch(), None);
        let unreg = template().build(&id, 2, 0, &new_branch(), None);
        assert!(unreg.contains("CSeq: 2 REGISTER\r\n"));
        assert!(unreg.contains("reg-id=1;expires=0\r\n"));
        let contact = |t: &str| {
            t.lines()
                .find(|l| l.starts_with("Contact:"))
                .and_then(|l| l.split(";expires=").next())
                .map(str::to_owned)
        };
        assert!(contact(&reg).is_some());
        assert_eq!(contact(&reg), contact(&unreg));
    }

    const JWT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJsb2FkNyJ9.c2ln-_";

    #[test]
    fn bearer_header_is_rfc8898_authorization_line() {
        let b = Bearer::new(JWT).expect("a JWS compact serialization is a b64token");
        assert_eq!(b.line(), format!("Authorization: Bearer {JWT}"));
        assert_eq!(
            Bearer::new("abc+/==").expect("padding").line(),
            "Authorization: Bearer abc+/=="
        );
    }

    #[test]
    fn bearer_refuses_what_is_not_a_b64token_rfc6750_2_1() {
        for bad in [
            "",
            "==",
            "a b",
            "a\r\nX-Evil: 1",
            "a\"b",
            "a,b",
            "=a",
            "a=b",
        ] {
            assert_eq!(Bearer::new(bad), Err(NotB64Token), "{bad:?}");
        }
    }

    #[test]
    fn bearer_debug_hides_the_token() {
        let shown = format!("{:?}", Bearer::new(JWT).expect("valid"));
        assert!(!shown.contains("eyJ"), "{shown}");
    }

    #[test]
    fn register_reregister_and_unregister_carry_the_same_token() {
        let (id, auth) = (identity(), Bearer::new(JWT).expect("valid"));
        let t = template();
        let msgs = [
            t.build(&id, 1, 3600, "z9hG4bK1", Some(&auth)),
            t.build(&id, 2, 3600, "z9hG4bK2", Some(&auth)),
            t.build(&id, 3, 0, "z9hG4bK3", Some(&auth)),
        ];
        for (m, cseq) in msgs.iter().zip(1..) {
            let line = format!("\r\nAuthorization: Bearer {JWT}\r\n");
            assert_eq!(m.matches(&line).count(), 1, "{m}");
            assert!(m.contains(&format!("\r\nCSeq: {cseq} REGISTER\r\n")), "{m}");
            assert!(m.contains("\r\nCall-ID: cid\r\n"), "{m}");
            // The header sits before the --header lines and the body delimiter.
            let (head, body) = m.split_once("\r\n\r\n").expect("head");
            assert!(body.is_empty());
            assert!(head.find("Authorization:") < head.find("X-Test:"));
        }
        assert!(!t.build(&id, 1, 3600, "b", None).contains("Authorization"));
    }

    #[test]
    fn random_identity_is_rfc7118_shaped() {
        let id = Identity::random("u1".into());
        assert!(id.via_host.ends_with(".invalid"));
        assert!(id.contact_host.ends_with(".invalid"));
        assert!(new_branch().starts_with("z9hG4bK"));
        let u = &id.instance_uuid;
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4", "version nibble: {u}");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "variant: {u}");
        assert_ne!(Identity::random("u1".into()).call_id, id.call_id);
    }

    #[test]
    fn classify_final_response_reads_code_cseq_and_call_id() {
        let msg = "SIP/2.0 200 OK\r\nVia: SIP/2.0/WS x.invalid;branch=z9hG4bK1\r\ni: abc\r\nCSeq: 7 REGISTER\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            classify(msg),
            Ok(Incoming::Response {
                code: 200,
                call_id: Some("abc"),
                cseq: Some(7)
            })
        );
    }

    #[test]
    fn classify_request_and_garbage() {
        let msg = "OPTIONS sip:cu@ch.invalid;transport=ws SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert_eq!(classify(msg), Ok(Incoming::Request { method: "OPTIONS" }));
        assert_eq!(classify("hello"), Err(Malformed));
        assert_eq!(classify("SIP/2.0 abc\r\n\r\n"), Err(Malformed));
        assert_eq!(classify("SIP/2.0 999 Odd\r\n\r\n"), Err(Malformed));
    }

    #[test]
    fn options_gets_200_with_copied_headers_and_to_tag() {
        let req = "OPTIONS sip:cu@ch.invalid;transport=ws SIP/2.0\r\n\
            Via: SIP/2.0/WS 10.0.0.1;branch=z9hG4bKa\r\n\
            Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb\r\n\
            From: <sip:edge@ims.example>;tag=x1\r\n\
            To: <sip:cu@ch.invalid;transport=ws>\r\n\
            Call-ID: opt1\r\nCSeq: 5 OPTIONS\r\nMax-Forwards: 69\r\nContent-Length: 0\r\n\r\n";
        let resp = ok_response(req, "tt").expect("OPTIONS is answered");
        assert_eq!(
            resp,
            "SIP/2.0 200 OK\r\n\
            Via: SIP/2.0/WS 10.0.0.1;branch=z9hG4bKa\r\n\
            Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb\r\n\
            From: <sip:edge@ims.example>;tag=x1\r\n\
            To: <sip:cu@ch.invalid;transport=ws>;tag=tt\r\n\
            Call-ID: opt1\r\nCSeq: 5 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn existing_to_tag_is_kept_and_ack_is_not_answered() {
        let req = "NOTIFY sip:cu@ch.invalid SIP/2.0\r\nTo: <sip:a@b;x=1>;tag=keep\r\n\r\n";
        let resp = ok_response(req, "new").expect("NOTIFY is answered");
        assert!(resp.contains("To: <sip:a@b;x=1>;tag=keep\r\n"));
        assert!(ok_response("ACK sip:a@b SIP/2.0\r\n\r\n", "t").is_none());
    }
}
