//! The WAF's two kinds of error answer: [`OAuthError`] for the JSON endpoints (the RFC 6749
//! §5.2 codes and the ones RFC 8628 §3.5 and RFC 9449 §12.2 add), and [`PageError`] for the
//! pages a person sees. Both render themselves, so handlers return `Result<Response, _>` and
//! use `?`.
//!
//! Owns: error codes, their HTTP status, and their rendering. Must not touch: decisions.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::pages;
use super::store::StoreError;

/// What a store operation gives.
pub type StoreResult<T> = Result<T, StoreError>;

/// The error codes of RFC 6749 §4.1.2.1 and §5.2, RFC 7009 §2.2.1, RFC 8628 §3.5 and RFC 9449
/// §12.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    UnsupportedTokenType,
    InvalidScope,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
    AuthorizationPending,
    SlowDown,
    ExpiredToken,
    /// RFC 9449 §12.2: the DPoP proof is missing where one is required, or is not valid.
    InvalidDpopProof,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
            Self::InvalidDpopProof => "invalid_dpop_proof",
        }
    }

    /// RFC 6749 §5.2: 400 unless said otherwise; 401 for a client that failed to
    /// authenticate; 500/503 where the server is at fault.
    fn status(self) -> StatusCode {
        match self {
            Self::InvalidClient => StatusCode::UNAUTHORIZED,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An RFC 6749 §5.2 error answer. Its description never holds a token, code or secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
    pub status: StatusCode,
    /// Seconds for `Retry-After` (RFC 9110 §10.2.3) on 429 and 503.
    pub retry_after: Option<u64>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
            status: code.status(),
            retry_after: None,
        }
    }

    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    pub fn invalid_client() -> Self {
        Self::new(ErrorCode::InvalidClient, "client authentication failed")
    }

    /// Too many requests from one client or address: 429 with `Retry-After`.
    pub fn too_many(retry_after: u64) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(retry_after),
            ..Self::new(
                ErrorCode::TemporarilyUnavailable,
                "too many requests from this client; try again later",
            )
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

/// Logs a refusal at most once per [`LOG_EVERY_SECS`] for each reason, with how many were not
/// logged since: a flood of refusals (each counted in `imsgw_waf_refused_total`) must not
/// become a flood of log lines.
pub fn log_refusal(reason: &'static str, detail: &dyn std::fmt::Display) {
    static LAST: std::sync::Mutex<LogGate> = std::sync::Mutex::new(LogGate::new());
    let mut g = LAST.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(not_logged) = g.pass(reason, super::unix_now()) {
        tracing::warn!(reason, %detail, not_logged, "WAF refused a request by a limit");
    }
}

/// Which refusals get a log line: the first of a reason, then one per [`LOG_EVERY_SECS`].
pub struct LogGate(Vec<(&'static str, u64, u64)>);

impl LogGate {
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// `Some(refusals not logged since the last line)` when this one is logged.
    pub fn pass(&mut self, reason: &'static str, now: u64) -> Option<u64> {
        let i = match self.0.iter().position(|(r, _, _)| *r == reason) {
            Some(i) => i,
            None => {
                self.0.push((reason, now, 0));
                return Some(0);
            }
        };
        let (_, at, quiet) = &mut self.0[i];
        if now >= *at + LOG_EVERY_SECS {
            let n = *quiet;
            *at = now;
            *quiet = 0;
            Some(n)
        } else {
            *quiet += 1;
            None
        }
    }
}

impl Default for LogGate {
    fn default() -> Self {
        Self::new()
    }
}

/// The shortest time between two log lines of one refusal reason.
pub const LOG_EVERY_SECS: u64 = 10;

/// Counts a refusal by a limit (`imsgw_waf_refused_total`).
pub fn count_refusal(reason: &'static str) {
    metrics::counter!(crate::metrics::WAF_REFUSED, "reason" => reason).increment(1);
}

/// Counts a store's refusal (`imsgw_waf_refused_total`, `store_full` with its kind or
/// `store_unavailable`).
pub fn count_store(e: &StoreError) {
    match e {
        StoreError::Full(kind) => {
            metrics::counter!(crate::metrics::WAF_REFUSED, "reason" => "store_full", "kind" => *kind)
                .increment(1);
        }
        StoreError::Unavailable(_) => count_refusal("store_unavailable"),
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        log_refusal("store", &e);
        count_store(&e);
        let description = match e {
            StoreError::Full(_) => "the service is at capacity; try again later",
            StoreError::Unavailable(_) => "the service cannot keep state right now",
        };
        Self {
            retry_after: Some(30),
            ..Self::new(ErrorCode::TemporarilyUnavailable, description)
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.code.as_str(), "error_description": self.description });
        let mut r = (self.status, axum::Json(body)).into_response();
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.code == ErrorCode::InvalidClient {
            // RFC 6749 §5.2: a 401 names the scheme the client should use.
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"imsgw\""),
            );
        }
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

/// An error page: what happened and what the person can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageError {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: Cow<'static, str>,
    pub retry_after: Option<u64>,
}

impl PageError {
    pub fn new(
        status: StatusCode,
        title: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            title,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Too many requests from this address or session.
    pub fn too_many(message: impl Into<Cow<'static, str>>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "Too many requests", message)
        }
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        log_refusal("store", &e);
        count_store(&e);
        Self {
            retry_after: Some(30),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again shortly",
                "The service is busy right now. Wait a moment, then try again.",
            )
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut r = pages::error(self.status, self.title, &self.message);
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_is_one_log_line_per_reason_and_interval() {
        let mut g = LogGate::new();
        assert_eq!(g.pass("a", 100), Some(0));
        for _ in 0..1000 {
            assert_eq!(g.pass("a", 105), None);
        }
        assert_eq!(g.pass("b", 105), Some(0), "another reason has its own line");
        assert_eq!(
            g.pass("a", 110),
            Some(1000),
            "the next line says how many were not logged"
        );
        assert_eq!(g.pass("a", 111), None);
    }
}
