//! name-addr / addr-spec header values (RFC 3261 §20.10, §25.1): From, To, Contact, Route,
//! Record-Route and Path. Parses display name, URI and header parameters; positions are absolute
//! offsets into the message buffer.

use std::ops::Range;

use crate::error::ParseError;
use crate::scan::{Cursor, Param, find_param, text, unquote};
use crate::uri::Uri;

/// One name-addr or addr-spec with its header parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The whole value, trimmed.
    pub range: Range<usize>,
    /// The display name: unquoted with quoted-pairs resolved, or the LWS-joined tokens as
    /// written.
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Where the URI is in the buffer (inside the angle brackets if any).
    pub uri_range: Range<usize>,
    /// Header parameters after the URI (`tag`, `expires`, `+sip.instance`, `reg-id`, ...).
    pub params: Vec<Param>,
}

impl NameAddr {
    /// The `tag` parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// A header parameter by name, case-insensitively: `Some(None)` for a flag.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// The Contact `expires` parameter as delta-seconds (RFC 3261 §20.10): `Err` if it is not
    /// an integer below 2^32.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        match self.param("expires") {
            None => Ok(None),
            Some(v) => v
                .and_then(|v| parse_u32(v.as_bytes()))
                .map(Some)
                .ok_or(ParseError::BadExpires),
        }
    }

    /// Parses `buf[r]` (one comma-list element). `what` names the header in errors.
    pub(crate) fn parse(
        buf: &[u8],
        r: Range<usize>,
        what: &'static str,
    ) -> Result<NameAddr, ParseError> {
        let bad = || ParseError::BadNameAddr(what);
        let mut c = Cursor::new(buf, r.clone());
        c.skip_ws();
        let mut display = None;
        let start = c.pos;
        // name-addr = [ display-name ] LAQUOT addr-spec RAQUOT; display-name = *(token LWS) /
        // quoted-string. Without a display name or '<' it is an addr-spec whose ';' parameters
        // are header parameters (RFC 3261 §20.10).
        let angle = if c.peek() == Some(b'"') {
            let q = c.quoted().ok_or_else(bad)?;
            display = Some(unquote(text(buf, q).ok_or_else(bad)?));
            c.skip_ws();
            if c.peek() != Some(b'<') {
                return Err(bad());
            }
            true
        } else {
            let mut last_end = c.pos;
            while c.token().is_some() {
                last_end = c.pos;
                c.skip_ws();
            }
            if c.peek() == Some(b'<') {
                if last_end > start {
                    display = Some(text(buf, start..last_end).ok_or_else(bad)?.to_string());
                }
                true
            } else {
                c.pos = start;
                false
            }
        };
        let uri_range = if angle {
            c.eat(b'<');
            let u = c.take_while(|b| b != b'>');
            if !c.eat(b'>') {
                return Err(bad());
            }
            u
        } else {
            c.take_while(|b| !matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n'))
        };
        let uri_text = text(buf, uri_range.clone()).ok_or_else(bad)?;
        // RFC 3261 §20.10: a URI with a comma, question mark or semicolon must be in brackets.
        if !angle && uri_text.contains('?') {
            return Err(bad());
        }
        let uri = Uri::parse(uri_text).map_err(|_| bad())?;
        let params = c.params().ok_or_else(bad)?;
        c.skip_ws();
        if !c.at_end() {
            return Err(bad());
        }
        Ok(NameAddr {
            range: r,
            display,
            uri,
            uri_range,
            params,
        })
    }
}

/// The Contact header values of a message (RFC 3261 §20.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    /// `Contact: *` (REGISTER removing all bindings, RFC 3261 §10.2.2), with the `*`'s range.
    Star(Range<usize>),
    /// Every contact, in wire order across lines and commas.
    List(Vec<NameAddr>),
}

/// Digits only, below 2^32.
pub(crate) fn parse_u32(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn na(s: &str) -> Result<NameAddr, ParseError> {
        NameAddr::parse(s.as_bytes(), 0..s.len(), "To")
    }

    #[test]
    fn quoted_display_name_with_escapes_rfc3261_25_1() {
        let s =
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8";
        let a = na(s).expect("valid");
        assert_eq!(a.display.as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(a.tag(), Some("98asjd8"));
        assert_eq!(&s[a.uri_range.clone()], "sip:jdrosen@example.com");
    }

    #[test]
    fn token_display_name_without_space_rfc4475_3_1_1_6() {
        let a = na("caller<sip:caller@example.com>;tag=323").expect("valid");
        assert_eq!(a.display.as_deref(), Some("caller"));
        assert_eq!(a.tag(), Some("323"));
    }

    #[test]
    fn addr_spec_params_are_header_params_rfc3261_20_10() {
        let a = na("sip:+19725552222@gw1.example.net;unknownparam;expires=60").expect("valid");
        assert_eq!(a.display, None);
        assert_eq!(a.param("unknownparam"), Some(None));
        assert_eq!(a.expires(), Ok(Some(60)));
        let Uri::Sip(u) = &a.uri else {
            panic!("sip uri expected")
        };
        assert!(u.params.is_empty());
    }

    #[test]
    fn rejects_malformed_name_addrs() {
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "Bell, Alexander <sip:a.g.bell@example.com>",
            "< sip:t.watson@example.org >",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:joe@example.org>;;;;",
            "<sip:joe@example.org",
            "<sip:joe@example.org> junk",
            "",
        ] {
            assert!(na(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn contact_expires_must_fit_u32() {
        let a = na("<sip:u@h>;expires=280297596632815").expect("syntax is valid");
        assert_eq!(a.expires(), Err(ParseError::BadExpires));
    }
}
