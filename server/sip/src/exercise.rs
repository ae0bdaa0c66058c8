//! Runs every entry point of the crate on arbitrary bytes and checks the invariants that must
//! hold for any input. Shared by the cargo-fuzz target (`fuzz/`) and the no-panic property test;
//! not part of the supported API.

use bytes::Bytes;

use crate::frame::frame;
use crate::header::HeaderName;
use crate::message::Message;
use crate::response::response_to;
use crate::splice::Splice;
use crate::uri::{SipUri, Uri};

/// Feeds `data` to framing, both parsers, every typed accessor, the edit helpers and
/// `response_to`. Panics only if an invariant is broken (which is what a fuzzer looks for).
#[doc(hidden)]
pub fn exercise(data: &[u8]) {
    let _ = frame(data, 1 << 16);
    let _ = frame(data, 64);
    let buf = Bytes::copy_from_slice(data);
    for parsed in [Message::parse(buf.clone()), Message::parse_lenient(buf)] {
        let Ok(m) = parsed else { continue };
        exercise_message(&m);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        exercise_uri(s);
    }
}

fn exercise_message(m: &Message) {
    let _ = (
        m.is_request(),
        m.method(),
        m.request_uri(),
        m.status(),
        m.reason(),
    );
    let _ = (
        m.headers_start(),
        m.headers_end(),
        m.body(),
        m.line_ending(),
    );
    for h in m.headers() {
        let _ = m.value(h);
    }
    let _ = (
        m.vias(),
        m.top_via(),
        m.routes(),
        m.record_routes(),
        m.paths(),
    );
    let _ = (m.contacts(), m.from(), m.to(), m.call_id(), m.cseq());
    let _ = (
        m.max_forwards(),
        m.expires(),
        m.content_length(),
        m.validate(),
    );
    if let Some(uri) = m.request_uri() {
        exercise_uri(uri);
    }
    // Splicing nothing gives back the original bytes.
    let same = Splice::new().apply(m.as_bytes());
    assert_eq!(same.as_ref().map(|b| &b[..]), Ok(&m.as_bytes()[..]));
    for name in [
        HeaderName::Via,
        HeaderName::Route,
        HeaderName::RecordRoute,
        HeaderName::Path,
    ] {
        for i in 0..4 {
            if let Ok(r) = m.remove_value_range(&name, i) {
                let mut s = Splice::new();
                s.delete(r);
                assert!(s.apply(m.as_bytes()).is_ok(), "remove range out of bounds");
            }
        }
    }
    if let Ok(via) = m.top_via() {
        let mut s = Splice::new();
        s.insert(via.sent_by_end(), ";received=192.0.2.1");
        assert!(s.apply(m.as_bytes()).is_ok());
    }
    let resp = response_to(
        m,
        400,
        "Bad Request",
        Some("t1"),
        &[("Warning", "399 x \"y\"")],
    );
    assert!(
        Message::parse(resp).is_ok(),
        "a generated response must parse"
    );
}

fn exercise_uri(s: &str) {
    if let Ok(Uri::Sip(u)) = Uri::parse(s) {
        let _ = (u.aor(), u.transport(), u.param("lr"));
        // Display re-serialises to something that parses back to the same URI.
        let again = SipUri::parse(&u.to_string());
        assert_eq!(
            again.as_ref().map(|a| (&a.user, &a.host, a.port)),
            Ok((&u.user, &u.host, u.port))
        );
    }
}
