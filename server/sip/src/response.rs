//! Locally generated responses (RFC 3261 §8.2.6): copies the transaction and dialog
//! identifying headers of a request into a new response. Works on requests that failed
//! `validate()`, so a 400 can always be sent while the header lines exist.

use bytes::Bytes;

use crate::header::HeaderName;
use crate::message::Message;

/// Builds a response to `req` per RFC 3261 §8.2.6.2: every Via line's value (same order, bytes
/// as received), From, To (with `;tag=to_tag` added if it has no tag and one is given), Call-ID
/// and CSeq are copied; then the `extra` header lines (`Name: value`), then `Content-Length: 0`.
/// A missing header is skipped; of a repeated single-valued header the first is copied.
/// CR and LF in `reason`, `to_tag` and `extra` are replaced by spaces so no caller can inject a
/// header line.
pub fn response_to(
    req: &Message,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(&str, &str)],
) -> Bytes {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(code.to_string().as_bytes());
    out.push(b' ');
    push_clean(&mut out, reason);
    out.extend_from_slice(b"\r\n");
    for h in req.headers().iter().filter(|h| h.name == HeaderName::Via) {
        push_line(&mut out, "Via", req.value(h));
    }
    if let Some(h) = req.header(&HeaderName::From) {
        push_line(&mut out, "From", req.value(h));
    }
    if let Some(h) = req.header(&HeaderName::To) {
        out.extend_from_slice(b"To: ");
        out.extend_from_slice(req.value(h));
        // RFC 3261 §8.2.6.2: the UAS adds a tag unless the request's To already has one. If the
        // To does not parse, it is echoed as is.
        if let Some(tag) = to_tag.filter(|_| req.to().is_ok_and(|to| to.tag().is_none())) {
            out.extend_from_slice(b";tag=");
            push_clean(&mut out, tag);
        }
        out.extend_from_slice(b"\r\n");
    }
    if let Some(h) = req.header(&HeaderName::CallId) {
        push_line(&mut out, "Call-ID", req.value(h));
    }
    if let Some(h) = req.header(&HeaderName::CSeq) {
        push_line(&mut out, "CSeq", req.value(h));
    }
    for (name, value) in extra {
        push_clean(&mut out, name);
        out.extend_from_slice(b": ");
        push_clean(&mut out, value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Bytes::from(out)
}

fn push_line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_clean(out: &mut Vec<u8>, s: &str) {
    out.extend(
        s.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\n\
v: SIP/2.0/WSS a.invalid;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK0\r\n\
Via: SIP/2.0/UDP c;branch=z9hG4bKc\r\n\
f: <sip:alice@example.com>;tag=1\r\n\
t: <sip:alice@example.com>\r\n\
i: abc@h\r\n\
CSeq: 2 REGISTER\r\n\
X-Unknown: keep out\r\n\
l: 0\r\n\r\n";

    #[test]
    fn copies_vias_in_order_and_adds_to_tag_rfc3261_8_2_6_2() {
        let req = Message::parse(Bytes::from_static(REQ)).expect("valid request");
        let resp = response_to(
            &req,
            401,
            "Unauthorized",
            Some("xyz"),
            &[("WWW-Authenticate", "Bearer realm=\"r\"")],
        );
        let want = "SIP/2.0 401 Unauthorized\r\n\
Via: SIP/2.0/WSS a.invalid;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK0\r\n\
Via: SIP/2.0/UDP c;branch=z9hG4bKc\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
To: <sip:alice@example.com>;tag=xyz\r\n\
Call-ID: abc@h\r\n\
CSeq: 2 REGISTER\r\n\
WWW-Authenticate: Bearer realm=\"r\"\r\n\
Content-Length: 0\r\n\r\n";
        assert_eq!(std::str::from_utf8(&resp), Ok(want));
        let parsed = Message::parse(resp).expect("response parses");
        assert_eq!(parsed.validate(), Ok(()));
        assert_eq!(parsed.status(), Some(401));
    }

    #[test]
    fn keeps_an_existing_to_tag_and_strips_line_breaks() {
        let raw = b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\nTo: <sip:a@b>;tag=old\r\n\r\n";
        let req = Message::parse(Bytes::from_static(raw)).expect("parses");
        let resp = response_to(&req, 400, "Bad\r\nX: y", Some("new"), &[]);
        let text = String::from_utf8_lossy(&resp);
        assert!(text.starts_with("SIP/2.0 400 Bad  X: y\r\n"), "{text}");
        assert!(text.contains("To: <sip:a@b>;tag=old\r\n"));
        assert!(!text.contains("new"));
    }
}
