//! Header names (with the compact forms of RFC 3261 §7.3.3 and the IANA registry), header line
//! positions, request methods and the CSeq value. Names and methods only; the values of
//! structured headers are parsed in their own modules.

use std::fmt;
use std::ops::Range;

use crate::scan::is_token;

/// One header line of a message, as byte ranges into the message buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's name, compact forms expanded.
    pub name: HeaderName,
    /// From the first byte of the name to just after the final line end, folded continuation
    /// lines included. Deleting this range removes the header.
    pub line: Range<usize>,
    /// The value without surrounding LWS; may contain folding (CRLF followed by SP or HTAB).
    pub value: Range<usize>,
}

/// A header name. Names are case-insensitive and compact forms map to the full name
/// (RFC 3261 §7.3.1, §7.3.3), so `v`, `VIA` and `Via` are all [`HeaderName::Via`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Via,
    Route,
    RecordRoute,
    Path,
    Contact,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Expires,
    ContentLength,
    ContentType,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    Supported,
    Require,
    ProxyRequire,
    /// Any other header, by its full name in lowercase (compact forms expanded, e.g. `r` is
    /// `refer-to`).
    Other(String),
}

/// Compact forms from RFC 3261 §7.3.3 and the IANA "Header Fields" registry.
const COMPACT: &[(u8, &str)] = &[
    (b'a', "accept-contact"),
    (b'b', "referred-by"),
    (b'c', "content-type"),
    (b'd', "request-disposition"),
    (b'e', "content-encoding"),
    (b'f', "from"),
    (b'i', "call-id"),
    (b'j', "reject-contact"),
    (b'k', "supported"),
    (b'l', "content-length"),
    (b'm', "contact"),
    (b'n', "identity-info"),
    (b'o', "event"),
    (b'r', "refer-to"),
    (b's', "subject"),
    (b't', "to"),
    (b'u', "allow-events"),
    (b'v', "via"),
    (b'x', "session-expires"),
    (b'y', "identity"),
];

/// The known names, in their canonical spelling.
const KNOWN: &[(HeaderName, &str)] = &[
    (HeaderName::Via, "Via"),
    (HeaderName::Route, "Route"),
    (HeaderName::RecordRoute, "Record-Route"),
    (HeaderName::Path, "Path"),
    (HeaderName::Contact, "Contact"),
    (HeaderName::From, "From"),
    (HeaderName::To, "To"),
    (HeaderName::CallId, "Call-ID"),
    (HeaderName::CSeq, "CSeq"),
    (HeaderName::MaxForwards, "Max-Forwards"),
    (HeaderName::Expires, "Expires"),
    (HeaderName::ContentLength, "Content-Length"),
    (HeaderName::ContentType, "Content-Type"),
    (HeaderName::Authorization, "Authorization"),
    (HeaderName::ProxyAuthorization, "Proxy-Authorization"),
    (HeaderName::WwwAuthenticate, "WWW-Authenticate"),
    (HeaderName::ProxyAuthenticate, "Proxy-Authenticate"),
    (HeaderName::Supported, "Supported"),
    (HeaderName::Require, "Require"),
    (HeaderName::ProxyRequire, "Proxy-Require"),
];

impl HeaderName {
    /// The name for `raw` as written on the wire (any case, compact forms allowed). `None` if it
    /// is not a token (RFC 3261 §7.3).
    pub fn from_bytes(raw: &[u8]) -> Option<HeaderName> {
        if raw.is_empty() || !raw.iter().all(|&b| is_token(b)) {
            return None;
        }
        let full: &[u8] = match raw {
            [c] => {
                let c = c.to_ascii_lowercase();
                match COMPACT.iter().find(|(k, _)| *k == c) {
                    Some((_, full)) => full.as_bytes(),
                    None => raw,
                }
            }
            _ => raw,
        };
        for (name, canon) in KNOWN {
            if full.eq_ignore_ascii_case(canon.as_bytes()) {
                return Some(name.clone());
            }
        }
        // Token characters are ASCII, so this is lossless.
        Some(HeaderName::Other(
            String::from_utf8_lossy(full).to_ascii_lowercase(),
        ))
    }

    /// The name for a header spelled `name` (for looking up headers this crate does not name).
    /// Non-token input gives an `Other` that matches no header.
    pub fn new(name: &str) -> HeaderName {
        HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|| HeaderName::Other(name.to_ascii_lowercase()))
    }

    /// Canonical spelling for known names, the lowercase name otherwise.
    pub fn as_str(&self) -> &str {
        match self {
            HeaderName::Other(s) => s,
            known => KNOWN
                .iter()
                .find(|(n, _)| n == known)
                .map_or("", |(_, canon)| canon),
        }
    }

    /// The name as a static string for errors; `"header"` for `Other`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            HeaderName::Other(_) => "header",
            known => KNOWN
                .iter()
                .find(|(n, _)| n == known)
                .map_or("header", |(_, canon)| canon),
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request method. Methods are case-sensitive (RFC 3261 §7.1): `invite` is `Other`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Message,
    Subscribe,
    Notify,
    Refer,
    Info,
    Update,
    Prack,
    Publish,
    /// An extension method token, as written.
    Other(String),
}

const METHODS: &[(Method, &str)] = &[
    (Method::Invite, "INVITE"),
    (Method::Ack, "ACK"),
    (Method::Bye, "BYE"),
    (Method::Cancel, "CANCEL"),
    (Method::Register, "REGISTER"),
    (Method::Options, "OPTIONS"),
    (Method::Message, "MESSAGE"),
    (Method::Subscribe, "SUBSCRIBE"),
    (Method::Notify, "NOTIFY"),
    (Method::Refer, "REFER"),
    (Method::Info, "INFO"),
    (Method::Update, "UPDATE"),
    (Method::Prack, "PRACK"),
    (Method::Publish, "PUBLISH"),
];

impl Method {
    /// The method for a `token` (RFC 3261 §25.1 `Method`); `None` if `raw` is not a token.
    pub fn from_bytes(raw: &[u8]) -> Option<Method> {
        if raw.is_empty() || !raw.iter().all(|&b| is_token(b)) {
            return None;
        }
        for (m, s) in METHODS {
            if raw == s.as_bytes() {
                return Some(m.clone());
            }
        }
        // Token characters are ASCII, so this is lossless.
        Some(Method::Other(String::from_utf8_lossy(raw).into_owned()))
    }

    /// The method as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Other(s) => s,
            known => METHODS
                .iter()
                .find(|(m, _)| m == known)
                .map_or("", |(_, s)| s),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CSeq header value (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number, below 2^31 (RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// The method it counts.
    pub method: Method,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms_expand_rfc3261_7_3_3() {
        let cases: &[(&[u8], HeaderName)] = &[
            (b"v", HeaderName::Via),
            (b"V", HeaderName::Via),
            (b"f", HeaderName::From),
            (b"t", HeaderName::To),
            (b"i", HeaderName::CallId),
            (b"m", HeaderName::Contact),
            (b"l", HeaderName::ContentLength),
            (b"c", HeaderName::ContentType),
            (b"k", HeaderName::Supported),
            (b"s", HeaderName::Other("subject".into())),
            (b"e", HeaderName::Other("content-encoding".into())),
            (b"o", HeaderName::Other("event".into())),
            (b"u", HeaderName::Other("allow-events".into())),
            (b"r", HeaderName::Other("refer-to".into())),
            (b"z", HeaderName::Other("z".into())),
        ];
        for (raw, want) in cases {
            assert_eq!(HeaderName::from_bytes(raw).as_ref(), Some(want), "{raw:?}");
        }
    }

    #[test]
    fn names_are_case_insensitive_rfc3261_7_3_1() {
        assert_eq!(
            HeaderName::from_bytes(b"mAx-FoRwArDs"),
            Some(HeaderName::MaxForwards)
        );
        assert_eq!(
            HeaderName::new("Refer-To"),
            HeaderName::from_bytes(b"r").unwrap_or(HeaderName::Via)
        );
        assert_eq!(
            HeaderName::from_bytes(b"C%6Fntact"),
            Some(HeaderName::Other("c%6fntact".into()))
        );
        assert_eq!(HeaderName::from_bytes(b"Via Foo"), None);
        assert_eq!(HeaderName::CallId.as_str(), "Call-ID");
    }

    #[test]
    fn methods_are_case_sensitive_rfc3261_7_1() {
        assert_eq!(Method::from_bytes(b"INVITE"), Some(Method::Invite));
        assert_eq!(
            Method::from_bytes(b"invite"),
            Some(Method::Other("invite".into()))
        );
        assert_eq!(Method::from_bytes(b"IN VITE"), None);
        assert_eq!(Method::Register.as_str(), "REGISTER");
    }
}
