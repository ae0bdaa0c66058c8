//! The configuration tree: one typed struct per subsystem, read from a TOML file and overridden
//! from the environment (`IMSGW_<SECTION>__<KEY>`), validated once at start-up.
//!
//! Every field carries its default in its doc comment; `deploy/imsgw.example.toml` documents the
//! same keys for operators. Errors name the key and say what is wrong; they never echo a secret.
//! This module reads files and the environment only through [`Config::from_sources`], so tests
//! pass both in explicitly and never touch the process environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use imsgw_sip::{SipUri, Uri};
use serde::Deserialize;

use crate::secret::{Resolver, Secret, SecretError, SecretSource, resolve_key};

pub use crate::oidc::config::OidcConfig;
pub use crate::waf::config::{
    ClientConfig, ExternalIssuerConfig, IdentityConfig, PhoneCodeConfig, ProviderIdentity,
    StaticIdentity, StoreKind, WafConfig, WafLimits,
};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[http]`: the HTTP and WebSocket listener.
    #[serde(default)]
    pub http: HttpConfig,
    /// `[sip]`: the SIP side toward the IMS.
    pub sip: SipConfig,
    /// `[websocket]`: limits and keep-alives of SIP over WebSocket (RFC 7118).
    #[serde(default)]
    pub websocket: WebSocketConfig,
    /// `[log]`: logging.
    #[serde(default)]
    pub log: LogConfig,
    /// `[waf]`: the WebRTC Authorisation Function: token keys, issuer, clients.
    #[serde(default)]
    pub waf: WafConfig,
    /// `[oidc]`: the OpenID providers people sign in with.
    #[serde(default)]
    pub oidc: OidcConfig,
    /// `[identity]`: how a signed-in web account maps to an IMS identity.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// `[wwsf]`: the web client the gateway serves.
    #[serde(default)]
    pub wwsf: WwsfConfig,
    /// `[metrics]`: where `GET /metrics` is served and who may read it.
    #[serde(default)]
    pub metrics: crate::metrics::MetricsConfig,
    /// `[media]`: the media gateway (eIMS-AGW). Absent: no media anchoring, SDP passes through.
    #[serde(default)]
    pub media: Option<crate::media::MediaSection>,
    /// `[phones]`: SIP phones over UDP, TCP and TLS, beside the WebSocket clients.
    #[serde(default)]
    pub phones: PhonesConfig,
    /// Every secret the keys above name, read once at load (see [`crate::secret`]).
    #[serde(skip)]
    pub secrets: Secrets,
    /// Things worth telling the operator that do not stop start-up (printed by `main`).
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// The file this came from; relative paths with defaults resolve beside it.
    #[serde(skip)]
    pub source: PathBuf,
}

/// `[phones]`: the client side of the edge for SIP phones (issue 13 §2). Every listener is
/// optional; none set: no phones, only WebSocket clients. A phone is a flow like a WebSocket:
/// a TCP or TLS connection, or a UDP source address; every rule of the edge applies to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhonesConfig {
    /// `phones.udp_listen`: UDP listener for phones. Default none.
    #[serde(default)]
    pub udp_listen: Option<SocketAddr>,
    /// `phones.tcp_listen`: TCP listener for phones. Default none.
    #[serde(default)]
    pub tcp_listen: Option<SocketAddr>,
    /// `phones.tls_listen`: TLS listener for phones; its certificate is `phones.tls_cert_file`
    /// and `phones.tls_key_file`, else `sip.tls_cert_file` and `sip.tls_key_file`. Default none.
    #[serde(default)]
    pub tls_listen: Option<SocketAddr>,
    /// `phones.tls_cert_file`: PEM certificate chain for `phones.tls_listen`.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// `phones.tls_key_file`: PEM private key for `phones.tls_listen`; mode 0600 or stricter.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// `phones.max_flows`: phones (connections and UDP sources) at once; more are refused (a
    /// TCP/TLS connection closed at once, a datagram from a new source dropped). Default 10000.
    #[serde(default = "default_phone_flows")]
    pub max_flows: usize,
    /// `phones.udp_idle_secs`: a UDP source silent this long is forgotten (its flow ends, as a
    /// closed connection's does). Default 1800.
    #[serde(default = "default_phone_udp_idle")]
    pub udp_idle_secs: u64,
    /// `phones.max_messages_per_sec`: messages a phone may send per second (bursts of four
    /// seconds' worth); over it a connection is closed, a UDP source's datagram dropped.
    /// Default 20.
    #[serde(default = "default_phone_rate")]
    pub max_messages_per_sec: u32,
    /// `phones.digest_algorithms`: the Digest challenges phones get, in order of preference:
    /// `SHA-256` (RFC 8760) and `MD5`. Default `["SHA-256", "MD5"]`. Some phones stop at the
    /// first challenge they cannot answer (baresip 1.0 and other libre-based phones give up on
    /// anything but MD5): for those, `["MD5"]`.
    #[serde(default = "default_digest_algorithms")]
    pub digest_algorithms: Vec<String>,
    /// `phones.advertise`: the IP address phones reach imsgw at, written in the Via and
    /// Record-Route toward them when a phone listener is bound to a wildcard address
    /// (`0.0.0.0`, `::`). Default: the IP of `sip.listen`; one of the two must be specific.
    #[serde(default)]
    pub advertise: Option<std::net::IpAddr>,
}

impl Default for PhonesConfig {
    fn default() -> Self {
        Self {
            udp_listen: None,
            tcp_listen: None,
            tls_listen: None,
            tls_cert_file: None,
            tls_key_file: None,
            max_flows: default_phone_flows(),
            udp_idle_secs: default_phone_udp_idle(),
            max_messages_per_sec: default_phone_rate(),
            digest_algorithms: default_digest_algorithms(),
            advertise: None,
        }
    }
}

fn default_digest_algorithms() -> Vec<String> {
    vec!["SHA-256".into(), "MD5".into()]
}

impl PhonesConfig {
    /// Every listener address set.
    pub fn listeners(&self) -> Vec<SocketAddr> {
        [self.udp_listen, self.tcp_listen, self.tls_listen]
            .into_iter()
            .flatten()
            .collect()
    }
}

fn default_phone_flows() -> usize {
    10_000
}

fn default_phone_udp_idle() -> u64 {
    1800
}

fn default_phone_rate() -> u32 {
    20
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `http.listen`: address of the HTTP/WebSocket listener. Default `127.0.0.1:8080`: loopback
    /// until Bearer tokens guard REGISTER.
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// `http.drain_secs`: on SIGTERM, how long to wait for connections to close. Default 10.
    #[serde(default = "default_drain_secs")]
    pub drain_secs: u64,
    /// `http.trusted_proxies`: the reverse proxies (TLS terminators, load balancers) in front
    /// of the gateway, as IP addresses or blocks (`10.0.0.0/8`, `2001:db8::/32`). For a request
    /// from one of them the client is the right-most `X-Forwarded-For` address that is not a
    /// trusted proxy; from anyone else the header is ignored. Every per-client limit counts
    /// that address. Default none: the peer address is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<crate::transport::client_addr::IpNet>,
    /// `http.max_connections_per_address`: HTTP connections (pages, WAF requests, WebSocket
    /// handshakes not yet upgraded) open at once from one peer address (an IPv4 address, an
    /// IPv6 /64); more are closed as they are accepted. A WebSocket stops counting here once
    /// upgraded (`websocket.max_connections_per_address` takes over); `http.trusted_proxies`
    /// are not counted. 0 turns it off. Default 128 (a browser opens at most 6 a host).
    #[serde(default = "default_http_per_address")]
    pub max_connections_per_address: usize,
}

fn default_http_per_address() -> usize {
    128
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_http_listen(),
            drain_secs: default_drain_secs(),
            trusted_proxies: Vec::new(),
            max_connections_per_address: default_http_per_address(),
        }
    }
}

/// `[sip]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// `sip.domain`: the home domain, e.g. `ims.example`. Required.
    pub domain: String,
    /// `sip.listen`: the gateway's own SIP address toward the IMS, UDP and TCP. Default
    /// `127.0.0.1:5062`. Path and Record-Route URIs name this address.
    #[serde(default = "default_sip_listen")]
    pub listen: SocketAddr,
    /// `sip.upstream`: the P-CSCF as a SIP URI: `sip:HOST:PORT;transport=udp|tcp|tls` or
    /// `sips:HOST:PORT`. Required. HOST must be an IP address (no DNS lookups).
    pub upstream: Upstream,
    /// `sip.tls_listen`: optional TLS listener toward the IMS (needs `tls_cert_file` and
    /// `tls_key_file`). Required when the upstream is TLS, so the IMS side can reach us over TLS.
    #[serde(default)]
    pub tls_listen: Option<SocketAddr>,
    /// `sip.tls_cert_file`: PEM certificate chain for `tls_listen`.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// `sip.tls_key_file`: PEM private key for `tls_listen`; mode 0600 or stricter (a key group
    /// or others can read is refused at start-up, like every secret file).
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// `sip.tls_client_ca_file`: PEM CA certificates for mutual TLS on `tls_listen`: when set,
    /// a TLS client must present a certificate chaining to one of them, or the handshake fails.
    /// Default none: no client certificate is asked for (`trusted_peers` still applies).
    #[serde(default)]
    pub tls_client_ca_file: Option<PathBuf>,
    /// `sip.trusted_peers`: who else besides the upstream may send requests and responses to
    /// `listen` and `tls_listen`. Entries are `IP` (any port), `IP:PORT` / `[IPv6]:PORT` (that
    /// source port only; TCP/TLS clients usually connect from ephemeral ports) or `IP/len` (a
    /// CIDR network, host bits zero). The upstream's IP is always trusted, on any port. Anything
    /// else is dropped (UDP) or closed at once (TCP/TLS) and counted in
    /// `imsgw_ims_untrusted_dropped_total`. Default none: only the upstream.
    #[serde(default)]
    pub trusted_peers: Vec<crate::peers::TrustedPeer>,
    /// `sip.tls_ca_file`: PEM CA certificates that the upstream's TLS certificate must chain to.
    /// Required when the upstream is TLS.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// `sip.tls_server_name`: the name checked in the upstream's certificate. Default: the
    /// upstream URI's host.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// `sip.flow_key_file`: file holding the secret (at least 32 bytes) that protects flow tokens
    /// (RFC 5626 §5.2); mode 0600 or stricter, relative paths beside the config file. Default:
    /// a random key per start, so Path bindings made before a restart get `403` instead of
    /// `430`; set a key to keep them verifiable across restarts.
    #[serde(default)]
    pub flow_key_file: Option<PathBuf>,
    /// `sip.flow_key_env`: an environment variable holding that secret instead. Default none.
    #[serde(default)]
    pub flow_key_env: Option<String>,
    /// `sip.flow_key`: that secret written inline (prefer the file). Default none.
    #[serde(default)]
    pub flow_key: Option<Secret>,
    /// `sip.t1_ms`: RFC 3261 timer T1 in milliseconds. Default 500. Timers B and F are 64*T1.
    #[serde(default = "default_t1_ms")]
    pub t1_ms: u64,
    /// `sip.connect_timeout_ms`: how long to wait for a TCP/TLS connection to the upstream
    /// before answering `503`. Default 3000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// `sip.max_message_size`: largest SIP message accepted from the IMS side over UDP, TCP or
    /// TLS, in bytes. Default 65535.
    #[serde(default = "default_sip_max_message")]
    pub max_message_size: usize,
    /// `sip.udp_recv_buffer`: receive buffer of the UDP socket in bytes. Bursts of answers from
    /// the P-CSCF overflow the kernel default (~208 KiB) and cost a retransmission each. Capped
    /// by `net.core.rmem_max` unless imsgw runs with CAP_NET_ADMIN. Default 4194304.
    #[serde(default = "default_udp_recv_buffer")]
    pub udp_recv_buffer: usize,
    /// `sip.max_connections`: TCP and TLS connections the IMS side (the P-CSCF and
    /// `sip.trusted_peers`) may hold open to `sip.listen`/`sip.tls_listen` at once; more are
    /// closed as they are accepted. At least 1 (0 would refuse them all). Default 1024.
    #[serde(default = "default_sip_max_connections")]
    pub max_connections: usize,
    /// `sip.idle_timeout_secs`: an accepted IMS-side connection over which nothing (not even an
    /// RFC 5626 keep-alive) was read or written this long is closed; the peer opens a new one
    /// when it next has something to send. 0 keeps them for ever. Default 300.
    #[serde(default = "default_sip_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// `sip.verify_threads`: threads that check the signatures of tokens the edge has not
    /// seen before, so that a stream of new tokens (a ramp after a restart) does not hold up
    /// every other SIP message on the edge's one task. 0 checks them on that task. At most 16.
    /// Default 0: on two cores the hand-off costs more than it saves (measured with
    /// `tools/loadgen/life-bench.sh`: 0.69–0.72 ms of CPU per client life against 0.59–0.64,
    /// REGISTER p99 17–23 ms against 6–14 at 1000 new clients/s); it is for boxes whose edge
    /// task is the bottleneck with cores to spare.
    #[serde(default = "default_verify_threads")]
    pub verify_threads: usize,
    /// `sip.identity_assertion`: how the authenticated identity is told to the P-CSCF; any of
    /// `tna` (an `Authorization` header with `integrity-protected="auth-done"` for the IMPI on
    /// REGISTER, TS 24.229 / TS 33.203 trusted node authentication), `pai` (P-Asserted-Identity
    /// on requests after registration), `passthrough` (the Bearer token forwarded as it came, for
    /// a P-CSCF that introspects tokens). Default `["tna"]`.
    #[serde(default = "default_assertion")]
    pub identity_assertion: Vec<IdentityAssertion>,
    /// `sip.tna_header`: the header line added in `tna` mode; `{impi}`, `{impu}` and `{realm}`
    /// are replaced. Default
    /// `Authorization: Digest username="{impi}", realm="{realm}", uri="sip:{realm}", nonce="", response="", integrity-protected="auth-done"`.
    #[serde(default = "default_tna_header")]
    pub tna_header: String,
    /// `sip.challenge`: `401` (WWW-Authenticate, imsgw is the registrar's edge; RFC 8898 §2.2)
    /// or `407` (Proxy-Authenticate, RFC 8898 §2.3). Default `401`.
    #[serde(default)]
    pub challenge: Challenge,
    /// `sip.strip_headers`: headers removed from every request and response a WebSocket client
    /// sends, in addition to those always removed from requests (`P-Asserted-Identity`,
    /// `P-Preferred-Identity`, `P-Served-User`, `Authorization`, `Proxy-Authorization`, `Path`,
    /// `Record-Route`; imsgw writes its own assertion) and from responses (`P-Asserted-Identity`,
    /// `P-Preferred-Identity`, `P-Served-User`). Default: the other trust-domain headers of
    /// TS 24.229 §4.4: `P-Charging-Vector`, `P-Charging-Function-Addresses`,
    /// `P-Visited-Network-ID`, `P-Profile-Key`, `P-Private-Network-Indication`,
    /// `P-Asserted-Service`. Headers the proxy needs or edits (Via, From, To, Call-ID, CSeq,
    /// Route, Contact, Max-Forwards, Content-Length, Content-Type, Expires, Supported) cannot be
    /// listed.
    #[serde(default = "default_strip_headers")]
    pub strip_headers: Vec<String>,
    /// `sip.danger_allow_unauthenticated`: forward REGISTER and other requests without any
    /// Bearer token. Only for interop labs; anyone who reaches the WebSocket can then register
    /// any identity. Default false.
    #[serde(default)]
    pub danger_allow_unauthenticated: bool,
}

/// One way of asserting the authenticated identity toward the P-CSCF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityAssertion {
    Tna,
    Pai,
    Passthrough,
}

/// Which challenge a request without valid credentials gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Challenge {
    #[default]
    #[serde(rename = "401")]
    Www,
    #[serde(rename = "407")]
    Proxy,
}

/// `[wwsf]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WwsfConfig {
    /// `wwsf.assets_dir`: the built web client (`web/dist` after `npm ci && npm run build` in
    /// web/), relative to the config file. Default none: `/` then says how to build it.
    #[serde(default)]
    pub assets_dir: Option<PathBuf>,
    /// `wwsf.client_id`: the OAuth client the web client signs in as; register it in
    /// `[[waf.clients]]` with `redirect_uris = ["<waf.issuer>/"]`. Default `wic`.
    #[serde(default = "default_wic_client")]
    pub client_id: String,
    /// `wwsf.sign_in`: what the web client does with its authorization code. `token` (default):
    /// exchanges it at the token endpoint and registers with the access token, refreshing it
    /// itself. `code_in_register`: puts the code in its REGISTER for the edge to exchange and
    /// hold (the client must have `code_in_register = true`); the page never holds a token, but
    /// a new connection needs a new sign-in.
    #[serde(default)]
    pub sign_in: WicSignIn,
    /// `wwsf.proof_of_possession`: the web client (in `token` mode) makes a key that never
    /// leaves the page, gets its tokens bound to it (RFC 9449 DPoP at the token endpoint) and
    /// proves it on the REGISTER of each new connection (`Proof:`), so a copied token is no
    /// use without the page. Default false.
    #[serde(default)]
    pub proof_of_possession: bool,
}

/// `wwsf.sign_in`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WicSignIn {
    #[default]
    Token,
    CodeInRegister,
}

impl Default for WwsfConfig {
    fn default() -> Self {
        Self {
            assets_dir: None,
            client_id: default_wic_client(),
            sign_in: WicSignIn::Token,
            proof_of_possession: false,
        }
    }
}

fn default_wic_client() -> String {
    "wic".into()
}

/// `[websocket]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketConfig {
    /// `websocket.max_message_size`: largest SIP message a client may send, in bytes; larger
    /// closes the connection with 1009 (RFC 6455 §7.4.1). Default 65536.
    #[serde(default = "default_ws_max_message")]
    pub max_message_size: usize,
    /// `websocket.ping_interval_secs`: WebSocket Ping interval; a connection that has not
    /// answered by the next ping is closed, and so is one that takes none of the bytes written
    /// to it this long (30 s with pings off). 0 turns pings off. Default 30.
    #[serde(default = "default_ping_interval")]
    pub ping_interval_secs: u64,
    /// `websocket.max_connections`: WebSocket connections served at once; more get HTTP 503.
    /// Default 20000.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// `websocket.max_messages_per_sec`: sustained SIP messages a second one client may send
    /// (bursts of up to 4x are allowed); a client above it is closed with 1008 (policy). 0 turns
    /// the limit off. Default 50.
    #[serde(default = "default_ws_rate")]
    pub max_messages_per_sec: u32,
    /// `websocket.write_buffer_size`: no longer has an effect (a connection holds no buffer
    /// while idle, see `transport::rfc6455`); accepted so that old configs still load, with a
    /// warning at start.
    #[serde(default)]
    pub write_buffer_size: Option<usize>,
    /// `websocket.read_buffer_size`: as `write_buffer_size`.
    #[serde(default)]
    pub read_buffer_size: Option<usize>,
    /// `websocket.register_timeout_secs`: a WebSocket that has not registered this long after
    /// its handshake is closed (1008): idle, never-registered connections would otherwise hold
    /// places of `max_connections` for ever. 0 turns it off. Default 30.
    #[serde(default = "default_register_timeout")]
    pub register_timeout_secs: u64,
    /// `websocket.handshake_timeout_secs`: a client must have sent its whole HTTP request head
    /// (the WebSocket handshake, or any other request on the HTTP listener) this long after it
    /// connected or after the last response on a kept-alive connection, or the connection is
    /// closed; a request's body must come whole within as long again after its head, and a
    /// write of an answer may wait as long for the client to take bytes. 0 turns all three
    /// off. Default 10.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_secs: u64,
    /// `websocket.max_connections_per_address`: WebSockets open at once from one client
    /// address (an IPv4 address, an IPv6 /64; from `http.trusted_proxies` behind a proxy);
    /// more get HTTP 429. 0 turns it off. Default 256 (people behind one carrier NAT).
    #[serde(default = "default_per_address")]
    pub max_connections_per_address: usize,
    /// `websocket.max_unregistered_per_address`: WebSockets from one client address that have
    /// not registered yet; more get HTTP 429 until one registers or closes. 0 turns it off.
    /// Default 32.
    #[serde(default = "default_unregistered_per_address")]
    pub max_unregistered_per_address: usize,
}

fn default_handshake_timeout() -> u64 {
    10
}

fn default_per_address() -> usize {
    256
}

fn default_unregistered_per_address() -> usize {
    32
}

fn default_verify_threads() -> usize {
    0
}
fn default_sip_max_connections() -> usize {
    1024
}

fn default_sip_idle_timeout() -> u64 {
    300
}

fn default_register_timeout() -> u64 {
    30
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            max_message_size: default_ws_max_message(),
            ping_interval_secs: default_ping_interval(),
            max_connections: default_max_connections(),
            max_messages_per_sec: default_ws_rate(),
            write_buffer_size: None,
            read_buffer_size: None,
            register_timeout_secs: default_register_timeout(),
            handshake_timeout_secs: default_handshake_timeout(),
            max_connections_per_address: default_per_address(),
            max_unregistered_per_address: default_unregistered_per_address(),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `log.filter`: a tracing filter such as `info` or `imsgw=debug`. Default `info`.
    /// `RUST_LOG` wins when set.
    #[serde(default = "default_log_filter")]
    pub filter: String,
    /// `log.format`: `text` or `json`. Default `text`.
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: default_log_filter(),
            format: LogFormat::default(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// The transport toward the upstream P-CSCF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamTransport {
    Udp,
    Tcp,
    Tls,
}

impl UpstreamTransport {
    /// The `transport=` value for URIs (RFC 3261 §19.1.1).
    pub fn param(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }

    /// The Via transport token (RFC 3261 §20.42).
    pub fn via(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
        }
    }
}

/// `sip.upstream`, parsed: where the P-CSCF is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Upstream {
    /// The URI as configured.
    pub uri: String,
    pub addr: SocketAddr,
    pub transport: UpstreamTransport,
    /// The URI's host, for TLS server-name checks.
    pub host: String,
}

impl TryFrom<String> for Upstream {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let uri = match Uri::parse(&s) {
            Ok(Uri::Sip(u)) => u,
            _ => {
                return Err(format!(
                    "`{s}` is not a SIP URI; write it like `sip:192.0.2.10:5060;transport=udp`"
                ));
            }
        };
        upstream_from_uri(&s, &uri)
    }
}

fn upstream_from_uri(s: &str, uri: &SipUri) -> Result<Upstream, String> {
    let transport = match (uri.secure, uri.transport().as_deref()) {
        (true, None | Some("tls") | Some("tcp")) => UpstreamTransport::Tls,
        (false, None | Some("udp")) => UpstreamTransport::Udp,
        (false, Some("tcp")) => UpstreamTransport::Tcp,
        (false, Some("tls")) => UpstreamTransport::Tls,
        (_, Some(other)) => {
            return Err(format!(
                "transport `{other}` in `{s}` is not supported; use udp, tcp or tls"
            ));
        }
    };
    let host = uri.host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().map_err(|_| {
        format!(
            "host `{}` in `{s}` must be an IP address (imsgw does no DNS lookups)",
            uri.host
        )
    })?;
    let default_port = if transport == UpstreamTransport::Tls {
        5061
    } else {
        5060
    };
    Ok(Upstream {
        uri: s.to_string(),
        addr: SocketAddr::new(ip, uri.port.unwrap_or(default_port)),
        transport,
        host: host.to_string(),
    })
}

/// A configuration error: names the key (or file) and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}`{origin}: {message}")]
    Key {
        key: String,
        origin: String,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// Every secret the config names, read at load: the flow-token key, the HMAC key, each client's
/// and each OpenID provider's secret. `Debug` shows none of them.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// `sip.flow_key*`.
    pub flow_key: Option<Secret>,
    /// `waf.hmac_secret*`.
    pub hmac: Option<Secret>,
    /// `waf.clients[i].secret*`, in the order of `waf.clients`.
    pub clients: Vec<Option<Secret>>,
    /// `oidc.providers[i].client_secret*`, in the order of `oidc.providers`.
    pub providers: Vec<Option<Secret>>,
}

impl Config {
    /// Keys that are accepted but no longer do anything, for a warning at start.
    pub fn obsolete_keys(&self) -> Vec<&'static str> {
        let ws = &self.websocket;
        [
            ("websocket.read_buffer_size", ws.read_buffer_size.is_some()),
            (
                "websocket.write_buffer_size",
                ws.write_buffer_size.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect()
    }

    /// Warnings for `identity.static` entries a provider's template could also produce.
    fn static_overlaps(&self) -> Vec<String> {
        let templates: Vec<_> = self
            .oidc
            .providers
            .iter()
            .map(|p| self.identity.for_provider(&p.name))
            .collect();
        let entries: Vec<(&str, &str, &str)> = self
            .identity
            .static_map
            .iter()
            .map(|(k, v)| (k.as_str(), v.impu.as_str(), v.impi.as_str()))
            .collect();
        crate::waf::identity::template::static_overlaps(&self.sip.domain, &templates, &entries)
    }

    /// Reads `path` and applies the `IMSGW_*` variables among `env`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_sources(path, &text, std::env::vars())
    }

    /// Parses `text` (read from `path`, named in errors) with the environment overrides in
    /// `env`; only variables starting with `IMSGW_` are looked at.
    pub fn from_sources(
        path: &Path,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_path_buf(),
                    message: e.message().to_string(),
                })?;
        let mut warnings = Vec::new();
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let overrides = apply_env(&mut table, env.clone(), &mut warnings)?;
        let value = toml::Value::Table(table);
        let mut config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            let origin = overrides
                .get(&key)
                .map(|var| format!(" (from {var})"))
                .unwrap_or_default();
            let mut message = e.into_inner().message().to_string();
            if message.contains("socket address") {
                message.push_str("; write it as IP:PORT, e.g. 127.0.0.1:8080");
            }
            ConfigError::Key {
                key,
                origin,
                message,
            }
        })?;
        config.check()?;
        config.warnings = warnings;
        config.warnings.extend(config.static_overlaps());
        config.source = path.to_path_buf();
        match config.metrics.check(config.http.listen, &config.issuer()) {
            Ok(warning) => config.warnings.extend(warning),
            Err(e) => {
                return Err(ConfigError::Key {
                    key: e.key.to_string(),
                    origin: overrides
                        .get(e.key)
                        .map(|v| format!(" (from {v})"))
                        .unwrap_or_default(),
                    message: e.message,
                });
            }
        }
        config.secrets = config.resolve_secrets(&env)?;
        if config.sip.danger_allow_unauthenticated {
            config.warnings.push(
                "sip.danger_allow_unauthenticated is on: REGISTER needs no token, anyone who reaches the WebSocket can register any identity".into(),
            );
        }
        Ok(config)
    }

    /// Checks that need more than one key.
    fn check(&self) -> Result<(), ConfigError> {
        let key_err = |key: &str, message: &str| ConfigError::Key {
            key: key.to_string(),
            origin: String::new(),
            message: message.to_string(),
        };
        let domain = &self.sip.domain;
        if domain.is_empty() || domain.contains(|c: char| c.is_whitespace() || "<>@;:".contains(c))
        {
            return Err(key_err(
                "sip.domain",
                "must be a plain host name such as `ims.example`",
            ));
        }
        // The domain is the host of every IMPU the templates produce, and those must come out
        // canonical (`imsgw_sip::Impu`): a domain that is not would make every account unusable.
        let probe = format!("sip:x@{domain}");
        if imsgw_sip::Impu::parse(&probe).map_or(true, |i| i.as_str() != probe) {
            return Err(key_err(
                "sip.domain",
                "must be a lowercase host name such as `ims.example` (no port): it is the host of every mapped IMPU",
            ));
        }
        if self.wwsf.sign_in == WicSignIn::CodeInRegister
            && !(self.waf.clients.iter()).any(|c| {
                c.id == self.wwsf.client_id
                    && c.code_in_register
                    && c.grants.contains(&crate::waf::Grant::RefreshToken)
            })
        {
            return Err(key_err(
                "wwsf.sign_in",
                "`code_in_register` needs the client named by wwsf.client_id in [[waf.clients]] with code_in_register = true and the refresh_token grant (else every sign-in ends with its first access token)",
            ));
        }
        for name in &self.sip.strip_headers {
            if let Err(e) = crate::edge::trust::check_strip_entry(name) {
                return Err(key_err("sip.strip_headers", &e.to_string()));
            }
        }
        if self.sip.tls_listen.is_some()
            && (self.sip.tls_cert_file.is_none() || self.sip.tls_key_file.is_none())
        {
            return Err(key_err(
                "sip.tls_listen",
                "needs sip.tls_cert_file and sip.tls_key_file",
            ));
        }
        if self.phones.tls_listen.is_some()
            && (self
                .phones
                .tls_cert_file
                .as_ref()
                .or(self.sip.tls_cert_file.as_ref()))
            .is_none()
        {
            return Err(key_err(
                "phones.tls_listen",
                "needs phones.tls_cert_file and phones.tls_key_file (or sip.tls_cert_file and sip.tls_key_file)",
            ));
        }
        if self.phones.tls_cert_file.is_some() != self.phones.tls_key_file.is_some() {
            return Err(key_err(
                "phones.tls_cert_file",
                "phones.tls_cert_file and phones.tls_key_file go together",
            ));
        }
        let algs = &self.phones.digest_algorithms;
        if algs.is_empty()
            || algs.iter().any(|a| a != "SHA-256" && a != "MD5")
            || (algs.len() == 2 && algs[0] == algs[1])
            || algs.len() > 2
        {
            return Err(key_err(
                "phones.digest_algorithms",
                "must list `SHA-256` and/or `MD5`, each once",
            ));
        }
        if self
            .phones
            .listeners()
            .iter()
            .any(|a| a.ip().is_unspecified())
            && self.phones.advertise.is_none_or(|a| a.is_unspecified())
            && self.sip.listen.ip().is_unspecified()
        {
            return Err(key_err(
                "phones.advertise",
                "a phone listener on a wildcard address needs the address phones reach imsgw at (phones.advertise), or a specific sip.listen",
            ));
        }
        if self.phones.max_flows == 0 || self.phones.udp_idle_secs == 0 {
            return Err(key_err(
                "phones.max_flows",
                "phones.max_flows and phones.udp_idle_secs must be at least 1",
            ));
        }
        if self.sip.tls_client_ca_file.is_some() && self.sip.tls_listen.is_none() {
            return Err(key_err(
                "sip.tls_client_ca_file",
                "only applies to sip.tls_listen, which is not set",
            ));
        }
        if self.sip.upstream.transport == UpstreamTransport::Tls {
            if self.sip.tls_ca_file.is_none() {
                return Err(key_err(
                    "sip.tls_ca_file",
                    "required when sip.upstream uses TLS: the CA that signed the P-CSCF's certificate",
                ));
            }
            if self.sip.tls_listen.is_none() {
                return Err(key_err(
                    "sip.tls_listen",
                    "required when sip.upstream uses TLS: the IMS side reaches users over TLS too",
                ));
            }
        }
        self.waf.check().map_err(|(key, m)| key_err(&key, &m))?;
        if let Some(m) = &self.media {
            m.engine_config(self.sip.listen)
                .map_err(|(key, m)| key_err(&key, &m))?;
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, p) in self.oidc.providers.iter().enumerate() {
            if p.name.is_empty()
                || !p
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(key_err(
                    &format!("oidc.providers[{i}].name"),
                    "must be letters, digits, - or _ (it appears in URLs)",
                ));
            }
            if !names.insert(p.name.clone()) {
                return Err(key_err(
                    &format!("oidc.providers[{i}].name"),
                    "two providers have this name",
                ));
            }
        }
        for name in self.identity.providers.keys() {
            if !names.contains(name) {
                return Err(key_err(
                    &format!("identity.providers.{name}"),
                    "names no [[oidc.providers]] entry",
                ));
            }
        }
        let templates: Vec<_> = self
            .oidc
            .providers
            .iter()
            .map(|p| self.identity.for_provider(&p.name))
            .collect();
        crate::waf::identity::template::check(&self.sip.domain, &templates)
            .map_err(|e| key_err(&e.key, &e.message))?;
        if self.sip.identity_assertion.is_empty() {
            return Err(key_err(
                "sip.identity_assertion",
                "needs at least one of \"tna\", \"pai\", \"passthrough\"",
            ));
        }
        let tna = &self.sip.tna_header;
        if !tna.contains(':') || tna.contains(['\r', '\n']) {
            return Err(key_err(
                "sip.tna_header",
                "must be one header line `Name: value` without line breaks",
            ));
        }
        if self.sip.t1_ms == 0 || self.sip.t1_ms > 10_000 {
            return Err(key_err("sip.t1_ms", "must be between 1 and 10000"));
        }
        if self.websocket.max_message_size < 1024 {
            return Err(key_err(
                "websocket.max_message_size",
                "must be at least 1024",
            ));
        }
        if self.sip.max_message_size < 1024 {
            return Err(key_err("sip.max_message_size", "must be at least 1024"));
        }
        if self.sip.max_connections == 0 {
            // Not "off", as 0 is for the knobs around it: it would close every connection the
            // P-CSCF opens to us, with nothing but a counter to say so.
            return Err(key_err(
                "sip.max_connections",
                "must be at least 1 (0 would refuse every IMS-side connection)",
            ));
        }
        if self.sip.verify_threads > 16 {
            return Err(key_err(
                "sip.verify_threads",
                "at most 16 (one or two keep up with thousands of new tokens a second)",
            ));
        }
        Ok(())
    }

    /// Reads every secret through the one resolver ([`SecretSource::resolve`]): files beside
    /// the config and private to imsgw's user, variables from `env`.
    fn resolve_secrets(&self, env: &BTreeMap<String, String>) -> Result<Secrets, SecretError> {
        let lookup = |var: &str| env.get(var).cloned();
        let beside = |p: &Path| self.beside_config(p.to_path_buf());
        let r = Resolver {
            path: &beside,
            env: &lookup,
        };
        let (sip, waf) = (&self.sip, &self.waf);
        let flow = SecretSource::from_keys(
            "sip.flow_key",
            sip.flow_key.as_ref(),
            sip.flow_key_file.as_ref(),
            sip.flow_key_env.as_ref(),
        )?;
        let hmac = SecretSource::from_keys(
            "waf.hmac_secret",
            waf.hmac_secret.as_ref(),
            waf.hmac_secret_file.as_ref(),
            waf.hmac_secret_env.as_ref(),
        )?;
        let mut secrets = Secrets {
            flow_key: resolve_key("sip.flow_key", flow, 32, "RFC 5626 §5.2", &r)?,
            hmac: resolve_key("waf.hmac_secret", hmac, 32, "RFC 7518 §3.2", &r)?,
            ..Secrets::default()
        };
        for (i, c) in waf.clients.iter().enumerate() {
            let key = format!("waf.clients[{i}].secret");
            let source = SecretSource::from_keys(
                &key,
                c.secret.as_ref(),
                c.secret_file.as_ref(),
                c.secret_env.as_ref(),
            )?;
            secrets
                .clients
                .push(source.map(|s| s.resolve(&key, &r)).transpose()?);
        }
        for (i, p) in self.oidc.providers.iter().enumerate() {
            secrets.providers.push(p.read_secret(i, &r)?);
        }
        Ok(secrets)
    }

    /// RFC 3261 timer T1.
    pub fn t1(&self) -> Duration {
        Duration::from_millis(self.sip.t1_ms)
    }

    /// `waf.issuer` or its default.
    pub fn issuer(&self) -> String {
        self.waf
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.http.listen))
    }

    /// `waf.audience` or its default.
    pub fn audience(&self) -> String {
        self.waf
            .audience
            .clone()
            .unwrap_or_else(|| format!("sip:{}", self.sip.domain))
    }

    /// `waf.key_dir` or its default, relative paths beside the config file.
    pub fn key_dir(&self) -> PathBuf {
        let dir = self
            .waf
            .key_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("keys"));
        self.beside_config(dir)
    }

    /// `waf.state_dir` or its default, relative paths beside the config file.
    pub fn state_dir(&self) -> PathBuf {
        let dir = self
            .waf
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("state"));
        self.beside_config(dir)
    }

    /// A path from the config, relative to the config file's folder.
    pub fn beside_config(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() {
            return p;
        }
        match self.source.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.join(p),
            _ => p,
        }
    }
}

/// Applies `IMSGW_SECTION__KEY=value` to `table`. The value is read as a TOML value when it is
/// one (numbers, booleans, quoted strings) and as a plain string otherwise. Returns, for each
/// key set, the variable that set it, so errors can say where a bad value came from.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut origins = BTreeMap::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix("IMSGW_") else {
            continue;
        };
        // Other tools use IMSGW_ names too (IMSGW_BIN in the tests): a name without the
        // section separator is not ours, but may be a typo, so say so.
        if !rest.contains("__") {
            warnings.push(format!(
                "ignoring environment variable {var}: config overrides are named IMSGW_<SECTION>__<KEY>"
            ));
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.len() != 2 || path.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                message: "expected IMSGW_<SECTION>__<KEY>, e.g. IMSGW_SIP__UPSTREAM".into(),
            });
        }
        let value = parse_env_value(&raw);
        let section = table
            .entry(path[0].clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section) = section.as_table_mut() else {
            return Err(ConfigError::Env {
                var,
                message: format!("`{}` is not a section", path[0]),
            });
        };
        section.insert(path[1].clone(), value);
        origins.insert(format!("{}.{}", path[0], path[1]), var);
    }
    Ok(origins)
}

fn parse_env_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn default_udp_recv_buffer() -> usize {
    4 * 1024 * 1024
}
/// Whether `url` is `http://` to a loopback host (127.0.0.0/8, `[::1]`, `localhost`).
pub(crate) fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn default_strip_headers() -> Vec<String> {
    crate::edge::trust::DEFAULT_STRIPPED
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_assertion() -> Vec<IdentityAssertion> {
    vec![IdentityAssertion::Tna]
}
fn default_tna_header() -> String {
    "Authorization: Digest username=\"{impi}\", realm=\"{realm}\", uri=\"sip:{realm}\", nonce=\"\", response=\"\", integrity-protected=\"auth-done\"".into()
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_sip_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5062))
}
fn default_drain_secs() -> u64 {
    10
}
fn default_t1_ms() -> u64 {
    500
}
fn default_connect_timeout_ms() -> u64 {
    3000
}
fn default_sip_max_message() -> usize {
    65535
}
fn default_ws_max_message() -> usize {
    65536
}
fn default_ping_interval() -> u64 {
    30
}
fn default_max_connections() -> usize {
    20000
}
fn default_ws_rate() -> u32 {
    50
}
fn default_log_filter() -> String {
    "info".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[sip]
domain = "ims.example"
upstream = "sip:127.0.0.1:5070;transport=udp"
"#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_sources(
            Path::new("test.toml"),
            text,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn obsolete_websocket_buffer_keys_still_load_and_are_named_for_a_warning() {
        let c = load(MIN, &[]).expect("none");
        assert!(c.obsolete_keys().is_empty());
        let c = load(
            &format!("{MIN}[websocket]\nread_buffer_size = 4096\nwrite_buffer_size = 100\n"),
            &[],
        )
        .expect("an old config loads");
        assert_eq!(
            c.obsolete_keys(),
            ["websocket.read_buffer_size", "websocket.write_buffer_size"]
        );
    }

    #[test]
    fn sip_verify_threads_defaults_to_inline_and_is_bounded() {
        assert_eq!(load(MIN, &[]).expect("default").sip.verify_threads, 0);
        let e = load(&format!("{MIN}verify_threads = 17\n"), &[]).expect_err("17");
        assert!(e.to_string().contains("sip.verify_threads"), "{e}");
        let c = load(&format!("{MIN}verify_threads = 2\n"), &[]).expect("2");
        assert_eq!(c.sip.verify_threads, 2);
    }

    #[test]
    fn review11_sip_max_connections_of_0_is_refused_not_taken_for_off() {
        let e = load(&format!("{MIN}max_connections = 0\n"), &[]).expect_err("0");
        assert!(e.to_string().contains("sip.max_connections"), "{e}");
        let c = load(&format!("{MIN}max_connections = 1\n"), &[]).expect("1");
        assert_eq!(c.sip.max_connections, 1);
    }

    #[test]
    fn static_identity_with_a_non_canonical_impu_names_the_key_rfc3261_19_1_4() {
        let text = format!(
            "{MIN}\n[identity.static]\n\"demo:s1\" = {{ impu = \"sip:bob:x@ims.example\", impi = \"bob@ims.example\" }}\n"
        );
        let e = load(&text, &[]).expect_err("password in the IMPU");
        let msg = e.to_string();
        assert!(
            msg.contains("identity.static") && msg.contains("impu") && msg.contains("password"),
            "{msg}"
        );
        let text = format!(
            "{MIN}\n[identity.static]\n\"demo:s1\" = {{ impu = \"SIP:Bob@IMS.example\", impi = \"bob@ims.example\" }}\n"
        );
        let c = load(&text, &[]).expect("canonicalised");
        assert_eq!(
            c.identity.static_map["demo:s1"].impu.as_str(),
            "sip:Bob@ims.example"
        );
    }

    fn two_providers(identity: &str) -> String {
        format!(
            "{MIN}\n[[oidc.providers]]\nname = \"corp\"\nissuer = \"https://corp.example\"\nclient_id = \"g\"\n\
[[oidc.providers]]\nname = \"social\"\nissuer = \"https://social.example\"\nclient_id = \"g\"\n{identity}"
        )
    }

    #[test]
    fn a_static_identity_a_template_could_also_give_is_warned_about() {
        // corp's names map under corp.ims.example; a social account statically given
        // alice@corp's IMPU could be a second person: the operator is told.
        let identity = "[identity.providers.corp]\ncontrols_usernames = true\n\
impu = \"sip:{preferred_username}@corp.{sip.domain}\"\nimpi = \"{preferred_username}@corp.{sip.domain}\"\n\
[identity.static]\n\"social:g-123\" = { impu = \"sip:alice@corp.ims.example\", impi = \"alice@corp.ims.example\" }\n";
        let c = load(&two_providers(identity), &[]).expect("valid: a warning, not an error");
        let w = c.warnings.join("\n");
        assert!(
            w.contains("identity.static \"social:g-123\"")
                && w.contains("sip:alice@corp.ims.example")
                && w.contains("identity.providers.corp.impu"),
            "{w}"
        );
        // An identity no template gives: no warning.
        let quiet = identity.replace("alice@corp.ims.example", "alice@static.ims.example");
        let c = load(&two_providers(&quiet), &[]).expect("valid");
        assert!(
            !c.warnings.iter().any(|w| w.contains("identity.static")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn default_identity_is_provider_and_sub_and_serves_two_providers_oidc_core_5_7() {
        let c = load(&two_providers(""), &[]).expect("valid");
        assert_eq!(
            c.identity.impu.as_str(),
            "sip:{provider}.{sub}@{sip.domain}"
        );
        assert_eq!(c.identity.impi.as_str(), "{provider}.{sub}@{sip.domain}");
    }

    #[test]
    fn a_name_claim_for_a_provider_not_controlling_names_is_refused_naming_the_key() {
        let names = "[identity]\nimpu = \"sip:{preferred_username}@{sip.domain}\"\n";
        let e = load(&two_providers(names), &[]).expect_err("unmarked");
        let msg = e.to_string();
        assert!(msg.contains("`identity.impu`"), "{msg}");
        assert!(msg.contains("preferred_username"), "{msg}");
        assert!(
            msg.contains("identity.providers.corp.controls_usernames"),
            "{msg}"
        );
        // the IMPI template is held to the same rule
        let e =
            load(&two_providers("[identity]\nimpi = \"{email}\"\n"), &[]).expect_err("unmarked");
        assert!(e.to_string().contains("`identity.impi`"), "{e}");
    }

    #[test]
    fn one_name_template_for_two_marked_providers_is_refused_per_provider_templates_start() {
        let marked = "[identity.providers.corp]\ncontrols_usernames = true\n\
[identity.providers.social]\ncontrols_usernames = true\n";
        let names = format!(
            "[identity]\nimpu = \"sip:{{preferred_username}}@{{sip.domain}}\"\n\
impi = \"{{preferred_username}}@{{sip.domain}}\"\n{marked}"
        );
        let e = load(&two_providers(&names), &[]).expect_err("collide");
        let msg = e.to_string();
        assert!(
            msg.contains("`identity.impu`") && msg.contains("same IMPU"),
            "{msg}"
        );
        // corp keeps its names; social gets the default, which overlaps corp's (a corp name
        // "social.x" would be social's account x): refused, naming social's key
        let mixed = "[identity.providers.corp]\ncontrols_usernames = true\n\
impu = \"sip:{preferred_username}@{sip.domain}\"\nimpi = \"{preferred_username}@{sip.domain}\"\n";
        let e = load(&two_providers(mixed), &[]).expect_err("overlap");
        assert!(e.to_string().contains("`identity.impu`"), "{e}");
        let separated = format!(
            "{mixed}[identity.providers.social]\nimpu = \"sip:{{provider}}.{{sub}}@social.{{sip.domain}}\"\n\
impi = \"{{provider}}.{{sub}}@social.{{sip.domain}}\"\n"
        );
        let c = load(&two_providers(&separated), &[]).expect("separated");
        assert_eq!(
            c.identity.for_provider("social").impu.as_str(),
            "sip:{provider}.{sub}@social.{sip.domain}"
        );
    }

    #[test]
    fn identity_settings_for_an_unknown_provider_are_refused() {
        let e = load(
            &two_providers("[identity.providers.corpp]\ncontrols_usernames = true\n"),
            &[],
        )
        .expect_err("typo");
        assert!(e.to_string().contains("identity.providers.corpp"), "{e}");
        let e =
            load(&two_providers("[identity]\nimpu = \"sip:{sub@x\"\n"), &[]).expect_err("broken");
        assert!(e.to_string().contains("identity.impu"), "{e}");
    }

    #[test]
    fn the_example_and_lab_configs_load() {
        for (name, text) in [
            (
                "imsgw.example.toml",
                include_str!("../../deploy/imsgw.example.toml"),
            ),
            (
                "imsgw.lab.toml",
                include_str!("../../deploy/lab/imsgw.lab.toml"),
            ),
        ] {
            load(text, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // the commented per-provider example of imsgw.example.toml, with its two providers
        let example = include_str!("../../deploy/imsgw.example.toml");
        let start = example
            .find("# [identity.providers.corp]")
            .expect("the example is there");
        let block: String = example[start..]
            .lines()
            .take_while(|l| l.starts_with("# "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        let text = two_providers(&block);
        let c = load(&text, &[]).expect("the per-provider example is valid");
        assert!(c.identity.for_provider("corp").controls_usernames);
    }

    #[test]
    fn domain_must_be_a_canonical_impu_host() {
        for bad in [
            "IMS.example",
            "ims.example:5060",
            "ims_example",
            "ims.example.",
        ] {
            let text = MIN.replace("\"ims.example\"", &format!("\"{bad}\""));
            let e = load(&text, &[]).expect_err(bad);
            assert!(e.to_string().contains("sip.domain"), "{bad}: {e}");
        }
    }

    #[test]
    fn wic_code_in_register_needs_its_client_to_allow_it() {
        let client = |flag: bool| {
            format!(
                "{MIN}\n[wwsf]\nsign_in = \"code_in_register\"\n[[waf.clients]]\nid = \"wic\"\nredirect_uris = [\"https://gw.example/\"]\ngrants = [\"authorization_code\", \"refresh_token\"]\ncode_in_register = {flag}\n"
            )
        };
        let msg = load(&client(false), &[])
            .expect_err("not allowed")
            .to_string();
        assert!(msg.contains("wwsf.sign_in"), "{msg}");
        let c = load(&client(true), &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.wwsf.sign_in, WicSignIn::CodeInRegister);
        assert_eq!(
            load(MIN, &[]).map(|c| c.wwsf.sign_in).ok(),
            Some(WicSignIn::Token)
        );
    }

    #[test]
    fn grants_and_algorithms_are_typed_and_a_bad_one_names_its_key() {
        let text = format!(
            "{MIN}\n[[waf.clients]]\nid = \"app\"\ngrants = [\"refresh_token\", \"password\"]\n"
        );
        let msg = load(&text, &[]).expect_err("password grant").to_string();
        assert!(
            msg.contains("waf.clients[0].grants[1]") && msg.contains("`password` is not one of"),
            "{msg}"
        );
        let text = format!(
            "{MIN}\n[[waf.external_issuers]]\nissuer = \"https://as.example\"\njwks_uri = \"https://as.example/jwks\"\naudience = \"sip:ims.example\"\nalgorithms = [\"ES256\", \"HS256\"]\n"
        );
        let msg = load(&text, &[])
            .expect_err("symmetric algorithm")
            .to_string();
        assert!(
            msg.contains("waf.external_issuers[0].algorithms[1]") && msg.contains("HS256"),
            "{msg}"
        );
        // A private-use redirect scheme (RFC 8252 §7.1) is fine; http to a host is not.
        let text = format!(
            "{MIN}\n[[waf.clients]]\nid = \"app\"\nredirect_uris = [\"com.example.app:/cb\"]\ngrants = [\"authorization_code\"]\n"
        );
        load(&text, &[]).expect("private-use scheme");
        let text = text.replace("com.example.app:/cb", "http://app.example/cb");
        let msg = load(&text, &[]).expect_err("http redirect").to_string();
        assert!(msg.contains("client `app`: redirect_uris"), "{msg}");
        // Two clients with one id: the second would replace the first (and its secret).
        let text = format!(
            "{MIN}\n[[waf.clients]]\nid = \"svc\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n[[waf.clients]]\nid = \"svc\"\n"
        );
        let msg = load(&text, &[]).expect_err("duplicate id").to_string();
        assert!(
            msg.contains("waf.clients[1].id") && msg.contains("names two clients"),
            "{msg}"
        );
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = load(MIN, &[]).expect("valid");
        assert_eq!(c.http.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(c.sip.listen, "127.0.0.1:5062".parse().expect("addr"));
        assert_eq!(c.sip.upstream.transport, UpstreamTransport::Udp);
        assert_eq!(c.websocket.max_message_size, 65536);
    }

    #[test]
    fn the_waf_state_is_durable_in_state_beside_the_config_by_default() {
        let c = Config::from_sources(Path::new("/etc/imsgw/imsgw.toml"), MIN, Vec::new())
            .expect("valid");
        assert_eq!(c.waf.store, StoreKind::Durable);
        assert_eq!(c.state_dir(), Path::new("/etc/imsgw/state"));
        let c = load(
            &format!("{MIN}\n[waf]\nstore = \"memory\"\nstate_dir = \"/var/lib/imsgw\"\n"),
            &[],
        )
        .expect("valid");
        assert_eq!(c.waf.store, StoreKind::Memory);
        assert_eq!(c.state_dir(), Path::new("/var/lib/imsgw"));
        let e = load(MIN, &[("IMSGW_WAF__STORE", "disk")]).expect_err("not a store");
        assert!(e.to_string().contains("waf.store"), "{e}");
    }

    #[test]
    fn env_overrides_a_key() {
        let c = load(
            MIN,
            &[
                ("IMSGW_SIP__UPSTREAM", "sip:127.0.0.1:5080;transport=tcp"),
                ("PATH", "/bin"),
            ],
        )
        .expect("valid");
        assert_eq!(c.sip.upstream.transport, UpstreamTransport::Tcp);
        assert_eq!(c.sip.upstream.addr.port(), 5080);
        let c = load(MIN, &[("IMSGW_WEBSOCKET__PING_INTERVAL_SECS", "5")]).expect("valid");
        assert_eq!(c.websocket.ping_interval_secs, 5);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load(&format!("{MIN}\nfoo = 1\n"), &[]).expect_err("unknown key");
        let msg = e.to_string();
        assert!(msg.contains("foo"), "{msg}");
        let c = load(MIN, &[("IMSGW_BIN", "/usr/bin/imsgw")]).expect("not a config override");
        assert!(
            c.warnings.iter().any(|w| w.contains("IMSGW_BIN")),
            "{:?}",
            c.warnings
        );
        let e = load(MIN, &[("IMSGW_SIP__LISTN", "1.2.3.4:5")]).expect_err("unknown key");
        let msg = e.to_string();
        assert!(
            msg.contains("listn") && msg.contains("IMSGW_SIP__LISTN"),
            "{msg}"
        );
    }

    #[test]
    fn bad_address_names_the_key() {
        let e = load(
            &MIN.replace("[sip]", "[http]\nlisten = \"nope\"\n[sip]"),
            &[],
        )
        .expect_err("bad");
        assert!(e.to_string().contains("http.listen"), "{e}");
        let e = load(
            &MIN.replace("sip:127.0.0.1:5070;transport=udp", "sip:pcscf.example"),
            &[],
        )
        .expect_err("dns name");
        assert!(e.to_string().contains("sip.upstream"), "{e}");
        assert!(e.to_string().contains("IP address"), "{e}");
    }

    #[test]
    fn tls_upstream_needs_ca_and_listener() {
        let text = MIN.replace("sip:127.0.0.1:5070;transport=udp", "sips:127.0.0.1:5071");
        let e = load(&text, &[]).expect_err("no ca");
        assert!(e.to_string().contains("sip.tls_ca_file"), "{e}");
    }

    /// A private file in a fresh folder, removed with it.
    fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).expect("temp dir");
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    #[test]
    fn no_secret_anywhere_in_the_config_shows_in_debug() {
        let dir = std::env::temp_dir().join(format!("imsgw-cfg-debug-{}", std::process::id()));
        // every secret key, each with its own value: inline, from a file, from the environment
        let flow = secret_file(
            &dir,
            "flow.key",
            "FLOW-KEY-0123456789abcdef0123456789",
            0o600,
        );
        let hmac = secret_file(
            &dir,
            "hmac.key",
            "HMAC-KEY-0123456789abcdef0123456789",
            0o600,
        );
        let client = secret_file(&dir, "client.secret", "CLIENT-FILE-SECRET", 0o600);
        let op = secret_file(&dir, "op.secret", "OP-FILE-SECRET", 0o600);
        let text = format!(
            "[sip]\ndomain = \"ims.example\"\nupstream = \"sip:127.0.0.1:5070\"\nflow_key_file = {flow:?}\n\
[waf]\nhmac_secret_file = {hmac:?}\n\
[[waf.clients]]\nid = \"a\"\nsecret = \"CLIENT-INLINE-SECRET\"\n\
[[waf.clients]]\nid = \"b\"\nsecret_file = {client:?}\n\
[[waf.clients]]\nid = \"c\"\nsecret_env = \"C_SECRET\"\n\
[[oidc.providers]]\nname = \"p1\"\nissuer = \"https://p1.example\"\nclient_id = \"g\"\nclient_secret = \"OP-INLINE-SECRET\"\n\
[[oidc.providers]]\nname = \"p2\"\nissuer = \"https://p2.example\"\nclient_id = \"g\"\nclient_secret_file = {op:?}\n\
[[oidc.providers]]\nname = \"p3\"\nissuer = \"https://p3.example\"\nclient_id = \"g\"\nclient_secret_env = \"OP_SECRET\"\n"
        );
        let c = load(
            &text,
            &[
                ("C_SECRET", "CLIENT-ENV-SECRET"),
                ("OP_SECRET", "OP-ENV-SECRET"),
            ],
        )
        .expect("valid");
        let shown = format!("{c:?}");
        for value in [
            "FLOW-KEY",
            "HMAC-KEY",
            "CLIENT-INLINE-SECRET",
            "CLIENT-FILE-SECRET",
            "CLIENT-ENV-SECRET",
            "OP-INLINE-SECRET",
            "OP-FILE-SECRET",
            "OP-ENV-SECRET",
        ] {
            assert!(!shown.contains(value), "{value} in {shown}");
        }
        // ... and each was read
        let s = &c.secrets;
        let expose = |x: &Option<crate::secret::Secret>| {
            x.as_ref()
                .map(|s| String::from_utf8_lossy(s.expose()).into_owned())
        };
        assert_eq!(
            expose(&s.flow_key).as_deref(),
            Some("FLOW-KEY-0123456789abcdef0123456789")
        );
        assert_eq!(
            expose(&s.hmac).as_deref(),
            Some("HMAC-KEY-0123456789abcdef0123456789")
        );
        let clients: Vec<_> = s.clients.iter().map(expose).collect();
        assert_eq!(
            clients,
            [
                Some("CLIENT-INLINE-SECRET".to_string()),
                Some("CLIENT-FILE-SECRET".to_string()),
                Some("CLIENT-ENV-SECRET".to_string())
            ]
        );
        let providers: Vec<_> = s.providers.iter().map(expose).collect();
        assert_eq!(
            providers,
            [
                Some("OP-INLINE-SECRET".to_string()),
                Some("OP-FILE-SECRET".to_string()),
                Some("OP-ENV-SECRET".to_string())
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_secret_file_open_to_others_stops_loading_naming_the_key_and_mode() {
        let dir = std::env::temp_dir().join(format!("imsgw-cfg-mode-{}", std::process::id()));
        let f = secret_file(&dir, "s.secret", "0123456789abcdef0123456789abcdef", 0o644);
        for (text, named) in [
            (format!("{MIN}flow_key_file = {f:?}\n"), "sip.flow_key_file"),
            (
                format!("{MIN}[waf]\nhmac_secret_file = {f:?}\n"),
                "waf.hmac_secret_file",
            ),
            (
                format!("{MIN}[[waf.clients]]\nid = \"svc\"\nsecret_file = {f:?}\n"),
                "waf.clients[0].secret_file",
            ),
        ] {
            let e = load(&text, &[]).expect_err("0644 refused");
            let msg = e.to_string();
            assert!(msg.contains(&format!("`{named}`")), "{msg}");
            assert!(
                msg.contains("mode 644") && msg.contains("chmod 600"),
                "{msg}"
            );
            assert!(!msg.contains("0123456789abcdef"), "{msg}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_short_mac_key_or_two_sources_are_refused_naming_the_key() {
        let e = load(
            &format!("{MIN}flow_key_env = \"FLOW\"\n"),
            &[("FLOW", "short")],
        )
        .expect_err("short");
        assert!(e.to_string().contains("`sip.flow_key_env`"), "{e}");
        assert!(e.to_string().contains("32 bytes"), "{e}");
        let e = load(&format!("{MIN}flow_key_env = \"FLOW\"\n"), &[]).expect_err("unset");
        assert!(
            e.to_string().contains("FLOW") && e.to_string().contains("not set"),
            "{e}"
        );
        let text =
            format!("{MIN}[[waf.clients]]\nid = \"svc\"\nsecret = \"x\"\nsecret_env = \"X\"\n");
        let e = load(&text, &[("X", "y")]).expect_err("two sources");
        assert!(e.to_string().contains("waf.clients[0].secret"), "{e}");
        let e = load(&format!("{MIN}[waf]\nhmac_secret = \" \"\n"), &[]).expect_err("empty");
        assert!(
            e.to_string()
                .contains("`waf.hmac_secret`: the secret is empty"),
            "{e}"
        );
    }

    #[test]
    fn external_jwks_only_over_https_but_on_loopback() {
        let issuer = |uri: &str| {
            format!(
                "{MIN}[[waf.external_issuers]]\nissuer = \"https://op.example\"\njwks_uri = \"{uri}\"\n\
audience = \"sip\"\nrequire_typ = \"at+jwt\"\n"
            )
        };
        for ok in [
            "https://op.example/jwks",
            "http://127.0.0.1:9400/jwks",
            "http://127.8.0.1/jwks",
            "http://[::1]:80/jwks",
            "http://localhost/jwks",
        ] {
            let c = load(&issuer(ok), &[]).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(
                c.waf.external_issuers[0].require_typ.as_deref(),
                Some("at+jwt")
            );
        }
        for bad in [
            "http://op.example/jwks",
            "http://192.0.2.1/jwks",
            "http://127.0.0.1@evil.example/jwks",
            "http://localhost.evil.example/jwks",
            "ftp://127.0.0.1/jwks",
        ] {
            let e = load(&issuer(bad), &[]).expect_err(bad);
            assert!(e.to_string().contains("jwks_uri"), "{bad}: {e}");
        }
    }

    #[test]
    fn strip_headers_default_to_the_trust_domain_and_refuse_routing_headers() {
        let c = load(MIN, &[]).expect("valid");
        assert!(c.sip.strip_headers.iter().any(|h| h == "P-Charging-Vector"));
        for bad in ["Via", "route", "Bad Name"] {
            let text = format!("{MIN}strip_headers = [\"{bad}\"]\n");
            let e = load(&text, &[]).expect_err("refused");
            assert!(e.to_string().contains("sip.strip_headers"), "{bad}: {e}");
        }
        let c = load(&format!("{MIN}strip_headers = [\"X-Internal\"]\n"), &[]).expect("valid");
        assert_eq!(c.sip.strip_headers, ["X-Internal"]);
    }

    #[test]
    fn trusted_peers_parse_ip_socket_and_cidr() {
        let text =
            format!("{MIN}trusted_peers = [\"192.0.2.7\", \"192.0.2.8:5060\", \"10.0.0.0/8\"]\n");
        let c = load(&text, &[]).expect("valid");
        let shown: Vec<String> = c.sip.trusted_peers.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown, ["192.0.2.7", "192.0.2.8:5060", "10.0.0.0/8"]);
        assert!(load(MIN, &[]).expect("valid").sip.trusted_peers.is_empty());
    }

    #[test]
    fn bad_trusted_peer_names_the_key() {
        for bad in ["pcscf.example", "10.0.0.0/40", "10.1.0.0/8", "1.2.3.4:"] {
            let text = format!("{MIN}trusted_peers = [\"192.0.2.7\", \"{bad}\"]\n");
            let e = load(&text, &[]).expect_err(bad);
            let msg = e.to_string();
            assert!(msg.contains("sip.trusted_peers"), "{bad}: {msg}");
            assert!(msg.contains(bad), "{bad}: {msg}");
        }
        let e =
            load(&format!("{MIN}trusted_peers = \"192.0.2.7\"\n"), &[]).expect_err("not a list");
        assert!(e.to_string().contains("sip.trusted_peers"), "{e}");
    }

    #[test]
    fn tls_client_ca_needs_the_tls_listener() {
        let e = load(&format!("{MIN}tls_client_ca_file = \"ca.pem\"\n"), &[])
            .expect_err("no tls_listen");
        assert!(e.to_string().contains("sip.tls_client_ca_file"), "{e}");
    }

    #[test]
    fn phone_codes_are_off_by_default_and_their_keys_are_checked() {
        assert_eq!(load(MIN, &[]).expect("valid").waf.phone_code, None);
        let client = "[[waf.clients]]\nid = \"sip-phone\"\ngrants = [\"refresh_token\"]\n";
        let c = load(&format!("{MIN}[waf.phone_code]\n{client}"), &[]).expect("valid");
        assert_eq!(c.waf.phone_code, Some(PhoneCodeConfig::default()));
        let p = PhoneCodeConfig::default();
        assert_eq!(
            (p.digits, p.ttl_secs, p.per_person, p.max_failures),
            (8, 600, 5, 5)
        );
        for (section, key, says) in [
            ("digits = 5", "waf.phone_code.digits", "between 6 and 12"),
            ("digits = 13", "waf.phone_code.digits", "between 6 and 12"),
            ("ttl_secs = 0", "waf.phone_code.ttl_secs", "at least 1"),
            ("per_person = 0", "waf.phone_code.per_person", "between 1"),
            (
                "max_failures = 0",
                "waf.phone_code.max_failures",
                "at least 1",
            ),
            (
                "client_id = \"nobody\"",
                "waf.phone_code.client_id",
                "names no [[waf.clients]] entry",
            ),
            ("colour = 1", "waf.phone_code", "colour"),
        ] {
            let text = format!("{MIN}[waf.phone_code]\n{section}\n{client}");
            let msg = load(&text, &[]).expect_err(section).to_string();
            assert!(msg.contains(key) && msg.contains(says), "{section}: {msg}");
        }
        // The client must allow the refresh grant: an app password is a refresh family.
        let text = format!(
            "{MIN}[waf.phone_code]\n[[waf.clients]]\nid = \"sip-phone\"\ngrants = [\"urn:ietf:params:oauth:grant-type:device_code\"]\n"
        );
        let msg = load(&text, &[]).expect_err("no refresh grant").to_string();
        assert!(
            msg.contains("waf.phone_code.client_id") && msg.contains("refresh_token"),
            "{msg}"
        );
        // The commented example of imsgw.example.toml gives the defaults.
        let example = include_str!("../../deploy/imsgw.example.toml");
        let start = example
            .find("# [waf.phone_code]")
            .expect("the example is there");
        let block: String = example[start..]
            .lines()
            .take_while(|l| l.starts_with("# "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        let c = load(&format!("{MIN}{block}"), &[]).expect("the example is valid");
        assert_eq!(c.waf.phone_code, Some(PhoneCodeConfig::default()));
    }

    #[test]
    fn missing_required_key_is_named() {
        let e = load("[sip]\ndomain = \"ims.example\"\n", &[]).expect_err("no upstream");
        assert!(e.to_string().contains("upstream"), "{e}");
    }
}
