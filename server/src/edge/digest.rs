//! Digest for phones that know nothing else (issue 13 §2): the person types their IMPU as the
//! user name and a phone code from the WAF's `/phone-code` page as the password. The edge
//! challenges (RFC 3261 §22.4 with RFC 7616's `qop=auth`, SHA-256 first and MD5 for phones that
//! know only it, RFC 8760 §2.4), checks the nonce it gave, and hands what the phone answered to
//! the WAF, which alone knows the codes: it tries [`DigestCheck::matches`] on each of that
//! IMPU's codes and app passwords.
//!
//! Nonces are stateless (`nonce`): the time they were made and an HMAC over it and the flow, so
//! a nonce is good on the connection (or UDP source) it was given to only, for [`NONCE_SECS`];
//! an Authorization header copied to another flow fails. Replays on the same flow within the
//! window would only re-register the phone already there.
//!
//! Owns: the Digest grammar, nonces, the response computation. Must not touch: the codes.

use std::fmt;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::FlowId;
use super::nonce::{FlowNonces, NonceError};

/// How long a nonce is good for.
pub const NONCE_SECS: u64 = 300;

/// The realm and the nonces (per process: a restart makes phones answer a new challenge).
#[derive(Clone)]
pub struct DigestSettings {
    pub realm: String,
    /// The challenges offered, in order of preference.
    pub algorithms: Vec<Algorithm>,
    nonces: FlowNonces,
}

impl fmt::Debug for DigestSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestSettings")
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// The hash of a challenge (RFC 7616 §3.3, RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Md5,
}

impl Algorithm {
    /// `SHA-256` or `MD5`, as `phones.digest_algorithms` and the challenge name them.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SHA-256" => Some(Algorithm::Sha256),
            "MD5" => Some(Algorithm::Md5),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Sha256 => hex(&Sha256::digest(data.as_bytes())),
            Algorithm::Md5 => hex(&md5::Md5::digest(data.as_bytes())),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl DigestSettings {
    pub fn new(realm: String) -> Self {
        Self::with_algorithms(realm, vec![Algorithm::Sha256, Algorithm::Md5])
    }

    /// Settings offering `algorithms`, in that order (`phones.digest_algorithms`).
    pub fn with_algorithms(realm: String, algorithms: Vec<Algorithm>) -> Self {
        Self {
            realm,
            algorithms,
            nonces: FlowNonces::new(NONCE_SECS),
        }
    }

    /// The `WWW-Authenticate` values for `flow` at `now`, most preferred first (RFC 8760 §2.4).
    pub fn challenges(&self, flow: FlowId, now: u64, stale: bool) -> Vec<String> {
        let nonce = self.nonces.issue(flow, now);
        let stale = if stale { ", stale=true" } else { "" };
        self.algorithms
            .iter()
            .map(|a| {
                format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                    self.realm,
                    a.name()
                )
            })
            .collect()
    }

    /// Whether `nonce` is one this edge gave `flow`: `Ok(true)` fresh, `Ok(false)` stale (RFC
    /// 7616 §3.3 `stale=true`: answer again with a new nonce), `Err` not ours.
    pub fn check_nonce(&self, flow: FlowId, nonce: &str, now: u64) -> Result<bool, DigestError> {
        self.nonces.check(flow, nonce, now).map_err(|e| match e {
            NonceError::NotOurs => DigestError("the nonce is not one of ours"),
            NonceError::OtherFlow => DigestError("the nonce is not one this connection was given"),
        })
    }
}

/// Why a Digest credential is no good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DigestError(pub &'static str);

/// What a phone answered a Digest challenge with (RFC 7616 §3.4), and the request's method:
/// everything needed to check a candidate password. `Debug` hides the response.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestCheck {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    /// `qop=auth` with its `nc` and `cnonce`, or none (RFC 2069 style, RFC 3261 §22.4).
    pub qop: Option<(String, String)>,
    pub method: String,
}

impl fmt::Debug for DigestCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestCheck")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .field("algorithm", &self.algorithm)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl DigestCheck {
    /// Parses `Digest …` credentials of a `method` request (RFC 7616 §3.4, RFC 3261 §25.1
    /// `digest-response`). Only `qop=auth` or none; no `auth-int`, no `-sess` algorithms.
    pub fn parse(value: &str, method: &str) -> Result<Self, DigestError> {
        let value = value.trim();
        let rest = value
            .get(..6)
            .filter(|s| s.eq_ignore_ascii_case("digest"))
            .map(|_| &value[6..])
            .ok_or(DigestError("not Digest credentials"))?;
        if !rest.starts_with([' ', '\t']) {
            return Err(DigestError("not Digest credentials"));
        }
        let params = params(rest.trim_start())?;
        let get = |name: &str| -> Result<Option<String>, DigestError> {
            let mut it = params.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
            let v = it.next().map(|(_, v)| v.clone());
            if it.next().is_some() {
                return Err(DigestError("a Digest parameter is repeated"));
            }
            Ok(v)
        };
        let need = |name: &'static str| -> Result<String, DigestError> {
            get(name)?.ok_or(DigestError(match name {
                "username" => "Digest credentials without username",
                "realm" => "Digest credentials without realm",
                "nonce" => "Digest credentials without nonce",
                "uri" => "Digest credentials without uri",
                _ => "Digest credentials without response",
            }))
        };
        let algorithm = match get("algorithm")?.as_deref() {
            None => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("MD5") => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Algorithm::Sha256,
            Some(_) => return Err(DigestError("the Digest algorithm is not MD5 or SHA-256")),
        };
        let qop = match get("qop")?.as_deref() {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc = get("nc")?.ok_or(DigestError("qop=auth without nc"))?;
                let cnonce = get("cnonce")?.ok_or(DigestError("qop=auth without cnonce"))?;
                if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(DigestError("nc is not 8 hex digits"));
                }
                Some((nc, cnonce))
            }
            Some(_) => return Err(DigestError("only qop=auth is offered")),
        };
        let response = need("response")?.to_ascii_lowercase();
        let want_len = match algorithm {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        };
        if response.len() != want_len || !response.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DigestError(
                "the Digest response is not a hash of its algorithm",
            ));
        }
        Ok(Self {
            username: need("username")?,
            realm: need("realm")?,
            nonce: need("nonce")?,
            uri: need("uri")?,
            response,
            algorithm,
            qop,
            method: method.to_string(),
        })
    }

    /// Whether `password` gives this response (RFC 7616 §3.4.1; RFC 2617 §3.2.2.1 without
    /// qop), compared in constant time.
    pub fn matches(&self, password: &str) -> bool {
        self.matches_ha1(&self.ha1(password))
    }

    /// H(A1) of `password` for this user name, realm and algorithm (RFC 7616 §3.4.2): what
    /// checks later answers without the password.
    pub fn ha1(&self, password: &str) -> String {
        (self.algorithm).hash(&format!("{}:{}:{password}", self.username, self.realm))
    }

    /// Whether the response is the one H(A1) `ha1` gives, in constant time.
    pub fn matches_ha1(&self, ha1: &str) -> bool {
        let a = self.algorithm;
        let ha2 = a.hash(&format!("{}:{}", self.method, self.uri));
        let want = match &self.qop {
            Some((nc, cnonce)) => a.hash(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce)),
            None => a.hash(&format!("{ha1}:{}:{ha2}", self.nonce)),
        };
        bool::from(want.as_bytes().ct_eq(self.response.as_bytes()))
    }
}

/// Comma-separated `name=value` pairs; quoted values may hold `\`-escapes (RFC 7230 §3.2.6).
fn params(mut s: &str) -> Result<Vec<(String, String)>, DigestError> {
    let mut out = Vec::new();
    while !s.is_empty() {
        if out.len() == 16 {
            return Err(DigestError("too many Digest parameters"));
        }
        let eq = s.find('=').ok_or(DigestError("expected name=value"))?;
        let name = s[..eq].trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(DigestError("bad Digest parameter name"));
        }
        s = s[eq + 1..].trim_start();
        let value;
        if let Some(q) = s.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, e)) => v.push(e),
                        None => break,
                    },
                    '\r' | '\n' => return Err(DigestError("a line break in a quoted string")),
                    c => v.push(c),
                }
            }
            let end = end.ok_or(DigestError("unterminated quoted string"))?;
            value = v;
            s = &q[end + 1..];
        } else {
            let end = s.find([',', ' ', '\t']).unwrap_or(s.len());
            value = s[..end].to_string();
            s = &s[end..];
        }
        out.push((name.to_string(), value));
        s = s.trim_start();
        if let Some(r) = s.strip_prefix(',') {
            s = r.trim_start();
        } else if !s.is_empty() {
            return Err(DigestError("expected ',' between Digest parameters"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 §3.9.1's example: user Mufasa, password "Circle of Life".
    const RFC7616_MD5: &str = r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="8ca523f5e9506fed4657c9700eebdbec", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
    const RFC7616_SHA256: &str = r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    #[test]
    fn rfc7616_3_9_1_examples_in_md5_and_sha256() {
        for v in [RFC7616_MD5, RFC7616_SHA256] {
            let c = DigestCheck::parse(v, "GET").expect("parses");
            assert!(c.matches("Circle of Life"), "{v}");
            assert!(!c.matches("Circle of life"));
            assert!(!c.matches(""));
        }
        let shown = format!(
            "{:?}",
            DigestCheck::parse(RFC7616_MD5, "GET").expect("parses")
        );
        assert!(
            !shown.contains("8ca523") && !shown.contains("7ypf"),
            "{shown}"
        );
    }

    #[test]
    fn rfc2617_style_without_qop_and_escapes_in_quoted_strings() {
        // RFC 2617 §3.5: the response without qop is H(HA1:nonce:HA2).
        let ha1 = hex(&md5::Md5::digest(b"a\"b:r:pw"));
        let ha2 = hex(&md5::Md5::digest(b"REGISTER:sip:r"));
        let resp = hex(&md5::Md5::digest(format!("{ha1}:n1:{ha2}").as_bytes()));
        let v = format!(
            r#"Digest username="a\"b", realm="r", nonce="n1", uri="sip:r", response="{resp}""#
        );
        let c = DigestCheck::parse(&v, "REGISTER").expect("parses");
        assert_eq!(c.username, "a\"b");
        assert!(c.matches("pw"));
    }

    #[test]
    fn malformed_or_unsupported_credentials_say_why() {
        for (v, why) in [
            ("Bearer abc", "not Digest"),
            ("Digest realm=\"r\"", "without"),
            (
                r#"Digest username="u", realm="r", nonce="n", uri="u", response="00", algorithm=SHA-512"#,
                "algorithm",
            ),
            (
                r#"Digest username="u", realm="r", nonce="n", uri="u", response="00000000000000000000000000000000", qop=auth-int, nc=00000001, cnonce="c""#,
                "qop=auth",
            ),
            (
                r#"Digest username="u", realm="r", nonce="n", uri="u", response="zz""#,
                "hash",
            ),
            (
                r#"Digest username="u", username="v", realm="r", nonce="n", uri="u", response="00000000000000000000000000000000""#,
                "repeated",
            ),
            (r#"Digest username="u"#, "unterminated"),
        ] {
            let e = DigestCheck::parse(v, "REGISTER").expect_err(v);
            assert!(e.0.contains(why), "{v}: {e}");
        }
    }

    #[test]
    fn a_nonce_is_good_on_its_own_flow_for_its_lifetime_only() {
        let s = DigestSettings::new("ims.example".into());
        let ch = s.challenges(FlowId(1), 1000, false);
        assert_eq!(ch.len(), 2);
        assert!(ch[0].contains("algorithm=SHA-256") && ch[1].contains("algorithm=MD5"));
        let nonce = ch[0]
            .split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("nonce");
        assert_eq!(s.check_nonce(FlowId(1), nonce, 1000), Ok(true));
        assert_eq!(
            s.check_nonce(FlowId(1), nonce, 1000 + NONCE_SECS),
            Ok(false)
        );
        assert!(
            s.check_nonce(FlowId(2), nonce, 1000).is_err(),
            "another flow"
        );
        let other = DigestSettings::new("ims.example".into());
        assert!(
            other.check_nonce(FlowId(1), nonce, 1000).is_err(),
            "another key"
        );
        assert!(s.check_nonce(FlowId(1), "garbage", 1000).is_err());
    }
}
