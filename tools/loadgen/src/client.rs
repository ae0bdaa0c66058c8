//! One load client: owns one WebSocket, REGISTERs when the run enters the register phase (and
//! again in the re-register phase, with --reregister), then idles like a browser tab (answering
//! requests; tungstenite answers Pings) until told to close.
//! This is the only file where bytes hit a socket; the SIP it speaks comes from `sip`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::cli::SourceIps;
use crate::sip::{self, Bearer, Identity, Incoming, RegisterTemplate};

/// What every client of a run shares; read-only apart from the semaphores and counters.
pub struct Shared {
    pub url: String,
    pub addr: SocketAddr,
    pub source_ips: Option<SourceIps>,
    pub template: RegisterTemplate,
    pub user_prefix: String,
    pub expires: u32,
    pub request_timeout: Duration,
    pub unregister: bool,
    /// Re-REGISTERs per client in the re-register phase (`--reregister`).
    pub reregister: u32,
    /// With --refresh: how long after a REGISTER its refresh is sent.
    pub refresh: Option<Duration>,
    /// Client `i`'s token is `bearers[i]`; empty when tokens are off.
    pub bearers: Vec<Bearer>,
    /// Bounds WebSocket handshakes in flight.
    pub connect_slots: Semaphore,
    /// Bounds REGISTER transactions in flight (`--concurrency`).
    pub register_slots: Semaphore,
    /// Requests from the network answered with 200 (OPTIONS keep-alives and the like).
    pub requests_answered: AtomicU64,
}

/// Where the run is; clients move forward when it changes. Ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Connect,
    Register,
    /// `--reregister`: more REGISTERs on the same registration.
    Reregister,
    /// Orderly end: un-register if asked, then close.
    Close,
    /// Time limit reached: close without further SIP.
    Abort,
}

/// How a REGISTER transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Final(u16),
    Timeout,
    /// The connection failed or closed before a final response.
    ConnectionLost,
}

/// Which REGISTER of a client a transaction was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// The first one, in the register phase.
    First,
    /// A re-REGISTER of the re-register phase.
    Again,
    /// A refresh while holding (--refresh).
    Refresh,
}

/// How far a client had got when its socket closed while idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before its REGISTER was sent.
    Unregistered,
    /// After its REGISTER, before it finished re-registering.
    Registered,
    /// After it finished re-registering.
    Reregistered,
}

/// What a client reports to the run.
#[derive(Debug)]
pub enum Event {
    Connected,
    ConnectFailed(String),
    Registered {
        round: Round,
        outcome: Outcome,
        sent_at: Instant,
        done_at: Instant,
    },
    /// Done with the re-register phase: all its re-REGISTERs answered, or none to send because
    /// its first REGISTER did not get 200. Not sent when the connection was lost in it.
    ReregisterFinished,
    /// The socket closed while idle.
    Dropped(Stage),
    Unregistered(Outcome),
}

/// Small buffers so ten thousand idle clients stay cheap: SIP messages are a few KiB at most and
/// tungstenite grows the read buffer for larger frames.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

/// Runs client `idx` to completion, reporting through `events`.
pub async fn run(
    shared: Arc<Shared>,
    idx: usize,
    mut phase: watch::Receiver<Phase>,
    events: mpsc::UnboundedSender<Event>,
) {
    let connected = {
        let _slot = shared.connect_slots.acquire().await;
        let src = shared.source_ips.as_ref().map(|ips| ips.for_client(idx));
        timeout(
            shared.request_timeout,
            connect(&shared.url, shared.addr, src),
        )
        .await
    };
    let ws = match connected {
        Ok(Ok(ws)) => ws,
        Ok(Err(reason)) => {
            let _ = events.send(Event::ConnectFailed(reason));
            return;
        }
        Err(_) => {
            let _ = events.send(Event::ConnectFailed("handshake timeout".into()));
            return;
        }
    };
    let _ = events.send(Event::Connected);
    let mut c = Client::new(shared, idx, ws);

    match c.idle_until(&mut phase, Phase::Register, &events).await {
        Err(Lost) => {
            let _ = events.send(Event::Dropped(Stage::Unregistered));
            return;
        }
        Ok(Phase::Register) => {}
        Ok(_) => return c.close().await,
    }
    let outcome = c.register(Round::First, c.shared.expires, &events).await;
    if outcome == Outcome::ConnectionLost {
        return;
    }

    let mut stage = Stage::Registered;
    if c.shared.reregister > 0 {
        match c.idle_until(&mut phase, Phase::Reregister, &events).await {
            Err(Lost) => {
                let _ = events.send(Event::Dropped(stage));
                return;
            }
            Ok(Phase::Reregister) => {
                // Only a registration that exists is refreshed; the others just report in.
                if outcome == Outcome::Final(200) {
                    for _ in 0..c.shared.reregister {
                        let o = c.register(Round::Again, c.shared.expires, &events).await;
                        if o == Outcome::ConnectionLost {
                            return;
                        }
                    }
                }
                let _ = events.send(Event::ReregisterFinished);
                stage = Stage::Reregistered;
            }
            Ok(_) => {}
        }
    }

    match c.idle_until(&mut phase, Phase::Close, &events).await {
        Err(Lost) => {
            let _ = events.send(Event::Dropped(stage));
            return;
        }
        Ok(Phase::Close) if c.shared.unregister && outcome == Outcome::Final(200) => {
            // Bounded like the REGISTERs: ten thousand at once would only measure a queue.
            let shared = c.shared.clone();
            let _slot = shared.register_slots.acquire().await;
            let o = c.transact(0).await;
            let _ = events.send(Event::Unregistered(o));
        }
        Ok(_) => {}
    }
    c.close().await;
}

/// TCP connect to `addr` (from source address `src`, when given and `addr` is IPv4) and RFC 7118
/// §4 handshake for `url` with subprotocol `sip`. Also used by the media benchmark's browsers.
pub async fn connect(
    url: &str,
    addr: SocketAddr,
    src: Option<std::net::Ipv4Addr>,
) -> Result<WebSocketStream<TcpStream>, String> {
    let sock = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let (Some(ip), SocketAddr::V4(_)) = (src, addr) {
        let src = SocketAddr::new(ip.into(), 0);
        sock.bind(src).map_err(|e| format!("bind {src}: {e}"))?;
    }
    let stream = sock
        .connect(addr)
        .await
        .map_err(|e| format!("tcp connect: {e}"))?;
    // SIP messages are single small writes; do not let Nagle delay them.
    let _ = stream.set_nodelay(true);

    let mut req = url
        .into_client_request()
        .map_err(|e| format!("request: {e}"))?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
    let (ws, resp) = client_async_with_config(req, stream, Some(ws_config()))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // RFC 7118 §4: the client must not use the connection unless the server chose `sip`.
    match resp.headers().get("Sec-WebSocket-Protocol") {
        Some(p) if p.as_bytes().eq_ignore_ascii_case(b"sip") => Ok(ws),
        _ => Err("handshake: server did not select subprotocol sip".into()),
    }
}

/// The connection is gone.
struct Lost;

struct Client {
    shared: Arc<Shared>,
    id: Identity,
    /// To-tag for the 200s this client sends to incoming requests.
    to_tag: String,
    /// Sent on every REGISTER of this client, the un-REGISTER included.
    auth: Option<Bearer>,
    /// CSeq of the last REGISTER sent (RFC 3261 §10.2: +1 per REGISTER on one Call-ID).
    cseq: u32,
    ws: WebSocketStream<TcpStream>,
    /// With --refresh: when the registration is next refreshed (None: not registered).
    refresh_at: Option<Instant>,
    /// This client's index in the run.
    idx: usize,
}

impl Client {
    /// Client `idx` of the run on its connected socket, with its own identity and token.
    fn new(shared: Arc<Shared>, idx: usize, ws: WebSocketStream<TcpStream>) -> Self {
        Self {
            id: Identity::random(format!("{}{idx}", shared.user_prefix)),
            to_tag: sip::new_branch(),
            auth: shared.bearers.get(idx).cloned(),
            cseq: 0,
            shared,
            ws,
            refresh_at: None,
            idx,
        }
    }

    /// Serves the socket until the run reaches `target` (or later); returns the phase reached.
    /// With --refresh and a registration, refreshes it on time meanwhile.
    async fn idle_until(
        &mut self,
        phase: &mut watch::Receiver<Phase>,
        target: Phase,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Result<Phase, Lost> {
        loop {
            let refresh_at = self.refresh_at;
            tokio::select! {
                reached = async { phase.wait_for(|p| *p >= target).await.map(|p| *p) } => {
                    // The run dropped its sender: treat as the time limit.
                    return Ok(reached.unwrap_or(Phase::Abort));
                }
                () = async { tokio::time::sleep_until(refresh_at.expect("guarded")).await }, if refresh_at.is_some() => {
                    if self.register(Round::Refresh, self.shared.expires, events).await == Outcome::ConnectionLost {
                        return Err(Lost);
                    }
                }
                msg = self.ws.next() => match msg {
                    Some(Ok(m)) => {
                        if let Some(text) = sip_text(&m) {
                            self.on_message(&text, None).await?;
                        }
                    }
                    Some(Err(_)) | None => return Err(Lost),
                },
            }
        }
    }

    /// One REGISTER transaction inside the `--concurrency` bound, reported as `round`.
    async fn register(
        &mut self,
        round: Round,
        expires: u32,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Outcome {
        let shared = self.shared.clone();
        let _slot = shared.register_slots.acquire().await;
        let sent_at = Instant::now();
        let outcome = self.transact(expires).await;
        self.refresh_at = match (&outcome, self.shared.refresh) {
            // The first refresh comes somewhere in the second half of the interval, spread
            // over the clients (golden-ratio steps of their index): people do not all sign in
            // in the same four seconds, and a ramp's burst repeated at every expiry would
            // measure the burst, not the steady state.
            (Outcome::Final(200), Some(after)) if expires > 0 && round == Round::First => {
                let spread = (self.idx as f64 * 0.618_033_988_7).fract();
                Some(sent_at + after.mul_f64(0.5 + 0.5 * spread))
            }
            (Outcome::Final(200), Some(after)) if expires > 0 => Some(sent_at + after),
            _ => None,
        };
        let _ = events.send(Event::Registered {
            round,
            outcome: outcome.clone(),
            sent_at,
            done_at: Instant::now(),
        });
        outcome
    }

    /// Sends the next REGISTER with `expires` and waits for its final response.
    async fn transact(&mut self, expires: u32) -> Outcome {
        self.cseq += 1;
        let cseq = self.cseq;
        let reg = self.shared.template.build(
            &self.id,
            cseq,
            expires,
            &sip::new_branch(),
            self.auth.as_ref(),
        );
        if self.ws.send(Message::text(reg)).await.is_err() {
            return Outcome::ConnectionLost;
        }
        let deadline = Instant::now() + self.shared.request_timeout;
        loop {
            let msg = match timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Outcome::Timeout,
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(_)) | None) => return Outcome::ConnectionLost,
            };
            let Some(text) = sip_text(&msg) else { continue };
            match self.on_message(&text, Some(cseq)).await {
                Ok(Some(code)) => return Outcome::Final(code),
                Ok(None) => {}
                Err(Lost) => return Outcome::ConnectionLost,
            }
        }
    }

    /// Handles one SIP message. Returns the final status code when it is the final response to
    /// our REGISTER `waiting_cseq`.
    async fn on_message(
        &mut self,
        text: &str,
        waiting_cseq: Option<u32>,
    ) -> Result<Option<u16>, Lost> {
        match sip::classify(text) {
            Ok(Incoming::Response {
                code,
                call_id,
                cseq,
            }) => {
                let ours = call_id == Some(self.id.call_id.as_str()) && cseq == waiting_cseq;
                // 1xx are provisional (RFC 3261 §17.1.2); stale or foreign responses are dropped.
                Ok((ours && code >= 200).then_some(code))
            }
            Ok(Incoming::Request { .. }) => {
                if let Some(resp) = sip::ok_response(text, &self.to_tag) {
                    self.ws.send(Message::text(resp)).await.map_err(|_| Lost)?;
                    self.shared
                        .requests_answered
                        .fetch_add(1, Ordering::Relaxed);
                }
                Ok(None)
            }
            Err(sip::Malformed) => Ok(None),
        }
    }

    /// Sends a Close frame and waits briefly for the server's; the socket drops either way.
    async fn close(mut self) {
        let _ = timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

/// The SIP text carried by a data frame (RFC 7118 §5.1 allows text or binary frames).
fn sip_text(m: &Message) -> Option<std::borrow::Cow<'_, str>> {
    match m {
        Message::Text(t) => Some(std::borrow::Cow::Borrowed(t.as_str())),
        Message::Binary(b) => Some(String::from_utf8_lossy(bytes_ref(b))),
        _ => None,
    }
}

fn bytes_ref(b: &Bytes) -> &[u8] {
    b.as_ref()
}

/// How one whole client life went (`imsgw-loadgen life`).
#[derive(Debug)]
pub struct Life {
    /// TCP connect and WebSocket handshake, µs; the error when it failed.
    pub connect: Result<u64, String>,
    /// The REGISTER's outcome and µs from sending it to its final response.
    pub register: Option<(Outcome, u64)>,
    /// The un-REGISTER's, sent only after a 200.
    pub unregister: Option<(Outcome, u64)>,
    /// From the start of the connect to the socket closed, µs.
    pub total_us: u64,
}

/// One whole client life for the open-loop mode: connect, REGISTER, un-REGISTER after a 200,
/// close. No semaphores: an open loop offers its load whatever the server does with it.
pub async fn life(shared: Arc<Shared>, idx: usize) -> Life {
    let start = Instant::now();
    let us = |since: Instant| u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
    let src = shared.source_ips.as_ref().map(|ips| ips.for_client(idx));
    let ws = match timeout(
        shared.request_timeout,
        connect(&shared.url, shared.addr, src),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            return Life {
                connect: Err(e),
                register: None,
                unregister: None,
                total_us: us(start),
            };
        }
        Err(_) => {
            return Life {
                connect: Err("handshake timeout".into()),
                register: None,
                unregister: None,
                total_us: us(start),
            };
        }
    };
    let connect_us = us(start);
    let mut c = Client::new(shared, idx, ws);
    let sent = Instant::now();
    let outcome = c.transact(c.shared.expires).await;
    let register = Some((outcome.clone(), us(sent)));
    let mut unregister = None;
    if outcome == Outcome::Final(200) {
        let sent = Instant::now();
        let o = c.transact(0).await;
        unregister = Some((o, us(sent)));
    }
    if outcome != Outcome::ConnectionLost {
        c.close().await;
    }
    Life {
        connect: Ok(connect_us),
        register,
        unregister,
        total_us: us(start),
    }
}
