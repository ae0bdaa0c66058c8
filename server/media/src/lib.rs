//! The eIMS-AGW (TS 23.334 §5.20): browser WebRTC media (ICE-lite, DTLS-SRTP, rtcp-mux, BUNDLE,
//! by `str0m`) relayed to plain RTP/AVP + RTCP toward the IMS, and the SDP of both legs.
//!
//! The edge drives it with [`Command`]s and hears back [`Event`]s; media runs on its own
//! thread(s), never on the tokio tasks that carry SIP.
//!
//! Owns: the WebRTC UDP socket, the IMS-side RTP/RTCP ports, media sessions, SDP of both legs.
//! Must not touch: SIP (it never sees a SIP message, only SDP bodies), the WAF.
//!
//! Inside: `engine` (the thread and its poll loop), `demux` (STUN routing by ufrag),
//! `session` (one call's offer/answer), `browser_leg` (the str0m `Rtc`), `ims_leg` (plain
//! RTP/RTCP), `relay` + `codec` (the per-packet path and the transcoder seam), `ports`, `sdp`.
//!
//! Rules for the edge:
//! - Commands of one call are handled in the order sent; send `ImsAnswer` only after the
//!   `Sdp` event of the `BrowserOffer` it answers, `BrowserAnswer` only after the `Sdp` of
//!   the `ImsOffer`.
//! - A session exists from the `Sdp` event of an initial offer until `Release` or `Ended`;
//!   a `Refused` initial offer leaves nothing behind (no port, no session). A `Refused`
//!   re-offer or answer leaves the call as it was (answer the re-INVITE 488, keep the call).
//! - Send `Release` for every call that got an `Sdp` event and then ends in SIP for any
//!   reason (BYE, CANCEL, failure response, flow gone): before the browser has an answer
//!   there is no consent clock, so nothing else frees it.
//! - `Ended` means the session and ports are already gone: send BYE, no `Release` needed.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod batch;
mod browser_leg;
mod codec;
mod demux;
mod engine;
mod ims_leg;
mod ports;
mod relay;
mod sdp;
mod session;

/// A call as the edge names it; chosen by the edge, unique for the process's life.
pub type CallRef = u64;

/// Settings, from `[media]`.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// `media.listen`: the one UDP socket all WebRTC sessions share.
    pub listen: SocketAddr,
    /// `media.public_addresses`: addresses put in ICE host candidates (default: listen's IP).
    pub public_addresses: Vec<IpAddr>,
    /// `media.ims_address`: the address IMS-side RTP ports bind to and SDP `c=` names.
    pub ims_address: IpAddr,
    /// `media.rtp_ports`: the IMS-side port range; each call takes an even port and the next.
    pub rtp_ports: RangeInclusive<u16>,
    /// `media.inactivity_secs`: a browser that answers no STUN consent check for this long
    /// ends its call (RFC 7675).
    pub inactivity: Duration,
    /// `media.latch`: follow the IMS peer's real source address (off: a hijack vector).
    pub latch: bool,
    /// `media.max_sessions`: calls at once; past it a new offer is refused (503-like).
    pub max_sessions: usize,
    /// `media.recv_buffer`: bytes of receive buffer asked for on the shared WebRTC socket.
    pub recv_buffer: usize,
}

/// What the edge asks. Every command that expects SDP back carries `req`, echoed in the
/// answer, so the edge can match answers to the message it parked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The browser offered (initial INVITE, or a re-INVITE/UPDATE on a known call).
    /// Answer: [`Event::Sdp`] with the IMS-side offer (RTP/AVP), or [`Event::Refused`].
    BrowserOffer {
        call: CallRef,
        req: u64,
        sdp: String,
    },
    /// The IMS side answered the offer made from the browser's (183 or 200; the same SDP again
    /// for a retransmission, which gets the same answer). Answer: [`Event::Sdp`] with the
    /// browser-side answer, or [`Event::Refused`].
    ImsAnswer {
        call: CallRef,
        req: u64,
        sdp: String,
    },
    /// The IMS side offered (initial INVITE from the IMS, or a re-INVITE/UPDATE).
    /// Answer: [`Event::Sdp`] with a WebRTC offer for the browser, or [`Event::Refused`].
    ImsOffer {
        call: CallRef,
        req: u64,
        sdp: String,
    },
    /// The browser answered the WebRTC offer. Answer: [`Event::Sdp`] with the IMS-side answer.
    BrowserAnswer {
        call: CallRef,
        req: u64,
        sdp: String,
    },
    /// The call is over (BYE, CANCEL, a failure response, its flow closed): free its session
    /// and ports. Unknown calls are ignored. No answer.
    Release { call: CallRef },
    /// Tests only (feature `fault-injection`): the engine panics while handling `call`, as a
    /// bug in the WebRTC stack would.
    #[cfg(feature = "fault-injection")]
    Fault { call: CallRef },
}

/// What the media side tells the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The SDP asked for by the command `req` of `call`.
    Sdp {
        call: CallRef,
        req: u64,
        sdp: String,
    },
    /// The command `req` cannot be done: the edge answers the offer with `status` (488 no
    /// common codec / unusable SDP, 503 no port or session left) and `warning` as the text of
    /// a `Warning: 399` header (RFC 3261 §20.43).
    Refused {
        call: CallRef,
        req: u64,
        status: u16,
        warning: String,
    },
    /// The call's media ended by itself (consent lost, DTLS failure): the edge releases the
    /// call in SIP (BYE toward the IMS). Its session and ports are already freed.
    Ended { call: CallRef, reason: EndReason },
}

/// Why media ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// No STUN consent from the browser for `media.inactivity_secs` (RFC 7675).
    ConsentLost,
    /// DTLS failed (bad fingerprint, handshake error).
    DtlsFailed,
    /// The engine failed while handling this call (a panic in the WebRTC stack, for example on
    /// input nobody expected): this call ends, the others go on.
    Failed,
}

impl EndReason {
    /// For logs, metrics labels and the `Reason` header text.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::ConsentLost => "media consent lost",
            EndReason::DtlsFailed => "DTLS failed",
            EndReason::Failed => "media failed",
        }
    }
}

/// Why the media engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("cannot bind media.listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("media.rtp_ports {0:?}: {1}")]
    Ports(RangeInclusive<u16>, &'static str),
    #[error("media: {0}")]
    Other(String),
}

/// Live figures, read by the metrics exporter and the admin query.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MediaStats {
    pub sessions: u64,
    pub ports_in_use: u64,
    pub packets_to_ims: u64,
    pub packets_to_browser: u64,
    pub bytes_to_ims: u64,
    pub bytes_to_browser: u64,
    /// Packets dropped: from an address no session knows, SRTP failures, wrong ufrag.
    pub dropped: u64,
    pub consent_lost: u64,
    pub refused_offers: u64,
    /// Calls or commands the engine failed on (a panic caught): each ended alone.
    pub failed: u64,
}

/// A running media engine: send it commands; its events arrive on the receiver `start` gave.
#[derive(Clone)]
pub struct Media {
    inner: Arc<Handle>,
}

struct Handle {
    cmds: std::sync::mpsc::Sender<engine::Msg>,
    waker: Arc<mio::Waker>,
    stats: Arc<engine::Stats>,
    local_addr: SocketAddr,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The last handle gone: the thread ends too (it also sees the channel disconnect).
        let _ = self.cmds.send(engine::Msg::Stop);
        let _ = self.waker.wake();
    }
}

/// Asks for a receive buffer of `bytes` on a UDP socket and returns what the kernel gave: it
/// caps the request at `net.core.rmem_max` unless the process may force it (CAP_NET_ADMIN).
/// Also used for the SIP side's UDP socket.
pub fn set_recv_buffer(socket: &impl std::os::fd::AsFd, bytes: usize) -> usize {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    let _ = setsockopt(socket, sockopt::RcvBuf, &bytes);
    // Linux reports twice the size asked for (bookkeeping); compare against that.
    if getsockopt(socket, sockopt::RcvBuf).unwrap_or(0) < bytes.saturating_mul(2) {
        let _ = setsockopt(socket, sockopt::RcvBufForce, &bytes);
    }
    getsockopt(socket, sockopt::RcvBuf).unwrap_or(0) / 2
}

impl Media {
    /// Binds `media.listen` and checks the port range, starts the media thread(s).
    pub fn start(
        config: MediaConfig,
    ) -> Result<(Media, tokio::sync::mpsc::UnboundedReceiver<Event>), MediaError> {
        let std_socket =
            std::net::UdpSocket::bind(config.listen).map_err(|source| MediaError::Bind {
                addr: config.listen,
                source,
            })?;
        std_socket
            .set_nonblocking(true)
            .map_err(|e| MediaError::Other(format!("media.listen non-blocking: {e}")))?;
        let got = set_recv_buffer(&std_socket, config.recv_buffer);
        if got < config.recv_buffer {
            tracing::warn!(
                asked = config.recv_buffer,
                got,
                "media.recv_buffer capped by net.core.rmem_max"
            );
        }
        let local_addr = std_socket
            .local_addr()
            .map_err(|e| MediaError::Other(format!("media.listen address: {e}")))?;
        let ips: Vec<IpAddr> = if config.public_addresses.is_empty() {
            vec![local_addr.ip()]
        } else {
            config.public_addresses.clone()
        };
        if ips.iter().any(|ip| ip.is_unspecified()) {
            return Err(MediaError::Other(
                "media.listen is a wildcard address: set media.public_addresses to the \
                 address browsers reach"
                    .into(),
            ));
        }
        let candidates = ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, local_addr.port()))
            .collect();
        let ports = ports::PortPool::new(config.ims_address, config.rtp_ports.clone())
            .map_err(|why| MediaError::Ports(config.rtp_ports.clone(), why))?;
        if config.max_sessions == 0 {
            return Err(MediaError::Other("media.max_sessions is 0".into()));
        }
        // One DTLS certificate for the whole process, new at each start (RFC 8827 §6.5 lets
        // an endpoint reuse its certificate across sessions).
        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        let cert = crypto
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| MediaError::Other("cannot generate the DTLS certificate".into()))?;
        let ctx = session::RtcContext {
            crypto,
            cert,
            candidates,
        };
        let poll = mio::Poll::new().map_err(|e| MediaError::Other(format!("poll: {e}")))?;
        let waker = Arc::new(
            mio::Waker::new(poll.registry(), engine::WAKER)
                .map_err(|e| MediaError::Other(format!("waker: {e}")))?,
        );
        let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
        let (ev_tx, ev_rx) = tokio::sync::mpsc::unbounded_channel();
        let stats = Arc::new(engine::Stats::default());
        let engine = engine::Engine::new(
            config,
            poll,
            mio::net::UdpSocket::from_std(std_socket),
            ctx,
            cmd_rx,
            ev_tx,
            stats.clone(),
            ports,
        )
        .map_err(|e| MediaError::Other(format!("register media.listen: {e}")))?;
        let thread = std::thread::Builder::new()
            .name("imsgw-media".into())
            .spawn(move || engine.run())
            .map_err(|e| MediaError::Other(format!("media thread: {e}")))?;
        let media = Media {
            inner: Arc::new(Handle {
                cmds: cmd_tx,
                waker,
                stats,
                local_addr,
                thread: Mutex::new(Some(thread)),
            }),
        };
        Ok((media, ev_rx))
    }

    /// Hands a command to the media thread; never blocks.
    pub fn send(&self, cmd: Command) {
        if self.inner.cmds.send(engine::Msg::Cmd(cmd)).is_ok() {
            let _ = self.inner.waker.wake();
        }
    }

    /// The current figures.
    pub fn stats(&self) -> MediaStats {
        self.inner.stats.snapshot()
    }

    /// The WebRTC socket as bound (for tests and logs).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Stops the thread(s), releasing every session; returns when they are gone.
    pub fn stop(&self) {
        let _ = self.inner.cmds.send(engine::Msg::Stop);
        let _ = self.inner.waker.wake();
        let handle = match self.inner.thread.lock() {
            Ok(mut g) => g.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(h) = handle
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_handle_is_clone_send_sync() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<Media>();
    }

    #[test]
    fn wildcard_listen_without_public_address_is_a_config_error() {
        let cfg = MediaConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            public_addresses: Vec::new(),
            ims_address: IpAddr::from([127, 0, 0, 1]),
            rtp_ports: 45000..=45009,
            inactivity: Duration::from_secs(30),
            latch: false,
            max_sessions: 1,
            recv_buffer: 1 << 20,
        };
        let Err(e) = Media::start(cfg) else {
            panic!("must refuse");
        };
        assert!(e.to_string().contains("media.public_addresses"), "{e}");
    }

    #[test]
    fn recv_buffer_is_what_was_asked_up_to_the_kernel_cap() {
        use nix::sys::socket::{getsockopt, sockopt};
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let before = getsockopt(&sock, sockopt::RcvBuf).expect("get") / 2;
        let asked = (before * 4).max(1 << 20);
        let got = set_recv_buffer(&sock, asked);
        assert_eq!(got, getsockopt(&sock, sockopt::RcvBuf).expect("get") / 2);
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        // Root (CAP_NET_ADMIN) gets it all; anyone else gets at least the cap.
        assert!(got >= asked.min(cap), "asked {asked}, cap {cap}, got {got}");
        assert!(got > before, "the buffer grew: {before} -> {got}");
    }

    #[test]
    fn rtp_range_without_a_pair_is_a_config_error() {
        let cfg = MediaConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_addresses: Vec::new(),
            ims_address: IpAddr::from([127, 0, 0, 1]),
            rtp_ports: 45011..=45011,
            inactivity: Duration::from_secs(30),
            latch: false,
            max_sessions: 1,
            recv_buffer: 1 << 20,
        };
        assert!(matches!(Media::start(cfg), Err(MediaError::Ports(..))));
    }
}
