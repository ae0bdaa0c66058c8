//! OpenID Connect relying party: how the WAF signs a person in at an external OpenID provider
//! (OpenID Connect Core 1.0 §3.1, authorization code flow with PKCE, RFC 7636).
//!
//! Owns: `[[oidc.providers]]` entries ([`ProviderConfig`]) and their secrets, discovery and JWK
//! Set caching per provider, the authentication request, the callback checks, the code
//! exchange, ID token validation and UserInfo, and every HTTP request to a provider (through
//! [`http::HttpClient`]: timeouts, no redirects, a body cap).
//! Must not touch: sessions, cookies, pages, the WAF's own tokens or identity mapping (the WAF,
//! `crate::waf`, keeps [`PendingLogin`] server-side and maps [`Claims`] to an IMPU/IMPI).
//!
//! Use: [`Providers::new`] at start with the secrets the config read (no network); [`Providers::begin`] on "sign in with X"
//! (redirect the browser to the URL, store the `PendingLogin`); [`Providers::finish_callback`]
//! on the callback with its query as a [`Callback`] (or [`Providers::finish`] with code and
//! state); show [`OidcError::user_message`] on failure and log the error itself.

mod claims;
pub mod config;
mod discovery;
mod error;
pub mod http;
mod id_token;
mod login;

pub use crate::secret::Secret;
pub use claims::Claims;
pub use config::{OidcConfigError, ProviderConfig};
pub use error::OidcError;
pub use login::{Callback, PENDING_MAX_AGE, PendingLogin, Providers};
