//! Metrics for operators, exported in the Prometheus text format at `GET /metrics`, and who may
//! read them: the `[metrics]` config (its own listener, a bearer token) and the endpoint.
//!
//! Owns: metric names and their help texts, the `/metrics` endpoint and its access rule. Must
//! not touch: protocol state (it is told values), sockets (`app` binds them).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use imsgw_token::Secret;
use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::edge::Stats;

/// `[metrics]`: where `GET /metrics` is served and what it asks of a scraper. The counters tell
/// a stranger how busy the gateway is, how many people are connected and which attacks work,
/// so a fresh config never serves them unauthenticated to whoever reaches the gateway.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `metrics.listen`: a listener of its own for `GET /metrics` (e.g. `127.0.0.1:9090` or an
    /// address on the management network); when set, `/metrics` is served only there and is
    /// 404 on `http.listen`. Default none: `/metrics` is on `http.listen`, which start-up
    /// allows only while the gateway is on loopback (`http.listen` and `waf.issuer`) or
    /// `bearer_token_file` is set.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// `metrics.bearer_token_file`: a file holding a token (at least 32 bytes; surrounding
    /// white space ignored) that scrapers must send as `Authorization: Bearer <token>`
    /// (Prometheus: `authorization: { credentials_file: ... }`); others get 401. Applies
    /// wherever `/metrics` is served. Relative to the config file. Default none.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
}

/// A `[metrics]` setting that cannot work; names the key.
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct MetricsConfigError {
    pub key: &'static str,
    pub message: String,
}

/// The WAF's refusals by a limit (labels `reason`, and `kind` for a full store kind).
pub const WAF_REFUSED: &str = "imsgw_waf_refused_total";

/// Shortest bearer token accepted: as long as the other secrets (`sip.flow_key_file`).
const MIN_TOKEN_BYTES: usize = 32;

impl MetricsConfig {
    /// Checks the settings against the listener and public URL of the gateway; `Ok(Some(_))`
    /// is a warning for the operator.
    pub fn check(
        &self,
        http_listen: SocketAddr,
        issuer: &str,
    ) -> Result<Option<String>, MetricsConfigError> {
        let with_token = self.bearer_token_file.is_some();
        match self.listen {
            Some(addr) if addr == http_listen && addr.port() != 0 => Err(MetricsConfigError {
                key: "metrics.listen",
                message: "must differ from http.listen (leave it out to serve /metrics there)"
                    .into(),
            }),
            Some(addr) if !addr.ip().is_loopback() && !with_token => Ok(Some(format!(
                "metrics.listen {addr} is not a loopback address and metrics.bearer_token_file is not set: anyone who reaches it reads the metrics"
            ))),
            Some(_) => Ok(None),
            None if with_token => Ok(None),
            None if http_listen.ip().is_loopback() && is_loopback_url(issuer) => Ok(None),
            None => Err(MetricsConfigError {
                key: "metrics.listen",
                message: format!(
                    "/metrics would be served without credentials on http.listen ({http_listen}), which is reachable as {issuer}: set metrics.listen to a private address such as 127.0.0.1:9090, or metrics.bearer_token_file"
                ),
            }),
        }
    }
}

/// Whether `url`'s host is a loopback address or `localhost`.
fn is_loopback_url(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = u.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why the bearer token could not be read.
#[derive(Debug, thiserror::Error)]
#[error("metrics.bearer_token_file {path}: {message}")]
pub struct MetricsTokenError {
    path: String,
    message: String,
}

/// The token of `metrics.bearer_token_file` (the path already resolved), if one is set.
pub fn load_token(path: Option<PathBuf>) -> Result<Option<Secret>, MetricsTokenError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let err = |message: String| MetricsTokenError {
        path: path.display().to_string(),
        message,
    };
    let bytes = std::fs::read(&path).map_err(|e| err(e.to_string()))?;
    let token = bytes.trim_ascii();
    if token.len() < MIN_TOKEN_BYTES {
        return Err(err(format!(
            "needs at least {MIN_TOKEN_BYTES} bytes of secret"
        )));
    }
    // RFC 6750 §2.1 b64token: what a scraper can put after "Bearer ".
    if !token.iter().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
    }) {
        return Err(err(
            "must be letters, digits and - . _ ~ + / = only (RFC 6750 b64token)".into(),
        ));
    }
    Ok(Some(Secret::new(token.to_vec())))
}

/// `GET /metrics`, asking for `token` as a Bearer credential when there is one.
pub fn endpoint(metrics: Arc<Metrics>, token: Option<Secret>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(Arc::new(Endpoint { metrics, token }))
}

struct Endpoint {
    metrics: Arc<Metrics>,
    token: Option<Secret>,
}

async fn render(State(e): State<Arc<Endpoint>>, headers: HeaderMap) -> Response {
    if let Some(token) = &e.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().as_bytes())
            .unwrap_or_default();
        if !bool::from(given.ct_eq(token.expose())) {
            // RFC 6750 §3: the challenge; no error code when no token came at all.
            let challenge = if given.is_empty() {
                "Bearer realm=\"imsgw-metrics\""
            } else {
                "Bearer realm=\"imsgw-metrics\", error=\"invalid_token\""
            };
            let mut r = (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
            return r;
        }
    }
    e.metrics.render().into_response()
}

/// The registry and its renderer.
pub struct Metrics {
    handle: Option<PrometheusHandle>,
    /// The media engine, whose figures (atomics) are read at each scrape.
    media: std::sync::OnceLock<imsgw_media::Media>,
    /// The edge's figures as the hub last saw them, turned into metrics at each scrape: the
    /// hub task, which every SIP message crosses, does no registry work of its own.
    edge: std::sync::Mutex<Option<EdgeFigures>>,
}

/// What the hub hands over after each batch of work (see [`Metrics::set_edge`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct EdgeFigures {
    pub stats: Stats,
    pub flows: usize,
    pub txns: usize,
    pub grants: crate::edge::GrantStats,
    pub held_grants: usize,
    /// With `[media]`: the edge's media counters and its calls.
    pub media: Option<(crate::edge::MediaEdgeStats, usize)>,
}

impl Metrics {
    /// Installs the global recorder (once per process; a second call gets a metrics object
    /// that renders nothing, which is what tests want).
    pub fn install() -> Self {
        let handle = PrometheusBuilder::new().install_recorder().ok();
        describe_gauge!("imsgw_ws_flows", "Open SIP WebSocket connections (flows).");
        describe_gauge!("imsgw_sip_transactions", "SIP transactions held in memory.");
        describe_counter!(
            "imsgw_sip_requests_from_ws_total",
            "SIP requests received from WebSocket clients."
        );
        describe_counter!(
            "imsgw_sip_requests_from_ims_total",
            "SIP requests received from the IMS side."
        );
        describe_counter!(
            "imsgw_sip_responses_forwarded_total",
            "SIP responses forwarded."
        );
        describe_counter!(
            "imsgw_sip_rejected_400_total",
            "Malformed SIP messages rejected (400 or WebSocket close)."
        );
        describe_counter!(
            "imsgw_sip_flow_failed_430_total",
            "Requests answered 430 Flow Failed (RFC 5626 §5.3)."
        );
        describe_counter!(
            "imsgw_sip_forged_403_total",
            "Requests refused for a flow token that does not verify."
        );
        describe_counter!(
            "imsgw_sip_timeout_408_total",
            "Requests answered 408 after the upstream stayed silent."
        );
        describe_counter!(
            "imsgw_sip_unavailable_503_total",
            "Requests answered 503 because the upstream was unreachable."
        );
        describe_counter!(
            "imsgw_ws_rejected_total",
            "WebSocket connections refused or closed for a protocol violation."
        );
        describe_counter!(
            "imsgw_ims_conn_rejected_total",
            "IMS-side TCP/TLS connections closed as they were accepted: sip.max_connections were open."
        );
        describe_counter!(
            "imsgw_ims_untrusted_dropped_total",
            "IMS-side datagrams dropped and connections closed because the source is neither the upstream nor in sip.trusted_peers."
        );
        describe_counter!(
            "imsgw_ims_tls_client_cert_refused_total",
            "TLS handshakes on sip.tls_listen that failed for a missing or untrusted client certificate (sip.tls_client_ca_file)."
        );
        // Shown at 0 from the start, so an operator can alert on any increase.
        for transport in ["udp", "tcp", "tls"] {
            counter!("imsgw_ims_untrusted_dropped_total", "transport" => transport).absolute(0);
        }
        counter!("imsgw_ims_tls_client_cert_refused_total").absolute(0);
        describe_counter!(
            WAF_REFUSED,
            "WAF requests refused by a limit: reason=\"store_full\" (a [waf.limits] cap; kind = the record kind), \"store_unavailable\", \"address_budget\" (a client address's anonymous budget), \"person_budget\" (a signed-in person's sessions, codes and approved devices per minute), \"oversize\" (a field, URI or body over its size)."
        );
        for reason in [
            "store_unavailable",
            "address_budget",
            "person_budget",
            "oversize",
        ] {
            counter!(WAF_REFUSED, "reason" => reason).absolute(0);
        }
        Self {
            handle,
            media: std::sync::OnceLock::new(),
            edge: std::sync::Mutex::new(None),
        }
    }

    /// The media engine whose figures each scrape reads.
    pub fn set_media(&self, m: imsgw_media::Media) {
        let _ = self.media.set(m);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let edge = *self
            .edge
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(f) = edge {
            self.update_edge(&f.stats, f.flows, f.txns);
            self.update_grants(&f.grants, f.held_grants);
            if let Some((m, calls)) = f.media {
                self.update_media(&m, calls);
            }
        }
        if let Some(m) = self.media.get() {
            self.update_engine(&m.stats());
        }
        self.handle
            .as_ref()
            .map(PrometheusHandle::render)
            .unwrap_or_default()
    }

    /// Keeps the edge's latest figures for the next scrape: a copy under a lock nobody holds
    /// for long, where mirroring them into the registry is some thirty hashed lookups.
    pub fn set_edge(&self, f: EdgeFigures) {
        *self
            .edge
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(f);
    }

    /// Mirrors the edge's counters.
    fn update_edge(&self, s: &Stats, flows: usize, txns: usize) {
        gauge!("imsgw_ws_flows").set(flows as f64);
        gauge!("imsgw_sip_transactions").set(txns as f64);
        counter!("imsgw_sip_requests_from_ws_total").absolute(s.requests_from_flows);
        counter!("imsgw_sip_requests_from_ims_total").absolute(s.requests_from_ims);
        counter!("imsgw_sip_responses_forwarded_total").absolute(s.responses_forwarded);
        counter!("imsgw_sip_rejected_400_total").absolute(s.rejected_400);
        counter!("imsgw_sip_flow_failed_430_total").absolute(s.flow_failed_430);
        counter!("imsgw_sip_forged_403_total").absolute(s.forged_403);
        counter!("imsgw_sip_timeout_408_total").absolute(s.timeouts_408);
        counter!("imsgw_sip_unavailable_503_total").absolute(s.unavailable_503);
        counter!("imsgw_sip_auth_refused_total").absolute(s.auth_refused);
        counter!("imsgw_sip_unowned_ack_dropped_total").absolute(s.unowned_ack_dropped);
        counter!("imsgw_sip_unmatched_cancel_481_total").absolute(s.unmatched_cancel);
        counter!("imsgw_sip_stray_responses_dropped_total").absolute(s.stray_responses_dropped);
        counter!("imsgw_sip_flow_busy_503_total").absolute(s.flow_busy_503);
        counter!("imsgw_ws_register_timeouts_total").absolute(s.register_timeouts);
        counter!("imsgw_sip_tokens_checked_total", "where" => "verify_thread")
            .absolute(s.tokens_verified_elsewhere);
        counter!("imsgw_sip_tokens_checked_total", "where" => "edge_fallback")
            .absolute(s.tokens_verified_inline);
        counter!("imsgw_sip_malformed_responses_dropped_total")
            .absolute(s.malformed_responses_dropped);
    }

    /// A revocation of a grant the edge let go was dropped (the WAF's queue stayed full).
    pub fn grant_revoke_dropped(&self) {
        counter!("imsgw_sip_grant_revokes_dropped_total").increment(1);
    }

    /// Codes in REGISTER and the grants the edge holds for them (`edge::grant`).
    fn update_grants(&self, g: &crate::edge::GrantStats, held: usize) {
        gauge!("imsgw_sip_held_grants").set(held as f64);
        let c = |outcome: &'static str, v: u64| {
            counter!("imsgw_sip_grants_total", "outcome" => outcome).absolute(v)
        };
        c("code_exchanged", g.codes_exchanged);
        c("code_refused", g.codes_refused);
        c("refreshed", g.refreshed);
        c("refresh_refused", g.refresh_refused);
        c("unavailable", g.unavailable);
        c("revoked", g.revoked);
        c("phone_signed_in", g.phone_signed_in);
        c("phone_refused", g.phone_refused);
    }

    /// The media gateway's figures: the edge's calls and the engine's sessions, ports and
    /// packets. `imsgw_media_sessions` and `imsgw_media_ports_in_use` go back to 0 when the
    /// last call ends.
    fn update_media(&self, e: &crate::edge::MediaEdgeStats, calls: usize) {
        gauge!("imsgw_media_calls").set(calls as f64);
        counter!("imsgw_media_calls_total").absolute(e.calls);
        counter!("imsgw_media_offers_refused_total").absolute(e.offers_refused);
        counter!("imsgw_media_byes_sent_total").absolute(e.byes_sent);
        counter!("imsgw_media_unmatched_sdp_total").absolute(e.unmatched_sdp);
    }

    /// The engine's own figures, read when `/metrics` is scraped (they change with every
    /// packet, without the hub hearing of it).
    fn update_engine(&self, m: &imsgw_media::MediaStats) {
        gauge!("imsgw_media_sessions").set(m.sessions as f64);
        gauge!("imsgw_media_ports_in_use").set(m.ports_in_use as f64);
        counter!("imsgw_media_engine_refused_total").absolute(m.refused_offers);
        counter!("imsgw_media_packets_total", "direction" => "to_ims").absolute(m.packets_to_ims);
        counter!("imsgw_media_packets_total", "direction" => "to_browser")
            .absolute(m.packets_to_browser);
        counter!("imsgw_media_bytes_total", "direction" => "to_ims").absolute(m.bytes_to_ims);
        counter!("imsgw_media_bytes_total", "direction" => "to_browser")
            .absolute(m.bytes_to_browser);
        counter!("imsgw_media_dropped_total").absolute(m.dropped);
        counter!("imsgw_media_consent_lost_total").absolute(m.consent_lost);
        counter!("imsgw_media_failed_total").absolute(m.failed);
    }

    /// A WebSocket refused or closed for breaking the protocol; `reason` is a fixed label.
    pub fn ims_conn_rejected(&self, reason: &'static str) {
        counter!("imsgw_ims_conn_rejected_total", "reason" => reason).increment(1);
    }

    pub fn ws_rejected(&self, reason: &'static str) {
        counter!("imsgw_ws_rejected_total", "reason" => reason).increment(1);
    }

    /// A datagram or connection from an untrusted IMS-side source was refused;
    /// `transport` is `udp`, `tcp` or `tls`.
    pub fn ims_untrusted_dropped(&self, transport: &'static str) {
        counter!("imsgw_ims_untrusted_dropped_total", "transport" => transport).increment(1);
    }

    /// A TLS client on `sip.tls_listen` presented no certificate, or one we do not trust.
    pub fn ims_tls_client_cert_refused(&self) {
        counter!("imsgw_ims_tls_client_cert_refused_total").increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    fn cfg(listen: Option<&str>, token: bool) -> MetricsConfig {
        MetricsConfig {
            listen: listen.map(addr),
            bearer_token_file: token.then(|| PathBuf::from("metrics.token")),
        }
    }

    #[test]
    fn unauthenticated_metrics_on_the_public_listener_are_refused_naming_the_key() {
        let loopback = addr("127.0.0.1:8080");
        let public = addr("0.0.0.0:8080");
        // a fresh config: everything on loopback, metrics beside the rest
        assert!(matches!(
            cfg(None, false).check(loopback, "http://127.0.0.1:8080"),
            Ok(None)
        ));
        assert!(matches!(
            cfg(None, false).check(addr("[::1]:8080"), "http://localhost:8080"),
            Ok(None)
        ));
        // a public listener, or a loopback one published under a public issuer (a proxy)
        for (listen, issuer) in [
            (public, "http://0.0.0.0:8080"),
            (addr("192.0.2.1:8080"), "https://webrtc.example"),
            (loopback, "https://webrtc.example"),
        ] {
            let e = cfg(None, false).check(listen, issuer).expect_err("exposed");
            assert_eq!(e.key, "metrics.listen");
            assert!(e.to_string().contains("metrics.bearer_token_file"), "{e}");
        }
        // either fix is enough
        assert!(matches!(
            cfg(Some("127.0.0.1:9090"), false).check(public, "https://webrtc.example"),
            Ok(None)
        ));
        assert!(matches!(
            cfg(None, true).check(public, "https://webrtc.example"),
            Ok(None)
        ));
    }

    #[test]
    fn a_public_metrics_listener_without_a_token_is_a_warning_and_the_same_address_an_error() {
        let w = cfg(Some("0.0.0.0:9090"), false)
            .check(addr("127.0.0.1:8080"), "http://127.0.0.1:8080")
            .expect("allowed");
        assert!(w.is_some_and(|w| w.contains("metrics.listen")));
        assert!(matches!(
            cfg(Some("0.0.0.0:9090"), true).check(addr("127.0.0.1:8080"), "http://127.0.0.1:8080"),
            Ok(None)
        ));
        let e = cfg(Some("127.0.0.1:8080"), false)
            .check(addr("127.0.0.1:8080"), "http://127.0.0.1:8080")
            .expect_err("same");
        assert_eq!(e.key, "metrics.listen");
    }

    #[test]
    fn a_short_or_unsendable_token_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("imsgw-metrics-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let write = |name: &str, content: &str| {
            let p = dir.join(name);
            std::fs::write(&p, content).expect("write");
            p
        };
        let good = "a".repeat(40);
        let t = load_token(Some(write("good", &format!("{good}\n")))).expect("ok");
        assert_eq!(t.map(|s| s.expose().to_vec()), Some(good.into_bytes()));
        for (name, bad) in [
            ("short", "abc"),
            ("space", &format!("{} x", "a".repeat(40))),
        ] {
            let e = load_token(Some(write(name, bad))).expect_err(name);
            assert!(e.to_string().contains("metrics.bearer_token_file"), "{e}");
        }
        assert!(load_token(Some(dir.join("missing"))).is_err());
        assert!(load_token(None).expect("none").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
