//! SIP over WebSocket (RFC 7118): the `GET /sip` upgrade and one task per connection that
//! carries whole SIP messages between the socket and the hub.
//!
//! Owns: the WebSocket handshake rules, message size limits, Ping keep-alives, close codes.
//! Must not touch: SIP routing (the hub and edge decide).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::admission::{Admission, Place, Refusal};
use super::client_addr::ClientAddr;
use crate::config::WebSocketConfig;
use crate::edge::{FlowId, FlowKind};
use crate::hub::{FlowCommand, HubInput};
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

/// `GET /sip`.
pub async fn upgrade(
    State(state): State<Arc<WsState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            state.metrics.ws_rejected("not_websocket");
            return (
                e.status(),
                format!("{e}: SIP over WebSocket (RFC 7118) needs a WebSocket upgrade\n"),
            )
                .into_response();
        }
    };
    if !offers_sip(&headers) {
        // RFC 7118 §4.1: the client MUST offer the `sip` subprotocol.
        state.metrics.ws_rejected("no_sip_subprotocol");
        return (
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol `sip` is required (RFC 7118 §4.1): send Sec-WebSocket-Protocol: sip\n",
        )
            .into_response();
    }
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    // The place is taken before the 101, so a burst cannot overshoot the caps; a handshake
    // that fails after this gives it back when the closure is dropped.
    let place = match state.admission.admit(client) {
        Ok(p) => p,
        Err(why) => {
            state.metrics.ws_rejected(why.metric());
            return refused(why);
        }
    };
    let cfg = &state.config;
    ws.protocols(["sip"])
        .read_buffer_size(cfg.read_buffer_size)
        .write_buffer_size(cfg.write_buffer_size)
        .max_write_buffer_size(cfg.write_buffer_size.max(cfg.max_message_size) * 4)
        .max_message_size(cfg.max_message_size)
        .max_frame_size(cfg.max_message_size)
        .on_upgrade(move |socket| serve(state, socket, remote, place))
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

fn offers_sip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("sip"))
}

/// One connection's life: register the flow, shuttle messages, end the flow.
async fn serve(state: Arc<WsState>, mut socket: WebSocket, remote: SocketAddr, mut place: Place) {
    let flow = FlowId::next();
    let (tx, mut rx) = mpsc::channel::<FlowCommand>(32);
    if state
        .hub
        .send(HubInput::FlowOpened {
            flow,
            remote,
            kind: FlowKind::Ws,
            tx,
        })
        .await
        .is_err()
    {
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
    let mut awaiting_pong = false;
    let mut budget = RateLimit::new(state.config.max_messages_per_sec);
    let close = loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Text(_) | WsMessage::Binary(_))) if !budget.take(tokio::time::Instant::now()) => {
                    state.metrics.ws_rejected("message_rate");
                    debug!(%flow, "client over websocket.max_messages_per_sec; closing");
                    // RFC 6455 §7.4.1: 1008, policy violation.
                    break Some((1008, "message rate limit exceeded"));
                }
                Some(Ok(WsMessage::Text(t))) => {
                    let bytes = Bytes::from(t);
                    if state.hub.send(HubInput::FlowMessage { flow, bytes }).await.is_err() {
                        break Some((1001, "going away"));
                    }
                }
                Some(Ok(WsMessage::Binary(b))) => {
                    if state.hub.send(HubInput::FlowMessage { flow, bytes: b }).await.is_err() {
                        break Some((1001, "going away"));
                    }
                }
                Some(Ok(WsMessage::Pong(_))) => awaiting_pong = false,
                Some(Ok(WsMessage::Ping(_))) => {} // tungstenite answers pings itself
                Some(Ok(WsMessage::Close(_))) | None => break None,
                Some(Err(e)) => {
                    let text = e.to_string();
                    debug!(%flow, error = %text, "WebSocket error");
                    // RFC 6455 §7.1.7: a client that breaks the protocol is failed with the
                    // close frame §7.4.1 names (axum's error is opaque: tungstenite's words).
                    match violation(&text) {
                        Some((code, reason, metric)) => {
                            state.metrics.ws_rejected(metric);
                            break Some((code, reason));
                        }
                        None => break None,
                    }
                }
            },
            cmd = rx.recv() => match cmd {
                Some(FlowCommand::Send(bytes)) => {
                    // RFC 7118 §5.1: SIP messages travel as text frames when they are UTF-8.
                    let msg = match std::str::from_utf8(&bytes) {
                        Ok(_) => WsMessage::Text(
                            axum::extract::ws::Utf8Bytes::try_from(bytes)
                                .unwrap_or_else(|_| axum::extract::ws::Utf8Bytes::from_static("")),
                        ),
                        Err(_) => WsMessage::Binary(bytes),
                    };
                    match tokio::time::timeout(send_within, socket.send(msg)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break None,
                        Err(_) => break stalled(&state, flow),
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
            _ = ping.tick() => {
                if awaiting_pong {
                    debug!(%flow, "no Pong since the last Ping; closing");
                    break Some((1001, "keep-alive timeout"));
                }
                awaiting_pong = true;
                match tokio::time::timeout(send_within, socket.send(WsMessage::Ping(Bytes::new()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break None,
                    Err(_) => break stalled(&state, flow),
                }
            }
            _ = state.shutdown.cancelled() => break Some((1001, "server shutting down")),
        }
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            socket.send(WsMessage::Close(Some(frame))),
        )
        .await;
    }
    let _ = state.hub.send(HubInput::FlowClosed { flow }).await;
    drop(place);
    debug!(%flow, "WebSocket flow closed");
}

/// A write to the client waited `send_within` for it to take bytes: the connection is dropped
/// without a close frame (it could not be written either).
fn stalled(state: &WsState, flow: FlowId) -> Option<(u16, &'static str)> {
    state.metrics.ws_rejected("send_timeout");
    debug!(%flow, "the client took no bytes for a Ping interval; closing");
    None
}

/// The close code (RFC 6455 §7.4.1), reason and metric label for a WebSocket error that is the
/// client's fault, from tungstenite's message: 1009 for a message over the limit (also when
/// fragmented), 1007 for a text frame that is not UTF-8, 1002 for any other protocol error
/// (an unmasked frame, a reserved opcode or RSV bit, an oversize or fragmented control frame,
/// a continuation with nothing to continue). None for I/O errors: the peer is gone.
fn violation(text: &str) -> Option<(u16, &'static str, &'static str)> {
    if text.contains("Space limit exceeded") {
        Some((1009, "SIP message too big", "message_too_big"))
    } else if text.contains("UTF-8") {
        Some((1007, "text frame is not UTF-8", "bad_utf8"))
    } else if text.contains("WebSocket protocol error") {
        Some((1002, "WebSocket protocol error", "protocol_error"))
    } else {
        None
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

    #[test]
    fn rfc6455_7_4_1_violations_get_their_close_codes() {
        let cases = [
            (
                "Space limit exceeded: Message too long: 70000 > 65536",
                1009,
            ),
            ("UTF-8 encoding error: invalid utf-8 sequence", 1007),
            (
                "WebSocket protocol error: Received an unmasked frame from client",
                1002,
            ),
            ("WebSocket protocol error: Reserved bits are non-zero", 1002),
        ];
        for (text, code) in cases {
            assert_eq!(violation(text).map(|v| v.0), Some(code), "{text}");
        }
        assert_eq!(violation("IO error: Connection reset by peer"), None);
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
