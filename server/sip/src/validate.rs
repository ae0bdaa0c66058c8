//! The checks a proxy makes before forwarding (RFC 3261 §16.3 "reasonable syntax check",
//! §8.1.1 mandatory headers) and the helper that finds what to delete to remove one value of a
//! comma-list header. Reads a [`Message`]; never changes it.

use std::ops::Range;

use crate::addr::{Contacts, NameAddr};
use crate::error::ParseError;
use crate::header::{CSeq, Header, HeaderName, Method};
use crate::message::Message;
use crate::scan::split_commas;
use crate::uri::Uri;
use crate::via::Via;

/// What a proxy reasons about in a message that passed [`Message::view`], parsed once: the
/// proxy reads these fields and never parses the headers again (RFC 3261 §16.3 "reasonable
/// syntax", STYLE "parse, don't validate"). Ranges are offsets into the message's buffer.
#[derive(Debug, Clone)]
pub struct View {
    /// The request method; `None` for a response.
    pub method: Option<Method>,
    /// The Request-URI; `None` for a response.
    pub request_uri: Option<Uri>,
    /// Every Via value in wire order; never empty.
    pub vias: Vec<Via>,
    pub from: NameAddr,
    pub to: NameAddr,
    pub call_id: String,
    pub cseq: CSeq,
    /// The Max-Forwards value and the range of its digits.
    pub max_forwards: Option<(u32, Range<usize>)>,
    /// The Expires header: its value (if a number) and the range of the value.
    pub expires: Option<(Option<u32>, Range<usize>)>,
    pub contacts: Contacts,
    /// Every Route value in wire order.
    pub routes: Vec<NameAddr>,
    /// The Content-Length, if the message had one.
    pub content_length: Option<usize>,
    /// The credentials headers (Authorization, Proxy-Authorization), in wire order.
    pub credentials: Vec<Header>,
    /// The option tags of every Proxy-Require header (RFC 3261 §20.29).
    pub proxy_require: Vec<String>,
    /// The option tags of every Supported header.
    pub supported: Vec<String>,
}

impl View {
    /// The top Via (there always is one).
    pub fn top_via(&self) -> &Via {
        // `Message::view` refuses a message without a Via.
        &self.vias[0]
    }
}

/// Headers that may appear at most once (RFC 3261 §7.3.1, §20; RFC 4475 §3.3.8).
const SINGLE: &[HeaderName] = &[
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::MaxForwards,
    HeaderName::ContentLength,
    HeaderName::Expires,
];

impl Message {
    /// Checks every mandatory header of a request or response for a proxy (RFC 3261 §16.3,
    /// §8.1.1): Via, From, To, Call-ID, CSeq (and that its method matches the request method),
    /// at most one of each single-valued header, Max-Forwards and Content-Length syntax, the
    /// Request-Line shape (single SPs), that the Request-URI parses and carries no headers
    /// (RFC 3261 §19.1.1 table 1), and SIP/2.0. The headers the gateway reasons about (Expires,
    /// Contact, Route, Record-Route, Path) must parse when present. Unknown headers, and known
    /// ones the gateway never reads (Date, Accept, ...), are not checked: a proxy forwards them
    /// untouched. Use it to decide on a 400 before proxying.
    pub fn validate(&self) -> Result<(), ParseError> {
        self.view().map(|_| ())
    }

    /// [`Message::validate`], returning what it parsed: the typed [`View`] the proxy works on.
    pub fn view(&self) -> Result<View, ParseError> {
        let request_uri = self.validate_start_line()?;
        for name in SINGLE {
            if self.header_count(name) > 1 {
                return Err(ParseError::DuplicateHeader(name.label()));
            }
        }
        // The whole line, not the trimmed value: trimming takes CR and LF for whitespace, and a
        // bare CR right after the colon or before the line end must be seen too.
        for h in self.headers() {
            let line = &self.as_bytes()[h.line.clone()];
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if has_control(line) {
                return Err(ParseError::ControlInHeader);
            }
        }
        let vias = self.vias()?;
        if vias.is_empty() {
            return Err(ParseError::MissingHeader("Via"));
        }
        let from = self.from()?;
        let to = self.to()?;
        let call_id = self.call_id()?.to_string();
        let cseq = self.cseq()?;
        if self.method().is_some_and(|m| m != &cseq.method) {
            return Err(ParseError::CSeqMethodMismatch);
        }
        let max_forwards = self.max_forwards()?;
        let content_length = self.content_length()?;
        if let Some(e) = self.body_error() {
            return Err(e.clone());
        }
        let expires_value = self.expires()?;
        let expires = self
            .header(&HeaderName::Expires)
            .map(|h| (expires_value, h.value.clone()));
        let contacts = self.contacts()?;
        if let Contacts::List(list) = &contacts {
            for c in list {
                c.expires()?;
            }
        }
        let routes = self.routes()?;
        self.record_routes()?;
        self.paths()?;
        let credentials = self
            .headers()
            .iter()
            .filter(|h| {
                matches!(
                    h.name,
                    HeaderName::Authorization | HeaderName::ProxyAuthorization
                )
            })
            .cloned()
            .collect();
        Ok(View {
            method: self.method().cloned(),
            request_uri,
            vias,
            from,
            to,
            call_id,
            cseq,
            max_forwards,
            expires,
            contacts,
            routes,
            content_length,
            credentials,
            proxy_require: self.option_tags(&HeaderName::ProxyRequire),
            supported: self.option_tags(&HeaderName::Supported),
        })
    }

    /// The comma-separated option tags of every `name` header, trimmed, empty ones skipped.
    fn option_tags(&self, name: &HeaderName) -> Vec<String> {
        self.headers()
            .iter()
            .filter(|h| &h.name == name)
            .flat_map(|h| self.value(h).split(|b| *b == b','))
            .map(|t| String::from_utf8_lossy(t.trim_ascii()).into_owned())
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// Checks the start line; returns the parsed Request-URI of a request.
    fn validate_start_line(&self) -> Result<Option<Uri>, ParseError> {
        if let Some(r) = self.request_uri_range() {
            // Request-Line = Method SP Request-URI SP SIP-Version CRLF (RFC 3261 §7.1): exactly
            // two single spaces (RFC 4475 §3.1.2.8-10).
            let line = self
                .as_bytes()
                .get(self.start_line_range())
                .unwrap_or_default();
            if line.iter().filter(|&&b| b == b' ').count() != 2
                || line.iter().any(|&b| b.is_ascii_control())
                || r.is_empty()
            {
                return Err(ParseError::BadStartLine);
            }
        }
        if !self.version().eq_ignore_ascii_case(b"SIP/2.0") {
            return Err(ParseError::BadVersion);
        }
        if self.status().is_some() {
            // RFC 3261 §25.1 Reason-Phrase: no control character but HTAB, so nothing a parser
            // downstream could take for a line end.
            let line = &self.as_bytes()[self.start_line_range()];
            if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(ParseError::ControlInHeader);
            }
        }
        if self.is_request() {
            let uri = Uri::parse(self.request_uri().ok_or(ParseError::BadUri)?)?;
            if matches!(&uri, Uri::Sip(u) if u.headers.is_some()) {
                return Err(ParseError::BadUri);
            }
            return Ok(Some(uri));
        }
        Ok(None)
    }

    /// The range to delete to remove the `index`-th value (wire order, across lines) of a
    /// comma-list header (Via, Route, Record-Route, Path): the whole line if it is the line's
    /// only value; otherwise the value plus the comma and LWS after it, or, for the last value
    /// of a line, the comma and LWS before it.
    pub fn remove_value_range(
        &self,
        name: &HeaderName,
        index: usize,
    ) -> Result<Range<usize>, ParseError> {
        let mut seen = 0;
        for h in self.headers().iter().filter(|h| &h.name == name) {
            let values =
                split_commas(self.as_bytes(), h.value.clone()).ok_or(ParseError::BadHeaderLine)?;
            if index >= seen + values.len() {
                seen += values.len();
                continue;
            }
            let i = index - seen;
            if values.len() == 1 {
                return Ok(h.line.clone());
            }
            return Ok(match values.get(i + 1) {
                Some(next) => values[i].start..next.start,
                None => values[i - 1].end..values[i].end,
            });
        }
        Err(ParseError::NoSuchValue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splice::Splice;
    use bytes::Bytes;

    const INV: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP one;branch=z9hG4bK1, SIP/2.0/UDP two;branch=z9hG4bK2 ,\r\n SIP/2.0/UDP three;branch=z9hG4bK3\r\n\
Route: <sip:p1.example.com;lr>\r\n\
Via: SIP/2.0/UDP four;branch=z9hG4bK4\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: c1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n";

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(s.as_bytes())).expect("test message parses")
    }

    fn without(m: &Message, name: &HeaderName, i: usize) -> String {
        let r = m.remove_value_range(name, i).expect("value exists");
        let mut s = Splice::new();
        s.delete(r);
        let out = s.apply(m.as_bytes()).expect("in bounds");
        String::from_utf8(out.to_vec()).expect("ascii")
    }

    #[test]
    fn remove_first_value_takes_its_comma_and_lws() {
        let m = msg(INV);
        let out = without(&m, &HeaderName::Via, 0);
        assert!(
            out.contains("\r\nVia: SIP/2.0/UDP two;branch=z9hG4bK2 ,\r\n SIP/2.0/UDP three"),
            "{out}"
        );
        assert_eq!(msg(&out).top_via().expect("via").host, "two");
        assert_eq!(msg(&out).validate(), Ok(()));
    }

    #[test]
    fn remove_middle_value() {
        let out = without(&msg(INV), &HeaderName::Via, 1);
        assert!(
            out.contains("Via: SIP/2.0/UDP one;branch=z9hG4bK1, SIP/2.0/UDP three;"),
            "{out}"
        );
    }

    #[test]
    fn remove_last_value_of_a_line_takes_the_comma_before_it() {
        let out = without(&msg(INV), &HeaderName::Via, 2);
        assert!(
            out.contains("SIP/2.0/UDP two;branch=z9hG4bK2\r\nRoute:"),
            "{out}"
        );
        let hosts: Vec<String> = msg(&out)
            .vias()
            .expect("vias")
            .into_iter()
            .map(|v| v.host)
            .collect();
        assert_eq!(hosts, ["one", "two", "four"]);
    }

    #[test]
    fn remove_only_value_removes_the_line() {
        let m = msg(INV);
        let out = without(&m, &HeaderName::Via, 3);
        assert!(!out.contains("four"));
        assert!(out.contains("\r\nRoute: <sip:p1.example.com;lr>\r\nMax-Forwards"));
        let out = without(&m, &HeaderName::Route, 0);
        assert!(!out.contains("Route"));
        assert_eq!(
            m.remove_value_range(&HeaderName::Via, 4),
            Err(ParseError::NoSuchValue)
        );
        assert_eq!(
            m.remove_value_range(&HeaderName::Path, 0),
            Err(ParseError::NoSuchValue)
        );
    }

    #[test]
    fn validate_checks_mandatory_headers_rfc3261_8_1_1() {
        assert_eq!(msg(INV).validate(), Ok(()));
        let no_via = INV.replace("Via: SIP/2.0/UDP four;branch=z9hG4bK4\r\n", "");
        let no_via = no_via.replace("Via: SIP/2.0/UDP one;branch=z9hG4bK1, SIP/2.0/UDP two;branch=z9hG4bK2 ,\r\n SIP/2.0/UDP three;branch=z9hG4bK3\r\n", "");
        assert_eq!(
            msg(&no_via).validate(),
            Err(ParseError::MissingHeader("Via"))
        );
        let no_from = INV.replace("From: <sip:alice@example.com>;tag=1\r\n", "");
        assert_eq!(
            msg(&no_from).validate(),
            Err(ParseError::MissingHeader("From"))
        );
        let mismatch = INV.replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
        assert_eq!(
            msg(&mismatch).validate(),
            Err(ParseError::CSeqMethodMismatch)
        );
        let two_to = INV.replace(
            "To: <sip:bob@example.com>\r\n",
            "To: <sip:bob@example.com>\r\nt: <sip:eve@example.com>\r\n",
        );
        assert_eq!(
            msg(&two_to).validate(),
            Err(ParseError::DuplicateHeader("To"))
        );
        let lower = INV.replace("SIP/2.0\r\nVia", "sip/2.0\r\nVia");
        assert_eq!(msg(&lower).validate(), Ok(()));
        let ver = INV.replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia");
        assert_eq!(msg(&ver).validate(), Err(ParseError::BadVersion));
        let bad_route = INV.replace("<sip:p1.example.com;lr>", "<sip:p1.example.com;lr");
        assert_eq!(
            msg(&bad_route).validate(),
            Err(ParseError::BadNameAddr("Route"))
        );
    }
}

/// Whether a header value holds what no SIP header may (RFC 3261 §25.1): a control character
/// other than HTAB outside a quoted-pair (`\` then any octet but CR and LF, which RFC 4475
/// §3.1.1.2 uses for BEL, NUL and DEL), or a CR or LF that is not part of a folded line end
/// (CRLF or LF followed by SP/HTAB). A lone CR would end the line for a parser downstream that
/// reads CR as a line end, and let a client slip a header (P-Asserted-Identity) past the edge
/// inside another's value.
fn has_control(value: &[u8]) -> bool {
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\t' => {}
            b'\r' => {
                if value.get(i + 1) != Some(&b'\n') {
                    return true;
                }
                i += 1;
                if !matches!(value.get(i + 1), Some(b' ' | b'\t')) {
                    return true;
                }
            }
            b'\n' if !matches!(value.get(i + 1), Some(b' ' | b'\t')) => return true,
            b'\n' => {}
            b if (b < 0x20 || b == 0x7f) && !(i > 0 && value[i - 1] == b'\\') => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod control_tests {
    use super::has_control;

    #[test]
    fn rfc3261_25_1_header_values_hold_no_control_characters() {
        assert!(!has_control(b"plain value\twith tab"));
        assert!(!has_control(b"folded\r\n continuation"));
        assert!(!has_control(b"folded\n\tcontinuation"));
        assert!(has_control(b"a\rP-Asserted-Identity: <sip:x@y>"));
        assert!(has_control(b"a\0b"));
        assert!(has_control(b"a\r\nB: c"));
        assert!(has_control(b"a\x1bb"));
        assert!(has_control(b"a\x7f"));
        assert!(has_control(b"trailing\r"));
        assert!(!has_control(b"\"BEL:\\\x07 NUL:\\\0 DEL:\\\x7f\""));
        assert!(has_control(b"\"quoted\\\rCR\""));
    }
}
