//! IMS public user identities (IMPU, TS 23.228 §4.3.3.2) in one canonical form, and the RFC 3261
//! §19.1.4 / RFC 3966 §4 comparison of a request's From/To URI with one.
//!
//! An [`Impu`] is what a token or the WAF's identity mapping may name: a `sip:user@host` or a
//! global `tel:+digits` URI and nothing else. Everything that makes two spellings of "the same"
//! URI differ, or lets a URI carry more than an identity, is refused when parsing:
//!
//! * no password (`sip:bob:x@h` is refused, not read as `bob`), no URI parameters, no headers;
//! * no port: an IMPU names a user, not a socket;
//! * `sips:` is refused: RFC 3261 §19.1.4 makes a SIPS URI never equal to a SIP URI, and an
//!   identity that changes with the transport is not an identity. Registrations here are `sip:`;
//! * the user part holds only RFC 3261 §25.1 `unreserved` characters, the `user-unreserved`
//!   characters `& = + $ , /` and escapes. `;` and `?` (legal in a user part, but read as
//!   parameters and headers by most of the world) and `:` are refused, literal or escaped, as are
//!   `@` and control characters: an escape must not smuggle what the literal form may not carry;
//! * the host is a hostname (RFC 3261 §25.1, no trailing dot), a dotted IPv4 address without
//!   leading zeros, or a bracketed IPv6 address;
//! * a `tel:` URI is a global number (RFC 3966 §5.1.4: `+` and digits, visual separators
//!   `- . ( )` allowed and dropped), at most 15 digits (ITU-T E.164 §6), without parameters.
//!
//! Canonical form: scheme lowercase, host lowercase (IPv6 as [`std::net::Ipv6Addr`] prints it),
//! escapes of unreserved characters decoded and every other escape in uppercase hex. Two IMPUs
//! are equal exactly when their canonical strings are, which is RFC 3261 §19.1.4 equality for
//! URIs of this restricted shape.
//!
//! Owns: IMPU syntax, canonical form and comparison. Must not touch: tokens, the WAF, flows.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::uri::{SipUri, Uri, is_unreserved};

/// Longest IMPU accepted, in bytes. Real identities are far shorter; the cap bounds the work a
/// hostile claim can cause.
pub const MAX_IMPU_LEN: usize = 256;

/// E.164 numbers have at most 15 digits (ITU-T E.164 §6).
const MAX_TEL_DIGITS: usize = 15;

/// An IMS public user identity in canonical form (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Impu {
    canonical: String,
}

/// Why a string is not an IMPU, or why a URI cannot be compared with one. Never carries the
/// input: claims and request URIs are not echoed into logs through errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImpuError {
    /// The empty string.
    #[error("an IMPU must not be empty")]
    Empty,
    /// Longer than [`MAX_IMPU_LEN`].
    #[error("an IMPU is at most {MAX_IMPU_LEN} bytes")]
    TooLong,
    /// Whitespace, a control character or a non-ASCII character.
    #[error("an IMPU must not contain whitespace, control or non-ASCII characters")]
    BadChar,
    /// Not `sip:` or `tel:` (this includes `sips:`).
    #[error("an IMPU is a sip: or tel: URI (sips: names no other identity and is refused)")]
    Scheme,
    /// `user:password@` (or `user:@`).
    #[error("an IMPU must not carry a password (':' after the user)")]
    Password,
    /// `;name=value` after the host (or in a tel URI).
    #[error("an IMPU must not carry URI parameters (';')")]
    Params,
    /// `?name=value`.
    #[error("an IMPU must not carry URI headers ('?')")]
    Headers,
    /// `host:port`.
    #[error("an IMPU names a user, not a socket: it must not carry a port")]
    Port,
    /// `sip:host` without a user part.
    #[error("a SIP IMPU needs a user part (sip:user@host)")]
    NoUser,
    /// The user part has a character or escape an IMPU does not allow.
    #[error("the user part of an IMPU {0}")]
    BadUser(&'static str),
    /// Not a hostname, IPv4 address or bracketed IPv6 address.
    #[error("the host of an IMPU must be a hostname, an IPv4 address or an [IPv6] address")]
    BadHost,
    /// A `tel:` URI that is not a global number.
    #[error("a tel IMPU is a global number: tel:+ and at most 15 digits, with optional - . ( )")]
    BadTel,
}

impl Impu {
    /// Parses and canonicalises an IMPU. Nothing is trimmed: surrounding whitespace is an error.
    pub fn parse(s: &str) -> Result<Impu, ImpuError> {
        if s.is_empty() {
            return Err(ImpuError::Empty);
        }
        if s.len() > MAX_IMPU_LEN {
            return Err(ImpuError::TooLong);
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ImpuError::BadChar);
        }
        let (scheme, rest) = s.split_once(':').ok_or(ImpuError::Scheme)?;
        let canonical = if scheme.eq_ignore_ascii_case("sip") {
            parse_sip(rest)?
        } else if scheme.eq_ignore_ascii_case("tel") {
            format!("tel:+{}", parse_tel(rest)?)
        } else {
            return Err(ImpuError::Scheme);
        };
        Ok(Impu { canonical })
    }

    /// The canonical form, e.g. `sip:bob@ims.example` or `tel:+15551234`.
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// Whether this is a `tel:` IMPU.
    pub fn is_tel(&self) -> bool {
        self.canonical.starts_with("tel:")
    }

    /// `user@host` of a SIP IMPU (the NAI form of TS 23.228 §4.3.3.1), `None` for `tel:`.
    pub fn user_at_host(&self) -> Option<&str> {
        self.canonical.strip_prefix("sip:")
    }

    /// Whether the From/To `uri` of a request names exactly this IMPU under RFC 3261 §19.1.4
    /// (SIP) or RFC 3966 §4 (tel).
    ///
    /// A URI with a password or headers is refused with an error, never "equal": such a URI is
    /// not an identity, and a caller must not fall back to comparing its pieces. Otherwise:
    /// the schemes must be the same (`sips:` never equals `sip:`), the user part equal
    /// case-sensitively after escapes of unreserved characters are decoded, the host equal
    /// case-insensitively, and no port may be written (an IMPU has none). The `user`, `ttl`,
    /// `method` and `maddr` parameters make the URIs unequal, since §19.1.4 requires them to
    /// match when present in either; other parameters (`transport`, ...) are ignored. A tel URI
    /// equals when its digits do, visual separators ignored, and it carries no parameters.
    pub fn matches(&self, uri: &Uri) -> Result<bool, ImpuError> {
        match uri {
            Uri::Sip(u) => self.matches_sip(u),
            Uri::Other(o) => {
                let Some((scheme, rest)) = o.split_once(':') else {
                    return Ok(false);
                };
                if !scheme.eq_ignore_ascii_case("tel") || !self.is_tel() {
                    return Ok(false);
                }
                // RFC 3966 §4: parameters must match; an IMPU has none, so any makes it unequal.
                Ok(parse_tel(rest).is_ok_and(|digits| self.canonical[5..] == digits))
            }
        }
    }

    fn matches_sip(&self, u: &SipUri) -> Result<bool, ImpuError> {
        if u.password.is_some() {
            return Err(ImpuError::Password);
        }
        if u.headers.is_some() {
            return Err(ImpuError::Headers);
        }
        let Some(mine) = self.user_at_host() else {
            return Ok(false);
        };
        // RFC 3261 §19.1.4: SIP and SIPS URIs are never equivalent; a port written on one side
        // only makes them unequal; these parameters must match when present in either.
        if u.secure
            || u.port.is_some()
            || ["user", "ttl", "method", "maddr"]
                .iter()
                .any(|p| u.param(p).is_some())
        {
            return Ok(false);
        }
        let Some(user) = u.user.as_deref() else {
            return Ok(false);
        };
        let (Ok(user), Ok(host)) = (canonical_user(user), canonical_host(&u.host)) else {
            // Not an IMPU's spelling, so not equal to one.
            return Ok(false);
        };
        Ok(mine.len() == user.len() + 1 + host.len()
            && mine.starts_with(&user)
            && mine[user.len()..].starts_with('@')
            && mine[user.len() + 1..] == host)
    }
}

impl fmt::Display for Impu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

impl FromStr for Impu {
    type Err = ImpuError;

    fn from_str(s: &str) -> Result<Impu, ImpuError> {
        Impu::parse(s)
    }
}

impl AsRef<str> for Impu {
    fn as_ref(&self) -> &str {
        &self.canonical
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Impu {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.canonical)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Impu {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Impu, D::Error> {
        let s = String::deserialize(d)?;
        Impu::parse(&s).map_err(|e| {
            serde::de::Error::custom(format_args!(
                "not a canonical IMPU: {e}; write it as sip:user@host or tel:+number"
            ))
        })
    }
}

/// `user@host` after `sip:`, canonical, with `sip:` in front.
fn parse_sip(rest: &str) -> Result<String, ImpuError> {
    let (user, hostpart) = rest.split_once('@').ok_or(ImpuError::NoUser)?;
    if user.contains(':') {
        return Err(ImpuError::Password);
    }
    // Headers and parameters first: they say more than "bad host".
    if hostpart.contains('?') {
        return Err(ImpuError::Headers);
    }
    if hostpart.contains(';') {
        return Err(ImpuError::Params);
    }
    if hostpart.contains('@') {
        return Err(ImpuError::BadUser("must escape '@'"));
    }
    let host = match hostpart.strip_prefix('[') {
        Some(v6) => {
            let (inner, after) = v6.split_once(']').ok_or(ImpuError::BadHost)?;
            port_after_host(after)?;
            canonical_host(&format!("[{inner}]"))?
        }
        None => {
            let (h, after) = match hostpart.find(':') {
                Some(c) => hostpart.split_at(c),
                None => (hostpart, ""),
            };
            port_after_host(after)?;
            canonical_host(h)?
        }
    };
    let user = canonical_user(user)?;
    Ok(format!("sip:{user}@{host}"))
}

/// What follows the host must be nothing; `:digits` is a port, anything else a bad host.
fn port_after_host(after: &str) -> Result<(), ImpuError> {
    match after.strip_prefix(':') {
        None if after.is_empty() => Ok(()),
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Err(ImpuError::Port),
        _ => Err(ImpuError::BadHost),
    }
}

/// The canonical user part (RFC 3261 §19.1.4: escapes of unreserved characters decoded, other
/// escapes kept in uppercase hex, since an escaped reserved character differs from its literal).
fn canonical_user(user: &str) -> Result<String, ImpuError> {
    if user.is_empty() {
        return Err(ImpuError::BadUser("must not be empty"));
    }
    let b = user.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let (Some(&h), Some(&l)) = (b.get(i + 1), b.get(i + 2)) else {
                return Err(ImpuError::BadUser("has a '%' that starts no escape"));
            };
            let (Some(h), Some(l)) = (hex(h), hex(l)) else {
                return Err(ImpuError::BadUser("has a '%' that starts no escape"));
            };
            let d = h << 4 | l;
            if d.is_ascii_control() {
                return Err(ImpuError::BadUser(
                    "must not carry an escaped control character",
                ));
            }
            if matches!(d, b':' | b'@' | b';' | b'?') {
                return Err(ImpuError::BadUser(
                    "must not carry ':', '@', ';' or '?', not even escaped",
                ));
            }
            if is_unreserved(d) {
                out.push(char::from(d));
            } else {
                out.push_str(&format!("%{d:02X}"));
            }
            i += 3;
            continue;
        }
        match c {
            b':' => return Err(ImpuError::Password),
            b';' | b'?' => {
                return Err(ImpuError::BadUser(
                    "must not contain ';' or '?' (they would start parameters or headers)",
                ));
            }
            _ if is_unreserved(c) || matches!(c, b'&' | b'=' | b'+' | b'$' | b',' | b'/') => {
                out.push(char::from(c));
            }
            _ => {
                return Err(ImpuError::BadUser(
                    "has a character SIP does not allow there unescaped",
                ));
            }
        }
        i += 1;
    }
    Ok(out)
}

/// The canonical host: a lowercase hostname, a dotted IPv4 address, or `[IPv6]` as
/// [`Ipv6Addr`] prints it (so different spellings of one address compare equal).
fn canonical_host(host: &str) -> Result<String, ImpuError> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(ImpuError::BadHost)?;
        let a: Ipv6Addr = inner.parse().map_err(|_| ImpuError::BadHost)?;
        return Ok(format!("[{a}]"));
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // `Ipv4Addr` refuses leading zeros, so each address has one spelling.
        let a: Ipv4Addr = host.parse().map_err(|_| ImpuError::BadHost)?;
        return Ok(a.to_string());
    }
    if host.len() > 253 {
        return Err(ImpuError::BadHost);
    }
    // RFC 3261 §25.1 `hostname`: labels of alphanumerics and inner '-', the last one starting
    // with a letter. No trailing dot, so each name has one spelling.
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b.first() != Some(&b'-')
            && b.last() != Some(&b'-')
    };
    let top_ok = labels
        .last()
        .is_some_and(|t| t.as_bytes().first().is_some_and(u8::is_ascii_alphabetic));
    if !top_ok || !labels.iter().all(|l| label_ok(l)) {
        return Err(ImpuError::BadHost);
    }
    Ok(host.to_ascii_lowercase())
}

/// The digits of a global tel number (RFC 3966 §5.1.4), visual separators dropped.
fn parse_tel(rest: &str) -> Result<String, ImpuError> {
    if rest.contains(';') {
        return Err(ImpuError::Params);
    }
    let number = rest.strip_prefix('+').ok_or(ImpuError::BadTel)?;
    let mut digits = String::with_capacity(number.len());
    for c in number.bytes() {
        match c {
            b'0'..=b'9' => digits.push(char::from(c)),
            b'-' | b'.' | b'(' | b')' => {}
            _ => return Err(ImpuError::BadTel),
        }
    }
    if digits.is_empty() || digits.len() > MAX_TEL_DIGITS {
        return Err(ImpuError::BadTel);
    }
    Ok(digits)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
