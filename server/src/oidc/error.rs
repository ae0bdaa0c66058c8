//! What can go wrong in a sign-in at an OpenID provider, for the operator (`Display`, logs) and
//! for the person signing in ([`OidcError::user_message`], no internals).
//!
//! Owns: the error enum and its wording. Must not touch: HTTP statuses or pages (the WAF maps
//! these to its responses). No variant carries a secret: codes, tokens, `state`, `nonce` and
//! client secrets never appear in these strings.

/// Why a sign-in did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// No provider of that name is configured.
    #[error("no OpenID provider is named `{0}`")]
    UnknownProvider(String),
    /// Discovery, JWKS, token or UserInfo endpoint unreachable, or it answered with a bad
    /// status or an unreadable body.
    #[error("the sign-in provider {provider} is not reachable: {reason}")]
    Unavailable {
        /// The provider's name.
        provider: String,
        /// What failed, for the operator.
        reason: String,
    },
    /// The callback's `state` is not the one this login sent (RFC 6749 §10.12, OIDC Core
    /// §3.1.2.7): a forged or crossed callback.
    #[error("the callback's state does not match the pending login")]
    StateMismatch,
    /// The callback's `iss` is not this provider's issuer (RFC 9207 §2.4: mix-up defence), or
    /// the provider promised `iss` and left it out.
    #[error("the callback's issuer does not match the provider: {0}")]
    IssuerMismatch(String),
    /// The pending login is older than the limit; the person must start again.
    #[error("the pending login has expired")]
    LoginExpired,
    /// `error=` in the callback (RFC 6749 §4.1.2.1) or from the token endpoint (RFC 6749
    /// §5.2).
    #[error("the provider returned error `{error}`{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    ProviderError {
        /// The OAuth error code, e.g. `access_denied`, `invalid_grant`.
        error: String,
        /// The provider's `error_description`, if any.
        description: Option<String>,
    },
    /// The ID token failed a check of OIDC Core §3.1.3.7 (or was missing); says which.
    #[error("ID token rejected: {0}")]
    IdToken(String),
    /// The UserInfo response was unusable (OIDC Core §5.3.2, §5.3.4); says why.
    #[error("UserInfo rejected: {0}")]
    UserInfo(String),
    /// imsgw's own set-up does not allow the login (bad redirect URI, provider without a token
    /// endpoint).
    #[error("sign-in is misconfigured: {0}")]
    Misconfigured(String),
}

impl OidcError {
    /// Words for the person signing in: what happened and what to do, no internals.
    pub fn user_message(&self) -> String {
        match self {
            OidcError::UnknownProvider(_) => {
                "That sign-in provider is not offered here. Choose one from the sign-in page.".into()
            }
            OidcError::Unavailable { .. } => {
                "The sign-in provider is not reachable right now. Please try again in a few minutes."
                    .into()
            }
            OidcError::StateMismatch | OidcError::IssuerMismatch(_) => {
                "This sign-in link does not belong to your browser session. Please start the sign-in again."
                    .into()
            }
            OidcError::LoginExpired => {
                "The sign-in took too long. Please start it again.".into()
            }
            OidcError::ProviderError { error, .. } => match error.as_str() {
                "access_denied" => "Sign-in was cancelled or refused at the provider.".into(),
                "login_required" | "interaction_required" | "consent_required" => {
                    "The provider needs you to sign in again. Please start the sign-in again."
                        .into()
                }
                "temporarily_unavailable" | "server_error" => {
                    "The sign-in provider had a problem. Please try again in a few minutes.".into()
                }
                _ => "The sign-in provider did not accept the sign-in. Please start it again."
                    .into(),
            },
            OidcError::IdToken(_) | OidcError::UserInfo(_) => {
                "The sign-in provider's answer could not be verified. Please try again; if it keeps happening, contact the operator."
                    .into()
            }
            OidcError::Misconfigured(_) => {
                "Sign-in is not set up correctly on this server. Please contact the operator."
                    .into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_messages_hide_internals() {
        let cases = [
            OidcError::Unavailable {
                provider: "acme".into(),
                reason: "connect error 127.0.0.1:1".into(),
            },
            OidcError::IdToken("nonce: nonce mismatch".into()),
            OidcError::UserInfo("sub differs".into()),
            OidcError::ProviderError {
                error: "invalid_grant".into(),
                description: Some("<script>".into()),
            },
            OidcError::Misconfigured("redirect_uri".into()),
        ];
        for e in cases {
            let m = e.user_message();
            for leak in [
                "127.0.0.1",
                "nonce",
                "sub",
                "<script>",
                "redirect_uri",
                "invalid_grant",
            ] {
                assert!(!m.contains(leak), "{m:?} leaks {leak}");
            }
        }
    }

    #[test]
    fn display_tells_the_operator_what_failed() {
        let e = OidcError::ProviderError {
            error: "access_denied".into(),
            description: Some("user cancelled".into()),
        };
        assert_eq!(
            e.to_string(),
            "the provider returned error `access_denied`: user cancelled"
        );
        let e = OidcError::ProviderError {
            error: "invalid_grant".into(),
            description: None,
        };
        assert_eq!(e.to_string(), "the provider returned error `invalid_grant`");
    }
}
