//! Lexical helpers shared by the header parsers (RFC 3261 §25.1): linear white space, tokens,
//! quoted strings, comma lists that respect quotes and angle brackets, and `;name=value`
//! parameter lists. Everything works on byte ranges of the original buffer; nothing here knows
//! what a particular header means.

use std::ops::Range;

/// One `;name[=value]` parameter of a header value or URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The name as written (compare case-insensitively; RFC 3261 §7.3.1).
    pub name: String,
    /// The value as written, quotes included if it was a quoted-string; `None` for a flag.
    pub value: Option<String>,
    /// `;name=value` including the semicolon. Absolute buffer offsets for header parameters,
    /// offsets into the URI string for [`crate::SipUri`] parameters.
    pub range: Range<usize>,
}

impl Param {
    /// The value with surrounding quotes removed and quoted-pairs resolved (RFC 3261 §25.1).
    pub fn unquoted(&self) -> Option<String> {
        self.value.as_deref().map(unquote)
    }
}

/// Finds `name` (case-insensitively) in `params`: `Some(None)` for a flag, `Some(Some(v))` for a
/// value.
pub(crate) fn find_param<'a>(params: &'a [Param], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .map(|p| p.value.as_deref())
}

/// LWS, including the CR and LF of a folded line (RFC 3261 §7.3.1): inside a header value every
/// CR or LF is part of folding, since the line scanner already cut the value at its real end.
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// `token` characters (RFC 3261 §25.1).
pub(crate) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// `range` without leading and trailing LWS.
pub(crate) fn trim(buf: &[u8], range: Range<usize>) -> Range<usize> {
    let (mut s, mut e) = (range.start, range.end.min(buf.len()));
    while s < e && is_ws(buf[s]) {
        s += 1;
    }
    while e > s && is_ws(buf[e - 1]) {
        e -= 1;
    }
    s..e
}

/// `buf[r]` as UTF-8 text, if it is.
pub(crate) fn text(buf: &[u8], r: Range<usize>) -> Option<&str> {
    std::str::from_utf8(buf.get(r)?).ok()
}

/// Removes the quotes of a quoted-string and resolves its quoted-pairs; other text is returned
/// as is.
pub(crate) fn unquote(s: &str) -> String {
    let Some(inner) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return s.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits a comma-separated header value into trimmed element ranges, ignoring commas inside
/// quoted strings and `<...>` (RFC 3261 §7.3.1: a URI in angle brackets may contain commas).
/// `None` for an unterminated quote or angle bracket, or an empty element.
pub(crate) fn split_commas(buf: &[u8], r: Range<usize>) -> Option<Vec<Range<usize>>> {
    let r = r.start..r.end.min(buf.len());
    let mut out = Vec::new();
    let (mut in_quote, mut in_angle) = (false, false);
    let mut start = r.start;
    let mut i = r.start;
    while i < r.end {
        let b = buf[i];
        if in_quote {
            match b {
                b'\\' => i += 1,
                b'"' => in_quote = false,
                _ => {}
            }
        } else if in_angle {
            in_angle = b != b'>';
        } else {
            match b {
                b'"' => in_quote = true,
                b'<' => in_angle = true,
                b',' => {
                    out.push(trim(buf, start..i));
                    start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    if in_quote || in_angle {
        return None;
    }
    out.push(trim(buf, start..r.end));
    if out.iter().any(|e| e.is_empty()) {
        return None;
    }
    Some(out)
}

/// A read position inside `buf[..end]`.
pub(crate) struct Cursor<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
    pub(crate) end: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], r: Range<usize>) -> Self {
        Cursor {
            buf,
            pos: r.start,
            end: r.end.min(buf.len()),
        }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.end
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        (self.pos < self.end).then(|| self.buf[self.pos])
    }

    pub(crate) fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    /// Consumes `b` if it is next.
    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes bytes while `f` holds.
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> Range<usize> {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        start..self.pos
    }

    /// A non-empty token.
    pub(crate) fn token(&mut self) -> Option<Range<usize>> {
        let r = self.take_while(is_token);
        (!r.is_empty()).then_some(r)
    }

    /// A quoted-string including its quotes; `None` if none starts here or it is unterminated.
    pub(crate) fn quoted(&mut self) -> Option<Range<usize>> {
        let start = self.pos;
        if !self.eat(b'"') {
            return None;
        }
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'\\' => self.pos += 1,
                b'"' => return Some(start..self.pos),
                _ => {}
            }
        }
        self.pos = start;
        None
    }

    /// `*( SEMI generic-param )` (RFC 3261 §25.1): stops before anything that is not a `;`.
    /// `None` if a parameter is malformed.
    pub(crate) fn params(&mut self) -> Option<Vec<Param>> {
        let mut out = Vec::new();
        loop {
            let save = self.pos;
            self.skip_ws();
            if !self.eat(b';') {
                self.pos = save;
                return Some(out);
            }
            let semi = self.pos - 1;
            self.skip_ws();
            let name = self.token()?;
            let name_end = self.pos;
            self.skip_ws();
            let value = if self.eat(b'=') {
                self.skip_ws();
                let v = match self.quoted() {
                    Some(q) => q,
                    None => self.take_while(|b| is_token(b) || matches!(b, b':' | b'[' | b']')),
                };
                if v.is_empty() {
                    return None;
                }
                Some(v)
            } else {
                self.pos = name_end;
                None
            };
            let end = value.as_ref().map_or(name_end, |v| v.end);
            out.push(Param {
                name: text(self.buf, name)?.to_string(),
                value: match value {
                    Some(v) => Some(text(self.buf, v)?.to_string()),
                    None => None,
                },
                range: semi..end,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_commas_respects_quotes_and_angle_brackets_rfc3261_7_3_1() {
        let v = br#""a, b" <sip:x@y;p=1,2>, <sip:z@w> , c"#;
        let parts = split_commas(v, 0..v.len()).expect("valid list");
        let strs: Vec<&[u8]> = parts.iter().map(|r| &v[r.clone()]).collect();
        assert_eq!(
            strs,
            vec![&br#""a, b" <sip:x@y;p=1,2>"#[..], b"<sip:z@w>", b"c"]
        );
    }

    #[test]
    fn split_commas_rejects_unterminated_and_empty_elements() {
        assert!(split_commas(b"\"abc, d", 0..7).is_none());
        assert!(split_commas(b"<sip:a, b", 0..9).is_none());
        assert!(split_commas(b"a,,b", 0..4).is_none());
        let v = br#""a\"b, c", d"#;
        assert_eq!(split_commas(v, 0..v.len()).map(|p| p.len()), Some(2));
    }

    #[test]
    fn params_allow_lws_and_quoted_values() {
        let v = b" ; tag = abc ;\r\n  flag ; q=\"x;y\" rest";
        let mut c = Cursor::new(v, 0..v.len());
        let ps = c.params().expect("valid params");
        assert_eq!(ps.len(), 3);
        assert_eq!(ps[0].name, "tag");
        assert_eq!(ps[0].value.as_deref(), Some("abc"));
        assert_eq!(&v[ps[0].range.clone()], b"; tag = abc");
        assert_eq!(ps[1].value, None);
        assert_eq!(&v[ps[1].range.clone()], b";\r\n  flag");
        assert_eq!(ps[2].unquoted().as_deref(), Some("x;y"));
        c.skip_ws();
        assert_eq!(c.peek(), Some(b'r'));
    }

    #[test]
    fn unquote_resolves_quoted_pairs() {
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
        assert_eq!(unquote("plain"), "plain");
    }
}
