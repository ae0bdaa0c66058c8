//! Parsing the credentials of an `Authorization` header value that should carry a Bearer token
//! (RFC 8898 §2.2 for SIP). Two syntaxes are accepted:
//!
//! - RFC 6750 §2.1: `Bearer <b64token>`, with
//!   `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`;
//! - 3GPP TS 24.371 (and RFC 7235 §2.1 auth-params): `Bearer access_token="<token>"`, possibly
//!   with other comma-separated auth-params, which are ignored.
//!
//! The scheme is case-insensitive (RFC 7235 §2.1). Only the token text is returned, borrowed
//! from the input; whether it is any good is `verify.rs`'s business.
//!
//! [`parse_bearer_credentials`] also accepts imsgw's third form, for UAs that obtained an
//! authorization code and let the edge exchange it (issue 13, the rich-UI flow of the IETF
//! "3rd-party authentication for SIP" work that became RFC 8898), in the same auth-param
//! syntax: `Bearer code="<code>", code_verifier="<PKCE verifier>", client_id="<client>"` with
//! an optional `redirect_uri="<uri>"`. RFC 8898 defines no parameter but the token, so the
//! names are those of the token request they stand for (RFC 6749 §4.1.3, RFC 7636 §4.5).

/// Why an `Authorization` value yields no Bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// The value is empty or only whitespace.
    #[error("empty credentials")]
    Empty,
    /// Another scheme, e.g. `Digest` or `Basic`.
    #[error("not a Bearer credential")]
    OtherScheme,
    /// Bearer, but not in either syntax.
    #[error("malformed Bearer credential: {0}")]
    Malformed(&'static str),
}

impl BearerError {
    /// RFC 6750 §3.1 error code for the challenge: none when the request carried no Bearer
    /// credentials at all, `invalid_request` when it carried a malformed one.
    pub fn oauth_error(&self) -> Option<&'static str> {
        match self {
            BearerError::Empty | BearerError::OtherScheme => None,
            BearerError::Malformed(_) => Some("invalid_request"),
        }
    }
}

/// The token in an `Authorization` header value, or why there is none.
pub fn parse_bearer(value: &str) -> Result<&str, BearerError> {
    match parse_bearer_credentials(value)? {
        BearerCredentials::Token(t) => Ok(t),
        BearerCredentials::Code(_) => Err(BearerError::Malformed("no access_token parameter")),
    }
}

/// What a Bearer credential carries: a token, or a code for the edge to exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerCredentials<'a> {
    Token(&'a str),
    Code(CodeCredentials<'a>),
}

/// `Bearer code="…", code_verifier="…", client_id="…"[, redirect_uri="…"]`. `Debug` hides the
/// code and the verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeCredentials<'a> {
    pub code: &'a str,
    pub code_verifier: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: Option<&'a str>,
}

impl std::fmt::Debug for CodeCredentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeCredentials")
            .field("code", &"<redacted>")
            .field("code_verifier", &"<redacted>")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

/// The Bearer credentials in an `Authorization` header value: a token in either syntax, or a
/// code (see the module doc), or why there are none.
pub fn parse_bearer_credentials(value: &str) -> Result<BearerCredentials<'_>, BearerError> {
    let value = value.trim_matches(is_ws);
    if value.is_empty() {
        return Err(BearerError::Empty);
    }
    let scheme_end = value.find(is_ws).unwrap_or(value.len());
    if !value[..scheme_end].eq_ignore_ascii_case("Bearer") {
        return Err(BearerError::OtherScheme);
    }
    let rest = value[scheme_end..].trim_start_matches(is_ws);
    if rest.is_empty() {
        return Err(BearerError::Malformed("no token"));
    }
    if is_b64token(rest) {
        return Ok(BearerCredentials::Token(rest));
    }
    let params = auth_params(rest)?;
    let one = |name: &str| -> Result<Option<&str>, BearerError> {
        let mut it = params.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = it.next().map(|(_, v)| *v);
        if it.next().is_some() {
            // RFC 6750 §3.1 invalid_request: "repeats the same parameter".
            return Err(BearerError::Malformed("a parameter is repeated"));
        }
        Ok(first)
    };
    let token = one("access_token")?;
    let code = one("code")?;
    match (token, code) {
        (Some(_), Some(_)) => Err(BearerError::Malformed("both access_token and code")),
        (Some(t), None) if is_b64token(t) => Ok(BearerCredentials::Token(t)),
        (Some(_), None) => Err(BearerError::Malformed("access_token is not a b64token")),
        (None, Some(code)) => {
            let verifier = one("code_verifier")?
                .ok_or(BearerError::Malformed("code without code_verifier"))?;
            let client_id =
                one("client_id")?.ok_or(BearerError::Malformed("code without client_id"))?;
            // RFC 7636 §4.1: 43 to 128 unreserved characters.
            let unreserved =
                |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
            if !(43..=128).contains(&verifier.len()) || !verifier.bytes().all(unreserved) {
                return Err(BearerError::Malformed(
                    "code_verifier is not an RFC 7636 verifier",
                ));
            }
            if !is_b64token(code) {
                return Err(BearerError::Malformed("code is not a b64token"));
            }
            if client_id.is_empty() {
                return Err(BearerError::Malformed("client_id is empty"));
            }
            Ok(BearerCredentials::Code(CodeCredentials {
                code,
                code_verifier: verifier,
                client_id,
                redirect_uri: one("redirect_uri")?.filter(|u| !u.is_empty()),
            }))
        }
        (None, None) => Err(BearerError::Malformed("no access_token parameter")),
    }
}

/// RFC 6750 §2.1 `b64token`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// Comma-separated auth-params (RFC 7235 §2.1:
/// `auth-param = token BWS "=" BWS ( token / quoted-string )`), at most [`MAX_PARAMS`]. A
/// quoted value may not hold an escape: nothing imsgw reads from them needs one.
fn auth_params(mut s: &str) -> Result<Vec<(&str, &str)>, BearerError> {
    let mut out = Vec::new();
    loop {
        if out.len() == MAX_PARAMS {
            return Err(BearerError::Malformed("too many parameters"));
        }
        let eq = s
            .find('=')
            .ok_or(BearerError::Malformed("expected name=value"))?;
        let name = s[..eq].trim_end_matches(is_ws);
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(BearerError::Malformed("bad parameter name"));
        }
        s = s[eq + 1..].trim_start_matches(is_ws);
        let (value, after) = if let Some(q) = s.strip_prefix('"') {
            let end = q
                .find(['"', '\\'])
                .ok_or(BearerError::Malformed("unterminated quoted string"))?;
            if q.as_bytes()[end] == b'\\' {
                return Err(BearerError::Malformed("escapes are not allowed in a token"));
            }
            (&q[..end], &q[end + 1..])
        } else {
            let end = s.find([',', ' ', '\t']).unwrap_or(s.len());
            if !s[..end]
                .bytes()
                .all(|c| is_tchar(c) || matches!(c, b'/' | b'='))
            {
                return Err(BearerError::Malformed("bad parameter value"));
            }
            (&s[..end], &s[end..])
        };
        out.push((name, value));
        let after = after.trim_start_matches(is_ws);
        if after.is_empty() {
            return Ok(out);
        }
        s = after
            .strip_prefix(',')
            .ok_or(BearerError::Malformed("expected ',' between parameters"))?
            .trim_start_matches(is_ws);
    }
}

/// Parameters read from one credential; more is not a credential imsgw makes sense of.
const MAX_PARAMS: usize = 16;

fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 7230 §3.2.6 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";

    #[test]
    fn rfc6750_2_1_form_with_any_scheme_case() {
        for v in [
            format!("Bearer {JWT}"),
            format!("bearer {JWT}"),
            format!("BEARER\t {JWT}  "),
        ] {
            assert_eq!(parse_bearer(&v), Ok(JWT), "{v}");
        }
    }

    #[test]
    fn b64token_may_end_in_padding_and_use_plus_slash_tilde() {
        assert_eq!(
            parse_bearer("Bearer mF_9.B5f-4.1JqM+/~=="),
            Ok("mF_9.B5f-4.1JqM+/~==")
        );
        assert!(parse_bearer("Bearer ==").is_err());
        assert!(parse_bearer("Bearer ab=c").is_err(), "'=' only at the end");
    }

    #[test]
    fn ts24371_access_token_param_with_other_params() {
        let v = format!("Bearer access_token=\"{JWT}\"");
        assert_eq!(parse_bearer(&v), Ok(JWT));
        let v = format!("Bearer realm=\"ims.example\", Access_Token = \"{JWT}\" , x=y");
        assert_eq!(parse_bearer(&v), Ok(JWT));
        let v = format!("Bearer access_token={JWT}");
        assert_eq!(parse_bearer(&v), Ok(JWT), "unquoted token value, RFC 7235");
    }

    #[test]
    fn other_schemes_and_empty_values_carry_no_error_code() {
        assert_eq!(
            parse_bearer("Basic dXNlcjpwYXNz"),
            Err(BearerError::OtherScheme)
        );
        assert_eq!(
            parse_bearer("Digest username=\"a\""),
            Err(BearerError::OtherScheme)
        );
        assert_eq!(parse_bearer("Bearerx abc"), Err(BearerError::OtherScheme));
        assert_eq!(parse_bearer(""), Err(BearerError::Empty));
        assert_eq!(parse_bearer("  \t"), Err(BearerError::Empty));
        assert_eq!(BearerError::OtherScheme.oauth_error(), None);
    }

    #[test]
    fn malformed_bearer_values_are_invalid_request_rfc6750_3_1() {
        for v in [
            "Bearer",
            "Bearer   ",
            "Bearer abc def",
            "Bearer abc\"",
            "Bearer access_token=\"abc",
            "Bearer access_token=abc\"",
            "Bearer access_token=\"a\\\"b\"",
            "Bearer access_token=\"a b\"",
            "Bearer access_token=\"\"",
            "Bearer access_token=\"a\", access_token=\"b\"",
            "Bearer realm=\"x\"",
            "Bearer access_token=\"a\" junk",
            "Bearer =\"a\"",
        ] {
            let e = parse_bearer(v).expect_err(v);
            assert!(matches!(e, BearerError::Malformed(_)), "{v}: {e:?}");
            assert_eq!(e.oauth_error(), Some("invalid_request"));
        }
    }

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    #[test]
    fn a_code_with_its_verifier_and_client() {
        let v = format!(
            "Bearer code=\"SplxlOBeZQQYbYS6WxSbIA\", code_verifier=\"{VERIFIER}\", client_id=wic, redirect_uri=\"https://gw.example/cb\""
        );
        let c = match parse_bearer_credentials(&v) {
            Ok(BearerCredentials::Code(c)) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(c.code, "SplxlOBeZQQYbYS6WxSbIA");
        assert_eq!(c.code_verifier, VERIFIER);
        assert_eq!(c.client_id, "wic");
        assert_eq!(c.redirect_uri, Some("https://gw.example/cb"));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("Splx") && !shown.contains("dBjf"),
            "{shown}"
        );
        // A token-only reader finds no token in it.
        assert!(matches!(parse_bearer(&v), Err(BearerError::Malformed(_))));
    }

    #[test]
    fn a_code_credential_that_is_incomplete_or_ambiguous_is_invalid_request() {
        let ok = format!("code=\"abc\", code_verifier=\"{VERIFIER}\", client_id=\"wic\"");
        for v in [
            "Bearer code=\"abc\", client_id=\"wic\"".to_string(),
            format!("Bearer code=\"abc\", code_verifier=\"{VERIFIER}\""),
            "Bearer code=\"abc\", code_verifier=\"short\", client_id=wic".to_string(),
            format!("Bearer code=\"a b\", code_verifier=\"{VERIFIER}\", client_id=wic"),
            format!("Bearer code=\"abc\", code_verifier=\"{VERIFIER}!\", client_id=wic"),
            format!("Bearer {ok}, access_token=\"{JWT}\""),
            format!("Bearer {ok}, code=\"def\""),
            format!("Bearer {ok}, client_id=\"other\""),
            format!("Bearer code=\"abc\", code_verifier=\"{VERIFIER}\", client_id=\"\""),
            format!("Bearer {ok}{}", ", x=y".repeat(20)),
        ] {
            let e = parse_bearer_credentials(&v).expect_err(&v);
            assert!(matches!(e, BearerError::Malformed(_)), "{v}: {e:?}");
        }
        assert!(parse_bearer_credentials(&format!("Bearer {ok}")).is_ok());
    }
}
