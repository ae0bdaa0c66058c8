//! Sockets toward the IMS: the UDP socket and TCP/TLS listeners on `sip.listen` /
//! `sip.tls_listen`, and the reused, re-opened connection to a TCP or TLS upstream.
//!
//! Only the P-CSCF may talk to these sockets: a datagram or connection from a source the
//! [`PeerFilter`] does not allow is dropped or closed before a byte of it is read.
//!
//! Owns: bytes on IMS-side sockets, who may send them, stream framing (RFC 3261 §18.3), ICMP
//! errors on UDP. Must not touch: SIP semantics (the hub feeds the edge).

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::edge::{Link, TxnId};
use crate::hub::HubInput;
use crate::metrics::Metrics;
use crate::peers::{PeerFilter, WarnLimiter};
use crate::transport::tls::is_client_cert_refusal;
use crate::transport::{Piece, next_piece};

/// At most one warning per this period for refused IMS-side sources (the rest go to debug).
const REFUSED_WARN_EVERY: Duration = Duration::from_secs(10);

/// What the IMS-side listeners need to turn strangers away.
#[derive(Clone)]
pub struct Guard {
    pub filter: Arc<PeerFilter>,
    pub metrics: Arc<Metrics>,
}

/// Bounds on the IMS side's accepted connections (TCP and TLS together).
#[derive(Clone, Debug)]
pub struct ConnLimits {
    /// `sip.max_connections`: more are closed as they are accepted.
    pub max: usize,
    /// `sip.idle_timeout_secs`: a connection with nothing read or written this long is closed.
    pub idle: Option<Duration>,
    /// Accepted connections open now, shared by the TCP and the TLS listener.
    pub open: Arc<AtomicUsize>,
}

/// One accepted connection's place in [`ConnLimits::open`].
struct ConnPlace(Arc<AtomicUsize>);

impl Drop for ConnPlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Connection ids for IMS-side streams.
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Binds the UDP socket with IP_RECVERR, so an ICMP "port unreachable" from a dead upstream is
/// seen at once (RFC 3261 §18.4 treats it as a transport error).
pub async fn bind_udp(addr: SocketAddr, recv_buffer: usize) -> std::io::Result<Arc<UdpSocket>> {
    let socket = UdpSocket::bind(addr).await?;
    set_recv_buffer(&socket, recv_buffer);
    let on = true;
    let set = if addr.is_ipv4() {
        nix::sys::socket::setsockopt(&socket.as_fd(), nix::sys::socket::sockopt::Ipv4RecvErr, &on)
    } else {
        nix::sys::socket::setsockopt(&socket.as_fd(), nix::sys::socket::sockopt::Ipv6RecvErr, &on)
    };
    if let Err(e) = set {
        warn!(error = %e, "IP_RECVERR unavailable: a dead UDP upstream is noticed only by Timer B/F");
    }
    Ok(Arc::new(socket))
}

/// Asks for a receive buffer of `bytes`: bursts of REGISTER answers overflow the kernel's
/// default (about 208 KiB), and every datagram lost there costs a T1 retransmission.
fn set_recv_buffer(socket: &UdpSocket, bytes: usize) {
    let got = imsgw_media::set_recv_buffer(socket, bytes);
    info!(bytes = got, "UDP receive buffer");
}

/// Reads datagrams until shutdown. `upstream` is the P-CSCF address when it is reached over
/// UDP: an ICMP error for it fails pending requests with 503. Datagrams from sources `guard`
/// does not allow are dropped unparsed.
pub async fn run_udp(
    socket: Arc<UdpSocket>,
    hub: mpsc::Sender<HubInput>,
    upstream: Option<SocketAddr>,
    max: usize,
    guard: Guard,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; max.max(2048) + 1];
    let mut warn_limit = WarnLimiter::new(REFUSED_WARN_EVERY);
    loop {
        let got = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = shutdown.cancelled() => return,
        };
        match got {
            Ok((n, source)) => {
                if !guard.filter.allows(source) {
                    refused(&guard, &mut warn_limit, "udp", source);
                    continue;
                }
                if n > max {
                    debug!(%source, "oversized datagram dropped");
                    continue;
                }
                // RFC 5626 §4.4.1: keep-alive CRLFs carry no message.
                if buf[..n].iter().all(|b| *b == b'\r' || *b == b'\n') {
                    continue;
                }
                let bytes = Bytes::copy_from_slice(&buf[..n]);
                let link = Link::Udp(source);
                if hub
                    .send(HubInput::Ims {
                        link,
                        source,
                        bytes,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                for dest in drain_icmp_errors(&socket) {
                    if Some(dest) == upstream {
                        info!(%dest, "upstream unreachable (ICMP)");
                        let _ = hub.send(HubInput::UpstreamFailed).await;
                    } else {
                        debug!(%dest, "ICMP error for a UDP destination");
                    }
                }
                if e.kind() != std::io::ErrorKind::ConnectionRefused {
                    debug!(error = %e, "UDP receive error");
                }
            }
        }
    }
}

/// Reads the socket's error queue (IP_RECVERR): the destinations that bounced.
fn drain_icmp_errors(socket: &UdpSocket) -> Vec<SocketAddr> {
    use nix::sys::socket::{MsgFlags, SockaddrStorage, recvmsg};
    let mut out = Vec::new();
    for _ in 0..64 {
        let mut data = [0u8; 64];
        let mut iov = [std::io::IoSliceMut::new(&mut data)];
        let mut cmsg = vec![0u8; 256];
        let fd = socket.as_fd();
        use std::os::fd::AsRawFd;
        let r = recvmsg::<SockaddrStorage>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        );
        match r {
            Ok(msg) => {
                if let Some(addr) = msg.address.and_then(storage_to_addr) {
                    out.push(addr);
                }
            }
            Err(_) => break,
        }
    }
    out
}

fn storage_to_addr(s: nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    s.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

/// Counts and logs a refused source: a warning now and then, debug for the rest.
fn refused(guard: &Guard, limit: &mut WarnLimiter, transport: &'static str, source: SocketAddr) {
    guard.metrics.ims_untrusted_dropped(transport);
    match limit.admit(Instant::now()) {
        Some(held) => warn!(
            %source,
            transport,
            held_back = held,
            "IMS-side traffic from a source that is neither sip.upstream nor in sip.trusted_peers refused"
        ),
        None => debug!(%source, transport, "untrusted IMS-side source refused"),
    }
}

/// Accepts TCP (and, with `tls`, TLS) connections from the IMS side. A connection from a source
/// `guard` does not allow is closed at once, before a byte is read or a TLS handshake begins.
pub async fn run_listener(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    hub: mpsc::Sender<HubInput>,
    max: usize,
    guard: Guard,
    limits: ConnLimits,
    shutdown: CancellationToken,
) {
    let transport = if tls.is_some() { "tls" } else { "tcp" };
    let mut warn_limit = WarnLimiter::new(REFUSED_WARN_EVERY);
    let cert_warn_limit = Arc::new(std::sync::Mutex::new(WarnLimiter::new(REFUSED_WARN_EVERY)));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        let (stream, source) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !guard.filter.allows(source) {
            refused(&guard, &mut warn_limit, transport, source);
            // Dropping the stream closes it; nothing was read from it.
            drop(stream);
            continue;
        }
        if limits.open.fetch_add(1, Ordering::AcqRel) >= limits.max {
            limits.open.fetch_sub(1, Ordering::AcqRel);
            guard.metrics.ims_conn_rejected("too_many_connections");
            debug!(%source, "sip.max_connections IMS-side connections open; closed");
            drop(stream);
            continue;
        }
        let place = ConnPlace(limits.open.clone());
        let idle = limits.idle;
        let _ = stream.set_nodelay(true);
        let hub = hub.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        let metrics = guard.metrics.clone();
        let cert_warn_limit = cert_warn_limit.clone();
        tokio::spawn(async move {
            let _place = place;
            match tls {
                None => {
                    let (id, tx) = open_conn(&hub).await;
                    run_stream(stream, id, source, tx, hub, max, idle, shutdown).await;
                }
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(s)) => {
                            let (id, tx) = open_conn(&hub).await;
                            run_stream(s, id, source, tx, hub, max, idle, shutdown).await;
                        }
                        Ok(Err(e)) if is_client_cert_refusal(&e) => {
                            metrics.ims_tls_client_cert_refused();
                            // A poisoned lock only means another handshake task panicked;
                            // the limiter's state is still usable.
                            let admitted = cert_warn_limit
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .admit(Instant::now());
                            match admitted {
                                Some(held) => warn!(
                                    %source,
                                    error = %e,
                                    held_back = held,
                                    "TLS client refused: no certificate, or one not signed by sip.tls_client_ca_file"
                                ),
                                None => {
                                    debug!(%source, error = %e, "TLS client certificate refused")
                                }
                            }
                        }
                        Ok(Err(e)) => debug!(%source, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%source, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// A new connection id and its writer channel, announced to the hub.
async fn open_conn(hub: &mpsc::Sender<HubInput>) -> (u64, mpsc::Receiver<Bytes>) {
    let id = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(256);
    let _ = hub.send(HubInput::ConnOpened { id, tx }).await;
    (id, rx)
}

/// Reads framed SIP messages from a stream and writes what the hub sends, until either side
/// ends or, with `idle`, nothing crossed it that long (keep-alives count).
#[allow(clippy::too_many_arguments)]
async fn run_stream<S>(
    stream: S,
    id: u64,
    source: SocketAddr,
    mut rx: mpsc::Receiver<Bytes>,
    hub: mpsc::Sender<HubInput>,
    max: usize,
    idle: Option<Duration>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(4096);
    let link = Link::Conn(id);
    let never = Duration::from_secs(3600 * 24 * 365);
    let idle_for = idle.unwrap_or(never);
    let quiet = tokio::time::sleep(idle_for);
    tokio::pin!(quiet);
    'conn: loop {
        tokio::select! {
            r = rd.read_buf(&mut buf) => {
                match r {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(_) => quiet.as_mut().reset(tokio::time::Instant::now() + idle_for),
                }
                loop {
                    match next_piece(&mut buf, max) {
                        Ok(None) => break,
                        Ok(Some(Piece::KeepAlive { pong })) => {
                            // RFC 5626 §4.4.1: answer a CRLFCRLF ping with a CRLF pong.
                            if pong && wr.write_all(b"\r\n").await.is_err() {
                                break 'conn;
                            }
                        }
                        Ok(Some(Piece::Message(bytes))) => {
                            if hub.send(HubInput::Ims { link, source, bytes }).await.is_err() {
                                break 'conn;
                            }
                        }
                        Err(e) => {
                            // A stream that cannot be framed cannot be resynchronised.
                            warn!(%source, error = %e, "unframeable SIP stream; closing the connection");
                            break 'conn;
                        }
                    }
                }
            }
            out = rx.recv() => match out {
                Some(bytes) => {
                    if wr.write_all(&bytes).await.is_err() { break 'conn }
                    quiet.as_mut().reset(tokio::time::Instant::now() + idle_for);
                }
                None => break 'conn,
            },
            () = &mut quiet => {
                debug!(%source, "IMS-side connection idle past sip.idle_timeout_secs; closing");
                break 'conn;
            }
            _ = shutdown.cancelled() => break 'conn,
        }
    }
    let _ = wr.shutdown().await;
    let _ = hub.send(HubInput::ConnClosed { id }).await;
}

/// How to open the upstream connection.
#[derive(Clone)]
pub struct UpstreamConnector {
    pub addr: SocketAddr,
    pub tls: Option<(TlsConnector, rustls_pki_types::ServerName<'static>)>,
    pub connect_timeout: Duration,
    pub max: usize,
}

/// Owns the connection to a TCP/TLS upstream: opens it on first use, reuses it, re-opens it
/// after it breaks. A message that cannot be sent fails its transaction with 503.
pub async fn run_upstream(
    conn: UpstreamConnector,
    mut rx: mpsc::Receiver<(Bytes, Option<TxnId>)>,
    hub: mpsc::Sender<HubInput>,
    shutdown: CancellationToken,
) {
    let mut current: Option<mpsc::Sender<Bytes>> = None;
    loop {
        let (bytes, txn) = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = shutdown.cancelled() => return,
        };
        if current.as_ref().is_some_and(|tx| tx.is_closed()) {
            current = None;
        }
        if current.is_none() {
            match connect(&conn).await {
                Ok(stream) => {
                    let (id, tx_rx) = open_conn(&hub).await;
                    // The hub writes to this connection through the manager, not by id.
                    let (tx, rx_out) = mpsc::channel::<Bytes>(1024);
                    let hub2 = hub.clone();
                    let shutdown = shutdown.clone();
                    let addr = conn.addr;
                    let max = conn.max;
                    tokio::spawn(async move {
                        let merged = merge(tx_rx, rx_out);
                        match stream {
                            Upstream::Tcp(s) => {
                                run_stream(s, id, addr, merged, hub2.clone(), max, None, shutdown)
                                    .await
                            }
                            Upstream::Tls(s) => {
                                run_stream(*s, id, addr, merged, hub2.clone(), max, None, shutdown)
                                    .await
                            }
                        }
                        info!(%addr, "upstream connection closed");
                        let _ = hub2.send(HubInput::UpstreamFailed).await;
                    });
                    info!(addr = %conn.addr, "upstream connection open");
                    current = Some(tx);
                }
                Err(e) => {
                    warn!(addr = %conn.addr, error = %e, "cannot connect to the upstream");
                    if let Some(txn) = txn {
                        let _ = hub.send(HubInput::SendFailed { txn }).await;
                    }
                    continue;
                }
            }
        }
        let sent = match &current {
            Some(tx) => tx.send(bytes).await.is_ok(),
            None => false,
        };
        if !sent {
            current = None;
            if let Some(txn) = txn {
                let _ = hub.send(HubInput::SendFailed { txn }).await;
            }
        }
    }
}

/// Two writer channels into one: the hub's (responses on this connection by id) and the
/// manager's (requests to the upstream).
fn merge(mut a: mpsc::Receiver<Bytes>, mut b: mpsc::Receiver<Bytes>) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                m = a.recv() => m,
                m = b.recv() => m,
                _ = tx.closed() => None,
            };
            match next {
                Some(m) => {
                    if tx.send(m).await.is_err() {
                        return;
                    }
                }
                None => return,
            }
        }
    });
    rx
}

enum Upstream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn connect(c: &UpstreamConnector) -> std::io::Result<Upstream> {
    let tcp = tokio::time::timeout(c.connect_timeout, TcpStream::connect(c.addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = tcp.set_nodelay(true);
    match &c.tls {
        None => Ok(Upstream::Tcp(tcp)),
        Some((connector, name)) => {
            let s = tokio::time::timeout(c.connect_timeout, connector.connect(name.clone(), tcp))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
            Ok(Upstream::Tls(Box::new(s)))
        }
    }
}
