//! SIP over WebSocket (RFC 7118): the `GET /sip` upgrade and one task per connection that
//! carries whole SIP messages between the socket and the hub.
//!
//! Owns: the WebSocket handshake rules, message size limits, Ping keep-alives, close codes.
//! Must not touch: SIP routing (the hub and edge decide).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use std::io::{self, IoSlice};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::admission::{Admission, Place, Refusal};
use super::client_addr::ClientAddr;
use super::rfc6455::{self, Event, Inbound};
use crate::config::WebSocketConfig;
use crate::edge::{FlowId, FlowKind};
use crate::hub::{FlowCommand, HubInput, flow_queue};
use crate::metrics::Metrics;

/// Shared by every WebSocket handler.
pub struct WsState {
    pub config: WebSocketConfig,
    pub hub: mpsc::Sender<HubInput>,
    pub admission: Arc<Admission>,
    pub shutdown: CancellationToken,
    pub metrics: Arc<Metrics>,
}

impl WsState {
    pub fn new(
        config: WebSocketConfig,
        hub: mpsc::Sender<HubInput>,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            admission: Arc::new(Admission::new(
                config.max_connections,
                config.max_connections_per_address,
                config.max_unregistered_per_address,
            )),
            config,
            hub,
            shutdown,
            metrics,
        }
    }
}

/// `GET /sip`: the opening handshake (RFC 6455 §4.2), then the connection is ours.
pub async fn upgrade(
    State(state): State<Arc<WsState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    ClientAddr(client): ClientAddr,
    mut req: Request,
) -> Response {
    let headers = req.headers();
    if let Err((status, why)) = handshake_request(req.method(), req.version(), headers) {
        state.metrics.ws_rejected("not_websocket");
        let mut res = (
            status,
            format!("{why}: SIP over WebSocket (RFC 7118) needs a WebSocket upgrade\n"),
        )
            .into_response();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
        }
        if status == StatusCode::UPGRADE_REQUIRED {
            // §4.2.2: the versions the server speaks.
            res.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        return res;
    }
    let Some(protocol) = offered_sip(headers) else {
        // RFC 7118 §4.1: the client MUST offer the `sip` subprotocol.
        state.metrics.ws_rejected("no_sip_subprotocol");
        return (
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol `sip` is required (RFC 7118 §4.1): send Sec-WebSocket-Protocol: sip\n",
        )
            .into_response();
    };
    let accept = rfc6455::accept_key(
        headers
            .get(header::SEC_WEBSOCKET_KEY)
            .map_or(&b""[..], |k| k.as_bytes()),
    );
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        state.metrics.ws_rejected("not_websocket");
        return (
            StatusCode::UPGRADE_REQUIRED,
            "this connection cannot be upgraded\n",
        )
            .into_response();
    };
    // The place is taken before the 101, so a burst cannot overshoot the caps; a handshake
    // that fails after this gives it back when the task is dropped.
    let place = match state.admission.admit(client) {
        Ok(p) => p,
        Err(why) => {
            state.metrics.ws_rejected(why.metric());
            return refused(why);
        }
    };
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                debug!(%remote, error = %e, "WebSocket upgrade did not complete");
                return;
            }
        };
        match super::http::upgraded_tcp(upgraded) {
            Ok((stream, read_ahead)) => serve(state, stream, read_ahead, remote, place).await,
            Err(_) => warn!(%remote, "upgraded connection is not one of http.listen's; closed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(axum::body::Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// What RFC 6455 §4.2.1 asks of an opening handshake, checked; the refusal otherwise.
fn handshake_request(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, &'static str)> {
    let has_token = |name: header::HeaderName, token: &str| {
        list_tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
    };
    // §4.2.1 (1): a GET. The router also hands this handler HEAD requests.
    if method != Method::GET {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "the upgrade needs GET"));
    }
    if version != Version::HTTP_11 {
        return Err((StatusCode::BAD_REQUEST, "the upgrade needs HTTP/1.1"));
    }
    if !has_token(header::CONNECTION, "upgrade") {
        return Err((
            StatusCode::BAD_REQUEST,
            "Connection header did not include 'upgrade'",
        ));
    }
    if !has_token(header::UPGRADE, "websocket") {
        return Err((
            StatusCode::BAD_REQUEST,
            "Upgrade header did not include 'websocket'",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            "Sec-WebSocket-Version must be 13",
        ));
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(k) if rfc6455::valid_key(k.as_bytes()) => Ok(()),
        _ => Err((
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key must be base64 of 16 bytes",
        )),
    }
}

/// 503 when the gateway is full (RFC 9110 §15.6.4), 429 when one address has its share
/// (RFC 6585 §4); both say when to come back.
fn refused(why: Refusal) -> Response {
    let (status, after, text) = match why {
        Refusal::Total => (
            StatusCode::SERVICE_UNAVAILABLE,
            "5",
            "too many WebSocket connections\n",
        ),
        Refusal::AddressOpen => (
            StatusCode::TOO_MANY_REQUESTS,
            "30",
            "too many WebSocket connections from your address (websocket.max_connections_per_address)\n",
        ),
        Refusal::AddressUnregistered => (
            StatusCode::TOO_MANY_REQUESTS,
            "5",
            "too many unregistered WebSocket connections from your address (websocket.max_unregistered_per_address)\n",
        ),
    };
    (status, [(header::RETRY_AFTER, after)], text).into_response()
}

/// The client's offer of the `sip` subprotocol, spelled as the client spelled it: the answer
/// names it the same way, as a client checks the server chose one it offered (RFC 6455 §4.1).
fn offered_sip(headers: &HeaderMap) -> Option<HeaderValue> {
    list_tokens(headers, header::SEC_WEBSOCKET_PROTOCOL)
        .find(|p| p.eq_ignore_ascii_case("sip"))
        .and_then(|p| HeaderValue::from_str(p).ok())
}

/// The elements of a comma-separated header list (RFC 9110 §5.6.1), over every line of
/// `name`, trimmed.
fn list_tokens(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// What woke a connection's task.
enum Step {
    /// The socket had bytes: the events they completed, then how reading ended if it did.
    Read(Vec<Event>, Option<ReadEnd>),
    Command(Option<FlowCommand>),
    Ping,
    Shutdown,
}

/// How reading a connection ended.
enum ReadEnd {
    /// A burst's worth was read and more is waiting.
    More,
    /// The client closed or reset the connection.
    Gone,
    /// The client broke RFC 6455: fail it with this Close.
    Violated(rfc6455::Violation),
}

/// Reads from the socket per wake-up at most, before the other work gets a turn.
const READ_BURST: usize = 16;

/// Events that end a read burst early: a frame can be as short as 6 bytes and its event is
/// 40, so a burst of tiny frames (a Ping or Pong flood) would otherwise hold ~440 KiB of them.
const BURST_EVENTS: usize = 64;

/// One connection's life: register the flow, shuttle messages, end the flow.
async fn serve(
    state: Arc<WsState>,
    stream: TcpStream,
    read_ahead: Bytes,
    remote: SocketAddr,
    mut place: Place,
) {
    let flow = FlowId::next();
    let (tx, mut rx) = flow_queue(32);
    let opened = HubInput::FlowOpened {
        flow,
        remote,
        kind: FlowKind::Ws,
        tx,
    };
    if to_hub(&state.hub, opened).await.is_err() {
        return;
    }
    debug!(%flow, %remote, "WebSocket flow opened");
    let ping_every = Duration::from_secs(state.config.ping_interval_secs);
    let mut ping = tokio::time::interval(if ping_every.is_zero() {
        Duration::from_secs(3600 * 24 * 365)
    } else {
        ping_every
    });
    ping.reset();
    // A client that takes none of our bytes for a Ping interval is as gone as one that does
    // not answer a Ping; without this bound a client that stops reading parks this task in a
    // write for ever, where neither the Ping, the register timeout nor a revocation reaches it,
    // and its place (websocket.max_connections, its address's share) is never given back.
    let send_within = if ping_every.is_zero() {
        Duration::from_secs(30)
    } else {
        ping_every
    };
    let mut inbound = Inbound::new(state.config.max_message_size);
    let mut awaiting_pong = false;
    let mut budget = RateLimit::new(state.config.max_messages_per_sec);
    // Bytes the client sent right behind its upgrade request.
    let mut first = Some(read_ahead).filter(|b| !b.is_empty());
    let mut read_first = false;
    let shutdown = state.shutdown.clone();
    let shutdown = shutdown.cancelled();
    tokio::pin!(shutdown);
    let close = 'conn: loop {
        let step = if let Some(bytes) = first.take() {
            let mut events = Vec::new();
            let end = inbound
                .feed(&bytes, &mut events)
                .err()
                .map(ReadEnd::Violated);
            Step::Read(events, end)
        } else {
            // Polled by hand rather than with `select!` over futures: the socket's readiness
            // and the queue keep their wakers where they live, and this task (every idle
            // connection's memory) is not sized for four futures at once.
            //
            // The socket and the queue take turns at going first: a client that keeps the
            // socket readable (a stream of Pongs is not rate limited) must not keep the task
            // deaf to the hub (a register timeout's or a revocation's Close), and a busy queue
            // must not keep the client's messages unread. Neither rests on tokio's budget.
            read_first = !read_first;
            std::future::poll_fn(|cx| {
                if !read_first && let Poll::Ready(cmd) = rx.poll_recv(cx) {
                    return Poll::Ready(Step::Command(cmd));
                }
                if let Poll::Ready(ready) = stream.poll_read_ready(cx) {
                    return Poll::Ready(match ready {
                        Ok(()) => read_ready(&stream, &mut inbound),
                        Err(_) => Step::Read(Vec::new(), Some(ReadEnd::Gone)),
                    });
                }
                if read_first && let Poll::Ready(cmd) = rx.poll_recv(cx) {
                    return Poll::Ready(Step::Command(cmd));
                }
                if ping.poll_tick(cx).is_ready() {
                    return Poll::Ready(Step::Ping);
                }
                if shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Step::Shutdown);
                }
                Poll::Pending
            })
            .await
        };
        match step {
            Step::Read(events, end) => {
                // §5.5.3: of the Pings not answered yet, only the latest is; one write per
                // Ping would be a syscall for every 6 bytes a client sends.
                let mut pong = None;
                for event in events {
                    match event {
                        Event::Text(bytes) | Event::Binary(bytes) => {
                            if !budget.take(tokio::time::Instant::now()) {
                                state.metrics.ws_rejected("message_rate");
                                debug!(%flow, "client over websocket.max_messages_per_sec; closing");
                                // RFC 6455 §7.4.1: 1008, policy violation.
                                break 'conn Some((1008, "message rate limit exceeded"));
                            }
                            if to_hub(&state.hub, HubInput::FlowMessage { flow, bytes })
                                .await
                                .is_err()
                            {
                                break 'conn Some((1001, "going away"));
                            }
                        }
                        Event::Ping(payload) => pong = Some(payload),
                        Event::Pong => awaiting_pong = false,
                        // §5.5.1: the Close is answered with the code it came with.
                        Event::Close(code) => {
                            break 'conn Some((code.unwrap_or(1000), ""));
                        }
                    }
                }
                if let Some(payload) = pong {
                    // §5.5.2: a Pong with the Ping's bytes.
                    if let Err(end) =
                        write_frame(&stream, rfc6455::PONG, &payload, send_within).await
                    {
                        break 'conn end.close(&state, flow);
                    }
                }
                match end {
                    None => {}
                    // The client sends faster than a burst: the other tasks (the hub, with the
                    // Close it may have for this connection) and the timers get their turn
                    // before the next one, on any runtime and however slow the machine.
                    Some(ReadEnd::More) => tokio::task::yield_now().await,
                    Some(ReadEnd::Gone) => break None,
                    Some(ReadEnd::Violated(v)) => {
                        debug!(%flow, reason = v.reason, "WebSocket protocol violation");
                        // RFC 6455 §7.1.7: a client that breaks the protocol is failed with
                        // the close frame §7.4.1 names.
                        state.metrics.ws_rejected(v.metric);
                        break Some((v.code, v.reason));
                    }
                }
            }
            Step::Command(cmd) => match cmd {
                Some(FlowCommand::Send(bytes)) => {
                    // RFC 7118 §5.1: SIP messages travel as text frames when they are UTF-8.
                    let opcode = if std::str::from_utf8(&bytes).is_ok() {
                        rfc6455::TEXT
                    } else {
                        rfc6455::BINARY
                    };
                    if let Err(end) = write_frame(&stream, opcode, &bytes, send_within).await {
                        break end.close(&state, flow);
                    }
                }
                Some(FlowCommand::Registered) => place.registered(),
                Some(FlowCommand::Unregistered) => place.unregistered(),
                Some(FlowCommand::Close { code, reason }) => {
                    let why = match (code, reason) {
                        (1008, r) if r.starts_with("no registration") => "register_timeout",
                        (1008, _) => "sign_in_revoked",
                        _ => "protocol_error",
                    };
                    state.metrics.ws_rejected(why);
                    break Some((code, reason));
                }
                None => break Some((1001, "going away")),
            },
            Step::Ping => {
                if awaiting_pong {
                    debug!(%flow, "no Pong since the last Ping; closing");
                    break Some((1001, "keep-alive timeout"));
                }
                awaiting_pong = true;
                if let Err(end) = write_frame(&stream, rfc6455::PING, &[], send_within).await {
                    break end.close(&state, flow);
                }
            }
            Step::Shutdown => break Some((1001, "server shutting down")),
        }
    };
    let _ = to_hub(&state.hub, HubInput::FlowClosed { flow }).await;
    drop(place);
    // Boxed: its futures would otherwise size every connection's task for its whole life.
    Box::pin(close_connection(stream, close)).await;
    debug!(%flow, "WebSocket flow closed");
}

/// Reads what the socket holds (at most [`READ_BURST`] reads) into `inbound`.
fn read_ready(stream: &TcpStream, inbound: &mut Inbound) -> Step {
    // On this task's stack for the read, never kept: an idle connection holds no buffer.
    let mut buf = [0u8; 4096];
    let mut events = Vec::new();
    for _ in 0..READ_BURST {
        match stream.try_read(&mut buf) {
            Ok(0) => return Step::Read(events, Some(ReadEnd::Gone)),
            Ok(n) => {
                if let Err(v) = inbound.feed(&buf[..n], &mut events) {
                    return Step::Read(events, Some(ReadEnd::Violated(v)));
                }
                if n < buf.len() {
                    return Step::Read(events, None);
                }
                if events.len() >= BURST_EVENTS {
                    return Step::Read(events, Some(ReadEnd::More));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Read(events, None),
            Err(_) => return Step::Read(events, Some(ReadEnd::Gone)),
        }
    }
    Step::Read(events, Some(ReadEnd::More))
}

/// Why a write failed.
enum WriteEnd {
    /// The connection is gone.
    Gone,
    /// The client took no bytes for `send_within`.
    Stalled,
}

impl WriteEnd {
    /// The close to end with: none, since a Close could not be written either.
    fn close(self, state: &WsState, flow: FlowId) -> Option<(u16, &'static str)> {
        if let WriteEnd::Stalled = self {
            state.metrics.ws_rejected("send_timeout");
            debug!(%flow, "the client took no bytes for a Ping interval; closing");
        }
        None
    }
}

/// Writes one server frame whole, or fails after `within` without getting to its end.
async fn write_frame(
    stream: &TcpStream,
    opcode: u8,
    payload: &[u8],
    within: Duration,
) -> Result<(), WriteEnd> {
    let (h, n) = rfc6455::frame_header(opcode, payload.len());
    let mut head = &h[..n];
    let mut body = payload;
    if write_some(stream, &mut head, &mut body)? {
        return Ok(());
    }
    // The socket is full: waiting for room is boxed, so that every connection's task is not
    // sized for a timer and a readiness future it rarely needs.
    Box::pin(async {
        let rest = async {
            loop {
                stream.writable().await.map_err(|_| WriteEnd::Gone)?;
                if write_some(stream, &mut head, &mut body)? {
                    return Ok(());
                }
            }
        };
        tokio::time::timeout(within, rest)
            .await
            .unwrap_or(Err(WriteEnd::Stalled))
    })
    .await
}

/// Writes what the socket takes now: true once the frame is all written.
fn write_some(stream: &TcpStream, head: &mut &[u8], body: &mut &[u8]) -> Result<bool, WriteEnd> {
    loop {
        match stream.try_write_vectored(&[IoSlice::new(head), IoSlice::new(body)]) {
            Ok(mut wrote) => {
                let from_head = wrote.min(head.len());
                *head = &head[from_head..];
                wrote -= from_head;
                *body = &body[wrote..];
                if head.is_empty() && body.is_empty() {
                    return Ok(true);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(_) => return Err(WriteEnd::Gone),
        }
    }
}

/// Hands the hub an input; only a full hub queue is waited for, boxed, so that every
/// connection's task is not sized for a send it rarely waits on. Err: the hub is gone.
async fn to_hub(hub: &mpsc::Sender<HubInput>, input: HubInput) -> Result<(), ()> {
    match hub.try_send(input) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(input)) => {
            Box::pin(hub.send(input)).await.map_err(|_| ())
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
    }
}

/// Ends the connection: the Close frame if there is one to send, then (§7.1.1: the server
/// closes the TCP connection first) our FIN, and what the client still sends is read and
/// dropped until its FIN or for a second, so that its unread bytes do not turn the close into
/// a reset that could take our Close frame with it.
async fn close_connection(mut stream: TcpStream, close: Option<(u16, &str)>) {
    if let Some((code, reason)) = close {
        let body = rfc6455::close_body(code, reason);
        if write_frame(&stream, rfc6455::CLOSE, &body, Duration::from_secs(2))
            .await
            .is_err()
        {
            return;
        }
    }
    if stream.shutdown().await.is_err() {
        return;
    }
    // Bounded by the clock checked here and by bytes, and yielding after every read: a client
    // that keeps sending must neither hold this task past the second nor keep the others on
    // its thread from running meanwhile (the timer of a `timeout` is only looked at between
    // the tasks' turns).
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut left = DRAIN_BYTES;
    while left > 0 && tokio::time::Instant::now() < until {
        match tokio::time::timeout_at(until, stream.readable()).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        match drop_some(&stream) {
            Some(n) => left = left.saturating_sub(n),
            None => return,
        }
        tokio::task::yield_now().await;
    }
}

/// What a closing client may still send before the connection is dropped regardless.
const DRAIN_BYTES: usize = 64 * 1024;

/// Reads what the client sent and drops it: how many bytes, None once the connection is at
/// its end.
fn drop_some(stream: &TcpStream) -> Option<usize> {
    let mut sink = [0u8; 4096];
    match stream.try_read(&mut sink) {
        Ok(0) => None,
        Ok(n) => Some(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(0),
        Err(_) => None,
    }
}

/// A token bucket: `rate` messages a second, bursts up to four seconds' worth.
pub(crate) struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: tokio::time::Instant,
}

impl RateLimit {
    pub(crate) fn new(rate: u32) -> Self {
        let rate = f64::from(rate);
        Self {
            rate,
            burst: rate * 4.0,
            tokens: rate * 4.0,
            last: tokio::time::Instant::now(),
        }
    }

    /// Whether one more message is allowed now; a rate of 0 allows everything.
    pub(crate) fn take(&mut self, now: tokio::time::Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_burst_of_tiny_frames_holds_a_bounded_number_of_events() {
        // 6 bytes of an empty Ping are 40 bytes of Event: READ_BURST reads of 4 KiB of them
        // would be ~440 KiB held at once by one connection's task.
        use tokio::io::AsyncWriteExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut client = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = l.accept().await.expect("accept");
        let ping = [0x89, 0x80, 1, 2, 3, 4];
        client
            .write_all(&ping.repeat(READ_BURST * 4096 / 6 + 100))
            .await
            .expect("write");
        server.readable().await.expect("readable");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut inbound = Inbound::new(65536);
        let Step::Read(events, Some(ReadEnd::More)) = read_ready(&server, &mut inbound) else {
            panic!("a burst that says more is waiting");
        };
        assert!(!events.is_empty());
        assert!(
            events.len() * std::mem::size_of::<Event>() <= 32 * 1024,
            "{} events held at once",
            events.len()
        );
    }

    #[test]
    fn rate_limit_allows_a_burst_then_the_rate() {
        let start = tokio::time::Instant::now();
        let mut r = RateLimit::new(10);
        let allowed = (0..100).filter(|_| r.take(start)).count();
        assert_eq!(allowed, 40);
        assert!(r.take(start + Duration::from_millis(100)));
        assert!(!r.take(start + Duration::from_millis(100)));
        let mut off = RateLimit::new(0);
        assert!((0..10_000).all(|_| off.take(start)));
    }
}
