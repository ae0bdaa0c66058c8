//! Metrics for operators, exported in the Prometheus text format at `GET /metrics`.
//!
//! Owns: metric names and their help texts. Must not touch: protocol state (it is told values).

use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::edge::Stats;

/// The registry and its renderer.
pub struct Metrics {
    handle: Option<PrometheusHandle>,
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
        Self { handle }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle
            .as_ref()
            .map(PrometheusHandle::render)
            .unwrap_or_default()
    }

    /// Mirrors the edge's counters.
    pub fn update_edge(&self, s: &Stats, flows: usize, txns: usize) {
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
        counter!("imsgw_sip_malformed_responses_dropped_total")
            .absolute(s.malformed_responses_dropped);
    }

    /// A WebSocket refused or closed for breaking the protocol; `reason` is a fixed label.
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
