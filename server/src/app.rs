//! Assembles the gateway from its config: binds every socket, starts the hub, the IMS-side
//! transports and the HTTP server, and shuts them down in order on SIGTERM.
//!
//! Owns: start-up and shutdown order, the HTTP router. Must not touch: protocol logic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, StoreKind, UpstreamTransport};
use crate::edge::{Auth, AuthSettings, Edge, EdgeSettings, FlowKey, Local};
use crate::hub::{Hub, UpstreamSender};
use crate::metrics::Metrics;
use crate::peers::PeerFilter;
use crate::transport::{ims, tls, ws};
use crate::waf::keys::KeySource;
use crate::waf::store::{DurableStore, MemoryStore, Store};
use crate::waf::{Waf, unix_now};

/// Why the gateway could not start; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("sip.flow_key: {message}")]
    FlowKey { message: String },
    #[error(transparent)]
    Waf(#[from] crate::waf::WafError),
    #[error("the WAF's store: {0}")]
    Store(String),
    #[error(transparent)]
    MetricsToken(#[from] crate::metrics::MetricsTokenError),
    #[error("media: {0}")]
    Media(String),
    #[error("phones: {0}")]
    Phones(String),
    #[error("sip.verify_threads: cannot start a thread: {0}")]
    VerifyThreads(std::io::Error),
}

/// A started gateway.
pub struct Running {
    pub http_addr: SocketAddr,
    /// `metrics.listen` as bound, when `/metrics` has a listener of its own.
    pub metrics_addr: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
    drain: Duration,
    media: Option<imsgw_media::Media>,
}

/// Binds and starts everything; returns once every listener is up.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Metrics::install());
    let key = load_flow_key(&config)?;

    let udp = ims::bind_udp(config.sip.listen, config.sip.udp_recv_buffer)
        .await
        .map_err(|source| StartError::Bind {
            what: "sip.listen (UDP)",
            addr: config.sip.listen,
            source,
        })?;
    let tcp = TcpListener::bind(config.sip.listen)
        .await
        .map_err(|source| StartError::Bind {
            what: "sip.listen (TCP)",
            addr: config.sip.listen,
            source,
        })?;
    let tls_listener = match config.sip.tls_listen {
        Some(addr) => {
            let (Some(cert), Some(key)) = (&config.sip.tls_cert_file, &config.sip.tls_key_file)
            else {
                unreachable!("Config::check requires both files with tls_listen");
            };
            let acceptor = tls::acceptor(cert, key, config.sip.tls_client_ca_file.as_deref())?;
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind {
                    what: "sip.tls_listen",
                    addr,
                    source,
                })?;
            Some((l, acceptor))
        }
        None => None,
    };
    // SIP phones (`[phones]`): bound before anything runs, so a taken port stops the start.
    let phone_udp = match config.phones.udp_listen {
        Some(addr) => {
            Some(
                ims::bind_udp(addr, 4 << 20)
                    .await
                    .map_err(|source| StartError::Bind {
                        what: "phones.udp_listen",
                        addr,
                        source,
                    })?,
            )
        }
        None => None,
    };
    let phone_tcp = match config.phones.tcp_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind {
                    what: "phones.tcp_listen",
                    addr,
                    source,
                })?,
        ),
        None => None,
    };
    let phone_tls = match config.phones.tls_listen {
        Some(addr) => {
            let p = &config.phones;
            let (cert, key) = match (&p.tls_cert_file, &p.tls_key_file) {
                (Some(c), Some(k)) => (c, k),
                _ => match (&config.sip.tls_cert_file, &config.sip.tls_key_file) {
                    (Some(c), Some(k)) => (c, k),
                    _ => {
                        return Err(StartError::Phones(
                            "phones.tls_listen needs phones.tls_cert_file and phones.tls_key_file"
                                .into(),
                        ));
                    }
                },
            };
            let acceptor = tls::acceptor(cert, key, None)?;
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind {
                    what: "phones.tls_listen",
                    addr,
                    source,
                })?;
            Some((l, acceptor))
        }
        None => None,
    };
    let http = TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| StartError::Bind {
            what: "http.listen",
            addr: config.http.listen,
            source,
        })?;
    let http_addr = http.local_addr().unwrap_or(config.http.listen);
    let metrics_token = crate::metrics::load_token(
        config
            .metrics
            .bearer_token_file
            .clone()
            .map(|p| config.beside_config(p)),
    )?;
    let metrics_listener = match config.metrics.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind {
                    what: "metrics.listen",
                    addr,
                    source,
                })?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .zip(config.metrics.listen)
        .map(|(l, addr)| l.local_addr().unwrap_or(addr));

    let (hub_tx, hub_rx) = mpsc::channel(16384);
    let mut tasks = tokio::task::JoinSet::new();
    let up = &config.sip.upstream;
    let upstream = match up.transport {
        UpstreamTransport::Udp => UpstreamSender::Udp {
            socket: udp.clone(),
            addr: up.addr,
        },
        UpstreamTransport::Tcp | UpstreamTransport::Tls => {
            let tls = match up.transport {
                UpstreamTransport::Tls => {
                    let name = config
                        .sip
                        .tls_server_name
                        .clone()
                        .unwrap_or_else(|| up.host.clone());
                    let Some(ca) = &config.sip.tls_ca_file else {
                        unreachable!("Config::check requires tls_ca_file for a TLS upstream");
                    };
                    Some(tls::connector(ca, &name)?)
                }
                _ => None,
            };
            let connector = ims::UpstreamConnector {
                addr: up.addr,
                tls,
                connect_timeout: Duration::from_millis(config.sip.connect_timeout_ms),
                max: config.sip.max_message_size,
            };
            let (tx, rx) = mpsc::channel(4096);
            tasks.spawn(ims::run_upstream(
                connector,
                rx,
                hub_tx.clone(),
                shutdown.clone(),
            ));
            UpstreamSender::Stream(tx)
        }
    };
    let local = Local {
        listen: config.sip.listen,
        tls_listen: config.sip.tls_listen,
        transport: up.transport,
        ws_host: format!("{}.invalid", config.sip.domain.replace('.', "-")),
        clients: config.phones.listeners(),
        phone_advertise: config.phones.advertise,
    };
    // The WAF: keys, its own state, and what the edge needs of it.
    let key_source = KeySource::from_config(&config);
    let ring = key_source
        .load(unix_now())
        .map_err(crate::waf::WafError::from)?;
    let store = open_store(&config)?;
    let mut waf = Waf::new(&config, ring.clone(), store.clone())?;
    // Revocations reach the edge as inputs, never as a look-up in the store (STYLE.md §15).
    let (revoked_tx, revoked_rx) = mpsc::unbounded_channel::<(String, u64)>();
    waf.set_revocation_sink(revoked_tx);
    let waf = Arc::new(waf);
    let auth = if config.sip.danger_allow_unauthenticated {
        Auth::disabled()
    } else {
        let mut verifier =
            imsgw_token::Verifier::new(crate::waf::verifier_config(&config, true)?, &ring)
                .map_err(crate::waf::WafError::from)?;
        for (issuer, jwks) in crate::waf::jwks::initial(&config.waf.external_issuers).await {
            if let Err(e) = verifier.set_external_jwks(&issuer, &jwks) {
                warn!(issuer, error = %e, "unusable JWKS from an external issuer");
            }
        }
        Auth {
            settings: AuthSettings {
                required: true,
                realm: config.sip.domain.clone(),
                authz_server: config.issuer(),
                scope: config.waf.scope.clone(),
                challenge: config.sip.challenge,
                assertion: config.sip.identity_assertion.clone(),
                tna_header: config.sip.tna_header.clone(),
            },
            verifier: Some(verifier),
            revoked: {
                let mut r = crate::edge::Revoked::default();
                let held = store
                    .revocations(unix_now())
                    .map_err(|e| StartError::Store(e.to_string()))?;
                for (jti, exp) in held {
                    r.insert(jti, exp);
                }
                r
            },
            // Phones with phone codes answer Digest; the realm is the home domain.
            digest: config.waf.phone_code.as_ref().map(|_| {
                let algs = (config.phones.digest_algorithms.iter())
                    .filter_map(|a| crate::edge::digest::Algorithm::from_name(a))
                    .collect();
                crate::edge::digest::DigestSettings::with_algorithms(
                    config.sip.domain.clone(),
                    algs,
                )
            }),
            proofs: crate::edge::pop::ProofSettings::default(),
            elsewhere: crate::edge::Elsewhere::new(config.sip.verify_threads > 0),
        }
    };
    let (jwks_tx, jwks_rx) = mpsc::channel(64);
    tasks.spawn(crate::waf::jwks::fetch_loop(
        config.waf.external_issuers.clone(),
        jwks_rx,
        hub_tx.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(crate::waf::keys::reload_loop(
        key_source,
        waf.clone(),
        hub_tx.clone(),
        Duration::from_secs(config.waf.key_reload_secs),
        config.waf.max_token_ttl_secs,
        shutdown.clone(),
    ));
    // The media engine runs on threads of its own; the hub drives it by channel.
    let media = match &config.media {
        Some(section) => {
            let mc = section
                .engine_config(config.sip.listen)
                .map_err(|(key, message)| StartError::Media(format!("{key}: {message}")))?;
            let (media, events) =
                imsgw_media::Media::start(mc).map_err(|e| StartError::Media(e.to_string()))?;
            info!(listen = %media.local_addr(), "media gateway (eIMS-AGW) started");
            Some((media, events))
        }
        None => None,
    };
    let media_handle = media.as_ref().map(|(m, _)| m.clone());
    if let Some(m) = &media_handle {
        metrics.set_media(m.clone());
    }
    let edge = Edge::new(
        EdgeSettings {
            local,
            t1: config.t1(),
            strip: crate::edge::StripList::new(&config.sip.strip_headers),
            register_timeout: (config.websocket.register_timeout_secs > 0)
                .then(|| Duration::from_secs(config.websocket.register_timeout_secs)),
            media: config.media.as_ref().filter(|_| media.is_some()).map(|m| {
                crate::edge::MediaLimits {
                    calls_per_user: m.max_calls_per_user,
                }
            }),
        },
        key,
        auth,
    );
    // Codes in REGISTER and refreshes of what they gave, exchanged off the hub's task.
    let (grant_tx, grant_rx) = mpsc::channel(crate::edge::grant::MAX_IN_FLIGHT);
    tasks.spawn(crate::waf::edge_grant::serve(
        waf.clone(),
        grant_rx,
        hub_tx.clone(),
        shutdown.clone(),
    ));
    let verify_jobs = crate::hub::verify_threads(config.sip.verify_threads, hub_tx.clone())
        .map_err(StartError::VerifyThreads)?;
    let hub = Hub::new(
        edge,
        hub_rx,
        udp.clone(),
        upstream,
        metrics.clone(),
        jwks_tx,
        revoked_rx,
        media,
        grant_tx,
        verify_jobs,
    );
    let hub_task = tokio::spawn(hub.run());

    let udp_upstream = (up.transport == UpstreamTransport::Udp).then_some(up.addr);
    let max = config.sip.max_message_size;
    // Only the P-CSCF (and sip.trusted_peers) may talk to the IMS-side sockets; our own
    // connection to a TCP/TLS upstream is trusted by construction and not filtered.
    let guard = ims::Guard {
        filter: Arc::new(PeerFilter::new(
            up.addr.ip(),
            config.sip.trusted_peers.clone(),
        )),
        metrics: metrics.clone(),
    };
    tasks.spawn(ims::run_udp(
        udp,
        hub_tx.clone(),
        udp_upstream,
        max,
        guard.clone(),
        shutdown.clone(),
    ));
    let conn_limits = ims::ConnLimits {
        max: config.sip.max_connections,
        idle: (config.sip.idle_timeout_secs > 0)
            .then(|| Duration::from_secs(config.sip.idle_timeout_secs)),
        open: Arc::default(),
    };
    tasks.spawn(ims::run_listener(
        tcp,
        None,
        hub_tx.clone(),
        max,
        guard.clone(),
        conn_limits.clone(),
        shutdown.clone(),
    ));
    if let Some((l, acceptor)) = tls_listener {
        tasks.spawn(ims::run_listener(
            l,
            Some(acceptor),
            hub_tx.clone(),
            max,
            guard,
            conn_limits,
            shutdown.clone(),
        ));
    }

    let phones = Arc::new(crate::transport::phones::PhoneState {
        config: config.phones.clone(),
        hub: hub_tx.clone(),
        max_message: config.sip.max_message_size,
        open: std::sync::atomic::AtomicUsize::new(0),
        shutdown: shutdown.clone(),
    });
    if let Some(socket) = phone_udp {
        info!(listen = ?config.phones.udp_listen, "SIP phones over UDP");
        tasks.spawn(crate::transport::phones::run_udp(socket, phones.clone()));
    }
    if let Some(l) = phone_tcp {
        info!(listen = ?config.phones.tcp_listen, "SIP phones over TCP");
        tasks.spawn(crate::transport::phones::run_stream_listener(
            l,
            None,
            phones.clone(),
        ));
    }
    if let Some((l, acceptor)) = phone_tls {
        info!(listen = ?config.phones.tls_listen, "SIP phones over TLS");
        tasks.spawn(crate::transport::phones::run_stream_listener(
            l,
            Some(acceptor),
            phones,
        ));
    }
    let ws_state = Arc::new(ws::WsState::new(
        config.websocket.clone(),
        hub_tx,
        shutdown.clone(),
        metrics.clone(),
    ));
    // Discovery of the sign-in providers in the background: the first login need not wait.
    let warm = waf.clone();
    tokio::spawn(async move { warm.providers.warm_up().await });
    if let Err(why) = crate::wwsf::assets(&config) {
        warn!("web client not served: {why}");
    }
    for key in config.obsolete_keys() {
        warn!(
            key,
            "no longer has an effect: a WebSocket connection holds no buffer while idle; remove it"
        );
    }
    let proxies = Arc::new(crate::transport::client_addr::TrustedProxies(
        config.http.trusted_proxies.clone(),
    ));
    let http_metrics = metrics.clone();
    let metrics_endpoint = crate::metrics::endpoint(metrics, metrics_token);
    let mut router = router(ws_state)
        .merge(crate::waf::http::router(waf))
        .merge(crate::wwsf::router(&config))
        .layer(axum::Extension(proxies.clone()));
    let http_proxies = proxies;
    // With a listener of its own, /metrics is not on the public one at all.
    match metrics_listener {
        Some(l) => {
            let stop = shutdown.clone();
            tasks.spawn(async move {
                let serve = axum::serve(l, metrics_endpoint)
                    .with_graceful_shutdown(async move { stop.cancelled().await });
                if let Err(e) = serve.await {
                    warn!(error = %e, "metrics server ended");
                }
            });
        }
        None => router = router.merge(metrics_endpoint),
    }
    tasks.spawn(crate::transport::http::serve(
        http,
        router,
        crate::transport::http::handshake_timeout(config.websocket.handshake_timeout_secs),
        crate::transport::http::PerAddress::new(
            config.http.max_connections_per_address,
            http_proxies,
        ),
        shutdown.clone(),
        http_metrics,
    ));
    // The hub ends when every input sender is gone, after the transports stop.
    tasks.spawn(async move {
        let _ = hub_task.await;
    });
    info!(
        http = %http_addr,
        metrics = %metrics_addr.map_or_else(|| "on http".to_string(), |a| a.to_string()),
        sip = %config.sip.listen,
        upstream = %config.sip.upstream.uri,
        "imsgw serving"
    );
    Ok(Running {
        http_addr,
        metrics_addr,
        shutdown,
        tasks,
        drain: Duration::from_secs(config.http.drain_secs),
        media: media_handle,
    })
}

impl Running {
    /// Stops accepting, closes WebSockets with a close frame, and waits (bounded) for tasks.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.drain, drain).await.is_err() {
            warn!("drain time over; exiting with connections still open");
        }
        if let Some(m) = self.media.take() {
            // Joins the media thread: off the async workers.
            let _ = tokio::task::spawn_blocking(move || m.stop()).await;
        }
    }
}

/// The HTTP routes of the edge (`/metrics` is added by [`start`] where it belongs).
pub fn router(ws_state: Arc<ws::WsState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/sip", get(ws::upgrade))
        .with_state(ws_state)
}

async fn healthz(State(s): State<Arc<ws::WsState>>) -> (axum::http::StatusCode, &'static str) {
    if s.shutdown.is_cancelled() {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (axum::http::StatusCode::OK, "ok\n")
    }
}

/// The WAF's store as `waf.store` says: durable (one file in `waf.state_dir`; a restart
/// forgets nothing) or in memory.
fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let caps = config.waf.limits.caps();
    match config.waf.store {
        StoreKind::Durable => {
            let store = DurableStore::open(&config.state_dir(), caps, unix_now())
                .map_err(|e| StartError::Store(format!("waf.state_dir: {e}")))?;
            info!(file = %store.path().display(), "the WAF's state is kept in this file");
            Ok(Arc::new(store))
        }
        StoreKind::Memory => {
            warn!(
                "waf.store = \"memory\": a restart forgets every sign-in session, refresh token and revocation"
            );
            Ok(Arc::new(MemoryStore::with_caps(caps)))
        }
    }
}

/// The flow-token key the config read (`sip.flow_key*`, checked there), or a random one.
fn load_flow_key(config: &Config) -> Result<FlowKey, StartError> {
    let Some(secret) = &config.secrets.flow_key else {
        return Ok(FlowKey::random());
    };
    FlowKey::from_secret(secret.expose()).ok_or(StartError::FlowKey {
        message: "needs at least 32 bytes of secret".into(),
    })
}
