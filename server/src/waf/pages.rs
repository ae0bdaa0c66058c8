//! The WAF's few HTML pages: sign-in (a button per provider), device approval, and clear
//! error pages. Everything interpolated is HTML-escaped; pages carry no script.
//!
//! Owns: markup. Must not touch: decisions (callers pass what to show).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// Escapes text for HTML element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A whole page around `body` (already escaped where needed).
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t}</title><style>\
body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1b1f24;line-height:1.5}}\
h1{{font-size:1.4rem}}a.button,button{{display:block;width:100%;box-sizing:border-box;margin:.5rem 0;padding:.75rem 1rem;\
font-size:1rem;border-radius:.5rem;border:1px solid #0b57d0;background:#0b57d0;color:#fff;text-align:center;text-decoration:none;cursor:pointer}}\
button.secondary{{background:#fff;color:#0b57d0}}input{{font-size:1.4rem;letter-spacing:.2rem;padding:.5rem;width:100%;box-sizing:border-box}}\
.error{{color:#b3261e}}:focus{{outline:3px solid #f9ab00;outline-offset:2px}}</style></head>\
<body><main><h1>{t}</h1>{body}</main></body></html>\n",
        t = esc(title),
    );
    let mut r = (status, Html(html)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(
        header::HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    r.headers_mut().insert(
        header::HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    r
}

/// An error page: what happened and what the person can do.
pub fn error(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        &format!("<p class=\"error\" role=\"alert\">{}</p>", esc(message)),
    )
}

/// The sign-in page: one button per provider; `ret` is the path to come back to.
pub fn signin(providers: &[(String, String)], ret: &str) -> Response {
    if providers.is_empty() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is not available",
            "No sign-in provider is configured for this service.",
        );
    }
    let mut body = String::from("<p>Sign in with your account to use calling:</p>");
    for (name, display) in providers {
        body.push_str(&format!(
            "<a class=\"button\" href=\"/auth/login?provider={}&amp;return={}\">Continue with {}</a>",
            esc(&urlencode(name)),
            esc(&urlencode(ret)),
            esc(display)
        ));
    }
    page(StatusCode::OK, "Sign in", &body)
}

/// Percent-encodes a query component (RFC 3986 §2.3 unreserved kept).
pub fn urlencode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// Decodes `%XX` escapes (the inverse of [`urlencode`]); invalid escapes stay as they are.
pub fn urldecode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
        assert_eq!(urlencode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(urldecode("a%20b%26c%3Dd%2F%C3%A9"), "a b&c=d/é");
        assert_eq!(urldecode("100%"), "100%");
        assert_eq!(urldecode("%zz%4"), "%zz%4");
    }
}
