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
        return Ok(rest);
    }
    access_token_param(rest)
}

/// RFC 6750 §2.1 `b64token`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// The `access_token` value among comma-separated auth-params (RFC 7235 §2.1:
/// `auth-param = token BWS "=" BWS ( token / quoted-string )`). Exactly one `access_token`,
/// whose value must be a b64token, quoted or not.
fn access_token_param(mut s: &str) -> Result<&str, BearerError> {
    let mut found = None;
    loop {
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
        if name.eq_ignore_ascii_case("access_token") {
            if found.is_some() {
                // RFC 6750 §3.1 invalid_request: "repeats the same parameter".
                return Err(BearerError::Malformed("access_token repeated"));
            }
            if !is_b64token(value) {
                return Err(BearerError::Malformed("access_token is not a b64token"));
            }
            found = Some(value);
        }
        let after = after.trim_start_matches(is_ws);
        if after.is_empty() {
            break;
        }
        s = after
            .strip_prefix(',')
            .ok_or(BearerError::Malformed("expected ',' between parameters"))?
            .trim_start_matches(is_ws);
    }
    found.ok_or(BearerError::Malformed("no access_token parameter"))
}

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
}
