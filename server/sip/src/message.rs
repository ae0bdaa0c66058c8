//! One SIP message (RFC 3261 §7) held as a single [`Bytes`] buffer plus byte ranges: the start
//! line, every header line in wire order, and the body. Typed accessors parse the headers a
//! proxy reasons about on demand; everything else stays raw so it can be forwarded byte for
//! byte. Owns message-level parsing only: framing is in `frame`, edits in `splice`,
//! the mandatory-header checks in `validate`.

use std::ops::Range;

use bytes::Bytes;

use crate::addr::{Contacts, NameAddr, parse_u32};
use crate::error::ParseError;
use crate::head::{LineEnding, Start, body_range, content_length, parse_start, scan_head};
use crate::header::{CSeq, Header, HeaderName, Method};
use crate::scan::{Cursor, is_ws, split_commas, text};
use crate::via::Via;

/// A parsed SIP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    buf: Bytes,
    start: Start,
    start_line: Range<usize>,
    line_ending: LineEnding,
    bare_lf: bool,
    headers: Vec<Header>,
    headers_start: usize,
    headers_end: usize,
    body: Range<usize>,
    body_error: Option<ParseError>,
}

impl Message {
    /// A complete message: one UDP datagram or one WebSocket message. RFC 3261 §7.5: leading
    /// CRLFs are skipped. Content-Length present and body longer: the body is truncated to it
    /// (RFC 3261 §18.3, extra bytes ignored); body shorter: `Err(BodyTruncated)`. Absent: the
    /// body is the rest of the buffer.
    ///
    /// The start line is only checked as far as needed to tell a request from a response, so
    /// that a message with, say, a malformed Request-URI still parses and can be answered with
    /// a 400; [`Message::validate`] does the strict checks. A message ending right after a
    /// complete header line, without the empty line, is accepted (RFC 4475 §3.1.2.15).
    pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
        Self::parse_inner(buf, false)
    }

    /// Like [`Message::parse`], but a body that does not match Content-Length (missing bytes,
    /// a malformed or repeated Content-Length) is not an error: the body is the rest of the
    /// buffer and [`Message::validate`] reports the problem. Use it to read the headers of a
    /// datagram `parse()` rejected, to answer it with a 400 (RFC 4475 §3.1.2.2).
    pub fn parse_lenient(buf: Bytes) -> Result<Message, ParseError> {
        Self::parse_inner(buf, true)
    }

    fn parse_inner(buf: Bytes, lenient: bool) -> Result<Message, ParseError> {
        let skip = buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if skip == buf.len() {
            return Err(ParseError::Empty);
        }
        let head = scan_head(&buf, skip, true)?;
        let start = parse_start(&buf, head.start_line.clone())?;
        let (body, body_error) = match body_range(&buf, &head.headers, head.body_start) {
            Ok(b) => (b, None),
            Err(e) if lenient => (head.body_start..buf.len(), Some(e)),
            Err(e) => return Err(e),
        };
        // RFC 3261 §18.3: on a datagram (and a WebSocket message, RFC 7118 §5) the bytes after
        // the body Content-Length declares are not part of the message: they are dropped here,
        // so no edit of this message can ever carry them on (a second, smuggled request).
        let buf = if body.end < buf.len() {
            buf.slice(..body.end)
        } else {
            buf
        };
        Ok(Message {
            start,
            start_line: head.start_line,
            line_ending: head.line_ending,
            bare_lf: head.bare_lf,
            headers: head.headers,
            headers_start: head.headers_start,
            headers_end: head.headers_end,
            body,
            body_error,
            buf,
        })
    }

    /// The message's bytes, as received: from the first byte up to the end of the body. Bytes
    /// after a body that Content-Length ends were dropped by the parser (RFC 3261 §18.3).
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, Start::Request { .. })
    }

    /// The request method.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            Start::Request { method, .. } => Some(method),
            Start::Response { .. } => None,
        }
    }

    /// The Request-URI text as written (`None` for responses or non-UTF-8 bytes).
    pub fn request_uri(&self) -> Option<&str> {
        text(&self.buf, self.request_uri_range()?)
    }

    /// Where the Request-URI is, for rewriting it.
    pub fn request_uri_range(&self) -> Option<Range<usize>> {
        match &self.start {
            Start::Request { uri, .. } => Some(uri.clone()),
            Start::Response { .. } => None,
        }
    }

    /// The SIP-Version text of the start line.
    pub fn version(&self) -> &[u8] {
        let r = match &self.start {
            Start::Request { version, .. } | Start::Response { version, .. } => version.clone(),
        };
        self.buf.get(r).unwrap_or_default()
    }

    /// The start line without its line end.
    pub fn start_line_range(&self) -> Range<usize> {
        self.start_line.clone()
    }

    /// The response status code.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            Start::Response { status, .. } => Some(*status),
            Start::Request { .. } => None,
        }
    }

    /// The reason phrase (`None` for requests or non-UTF-8 bytes; may be empty).
    pub fn reason(&self) -> Option<&str> {
        match &self.start {
            Start::Response { reason, .. } => text(&self.buf, reason.clone()),
            Start::Request { .. } => None,
        }
    }

    /// How the start line ended.
    pub fn line_ending(&self) -> LineEnding {
        self.line_ending
    }

    /// Whether any line of the head ended with a bare LF.
    pub fn has_bare_lf(&self) -> bool {
        self.bare_lf
    }

    /// Every header line, in wire order.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The first header called `name`.
    pub fn header(&self, name: &HeaderName) -> Option<&Header> {
        self.headers.iter().find(|h| &h.name == name)
    }

    /// How many header lines are called `name`.
    pub fn header_count(&self, name: &HeaderName) -> usize {
        self.headers.iter().filter(|h| &h.name == name).count()
    }

    /// The value bytes of `h` (may contain folding).
    pub fn value(&self, h: &Header) -> &[u8] {
        self.buf.get(h.value.clone()).unwrap_or_default()
    }

    /// The comma-separated values of every `name` header, in wire order across lines.
    pub(crate) fn list_values(
        &self,
        name: &HeaderName,
        err: ParseError,
    ) -> Result<Vec<Range<usize>>, ParseError> {
        let mut out = Vec::new();
        for h in self.headers.iter().filter(|h| &h.name == name) {
            out.extend(split_commas(&self.buf, h.value.clone()).ok_or_else(|| err.clone())?);
        }
        Ok(out)
    }

    /// Every via-parm, in order, across lines and commas (RFC 3261 §7.3.1).
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.list_values(&HeaderName::Via, ParseError::BadVia)?
            .into_iter()
            .map(|r| Via::parse(&self.buf, r))
            .collect()
    }

    /// The topmost via-parm: the first value of the first Via line.
    pub fn top_via(&self) -> Result<Via, ParseError> {
        let h = self
            .header(&HeaderName::Via)
            .ok_or(ParseError::MissingHeader("Via"))?;
        let values = split_commas(&self.buf, h.value.clone()).ok_or(ParseError::BadVia)?;
        let first = values.into_iter().next().ok_or(ParseError::BadVia)?;
        Via::parse(&self.buf, first)
    }

    fn name_addrs(&self, name: HeaderName) -> Result<Vec<NameAddr>, ParseError> {
        let label = name.label();
        self.list_values(&name, ParseError::BadNameAddr(label))?
            .into_iter()
            .map(|r| NameAddr::parse(&self.buf, r, label))
            .collect()
    }

    /// Route values in order (RFC 3261 §20.34).
    pub fn routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(HeaderName::Route)
    }

    /// Record-Route values in order (RFC 3261 §20.30).
    pub fn record_routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(HeaderName::RecordRoute)
    }

    /// Path values in order (RFC 3327).
    pub fn paths(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addrs(HeaderName::Path)
    }

    /// The Contact values; `*` only as the sole value of the sole Contact (RFC 3261 §10.2.2).
    pub fn contacts(&self) -> Result<Contacts, ParseError> {
        let bad = ParseError::BadNameAddr("Contact");
        let values = self.list_values(&HeaderName::Contact, bad.clone())?;
        if values
            .iter()
            .any(|r| self.buf.get(r.clone()) == Some(&b"*"[..]))
        {
            return match values.as_slice() {
                [only] => Ok(Contacts::Star(only.clone())),
                _ => Err(bad),
            };
        }
        values
            .into_iter()
            .map(|r| NameAddr::parse(&self.buf, r, "Contact"))
            .collect::<Result<_, _>>()
            .map(Contacts::List)
    }

    fn single(&self, name: &HeaderName, label: &'static str) -> Result<&Header, ParseError> {
        self.header(name).ok_or(ParseError::MissingHeader(label))
    }

    /// The From value (RFC 3261 §20.20).
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        let h = self.single(&HeaderName::From, "From")?;
        NameAddr::parse(&self.buf, h.value.clone(), "From")
    }

    /// The To value (RFC 3261 §20.39).
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        let h = self.single(&HeaderName::To, "To")?;
        NameAddr::parse(&self.buf, h.value.clone(), "To")
    }

    /// The Call-ID (RFC 3261 §20.8): visible ASCII, no LWS.
    pub fn call_id(&self) -> Result<&str, ParseError> {
        let h = self.single(&HeaderName::CallId, "Call-ID")?;
        let v = self.value(h);
        if v.is_empty() || !v.iter().all(u8::is_ascii_graphic) {
            return Err(ParseError::BadCallId);
        }
        text(&self.buf, h.value.clone()).ok_or(ParseError::BadCallId)
    }

    /// The CSeq (RFC 3261 §20.16): `1*DIGIT LWS Method`, number below 2^31 (§8.1.1.5).
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        let h = self.single(&HeaderName::CSeq, "CSeq")?;
        let mut c = Cursor::new(&self.buf, h.value.clone());
        let digits = c.take_while(|b| b.is_ascii_digit());
        let ws = c.take_while(is_ws);
        let method = c.token().ok_or(ParseError::BadCSeq)?;
        c.skip_ws();
        if ws.is_empty() || !c.at_end() {
            return Err(ParseError::BadCSeq);
        }
        let seq = parse_u32(&self.buf[digits])
            .filter(|&n| n < 1 << 31)
            .ok_or(ParseError::BadCSeq)?;
        let method = Method::from_bytes(&self.buf[method]).ok_or(ParseError::BadCSeq)?;
        Ok(CSeq { seq, method })
    }

    /// Max-Forwards and the range of its digits, for rewriting it (RFC 3261 §16.6 step 3);
    /// `None` if absent. Values above 255 are rejected (RFC 4475 §3.1.2.4).
    pub fn max_forwards(&self) -> Result<Option<(u32, Range<usize>)>, ParseError> {
        let Some(h) = self.header(&HeaderName::MaxForwards) else {
            return Ok(None);
        };
        parse_u32(self.value(h))
            .filter(|&n| n <= 255)
            .map(|n| Some((n, h.value.clone())))
            .ok_or(ParseError::BadMaxForwards)
    }

    /// The Expires header as delta-seconds below 2^32 (RFC 3261 §20.19).
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        match self.header(&HeaderName::Expires) {
            None => Ok(None),
            Some(h) => parse_u32(self.value(h))
                .map(Some)
                .ok_or(ParseError::BadExpires),
        }
    }

    /// Content-Length; several lines are an error (RFC 4475 §3.3.9).
    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        content_length(&self.buf, &self.headers)
    }

    /// The body: Content-Length bytes, or the rest of the buffer without one.
    pub fn body(&self) -> &[u8] {
        self.buf.get(self.body.clone()).unwrap_or_default()
    }

    /// The body's range in the buffer.
    pub fn body_range(&self) -> Range<usize> {
        self.body.clone()
    }

    /// Offset just after the start line's line end: insert new top headers here.
    pub fn headers_start(&self) -> usize {
        self.headers_start
    }

    /// Offset of the empty line ending the headers (the buffer's end if it is missing).
    pub fn headers_end(&self) -> usize {
        self.headers_end
    }

    /// A body problem `parse_lenient()` let through.
    pub fn body_error(&self) -> Option<&ParseError> {
        self.body_error.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::Uri;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(s.as_bytes())).expect("test message parses")
    }

    const REG: &str = "REGISTER sip:ims.example.com SIP/2.0\r\n\
v: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
f: \"Alice\" <sip:alice@ims.example.com>;tag=a73kszlfl\r\n\
t: <sip:alice@ims.example.com>\r\n\
i: 1j9FpLxk3uxtm8tn@df7jal23ls0d.invalid\r\n\
CSeq: 1 REGISTER\r\n\
m: <sip:alice@df7jal23ls0d.invalid;transport=ws>;expires=600;+sip.instance=\"<urn:uuid:0001>\";reg-id=1\r\n\
k: path, outbound, gruu\r\n\
Expires: 600\r\n\
l: 0\r\n\r\n";

    #[test]
    fn compact_headers_resolve_to_their_full_names_rfc3261_7_3_3() {
        let m = msg(REG);
        assert_eq!(m.method(), Some(&Method::Register));
        assert_eq!(m.request_uri(), Some("sip:ims.example.com"));
        assert_eq!(m.top_via().expect("via").transport, "WSS");
        assert_eq!(m.from().expect("from").display.as_deref(), Some("Alice"));
        assert_eq!(m.from().expect("from").tag(), Some("a73kszlfl"));
        assert_eq!(m.to().expect("to").tag(), None);
        assert_eq!(m.call_id(), Ok("1j9FpLxk3uxtm8tn@df7jal23ls0d.invalid"));
        assert_eq!(
            m.cseq().expect("cseq"),
            CSeq {
                seq: 1,
                method: Method::Register
            }
        );
        assert_eq!(m.header_count(&HeaderName::Supported), 1);
        assert_eq!(m.content_length(), Ok(Some(0)));
        assert_eq!(m.expires(), Ok(Some(600)));
        let (mf, r) = m.max_forwards().expect("syntax").expect("present");
        assert_eq!((mf, &m.as_bytes()[r]), (70, &b"70"[..]));
        let Ok(Contacts::List(cs)) = m.contacts() else {
            panic!("contact list expected")
        };
        assert_eq!(
            cs[0].param("+sip.instance"),
            Some(Some("\"<urn:uuid:0001>\""))
        );
        assert_eq!(
            cs[0].params[1].unquoted().as_deref(),
            Some("<urn:uuid:0001>")
        );
        assert_eq!(cs[0].expires(), Ok(Some(600)));
        let Uri::Sip(u) = &cs[0].uri else {
            panic!("sip uri expected")
        };
        assert_eq!(u.transport().as_deref(), Some("ws"));
        assert_eq!(m.validate(), Ok(()));
    }

    #[test]
    fn space_before_colon_is_allowed_rfc3261_7_3_1() {
        let m = msg(
            "OPTIONS sip:a@b SIP/2.0\r\nVia : SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo\t: <sip:a@b>\r\n\r\n",
        );
        assert_eq!(m.top_via().expect("via").host, "h");
        assert!(m.header(&HeaderName::To).is_some());
    }

    #[test]
    fn top_via_is_the_first_value_of_the_first_line_rfc3261_7_3_1() {
        let m = msg("SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP first;branch=z9hG4bK1 , SIP/2.0/TCP second;branch=z9hG4bK2\r\n\
v: SIP/2.0/TLS third;branch=z9hG4bK3\r\n\
Via: SIP/2.0/UDP fourth\r\n ;branch=z9hG4bK4,\r\n\tSIP/2.0/UDP fifth\r\n\r\n");
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.reason(), Some("OK"));
        assert_eq!(m.top_via().expect("via").host, "first");
        let hosts: Vec<String> = m
            .vias()
            .expect("vias")
            .into_iter()
            .map(|v| v.host)
            .collect();
        assert_eq!(hosts, ["first", "second", "third", "fourth", "fifth"]);
        assert_eq!(
            m.vias().expect("vias")[3].branch.as_deref(),
            Some("z9hG4bK4")
        );
    }

    #[test]
    fn folded_lines_belong_to_the_header_rfc3261_7_3_1() {
        let raw = "OPTIONS sip:a@b SIP/2.0\r\nSubject: one\r\n two\r\n\tthree\r\nCSeq: 1\r\n OPTIONS\r\n\r\n";
        let m = msg(raw);
        let h = &m.headers()[0];
        assert_eq!(h.name, HeaderName::Other("subject".into()));
        assert_eq!(m.value(h), b"one\r\n two\r\n\tthree");
        assert_eq!(
            &raw.as_bytes()[h.line.clone()],
            b"Subject: one\r\n two\r\n\tthree\r\n"
        );
        assert_eq!(m.cseq().expect("folded cseq").seq, 1);
        assert_eq!(m.headers().len(), 2);
    }

    #[test]
    fn leading_crlfs_are_skipped_rfc3261_7_5() {
        let m = msg("\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n");
        assert_eq!(m.headers_start(), 29);
        assert_eq!(m.start_line_range(), 4..27);
        assert_eq!(
            Message::parse(Bytes::from_static(b"\r\n\r\n")),
            Err(ParseError::Empty)
        );
    }

    #[test]
    fn bare_lf_is_accepted_leniently() {
        let m = msg("OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\n folded\nl: 2\n\nhi");
        assert_eq!(m.line_ending(), LineEnding::Lf);
        assert!(m.has_bare_lf());
        assert_eq!(m.body(), b"hi");
        assert_eq!(m.headers().len(), 2);
    }

    #[test]
    fn body_follows_content_length_rfc3261_18_3() {
        let m = msg("OPTIONS sip:a@b SIP/2.0\r\nl: 2\r\n\r\nhi there");
        assert_eq!(m.body(), b"hi");
        let m = msg("OPTIONS sip:a@b SIP/2.0\r\n\r\nrest");
        assert_eq!(m.body(), b"rest");
        let short = Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\nl: 20\r\n\r\nhi");
        assert_eq!(
            Message::parse(short.clone()),
            Err(ParseError::BodyTruncated)
        );
        let lenient = Message::parse_lenient(short).expect("headers readable");
        assert_eq!(lenient.body(), b"hi");
        assert!(matches!(
            lenient.validate(),
            Err(ParseError::MissingHeader(_))
        ));
        let bad = Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\nl: 0x1\r\n\r\n");
        assert_eq!(Message::parse(bad), Err(ParseError::BadContentLength));
    }

    #[test]
    fn malformed_heads_are_rejected() {
        let cases: &[(&[u8], ParseError)] = &[
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nNoColon\r\n\r\n",
                ParseError::BadHeaderLine,
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\n folded: first\r\n\r\n",
                ParseError::BadHeaderLine,
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n",
                ParseError::BadHeaderLine,
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nTo: x",
                ParseError::NoEndOfHeaders,
            ),
            (b"OPTIONS", ParseError::NoEndOfHeaders),
            (b"OPTIONS\r\n\r\n", ParseError::BadStartLine),
            (b"SIP/2.0 2000 OK\r\n\r\n", ParseError::BadStatus),
            (b"SIP/2.0 099 Low\r\n\r\n", ParseError::BadStatus),
        ];
        for (raw, want) in cases {
            assert_eq!(
                Message::parse(Bytes::from_static(raw)).err().as_ref(),
                Some(want),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn missing_final_empty_line_after_a_complete_header_is_tolerated() {
        let m = msg("OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n");
        assert_eq!(m.headers_end(), m.as_bytes().len());
        assert_eq!(m.body(), b"");
    }

    #[test]
    fn contact_star_rfc3261_10_2_2() {
        let m = msg("REGISTER sip:a SIP/2.0\r\nContact: *\r\n\r\n");
        assert!(matches!(m.contacts(), Ok(Contacts::Star(_))));
        let m = msg("REGISTER sip:a SIP/2.0\r\nContact: *, <sip:b@c>\r\n\r\n");
        assert_eq!(m.contacts(), Err(ParseError::BadNameAddr("Contact")));
    }

    #[test]
    fn scalar_limits_rfc3261_8_1_1_5_and_20_22() {
        let m = msg(
            "OPTIONS sip:a@b SIP/2.0\r\nCSeq: 2147483648 OPTIONS\r\nMax-Forwards: 256\r\nExpires: 4294967296\r\n\r\n",
        );
        assert_eq!(m.cseq(), Err(ParseError::BadCSeq));
        assert_eq!(m.max_forwards(), Err(ParseError::BadMaxForwards));
        assert_eq!(m.expires(), Err(ParseError::BadExpires));
        let m = msg(
            "OPTIONS sip:a@b SIP/2.0\r\nCSeq: 2147483647 OPTIONS\r\nMax-Forwards: 255\r\nExpires: 4294967295\r\n\r\n",
        );
        assert_eq!(m.cseq().map(|c| c.seq), Ok(2_147_483_647));
        assert_eq!(m.max_forwards().map(|o| o.map(|(n, _)| n)), Ok(Some(255)));
        assert_eq!(m.expires(), Ok(Some(u32::MAX)));
        let m = msg("OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1OPTIONS\r\n\r\n");
        assert_eq!(m.cseq(), Err(ParseError::BadCSeq));
    }
}
