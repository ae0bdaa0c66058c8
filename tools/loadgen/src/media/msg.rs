//! A SIP message split into start line, headers and body, for the few headers the media
//! benchmark's two user agents (the browsers' UAC and the IMS-side echo UAS) reason about. No
//! I/O. It keeps every header line as received so a response can copy them (RFC 3261 §8.2.6).

/// One parsed message borrowing the text it came from.
#[derive(Debug)]
pub struct Msg<'a> {
    pub start: &'a str,
    /// (name, value) in order, names as written, values trimmed.
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a str,
}

/// RFC 3261 §7.3.3 compact forms of the headers used here.
const COMPACT: &[(&str, &str)] = &[
    ("call-id", "i"),
    ("to", "t"),
    ("from", "f"),
    ("contact", "m"),
    ("via", "v"),
    ("content-length", "l"),
    ("content-type", "c"),
];

impl<'a> Msg<'a> {
    /// Splits `text`; `None` when it has no start line or no end of headers.
    pub fn parse(text: &'a str) -> Option<Msg<'a>> {
        let (head, body) = text.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let start = lines.next().filter(|l| !l.is_empty())?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim(), v.trim()))
            .collect();
        Some(Msg {
            start,
            headers,
            body,
        })
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        let code = self.start.strip_prefix("SIP/2.0 ")?.get(..3)?;
        code.parse().ok().filter(|c| (100..700).contains(c))
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&'a str> {
        if self.start.starts_with("SIP/") {
            return None;
        }
        self.start.split(' ').next()
    }

    /// Whether header line `name` (as written) is `want` (lower case, long form) or its compact
    /// form.
    pub fn is(name: &str, want: &str) -> bool {
        name.eq_ignore_ascii_case(want)
            || COMPACT
                .iter()
                .any(|&(long, short)| long == want && name.eq_ignore_ascii_case(short))
    }

    /// The first value of header `want` (lower case, long form).
    pub fn get(&self, want: &str) -> Option<&'a str> {
        self.all(want).next()
    }

    /// Every value of header `want` in order, comma-separated lists not split.
    pub fn all<'s>(&'s self, want: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| Self::is(n, want))
            .map(|&(_, v)| v)
    }

    /// CSeq as (number, method).
    pub fn cseq(&self) -> Option<(u32, &'a str)> {
        let (n, m) = self.get("cseq")?.split_once(' ')?;
        Some((n.trim().parse().ok()?, m.trim()))
    }
}

/// Splits a header value that may hold a comma-separated list of name-addrs (Record-Route,
/// Route, Contact) at the commas outside `<…>` and quotes.
pub fn split_list(value: &str) -> Vec<&str> {
    let (mut out, mut start, mut angle, mut quote) = (Vec::new(), 0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' if !angle => quote = !quote,
            '<' if !quote => angle = true,
            '>' if !quote => angle = false,
            ',' if !angle && !quote => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// The URI of a name-addr (`"x" <sip:a@b;lr>;p=1` → `sip:a@b;lr`) or of a bare addr-spec (up to
/// its header parameters).
pub fn uri_of(name_addr: &str) -> &str {
    match (name_addr.find('<'), name_addr.find('>')) {
        (Some(a), Some(b)) if a < b => &name_addr[a + 1..b],
        _ => name_addr.split(';').next().unwrap_or(name_addr).trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_response_headers_compact_forms_and_body() {
        let t = "SIP/2.0 200 OK\r\ni: abc\r\nCSeq: 1 INVITE\r\nRecord-Route: <sip:a;lr>, <sip:b;lr>\r\nrecord-route: <sip:c;lr>\r\nm: <sip:echo@127.0.0.1:5999>\r\n\r\nv=0\r\n";
        let m = Msg::parse(t).expect("parses");
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.method(), None);
        assert_eq!(m.get("call-id"), Some("abc"));
        assert_eq!(m.cseq(), Some((1, "INVITE")));
        let rr: Vec<&str> = m.all("record-route").flat_map(split_list).collect();
        assert_eq!(rr, ["<sip:a;lr>", "<sip:b;lr>", "<sip:c;lr>"]);
        assert_eq!(
            m.get("contact").map(uri_of),
            Some("sip:echo@127.0.0.1:5999")
        );
        assert_eq!(m.body, "v=0\r\n");
        assert!(Msg::parse("no end of headers").is_none());
    }

    #[test]
    fn request_method_and_uris() {
        let m = Msg::parse("INVITE sip:x@y SIP/2.0\r\n\r\n").expect("parses");
        assert_eq!((m.method(), m.status()), (Some("INVITE"), None));
        assert_eq!(uri_of("\"A, B\" <sip:a@b;lr>;x=1"), "sip:a@b;lr");
        assert_eq!(uri_of("sip:a@b;expires=3"), "sip:a@b");
        assert_eq!(
            split_list("\"A, B\" <sip:a>, <sip:b,c>"),
            ["\"A, B\" <sip:a>", "<sip:b,c>"]
        );
    }
}
