//! URIs (RFC 3261 §19.1, §25.1): SIP and SIPS URIs parsed into their parts, anything else kept
//! as an opaque absoluteURI. Owns comparison helpers such as the address-of-record form; knows
//! nothing about headers.

use std::fmt;

use crate::error::ParseError;
use crate::scan::{Param, find_param};

/// A URI as found in a Request-URI or a name-addr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// Any other scheme (`tel:`, `urn:`, ...), kept as written.
    Other(String),
}

impl Uri {
    /// Parses a SIP/SIPS URI or checks an absoluteURI's scheme and characters
    /// (RFC 3261 §25.1 `absoluteURI`).
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        let colon = s.find(':').ok_or(ParseError::BadUri)?;
        let scheme = &s[..colon];
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            return SipUri::parse(s).map(Uri::Sip);
        }
        let mut sb = scheme.bytes();
        let scheme_ok = sb.next().is_some_and(|b| b.is_ascii_alphabetic())
            && sb.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        let rest = &s[colon + 1..];
        let rest_ok = !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"'));
        if scheme_ok && rest_ok {
            Ok(Uri::Other(s.to_string()))
        } else {
            Err(ParseError::BadUri)
        }
    }

    /// The SIP URI, if it is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other(_) => None,
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Other(s) => f.write_str(s),
        }
    }
}

/// A parsed `sip:` or `sips:` URI (RFC 3261 §19.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:`.
    pub secure: bool,
    /// The user part as written (escapes kept).
    pub user: Option<String>,
    /// The password as written.
    pub password: Option<String>,
    /// The host as written; IPv6 references keep their brackets.
    pub host: String,
    /// The port, if written.
    pub port: Option<u16>,
    /// URI parameters; ranges are offsets into the string given to [`SipUri::parse`].
    pub params: Vec<Param>,
    /// The headers part after `?`, as written.
    pub headers: Option<String>,
}

impl SipUri {
    /// Parses `sip:` / `sips:` URIs per RFC 3261 §25.1 (scheme case-insensitive).
    pub fn parse(s: &str) -> Result<SipUri, ParseError> {
        let b = s.as_bytes();
        let (secure, mut pos) = if starts_with_ci(b, b"sips:") {
            (true, 5)
        } else if starts_with_ci(b, b"sip:") {
            (false, 4)
        } else {
            return Err(ParseError::BadUri);
        };
        let (mut user, mut password) = (None, None);
        // '@' cannot appear unescaped after the userinfo (params and headers exclude it), so the
        // first one ends the userinfo; a user part may contain ';', '?' and ',' (RFC 4475 §3.1.1.9).
        if let Some(at) = s[pos..].find('@') {
            let at = pos + at;
            let info = &s[pos..at];
            let (u, p) = match info.find(':') {
                Some(c) => (&info[..c], Some(&info[c + 1..])),
                None => (info, None),
            };
            if u.is_empty() || !valid_chars(u, is_user_char) {
                return Err(ParseError::BadUri);
            }
            if let Some(p) = p {
                if !valid_chars(p, is_password_char) {
                    return Err(ParseError::BadUri);
                }
                password = Some(p.to_string());
            }
            user = Some(u.to_string());
            pos = at + 1;
        }
        let host_start = pos;
        if b.get(pos) == Some(&b'[') {
            let close = s[pos..].find(']').ok_or(ParseError::BadUri)? + pos;
            let inner = &s[pos + 1..close];
            if inner.is_empty()
                || !inner
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            {
                return Err(ParseError::BadUri);
            }
            pos = close + 1;
        } else {
            while b
                .get(pos)
                .is_some_and(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
            {
                pos += 1;
            }
            if pos == host_start {
                return Err(ParseError::BadUri);
            }
        }
        let host = s[host_start..pos].to_string();
        let mut port = None;
        if b.get(pos) == Some(&b':') {
            pos += 1;
            let ds = pos;
            while b.get(pos).is_some_and(u8::is_ascii_digit) {
                pos += 1;
            }
            port = Some(s[ds..pos].parse::<u16>().map_err(|_| ParseError::BadUri)?);
        }
        let mut params = Vec::new();
        while b.get(pos) == Some(&b';') {
            let semi = pos;
            pos += 1;
            let ns = pos;
            while b.get(pos).is_some_and(|&c| is_param_char(c)) {
                pos += 1;
            }
            let name = &s[ns..pos];
            if name.is_empty() || !valid_escapes(name) {
                return Err(ParseError::BadUri);
            }
            let mut value = None;
            if b.get(pos) == Some(&b'=') {
                pos += 1;
                let vs = pos;
                while b.get(pos).is_some_and(|&c| is_param_char(c)) {
                    pos += 1;
                }
                let v = &s[vs..pos];
                if v.is_empty() || !valid_escapes(v) {
                    return Err(ParseError::BadUri);
                }
                value = Some(v.to_string());
            }
            params.push(Param {
                name: name.to_string(),
                value,
                range: semi..pos,
            });
        }
        let mut headers = None;
        if b.get(pos) == Some(&b'?') {
            let h = &s[pos + 1..];
            if h.is_empty() || !valid_chars(h, |c| is_header_char(c) || c == b'=' || c == b'&') {
                return Err(ParseError::BadUri);
            }
            headers = Some(h.to_string());
            pos = s.len();
        }
        if pos != s.len() {
            return Err(ParseError::BadUri);
        }
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// A URI parameter by name, case-insensitively and with escapes in the name resolved
    /// (RFC 3261 §19.1.4): `Some(None)` for a flag such as `lr`.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        if let Some(found) = find_param(&self.params, name) {
            return Some(found);
        }
        self.params
            .iter()
            .find(|p| p.name.contains('%') && unescape_all(&p.name).eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }

    /// The `transport` parameter, lowercased (its values are case-insensitive tokens).
    pub fn transport(&self) -> Option<String> {
        self.param("transport")
            .flatten()
            .map(str::to_ascii_lowercase)
    }

    /// The address-of-record form used as a registration key: `sip:user@host` (or `sips:`),
    /// port kept if written, parameters, password and headers dropped, host lowercased, and the
    /// user's escapes normalised so that URIs equal under RFC 3261 §19.1.4 give equal strings:
    /// an escaped unreserved character is unescaped, every other escape is kept with uppercase
    /// hex (escaped reserved characters are not equal to their literal form).
    pub fn aor(&self) -> String {
        let mut out = String::with_capacity(self.host.len() + 32);
        out.push_str(if self.secure { "sips:" } else { "sip:" });
        if let Some(user) = &self.user {
            normalise_escapes(user, &mut out);
            out.push('@');
        }
        out.push_str(&self.host.to_ascii_lowercase());
        if let Some(port) = self.port {
            out.push(':');
            out.push_str(&port.to_string());
        }
        out
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for p in &self.params {
            write!(f, ";{}", p.name)?;
            if let Some(v) = &p.value {
                write!(f, "={v}")?;
            }
        }
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

fn starts_with_ci(b: &[u8], prefix: &[u8]) -> bool {
    b.len() >= prefix.len() && b[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `unreserved` (RFC 3261 §25.1: alphanum / mark).
pub(crate) fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// `user` characters: unreserved / escaped / user-unreserved.
fn is_user_char(c: u8) -> bool {
    is_unreserved(c)
        || matches!(
            c,
            b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/'
        )
}

fn is_password_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'%' | b'&' | b'=' | b'+' | b'$' | b',')
}

/// `paramchar`: param-unreserved / unreserved / escaped.
fn is_param_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'%' | b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

/// `hnv-unreserved / unreserved / escaped`.
fn is_header_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'%' | b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$')
}

fn valid_chars(s: &str, f: impl Fn(u8) -> bool) -> bool {
    s.bytes().all(f) && valid_escapes(s)
}

/// Every `%` starts `% HEX HEX` (RFC 3261 §25.1 `escaped`).
fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// Decodes `%XX` at `i`, if there is one.
fn escape_at(b: &[u8], i: usize) -> Option<u8> {
    if b.get(i) != Some(&b'%') {
        return None;
    }
    let (h, l) = (*b.get(i + 1)?, *b.get(i + 2)?);
    (h.is_ascii_hexdigit() && l.is_ascii_hexdigit()).then(|| hex(h) << 4 | hex(l))
}

fn unescape_all(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match escape_at(b, i) {
            Some(c) => {
                out.push(c);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn normalise_escapes(s: &str, out: &mut String) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match escape_at(b, i) {
            Some(c) if is_unreserved(c) => {
                out.push(char::from(c));
                i += 3;
            }
            Some(c) => {
                out.push_str(&format!("%{c:02X}"));
                i += 3;
            }
            None => {
                out.push(char::from(b[i]));
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_parts_rfc3261_19_1_1() {
        let u = SipUri::parse("sips:alice:pw@[2001:db8::1]:5061;transport=TLS;lr?subject=x&p=y")
            .expect("valid");
        assert!(u.secure);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.host, "[2001:db8::1]");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport().as_deref(), Some("tls"));
        assert_eq!(u.param("LR"), Some(None));
        assert_eq!(u.headers.as_deref(), Some("subject=x&p=y"));
        assert_eq!(
            u.to_string(),
            "sips:alice:pw@[2001:db8::1]:5061;transport=TLS;lr?subject=x&p=y"
        );
    }

    #[test]
    fn param_ranges_are_relative_to_the_uri() {
        let s = "sip:h;a=1;b";
        let u = SipUri::parse(s).expect("valid");
        assert_eq!(&s[u.params[0].range.clone()], ";a=1");
        assert_eq!(&s[u.params[1].range.clone()], ";b");
    }

    #[test]
    fn rejects_malformed_uris() {
        for bad in [
            "sip:",
            "sip:@host",
            "sip:us er@host",
            "sip:host:99999",
            "sip:host;",
            "sip:host?",
            "sip:a@b@c",
            "sip:%zz@host",
            "sip:[::1",
            "sip:host extra",
            "<sip:x@y>",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Uri::parse("tel:+1-201-555-0123").expect("valid"),
            Uri::Other("tel:+1-201-555-0123".into())
        );
    }

    #[test]
    fn aor_normalises_case_and_escapes_rfc3261_19_1_4() {
        let a = SipUri::parse("sip:%75se%72@EXAMPLE.com;transport=tcp").expect("valid");
        assert_eq!(a.aor(), "sip:user@example.com");
        let b = SipUri::parse("sip:sips%3auser%40example.com@example.net").expect("valid");
        assert_eq!(b.aor(), "sip:sips%3Auser%40example.com@example.net");
        let c = SipUri::parse("sips:bob@host:5061").expect("valid");
        assert_eq!(c.aor(), "sips:bob@host:5061");
    }

    #[test]
    fn escaped_param_names_match_rfc3261_19_1_4() {
        let u = SipUri::parse("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
            .expect("valid");
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.param("name"), Some(Some("v%61lue%25%34%31")));
    }
}
