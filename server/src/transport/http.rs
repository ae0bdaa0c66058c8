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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tower_http::timeout::DeadlineBody;
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// Serves `app` on `listener` until `shutdown`, then lets the connections finish what they
/// are answering (new requests on them are refused) and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    handshake_timeout: Option<Duration>,
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
        // SIP over WebSocket is small messages both ways: Nagle would hold the second one back.
        let _ = stream.set_nodelay(true);
        // Whether a request head came whole: a timeout after that is a kept-alive connection
        // going idle, not a handshake that never finished.
        let served = Arc::new(AtomicBool::new(false));
        let seen = served.clone();
        let svc = app
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
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
            });
        let stop = shutdown.clone();
        let metrics = metrics.clone();
        conns.spawn(async move {
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
                    conn.await
                }
            };
            if let Err(e) = result {
                if e.is_timeout() && served.load(Ordering::Relaxed) {
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

/// `websocket.handshake_timeout_secs` as hyper takes it: 0 is off.
pub fn handshake_timeout(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}
