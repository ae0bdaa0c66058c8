//! The public HTTP listener's accept loop: the WWSF, the WAF and the WebSocket upgrade.
//!
//! Own instead of `axum::serve` for the one rule that has no knob there: a client must send its
//! whole request head within `websocket.handshake_timeout_secs` (hyper's header read timeout,
//! which runs from the accept and again after every response), and a request's body within as
//! long again, so connections that never finish a request are closed instead of holding a
//! descriptor for ever.
//!
//! Owns: accepting, per-connection HTTP/1.1 with upgrades, graceful shutdown of connections.
//! Must not touch: what a request means (the router).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tower_http::timeout::DeadlineBody;
use tracing::{debug, warn};

use super::admission::{Admission, Place, Refusal};
use super::client_addr::TrustedProxies;
use crate::metrics::Metrics;

/// Serves `app` on `listener` until `shutdown`, then lets the connections finish what they
/// are answering (new requests on them are refused) and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    handshake_timeout: Option<Duration>,
    per_address: PerAddress,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let conns = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset before accept: wait a
                    // little instead of spinning, as the descriptors come back.
                    debug!(error = %e, "accept on the HTTP listener failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Counted at the accept, before a byte is read: one address cannot hold every
        // descriptor with connections that each send a request every few seconds.
        let place = match per_address.admit(peer.ip()) {
            Ok(p) => p,
            Err(_) => {
                metrics.ws_rejected("http_address_connections");
                debug!(%peer, "http.max_connections_per_address open from this address; closed");
                drop(stream);
                continue;
            }
        };
        // SIP over WebSocket is small messages both ways: Nagle would hold the second one back.
        let _ = stream.set_nodelay(true);
        // Whether a request head came whole: a timeout after that is a kept-alive connection
        // going idle, not a handshake that never finished.
        let served = Arc::new(AtomicBool::new(false));
        let seen = served.clone();
        // Requests whose answers are not written whole yet: on stop, a connection with none is
        // not waited for.
        let busy = Arc::new(AtomicUsize::new(0));
        let (head_in, answer_out) = (busy.clone(), busy.clone());
        let svc = app
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                head_in.fetch_add(1, Ordering::Relaxed);
                seen.store(true, Ordering::Relaxed);
                req.extensions_mut().insert(ConnectInfo(peer));
                // The head's timer stops once the head is in; a body (a POST to the WAF with a
                // Content-Length it never sends) gets as long again, or the handler reading it
                // would hold the connection for ever.
                req.map(|body| match handshake_timeout {
                    Some(t) if !body.is_end_stream() => {
                        axum::body::Body::new(DeadlineBody::new(t, body))
                    }
                    _ => axum::body::Body::new(body),
                })
            })
            .map_response(move |res: axum::response::Response| {
                let done = Answered(answer_out.clone());
                res.map(|body| axum::body::Body::new(Answer { body, _done: done }))
            });
        let stop = shutdown.clone();
        let metrics = metrics.clone();
        // While the connection speaks HTTP, a write that waits longer than the handshake
        // timeout for the client to take bytes ends it (see `StallLimit`).
        let http_phase = Arc::new(AtomicBool::new(true));
        let stream = StallLimit::new(stream, handshake_timeout, http_phase.clone());
        conns.spawn(async move {
            // Given back when the connection closes or is upgraded (the WebSocket's own caps
            // count it from there).
            let _place = place;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new());
            builder.header_read_timeout(handshake_timeout);
            let conn = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                .with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    if busy.load(Ordering::Relaxed) == 0 {
                        // Answering nothing: hyper closes one between requests at once, but
                        // waits on one still sending a head up to the handshake timeout (any
                        // client could make every stop take http.drain_secs). Only what is
                        // left to write is waited for.
                        tokio::time::timeout(Duration::from_millis(500), conn.as_mut())
                            .await
                            .unwrap_or(Ok(()))
                    } else {
                        conn.await
                    }
                }
            };
            // Upgraded (the socket lives on in the WebSocket, which bounds its own writes) or
            // closed: the HTTP rules are over.
            http_phase.store(false, Ordering::Relaxed);
            if let Err(e) = result {
                if is_stall(&e) {
                    metrics.ws_rejected("send_timeout");
                    debug!(%peer, "the client took none of its answer within websocket.handshake_timeout_secs; closed");
                } else if e.is_timeout() && served.load(Ordering::Relaxed) {
                    debug!(%peer, "kept-alive HTTP connection idle past websocket.handshake_timeout_secs; closed");
                } else if e.is_timeout() {
                    metrics.ws_rejected("handshake_timeout");
                    debug!(%peer, "no whole request head within websocket.handshake_timeout_secs; closed");
                } else {
                    debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
            }
        });
    }
    conns.close();
    if tokio::time::timeout(Duration::from_secs(30), conns.wait())
        .await
        .is_err()
    {
        warn!("HTTP connections still open 30 s after shutdown");
    }
}

/// `http.max_connections_per_address`: HTTP connections per peer address, the operator's
/// proxies not counted.
pub struct PerAddress {
    counts: Option<Arc<Admission>>,
    proxies: Arc<TrustedProxies>,
}

impl PerAddress {
    /// A cap of 0 turns it off.
    pub fn new(cap: usize, proxies: Arc<TrustedProxies>) -> Self {
        Self {
            counts: (cap > 0).then(|| Arc::new(Admission::new(usize::MAX, cap, 0))),
            proxies,
        }
    }

    fn admit(&self, ip: std::net::IpAddr) -> Result<Option<Place>, Refusal> {
        match &self.counts {
            Some(c) if !self.proxies.trusts(ip) => c.admit(ip).map(Some),
            _ => Ok(None),
        }
    }
}

/// The TCP socket under a connection of [`serve`]'s that hyper upgraded, and the bytes it had
/// read past the request; the upgrade back when it is not one of ours.
pub(crate) fn upgraded_tcp(
    up: hyper::upgrade::Upgraded,
) -> Result<(tokio::net::TcpStream, bytes::Bytes), hyper::upgrade::Upgraded> {
    let parts = up.downcast::<TokioIo<StallLimit<tokio::net::TcpStream>>>()?;
    Ok((parts.io.into_inner().io, parts.read_buf))
}

/// `websocket.handshake_timeout_secs` as hyper takes it: 0 is off.
pub fn handshake_timeout(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// The accepted socket, with one more rule while it speaks HTTP: a write that has waited
/// `limit` for the client to take any bytes fails. hyper has no write timeout, so without it a
/// client that pipelines requests and never reads the answers holds the connection for ever;
/// worse, an upgrade request behind them takes its WebSocket place before the 101, the 101 is
/// never written, the upgrade never completes and no WebSocket timer ever starts. After an
/// upgrade the WebSocket bounds its own writes (`ws::serve`), so the rule is switched off.
struct StallLimit<S> {
    io: S,
    limit: Option<Duration>,
    http_phase: Arc<AtomicBool>,
    /// Running since the first write that found the socket full, until a write goes through.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StallLimit<S> {
    fn new(io: S, limit: Option<Duration>, http_phase: Arc<AtomicBool>) -> Self {
        Self {
            io,
            limit,
            http_phase,
            stalled: None,
        }
    }

    /// The inner write returned `Pending`: still waiting, or past the limit.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let Some(limit) = self
            .limit
            .filter(|_| self.http_phase.load(Ordering::Relaxed))
        else {
            self.stalled = None;
            return Poll::Pending;
        };
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, Stalled))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(
        &mut self,
        r: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => self.pending(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }
}

/// The error a [`StallLimit`] write fails with.
#[derive(Debug)]
struct Stalled;

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client took no bytes within websocket.handshake_timeout_secs")
    }
}

impl std::error::Error for Stalled {}

/// Whether hyper ended a connection because a [`StallLimit`] write failed.
fn is_stall(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<Stalled>() {
            return true;
        }
        source = s.source();
    }
    false
}

impl<S: AsyncRead + Unpin> AsyncRead for StallLimit<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallLimit<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.progressed(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.progressed(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.progressed(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Takes one off a connection's count of requests being answered when its answer is done.
struct Answered(Arc<AtomicUsize>);

impl Drop for Answered {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An answer's body, counted as being answered until hyper has taken it whole (or dropped it).
struct Answer {
    body: axum::body::Body,
    _done: Answered,
}

impl hyper::body::Body for Answer {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
