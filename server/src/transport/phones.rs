//! SIP phones over UDP, TCP and TLS (`[phones]`, issue 13 §2): the client side of the edge
//! beside WebSocket. Each phone is a flow, exactly as a WebSocket is: a TCP or TLS connection,
//! or, for UDP, a source address. The hub and the edge treat it like any flow (tokens, what a
//! client may not say, limits); only how bytes move differs:
//!
//! - TCP and TLS: SIP framed by Content-Length (RFC 3261 §18.3), CRLFCRLF keep-alives answered
//!   with CRLF (RFC 5626 §4.4.1); a stream that cannot be framed is closed.
//! - UDP: one datagram is one message (RFC 3261 §18.1.1); responses and requests go back to
//!   the source address (RFC 3581 for every phone, as NATs need); STUN Binding requests on the
//!   SIP port are answered (RFC 5626 §4.4.2 keep-alives, RFC 5389 §7.3); a source silent for
//!   `phones.udp_idle_secs` is forgotten.
//!
//! Owns: the phone listeners, framing, per-phone limits. Must not touch: SIP semantics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::ws::RateLimit;
use super::{Piece, next_piece};
use crate::config::PhonesConfig;
use crate::edge::{FlowId, FlowKind};
use crate::hub::{FlowCommand, FlowRx, HubInput, flow_queue};

/// What every phone task shares.
pub struct PhoneState {
    pub config: PhonesConfig,
    pub hub: mpsc::Sender<HubInput>,
    /// Largest SIP message (`sip.max_message_size`).
    pub max_message: usize,
    /// Phones open now, over every listener.
    pub open: AtomicUsize,
    pub shutdown: CancellationToken,
}

impl PhoneState {
    /// Takes a place for one more phone, if there is room.
    fn admit(&self) -> bool {
        let max = self.config.max_flows;
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn leave(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts TCP (or, with `tls`, TLS) phones on `listener` until shutdown.
pub async fn run_stream_listener(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<PhoneState>,
) {
    let Ok(local) = listener.local_addr() else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = state.shutdown.cancelled() => return,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "phone accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !state.admit() {
            debug!(%remote, "phones.max_flows reached; connection closed");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_stream(stream, remote, FlowKind::Tcp(local), &state).await,
                Some(acceptor) => {
                    let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    match hs.await {
                        Ok(Ok(s)) => serve_stream(s, remote, FlowKind::Tls(local), &state).await,
                        Ok(Err(e)) => debug!(%remote, error = %e, "phone TLS handshake failed"),
                        Err(_) => debug!(%remote, "phone TLS handshake timed out"),
                    }
                }
            }
            state.leave();
        });
    }
}

/// One phone connection: its flow, until either side ends it.
async fn serve_stream<S>(stream: S, remote: SocketAddr, kind: FlowKind, state: &PhoneState)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let flow = FlowId::next();
    let (tx, mut rx) = flow_queue(32);
    let opened = HubInput::FlowOpened {
        flow,
        remote,
        kind,
        tx,
    };
    if state.hub.send(opened).await.is_err() {
        return;
    }
    debug!(%flow, %remote, ?kind, "phone flow opened");
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(2048);
    let mut budget = RateLimit::new(state.config.max_messages_per_sec);
    // A phone sends its REGISTER at once; after that a whole message or a keep-alive at least
    // every phones.udp_idle_secs (its re-REGISTER comes well before). Partial bytes do not
    // count: a connection that never completes a message gives its place back.
    let idle = Duration::from_secs(state.config.udp_idle_secs);
    let mut deadline = Instant::now() + FIRST_MESSAGE;
    'conn: loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                debug!(%flow, "phone connection silent too long; closing");
                break 'conn;
            }
            r = rd.read_buf(&mut buf) => {
                match r {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(_) => {}
                }
                loop {
                    match next_piece(&mut buf, state.max_message) {
                        Ok(None) => break,
                        Ok(Some(Piece::KeepAlive { pong })) => {
                            // RFC 5626 §4.4.1: a CRLFCRLF ping gets a CRLF pong.
                            if pong && wr.write_all(b"\r\n").await.is_err() {
                                break 'conn;
                            }
                            deadline = Instant::now() + idle;
                        }
                        Ok(Some(Piece::Message(bytes))) => {
                            deadline = Instant::now() + idle;
                            if !budget.take(Instant::now()) {
                                debug!(%flow, "phone over phones.max_messages_per_sec; closing");
                                break 'conn;
                            }
                            let m = HubInput::FlowMessage { flow, bytes };
                            if state.hub.send(m).await.is_err() {
                                break 'conn;
                            }
                        }
                        Err(e) => {
                            debug!(%flow, error = %e, "unframeable SIP stream from a phone; closing");
                            break 'conn;
                        }
                    }
                }
            }
            cmd = rx.recv() => match cmd {
                Some(FlowCommand::Send(bytes)) => if wr.write_all(&bytes).await.is_err() { break 'conn },
                Some(FlowCommand::Registered | FlowCommand::Unregistered) => {}
                Some(FlowCommand::Close { .. }) | None => break 'conn,
            },
            _ = state.shutdown.cancelled() => break 'conn,
        }
    }
    let _ = wr.shutdown().await;
    let _ = state.hub.send(HubInput::FlowClosed { flow }).await;
    debug!(%flow, "phone flow closed");
}

/// How long a new phone connection or UDP source has to become a phone: its first message
/// (TCP/TLS), or a registration (UDP: until then it proved nothing, not even that it can
/// receive, and is the first to give its place up): 64*T1.
const FIRST_MESSAGE: Duration = Duration::from_secs(32);

/// A UDP source as a flow.
struct UdpPhone {
    flow: FlowId,
    last: Instant,
    budget: RateLimit,
    /// A REGISTER from it was answered 2xx: it answered a challenge sent to its address, so it
    /// is no forged source. Set by its writer.
    registered: Arc<std::sync::atomic::AtomicBool>,
}

/// Serves phones on a UDP socket until shutdown.
pub async fn run_udp(socket: Arc<UdpSocket>, state: Arc<PhoneState>) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let mut phones: HashMap<SocketAddr, UdpPhone> = HashMap::new();
    // Flows' writers send on the socket themselves; closures come back here.
    let (closed_tx, mut closed_rx) = mpsc::unbounded_channel::<(SocketAddr, FlowId)>();
    let idle = Duration::from_secs(state.config.udp_idle_secs);
    let mut sweep = tokio::time::interval(idle.min(FIRST_MESSAGE).min(Duration::from_secs(10)));
    let mut buf = vec![0u8; state.max_message.max(1500) + 1];
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, remote) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        // ICMP errors of earlier sends surface here on Linux; nothing to do.
                        debug!(error = %e, "phone UDP receive error");
                        continue;
                    }
                };
                let data = &buf[..n];
                let keep_alive = data.iter().all(|b| *b == b'\r' || *b == b'\n');
                let stun = stun_binding_response(data, remote);
                if stun.is_some() || keep_alive {
                    // RFC 5626 §4.4.2: keep-alives are what keeps a phone's flow alive.
                    if let Some(p) = phones.get_mut(&remote) {
                        p.last = Instant::now();
                    }
                    if let Some(reply) = stun {
                        let _ = socket.try_send_to(&reply, remote);
                    }
                    continue;
                }
                if n > state.max_message {
                    debug!(%remote, n, "datagram over sip.max_message_size from a phone; dropped");
                    continue;
                }
                let now = Instant::now();
                let phone = match phones.get_mut(&remote) {
                    Some(p) => p,
                    None => {
                        if !state.admit() {
                            // Full: the source that has proved least (never registered,
                            // silent longest) gives its place up; registered phones never do.
                            let victim = (phones.iter())
                                .filter(|(_, p)| !p.registered.load(Ordering::Relaxed))
                                .min_by_key(|(_, p)| p.last)
                                .map(|(a, _)| *a);
                            let Some(victim) = victim else {
                                debug!(%remote, "phones.max_flows reached; datagram dropped");
                                continue;
                            };
                            if let Some(p) = phones.remove(&victim) {
                                debug!(flow = %p.flow, %victim, "unregistered UDP source gives its place to a new one");
                                let _ = state.hub.send(HubInput::FlowClosed { flow: p.flow }).await;
                            }
                        }
                        let flow = FlowId::next();
                        let (tx, rx) = flow_queue(32);
                        let opened = HubInput::FlowOpened { flow, remote, kind: FlowKind::Udp(local), tx };
                        if state.hub.send(opened).await.is_err() {
                            state.leave();
                            return;
                        }
                        let registered = Arc::new(std::sync::atomic::AtomicBool::new(false));
                        tokio::spawn(udp_writer(socket.clone(), remote, flow, rx, closed_tx.clone(), registered.clone()));
                        phones.entry(remote).or_insert(UdpPhone {
                            flow,
                            last: now,
                            budget: RateLimit::new(state.config.max_messages_per_sec),
                            registered,
                        })
                    }
                };
                phone.last = now;
                if !phone.budget.take(now) {
                    debug!(flow = %phone.flow, "phone over phones.max_messages_per_sec; datagram dropped");
                    continue;
                }
                let m = HubInput::FlowMessage { flow: phone.flow, bytes: Bytes::copy_from_slice(data) };
                if state.hub.send(m).await.is_err() {
                    return;
                }
            }
            Some((remote, flow)) = closed_rx.recv() => {
                // The edge closed this flow (or its writer ended); a newer flow of the same
                // address is not this one.
                if phones.get(&remote).is_some_and(|p| p.flow == flow)
                    && let Some(p) = phones.remove(&remote)
                {
                    state.leave();
                    let _ = state.hub.send(HubInput::FlowClosed { flow: p.flow }).await;
                }
            }
            _ = sweep.tick() => {
                let now = Instant::now();
                // A source that never registered has FIRST_MESSAGE; a phone, udp_idle_secs.
                let gone: Vec<SocketAddr> = phones
                    .iter()
                    .filter(|(_, p)| {
                        let limit = if p.registered.load(Ordering::Relaxed) { idle } else { idle.min(FIRST_MESSAGE) };
                        now.duration_since(p.last) >= limit
                    })
                    .map(|(a, _)| *a)
                    .collect();
                for remote in gone {
                    if let Some(p) = phones.remove(&remote) {
                        debug!(flow = %p.flow, %remote, "UDP source silent too long; forgotten");
                        state.leave();
                        let _ = state.hub.send(HubInput::FlowClosed { flow: p.flow }).await;
                    }
                }
            }
            _ = state.shutdown.cancelled() => return,
        }
    }
}

/// Sends what the hub gives one UDP flow to its phone; tells the reader when the edge closes it,
/// and marks the source registered when a REGISTER of it is answered 2xx.
async fn udp_writer(
    socket: Arc<UdpSocket>,
    remote: SocketAddr,
    flow: FlowId,
    mut rx: FlowRx,
    closed: mpsc::UnboundedSender<(SocketAddr, FlowId)>,
    registered: Arc<std::sync::atomic::AtomicBool>,
) {
    while let Some(cmd) = rx.recv().await {
        match cmd {
            FlowCommand::Send(bytes) => {
                // Only until it is registered: no parse per message after that.
                if !registered.load(Ordering::Relaxed) && is_register_ok(&bytes) {
                    registered.store(true, Ordering::Relaxed);
                }
                if let Err(e) = socket.send_to(&bytes, remote).await {
                    debug!(%remote, error = %e, "UDP send to a phone failed");
                }
            }
            FlowCommand::Registered | FlowCommand::Unregistered => {}
            FlowCommand::Close { .. } => break,
        }
    }
    let _ = closed.send((remote, flow));
}

/// Whether `bytes` is a 2xx to a REGISTER (RFC 3261 §10.3: the binding is in place).
fn is_register_ok(bytes: &[u8]) -> bool {
    if !bytes.starts_with(b"SIP/2.0 2") {
        return false;
    }
    imsgw_sip::Message::parse(Bytes::copy_from_slice(bytes))
        .ok()
        .and_then(|m| m.cseq().ok())
        .is_some_and(|c| c.method == imsgw_sip::Method::Register)
}

/// RFC 5389 magic cookie.
const MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// The Binding success response (RFC 5389 §7.3.1, with XOR-MAPPED-ADDRESS, §15.2) to a STUN
/// Binding request, or None when `data` is not one. A STUN message starts with two zero bits
/// and carries the magic cookie, which a SIP message never does (RFC 5626 §4.4.2, RFC 7983).
fn stun_binding_response(data: &[u8], remote: SocketAddr) -> Option<Vec<u8>> {
    if data.len() < 20 || data[0] & 0xC0 != 0 || data[4..8] != MAGIC {
        return None;
    }
    let method = u16::from_be_bytes([data[0], data[1]]);
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    if method != 0x0001 || data.len() != 20 + len {
        return None;
    }
    let txid = &data[8..20];
    let mut attr = Vec::with_capacity(24);
    let port = remote.port() ^ 0x2112;
    match remote {
        SocketAddr::V4(a) => {
            attr.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
            attr.extend_from_slice(&port.to_be_bytes());
            for (b, m) in a.ip().octets().iter().zip(MAGIC) {
                attr.push(b ^ m);
            }
        }
        SocketAddr::V6(a) => {
            attr.extend_from_slice(&[0x00, 0x20, 0x00, 0x14, 0x00, 0x02]);
            attr.extend_from_slice(&port.to_be_bytes());
            let key: Vec<u8> = MAGIC.iter().chain(txid).copied().collect();
            for (b, k) in a.ip().octets().iter().zip(key) {
                attr.push(b ^ k);
            }
        }
    }
    let mut out = Vec::with_capacity(20 + attr.len());
    out.extend_from_slice(&0x0101u16.to_be_bytes());
    out.extend_from_slice(&u16::try_from(attr.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(txid);
    out.extend_from_slice(&attr);
    Some(out)
}

#[cfg(test)]
mod tests_review13b;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5389_binding_request_gets_its_xor_mapped_address() {
        let mut req = vec![0x00, 0x01, 0x00, 0x00];
        req.extend_from_slice(&MAGIC);
        req.extend_from_slice(&[7u8; 12]);
        let remote: SocketAddr = "192.0.2.1:32853".parse().expect("addr");
        let r = stun_binding_response(&req, remote).expect("a response");
        assert_eq!(&r[0..2], &[0x01, 0x01]);
        assert_eq!(&r[8..20], &[7u8; 12], "same transaction id");
        // RFC 5769 §2.2 style check: port and address XORed with the cookie.
        assert_eq!(&r[20..26], &[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
        assert_eq!(u16::from_be_bytes([r[26], r[27]]) ^ 0x2112, 32853);
        let ip: Vec<u8> = r[28..32].iter().zip(MAGIC).map(|(a, b)| a ^ b).collect();
        assert_eq!(ip, vec![192, 0, 2, 1]);
    }

    #[test]
    fn sip_and_other_stun_messages_are_not_binding_requests() {
        let remote: SocketAddr = "192.0.2.1:5060".parse().expect("addr");
        assert!(stun_binding_response(b"REGISTER sip:x SIP/2.0\r\n\r\n", remote).is_none());
        let mut resp = vec![0x01, 0x01, 0x00, 0x00];
        resp.extend_from_slice(&MAGIC);
        resp.extend_from_slice(&[1u8; 12]);
        assert!(stun_binding_response(&resp, remote).is_none(), "a response");
        let mut bad_len = vec![0x00, 0x01, 0x00, 0x08];
        bad_len.extend_from_slice(&MAGIC);
        bad_len.extend_from_slice(&[1u8; 12]);
        assert!(stun_binding_response(&bad_len, remote).is_none());
    }
}
