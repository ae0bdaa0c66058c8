//! The task that owns the [`Edge`] state machine: it takes what the transports received, feeds
//! it to the edge with the time, and carries the edge's outputs to the right socket or
//! WebSocket. One owner, channels in and out (STYLE.md §2).
//!
//! Owns: the map from flows and connections to their writers. Must not touch: SIP semantics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::edge::{
    Dest, Edge, FlowId, FlowKind, GrantAsk, GrantError, Granted, Link, Output, TxnId,
};
use crate::metrics::Metrics;

pub mod queue;
pub use queue::{FlowRx, FlowTx, flow_queue};

/// What a WebSocket task is told to do.
#[derive(Debug)]
pub enum FlowCommand {
    Send(Bytes),
    /// The flow registered (see `transport::admission`).
    Registered,
    /// The flow's registration was removed: it counts as unregistered again.
    Unregistered,
    Close {
        code: u16,
        reason: &'static str,
    },
}

/// What reaches the hub.
#[derive(Debug)]
pub enum HubInput {
    FlowOpened {
        flow: FlowId,
        remote: SocketAddr,
        kind: FlowKind,
        tx: FlowTx,
    },
    FlowMessage {
        flow: FlowId,
        bytes: Bytes,
    },
    FlowClosed {
        flow: FlowId,
    },
    /// A message from the IMS side.
    Ims {
        link: Link,
        source: SocketAddr,
        bytes: Bytes,
    },
    /// A TCP/TLS connection on the IMS side is up; `tx` writes to it.
    ConnOpened {
        id: u64,
        tx: mpsc::Sender<Bytes>,
    },
    ConnClosed {
        id: u64,
    },
    /// A send that carried a transaction failed.
    SendFailed {
        txn: TxnId,
    },
    /// The P-CSCF is unreachable or its connection broke.
    UpstreamFailed,
    /// The WAF's signing keys changed.
    OurKeys(Box<imsgw_token::KeyRing>),
    /// An external issuer's keys were fetched.
    ExternalJwks {
        issuer: String,
        jwks: Box<imsgw_token::JwkSet>,
    },
    /// The WAF's answer to the edge's [`Output::Grant`].
    Granted {
        ticket: u64,
        result: Result<Granted, GrantError>,
    },
    /// A verifying thread's verdict on a token ([`verify_threads`]).
    TokenVerdict(Box<imsgw_token::Verdict>),
}

/// How the hub reaches the P-CSCF.
pub enum UpstreamSender {
    /// Datagrams from the `sip.listen` socket.
    Udp {
        socket: Arc<UdpSocket>,
        addr: SocketAddr,
    },
    /// The connection manager of `transport::ims` (TCP or TLS).
    Stream(mpsc::Sender<(Bytes, Option<TxnId>)>),
}

pub struct Hub {
    edge: Edge,
    rx: mpsc::Receiver<HubInput>,
    udp: Arc<UdpSocket>,
    upstream: UpstreamSender,
    flows: HashMap<FlowId, FlowTx>,
    conns: HashMap<u64, mpsc::Sender<Bytes>>,
    metrics: Arc<Metrics>,
    /// Asks the JWKS fetcher for an issuer's keys.
    jwks_asks: mpsc::Sender<String>,
    /// Tokens the WAF revoked (`jti`, `exp`). Drained before every input, so a request sent
    /// after the revocation's HTTP answer is always judged with it (a separate channel that
    /// only the WAF fills, never full, so revoking never waits on SIP traffic).
    revocations: mpsc::UnboundedReceiver<(String, u64)>,
    /// The media engine and what it reports, when `[media]` is configured.
    media: Option<imsgw_media::Media>,
    media_events: Option<mpsc::UnboundedReceiver<imsgw_media::Event>>,
    /// Asks the WAF for tokens on the edge's behalf (`waf::edge_grant`).
    grant_asks: mpsc::Sender<(u64, GrantAsk)>,
    /// Revocations of grants the edge let go, waiting for room in `grant_asks`: never dropped
    /// for a full queue (a grant nobody holds must not stay live), up to [`REVOKE_BACKLOG`].
    revoke_backlog: std::collections::VecDeque<(u64, GrantAsk)>,
    /// Whether the WAF's revocation channel may still deliver.
    revocations_open: bool,
    /// Hands new tokens' signature checks to the verifying threads (`sip.verify_threads`).
    verify_jobs: Option<VerifyJobs>,
}

/// A token check for a verifying thread: the job and the token it is for.
type VerifyJob = (Box<imsgw_token::Job>, imsgw_token::AccessToken);

/// The queue to the verifying threads.
pub type VerifyJobs = std::sync::mpsc::SyncSender<VerifyJob>;

/// Token checks waiting for a verifying thread at most; beyond, the edge checks inline.
const VERIFY_QUEUE: usize = 1024;

/// Starts `n` threads that check tokens' signatures ([`Output::VerifyToken`]) and hand the
/// verdicts to the hub; None for 0 (the edge checks them itself). The threads end when the hub
/// drops the queue; they hold the hub's input only weakly, as the hub runs until every sender
/// of its inputs is gone.
pub fn verify_threads(
    n: usize,
    hub: mpsc::Sender<HubInput>,
) -> std::io::Result<Option<VerifyJobs>> {
    if n == 0 {
        return Ok(None);
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<VerifyJob>(VERIFY_QUEUE);
    let rx = Arc::new(std::sync::Mutex::new(rx));
    let hub = hub.downgrade();
    for i in 0..n {
        let (rx, hub) = (rx.clone(), hub.clone());
        std::thread::Builder::new()
            .name(format!("imsgw-verify-{i}"))
            .spawn(move || {
                loop {
                    let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((job, token)) = next else { return };
                    let verdict = job.run(crate::waf::unix_now(), token.expose());
                    let Some(hub) = hub.upgrade() else { return };
                    if hub
                        .blocking_send(HubInput::TokenVerdict(Box::new(verdict)))
                        .is_err()
                    {
                        return;
                    }
                }
            })?;
    }
    Ok(Some(tx))
}

/// Revocations kept while the WAF's queue is full.
const REVOKE_BACKLOG: usize = 65_536;

/// The next media event, or never when there is no media engine.
async fn next_media_event(
    rx: &mut Option<mpsc::UnboundedReceiver<imsgw_media::Event>>,
) -> Option<imsgw_media::Event> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Hub {
    // Each argument is one channel or socket the hub owns; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        edge: Edge,
        rx: mpsc::Receiver<HubInput>,
        udp: Arc<UdpSocket>,
        upstream: UpstreamSender,
        metrics: Arc<Metrics>,
        jwks_asks: mpsc::Sender<String>,
        revocations: mpsc::UnboundedReceiver<(String, u64)>,
        media: Option<(
            imsgw_media::Media,
            mpsc::UnboundedReceiver<imsgw_media::Event>,
        )>,
        grant_asks: mpsc::Sender<(u64, GrantAsk)>,
        verify_jobs: Option<VerifyJobs>,
    ) -> Self {
        let (media, media_events) = match media {
            Some((m, rx)) => (Some(m), Some(rx)),
            None => (None, None),
        };
        Self {
            edge,
            rx,
            udp,
            upstream,
            flows: HashMap::new(),
            conns: HashMap::new(),
            metrics,
            jwks_asks,
            revocations,
            media,
            media_events,
            grant_asks,
            revoke_backlog: std::collections::VecDeque::new(),
            revocations_open: true,
            verify_jobs,
        }
    }

    /// Runs until every sender of inputs is gone.
    pub async fn run(mut self) {
        loop {
            let deadline = self.edge.poll_timeout();
            // Far enough to mean "no timer" without a second select.
            let at = deadline.map_or_else(
                || Instant::now() + std::time::Duration::from_secs(3600),
                Instant::from_std,
            );
            let input = tokio::select! {
                i = self.rx.recv() => i,
                ev = next_media_event(&mut self.media_events) => {
                    let Some(ev) = ev else {
                        // The engine's thread ended: nothing more will come.
                        self.media_events = None;
                        self.edge.media_gone(Instant::now().into_std());
                        self.drain();
                        continue;
                    };
                    self.edge.set_wall_clock(crate::waf::unix_now());
                    self.take_revocations(Instant::now().into_std());
                    self.edge.media_event(Instant::now().into_std(), ev);
                    // The engine answers in bursts under load: take what else it said.
                    for _ in 0..64 {
                        match self.media_events.as_mut().map(|rx| rx.try_recv()) {
                            Some(Ok(ev)) => self.edge.media_event(Instant::now().into_std(), ev),
                            _ => break,
                        }
                    }
                    self.drain();
                    continue;
                }
                r = self.revocations.recv(), if self.revocations_open => {
                    // A revocation acts at once, even on an idle hub: a held grant it ends
                    // un-registers its phone now, not at the next SIP message.
                    match r {
                        Some((jti, exp)) => {
                            self.edge.set_wall_clock(crate::waf::unix_now());
                            let now = Instant::now().into_std();
                            self.edge.revoke(now, jti, exp);
                            self.take_revocations(now);
                            self.drain();
                        }
                        // The WAF is gone: nothing more will come.
                        None => self.revocations_open = false,
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(at) => {
                    self.edge.set_wall_clock(crate::waf::unix_now());
                    // Parked requests are decided again on a timer.
                    self.take_revocations(Instant::now().into_std());
                    self.edge.handle_timeout(Instant::now().into_std());
                    self.drain();
                    continue;
                }
            };
            let Some(input) = input else {
                break;
            };
            self.handle(input);
            // Take whatever else is queued before draining, to batch work under load.
            for _ in 0..64 {
                match self.rx.try_recv() {
                    Ok(i) => self.handle(i),
                    Err(_) => break,
                }
            }
            // Timers that fell due while the batch was handled.
            self.edge.handle_timeout(Instant::now().into_std());
            self.drain();
        }
    }

    fn handle(&mut self, input: HubInput) {
        let now = Instant::now().into_std();
        self.edge.set_wall_clock(crate::waf::unix_now());
        self.take_revocations(now);
        match input {
            HubInput::FlowOpened {
                flow,
                remote,
                kind,
                tx,
            } => {
                self.flows.insert(flow, tx);
                self.edge.flow_opened_at(Some(now), flow, remote, kind);
            }
            HubInput::FlowMessage { flow, bytes } => self.edge.from_flow(now, flow, bytes),
            HubInput::FlowClosed { flow } => {
                self.flows.remove(&flow);
                crate::edge::shrink_sparse(&mut self.flows);
                self.edge.flow_closed(now, flow);
            }
            HubInput::Ims {
                link,
                source,
                bytes,
            } => self.edge.from_ims(now, link, source, bytes),
            HubInput::ConnOpened { id, tx } => {
                self.conns.insert(id, tx);
            }
            HubInput::ConnClosed { id } => {
                self.conns.remove(&id);
            }
            HubInput::SendFailed { txn } => self.edge.send_failed(now, txn),
            HubInput::UpstreamFailed => self.edge.upstream_failed(now),
            HubInput::OurKeys(ring) => self.edge.set_our_keys(&ring),
            HubInput::ExternalJwks { issuer, jwks } => {
                self.edge.set_external_jwks(now, &issuer, &jwks)
            }
            HubInput::Granted { ticket, result } => self.edge.granted(now, ticket, result),
            HubInput::TokenVerdict(verdict) => self.edge.token_verdict(now, *verdict),
        }
    }

    /// Hands the edge every revocation the WAF made so far.
    fn take_revocations(&mut self, now: std::time::Instant) {
        while let Ok((jti, exp)) = self.revocations.try_recv() {
            self.edge.revoke(now, jti, exp);
        }
    }

    /// Hands waiting revocations to the WAF while its queue has room.
    fn flush_revokes(&mut self) {
        while let Some(front) = self.revoke_backlog.pop_front() {
            match self.grant_asks.try_send(front) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(back)) => {
                    self.revoke_backlog.push_front(back);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.revoke_backlog.clear();
                    return;
                }
            }
        }
    }

    fn drain(&mut self) {
        self.flush_revokes();
        // Sending can fail synchronously and feed the edge again; loop until quiet.
        while let Some(out) = self.edge.poll_output() {
            match out {
                Output::Send { to, bytes, txn } => {
                    if !self.send(to, bytes, txn)
                        && let Some(txn) = txn
                    {
                        let now = Instant::now().into_std();
                        self.edge.send_failed(now, txn);
                    }
                }
                Output::FetchJwks { issuer } => {
                    let _ = self.jwks_asks.try_send(issuer);
                }
                Output::VerifyToken { job, token } => {
                    let hash = job.token_hash();
                    let queued = match &self.verify_jobs {
                        Some(q) => q.try_send((job, token)).is_ok(),
                        None => false,
                    };
                    if !queued {
                        debug!("token check queue full or gone; checking on the edge's task");
                        self.edge
                            .verify_unavailable(Instant::now().into_std(), hash);
                    }
                }
                Output::Media(cmd) => {
                    if let Some(m) = &self.media {
                        m.send(cmd);
                    }
                }
                Output::FlowRegistered { flow } => self.control(flow, FlowCommand::Registered),
                Output::FlowUnregistered { flow } => self.control(flow, FlowCommand::Unregistered),
                Output::CloseFlow { flow, code, reason } => {
                    self.control(flow, FlowCommand::Close { code, reason })
                }
                Output::Grant {
                    ticket,
                    ask: ask @ GrantAsk::Revoke { .. },
                } => {
                    if self.revoke_backlog.len() >= REVOKE_BACKLOG {
                        warn!("revocations of released grants are backed up; one is dropped");
                        self.metrics.grant_revoke_dropped();
                    } else {
                        self.revoke_backlog.push_back((ticket, ask));
                    }
                    self.flush_revokes();
                }
                Output::Grant { ticket, ask } => {
                    if let Err(e) = self.grant_asks.try_send((ticket, ask)) {
                        debug!(error = %e, "the WAF's queue for the edge is full");
                        let now = Instant::now().into_std();
                        let why = "the authorization server is busy".to_string();
                        self.edge
                            .granted(now, ticket, Err(GrantError::Unavailable(why)));
                    }
                }
            }
        }
        self.metrics.set_edge(crate::metrics::EdgeFigures {
            stats: self.edge.stats(),
            flows: self.edge.flow_count(),
            txns: self.edge.txn_count(),
            grants: self.edge.grant_stats(),
            held_grants: self.edge.held_grant_count(),
            media: self
                .media
                .is_some()
                .then(|| (self.edge.media_stats(), self.edge.media_call_count())),
        });
    }

    /// Tells a connection's task `cmd`. Unlike a message for the client, it is never refused
    /// for room when the queue is full of messages for a slow reader (see [`queue`]): a lost
    /// Close would leave that connection open past its register timeout or revocation for
    /// ever, a lost Registered would count it against its address's unregistered share for
    /// ever.
    fn control(&self, flow: FlowId, cmd: FlowCommand) {
        if let Some(tx) = self.flows.get(&flow) {
            let _ = tx.try_send(cmd);
        }
    }

    /// Hands bytes to the right writer; false if that is impossible right now.
    fn send(&mut self, to: Dest, bytes: Bytes, txn: Option<TxnId>) -> bool {
        match to {
            Dest::Flow(flow) => match self.flows.get(&flow) {
                Some(tx) => match tx.try_send(FlowCommand::Send(bytes)) {
                    Ok(()) => true,
                    Err(e) => {
                        debug!(%flow, error = %e, "WebSocket writer full or gone");
                        false
                    }
                },
                None => false,
            },
            Dest::Upstream => match &self.upstream {
                UpstreamSender::Udp { socket, addr } => udp_send(socket, *addr, &bytes),
                UpstreamSender::Stream(tx) => {
                    // The connection manager reports failures itself, with the txn; here only
                    // a full queue counts.
                    tx.try_send((bytes, txn)).is_ok()
                }
            },
            Dest::Link(Link::Udp(addr)) => udp_send(&self.udp, addr, &bytes),
            Dest::Link(Link::Conn(id)) => match self.conns.get(&id) {
                Some(tx) => tx.try_send(bytes).is_ok(),
                None => false,
            },
        }
    }
}

fn udp_send(socket: &UdpSocket, addr: SocketAddr, bytes: &[u8]) -> bool {
    match socket.try_send_to(bytes, addr) {
        Ok(_) => true,
        Err(e) => {
            warn!(%addr, error = %e, "UDP send failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::UpstreamTransport;
    use crate::edge::auth::Auth;
    use crate::edge::flow::FlowKey;
    use crate::edge::local::Local;
    use crate::edge::{EdgeSettings, StripList};

    /// A hub over an edge whose WebSockets must register within 1 s, with a UDP upstream
    /// nobody reads; the returned guards keep its other inputs open.
    async fn hub() -> (mpsc::Sender<HubInput>, impl Sized) {
        let settings = EdgeSettings {
            local: Local {
                listen: "127.0.0.1:5062".parse().expect("addr"),
                tls_listen: None,
                transport: UpstreamTransport::Udp,
                ws_host: "gw.invalid".into(),
                clients: Vec::new(),
                phone_advertise: None,
            },
            t1: Duration::from_millis(500),
            strip: StripList::default(),
            media: None,
            register_timeout: Some(Duration::from_secs(1)),
        };
        let edge = Edge::new(settings, FlowKey::random(), Auth::disabled());
        let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("udp"));
        let upstream = UpstreamSender::Udp {
            socket: udp.clone(),
            addr: "127.0.0.1:9".parse().expect("addr"),
        };
        let (tx, rx) = mpsc::channel(64);
        let (jwks_tx, jwks_rx) = mpsc::channel(4);
        let (revoke_tx, revoke_rx) = mpsc::unbounded_channel();
        let (grant_tx, grant_rx) = mpsc::channel(4);
        let hub = Hub::new(
            edge,
            rx,
            udp,
            upstream,
            Arc::new(Metrics::install()),
            jwks_tx,
            revoke_rx,
            None,
            grant_tx,
            None,
        );
        tokio::spawn(hub.run());
        (tx, (jwks_rx, revoke_tx, grant_rx))
    }

    #[tokio::test(start_paused = true)]
    async fn review11_a_close_for_a_connection_whose_queue_is_full_is_not_lost() {
        // The register timeout's Close finds the connection's queue full (a slow reader asked
        // for more than it took). Dropping it would leave an unregistered connection open for
        // ever; it must arrive once the connection takes what is queued.
        let (hub, _guards) = hub().await;
        let flow = FlowId::next();
        let (tx, mut rx) = flow_queue(1);
        hub.send(HubInput::FlowOpened {
            flow,
            remote: "192.0.2.7:5000".parse().expect("addr"),
            kind: FlowKind::Ws,
            tx: tx.clone(),
        })
        .await
        .expect("hub");
        tx.try_send(FlowCommand::Send(Bytes::from_static(b"queued")))
            .expect("fill the queue");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(matches!(rx.recv().await, Some(FlowCommand::Send(_))));
        let next = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
        assert!(
            matches!(next, Ok(Some(FlowCommand::Close { code: 1008, .. }))),
            "{next:?}"
        );
    }
}
