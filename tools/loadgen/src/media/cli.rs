//! Options of `imsgw-loadgen media`.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

use crate::cli::{MeasureArgs, MintArgs, SourceIps, parse_source_ips};

/// The media benchmark: N browsers (SIP over WebSocket, str0m WebRTC media) REGISTER through a
/// gateway, call an RTP echo registered at the IMS side, send G.711 at 50 packets/s each way,
/// and the report gives relayed packets/s per core of the gateway's processes, memory per call,
/// call set-up times and loss.
#[derive(Debug, Parser)]
#[command(name = "imsgw-loadgen media", version)]
pub struct MediaArgs {
    /// Gateway WebSocket URL (ws:// only).
    #[arg(long, default_value = "ws://127.0.0.1:8080/sip")]
    pub url: String,

    /// Concurrent calls.
    #[arg(long, default_value_t = 10)]
    pub calls: usize,

    /// Seconds of steady media measured once every call is set up (or has failed).
    #[arg(long, default_value_t = 20)]
    pub duration: u64,

    /// IMS registrar (UDP) where the echo registers; the gateway's upstream reaches it there.
    #[arg(long, default_value = "127.0.0.1:5070")]
    pub ims: SocketAddr,

    /// Address the echo binds (SIP and RTP).
    #[arg(long, default_value = "127.0.0.1")]
    pub echo_ip: std::net::Ipv4Addr,

    /// SIP domain of the callers and the echo.
    #[arg(long, default_value = "ims.example")]
    pub domain: String,

    /// User part prefix of the callers; call i registers `PREFIX<i>`.
    #[arg(long, default_value = "media")]
    pub user_prefix: String,

    /// Codec offered and sent.
    #[arg(long, value_enum, default_value_t = Codec::Pcma)]
    pub codec: Codec,

    /// Source addresses for WebSocket and media sockets, round-robin (`A-B`, list, or one).
    #[arg(long, value_parser = parse_source_ips)]
    pub source_ips: Option<SourceIps>,

    /// Media sockets shared by all calls; 0 = one per call. Sharing needs a gateway that gives
    /// every call its own port (rtpengine); a gateway with one media port for all calls (imsgw)
    /// needs 0.
    #[arg(long, default_value_t = 0)]
    pub call_sockets: usize,

    /// Threads driving the browsers' media (str0m and sockets); each owns every n-th call.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub media_threads: u16,

    /// INVITEs in flight at once.
    #[arg(long, default_value_t = 20)]
    pub setup_concurrency: usize,

    /// Seconds allowed for all calls to be set up (200 OK and first echo) before measuring.
    #[arg(long, default_value_t = 30)]
    pub setup_timeout: u64,

    /// Hard limit for the whole run, seconds.
    #[arg(long, default_value_t = 180)]
    pub time_limit: u64,

    /// Per-transaction timeout, seconds.
    #[arg(long, default_value_t = 32)]
    pub request_timeout: u64,

    /// Name of the gateway in the report.
    #[arg(long, default_value = "gateway")]
    pub label: String,

    #[command(flatten)]
    pub measure: MeasureArgs,

    #[command(flatten)]
    pub tokens: MintArgs,
}

/// G.711 flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Codec {
    Pcma,
    Pcmu,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        MediaArgs::command().debug_assert();
    }
}
