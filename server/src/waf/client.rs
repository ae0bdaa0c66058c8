//! OAuth clients (RFC 6749 §2) and how a request proves which one it comes from: HTTP Basic
//! for clients with a secret (§2.3.1), `client_id` alone for public clients. One extractor,
//! [`Authenticated`], does it for every endpoint that takes a client, with the form it came in.
//!
//! Owns: client records and client authentication. Must not touch: grants.

use std::sync::Arc;

use axum::Form;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use base64::Engine;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::Waf;
use super::error::OAuthError;
use super::limits;
use imsgw_token::Secret;

/// The grants a client may use at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `authorization_code` (RFC 6749 §4.1), always with PKCE.
    AuthorizationCode,
    /// `refresh_token` (RFC 6749 §6), rotated.
    RefreshToken,
    /// `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628).
    DeviceCode,
}

impl Grant {
    pub const ALL: [Grant; 3] = [
        Grant::AuthorizationCode,
        Grant::RefreshToken,
        Grant::DeviceCode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
        }
    }
}

impl std::str::FromStr for Grant {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|g| g.as_str() == s).ok_or(())
    }
}

impl<'de> serde::Deserialize<'de> for Grant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|()| {
            serde::de::Error::custom(format!(
                "`{s}` is not one of {}",
                Grant::ALL.map(Grant::as_str).join(", ")
            ))
        })
    }
}

/// A registered OAuth client.
pub struct Client {
    /// `None` for a public client (RFC 6749 §2.1).
    pub secret: Option<Secret>,
    pub introspect: bool,
    pub redirect_uris: Vec<String>,
    pub grants: Vec<Grant>,
    pub scopes: Vec<String>,
    /// The operator's own application: people are not asked to consent to it.
    pub first_party: bool,
    /// Its codes may be exchanged by the edge, from a REGISTER.
    pub code_in_register: bool,
}

impl Client {
    /// A client from its `[[waf.clients]]` entry; `Err` says what is wrong with it.
    pub fn new(
        c: &crate::config::ClientConfig,
        secret: Option<Secret>,
        default_scope: &str,
    ) -> Result<Self, String> {
        let grants = Self::check(c)?;
        if c.code_in_register {
            if secret.is_some() {
                return Err("code_in_register: only for a public client (the edge cannot authenticate as this one)".into());
            }
            if !grants.contains(&Grant::AuthorizationCode) {
                return Err("code_in_register: needs the authorization_code grant".into());
            }
        }
        Ok(Self {
            secret,
            introspect: c.introspect,
            redirect_uris: c.redirect_uris.clone(),
            grants,
            scopes: if c.scopes.is_empty() {
                vec![default_scope.to_string()]
            } else {
                c.scopes.clone()
            },
            first_party: c.first_party,
            code_in_register: c.code_in_register,
        })
    }

    /// What is wrong with a `[[waf.clients]]` entry, if anything; its grants if nothing.
    pub fn check(c: &crate::config::ClientConfig) -> Result<Vec<Grant>, String> {
        let grants = c.grants.clone();
        for u in &c.redirect_uris {
            redirect_uri_allowed(u).map_err(|why| format!("redirect_uris: `{u}` {why}"))?;
        }
        if grants.contains(&Grant::AuthorizationCode) && c.redirect_uris.is_empty() {
            return Err("redirect_uris: the authorization_code grant needs at least one".into());
        }
        Ok(grants)
    }

    pub fn allows(&self, grant: Grant) -> bool {
        self.grants.contains(&grant)
    }

    /// Whether every word of `scope` (RFC 6749 §3.3) may be asked for by this client.
    pub fn allows_scope(&self, scope: &str) -> bool {
        let mut words = scope.split(' ').filter(|s| !s.is_empty()).peekable();
        words.peek().is_some() && words.all(|w| self.scopes.iter().any(|s| s == w))
    }

    pub fn is_public(&self) -> bool {
        self.secret.is_none()
    }
}

/// Where a code may be sent (RFC 9700 §2.1, RFC 8252 §7): `https`; `http` only to a loopback
/// IP literal (RFC 8252 §7.3; `localhost` is not, §8.3); or a private-use scheme in reverse
/// domain form (§7.1, `com.example.app:/cb`). Never a fragment (RFC 6749 §3.1.2).
fn redirect_uri_allowed(u: &str) -> Result<(), &'static str> {
    if u.contains('#') {
        return Err("has a fragment (RFC 6749 §3.1.2)");
    }
    if u.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err("has spaces or characters that are not ASCII");
    }
    let Some((scheme, rest)) = u.split_once(':') else {
        return Err("is not an absolute URI");
    };
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "https" => {
            let host = authority_host(rest).ok_or("has no host")?;
            if host.is_empty() {
                return Err("has no host");
            }
            Ok(())
        }
        "http" => {
            let host = authority_host(rest).ok_or("has no host")?;
            let ip = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>();
            match ip {
                Ok(ip) if ip.is_loopback() => Ok(()),
                _ => Err("is http but not to a loopback IP address: use https (RFC 9700 §2.1)"),
            }
        }
        s if s.contains('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            Ok(())
        }
        _ => Err("must be https, http to a loopback IP, or a reverse-domain private-use scheme"),
    }
}

/// The host of `//host[:port]/…`.
fn authority_host(rest: &str) -> Option<&str> {
    let auth = rest.strip_prefix("//")?;
    let auth = auth.split(['/', '?']).next().unwrap_or("");
    if auth.contains('@') {
        return None;
    }
    if let Some(v6) = auth.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(auth.split(':').next().unwrap_or(""))
}

/// A form that may name its client in the body (`client_id`).
pub trait NamesClient {
    fn client_id(&self) -> Option<&str>;

    /// The answer when the request neither authenticates nor names a client.
    fn no_client() -> OAuthError {
        OAuthError::invalid_request("client_id is missing")
    }
}

/// The form of a request from an authenticated (or, if public, named) client.
pub struct Authenticated<F> {
    pub client_id: String,
    pub form: F,
}

impl<F> Authenticated<F> {
    pub fn client<'a>(&self, waf: &'a Waf) -> Result<&'a Client, OAuthError> {
        waf.clients
            .get(&self.client_id)
            .ok_or_else(OAuthError::invalid_client)
    }
}

impl<F> FromRequest<Arc<Waf>> for Authenticated<F>
where
    F: DeserializeOwned + NamesClient + Send,
{
    type Rejection = OAuthError;

    async fn from_request(req: Request, waf: &Arc<Waf>) -> Result<Self, OAuthError> {
        let headers = req.headers().clone();
        let Form(form) = Form::<F>::from_request(req, waf).await.map_err(|r| {
            if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                super::error::count_refusal("oversize");
                OAuthError::invalid_request(format!(
                    "the request body is longer than {} bytes",
                    limits::BODY
                ))
                .with_status(r.status())
            } else {
                OAuthError::invalid_request("expected a form body")
            }
        })?;
        limits::field("client_id", form.client_id(), limits::CLIENT_ID)?;
        let client_id = match authenticate(waf, &headers)? {
            // RFC 6749 §2.3.1: a client_id in the body must name the authenticated client.
            Some(id) if form.client_id().is_none_or(|c| c == id) => id,
            Some(_) => return Err(OAuthError::invalid_client()),
            None => match form.client_id() {
                Some(id) if waf.clients.get(id).is_some_and(Client::is_public) => id.to_string(),
                Some(_) => return Err(OAuthError::invalid_client()),
                None => return Err(F::no_client()),
            },
        };
        Ok(Self { client_id, form })
    }
}

/// The client that HTTP Basic authenticates, `None` without an `Authorization` header, `Err`
/// for credentials that do not authenticate a client with a secret.
fn authenticate(waf: &Waf, headers: &HeaderMap) -> Result<Option<String>, OAuthError> {
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = OAuthError::invalid_client;
    let auth = auth.to_str().map_err(|_| bad())?;
    let (scheme, rest) = auth.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") || rest.len() > 4 * limits::TOKEN {
        return Err(bad());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    // RFC 6749 §2.3.1: both are form-urlencoded before the Basic encoding.
    let id = form_decode(id);
    let secret = form_decode(secret);
    let client = waf.clients.get(&id).ok_or_else(bad)?;
    let expected = client.secret.as_ref().ok_or_else(bad)?;
    if bool::from(expected.expose().ct_eq(secret.as_bytes())) {
        Ok(Some(id))
    } else {
        Err(bad())
    }
}

fn form_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{form_decode, redirect_uri_allowed};

    #[test]
    fn rfc9700_2_1_redirect_uris_are_https_but_for_loopback() {
        for ok in [
            "https://app.example/cb",
            "https://app.example:8443/cb?x=1",
            "http://127.0.0.1:7777/cb",
            "http://[::1]:7777/cb",
            "com.example.app:/oauth",
        ] {
            assert_eq!(redirect_uri_allowed(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "http://localhost:7777/cb",
            "http://127.0.0.1.evil.example/cb",
            "https://app.example/cb#frag",
            "https:///cb",
            "https://user@app.example/cb",
            "javascript:alert(1)",
            "app/cb",
            "https://app.example/c b",
        ] {
            assert!(redirect_uri_allowed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc6749_2_3_1_basic_credentials_are_form_decoded() {
        assert_eq!(form_decode("a%3Ab+c"), "a:b c");
        assert_eq!(form_decode("100%"), "100%");
        assert_eq!(form_decode("%zz"), "%zz");
    }
}
