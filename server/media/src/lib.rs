//! The eIMS-AGW (TS 23.334 §5.20): browser WebRTC media (ICE-lite, DTLS-SRTP, rtcp-mux, BUNDLE,
//! by `str0m`) relayed to plain RTP/AVP + RTCP toward the IMS, and the SDP of both legs.
//!
//! The edge drives it with [`Command`]s and hears back [`Event`]s; media runs on its own
//! thread(s), never on the tokio tasks that carry SIP.
//!
//! Owns: the WebRTC UDP socket, the IMS-side RTP/RTCP ports, media sessions, SDP of both legs.
//! Must not touch: SIP (it never sees a SIP message, only SDP bodies), the WAF.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

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
}

impl EndReason {
    /// For logs, metrics labels and the `Reason` header text.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::ConsentLost => "media consent lost",
            EndReason::DtlsFailed => "DTLS failed",
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
}

/// A running media engine: send it commands; its events arrive on the receiver `start` gave.
#[derive(Clone)]
pub struct Media {
    // Filled by the engine: a command sender and a waker for its thread, the stats source.
}

impl Media {
    /// Binds `media.listen` and checks the port range, starts the media thread(s).
    pub fn start(
        _config: MediaConfig,
    ) -> Result<(Media, tokio::sync::mpsc::UnboundedReceiver<Event>), MediaError> {
        Err(MediaError::Other("not built yet".into()))
    }

    /// Hands a command to the media thread; never blocks.
    pub fn send(&self, _cmd: Command) {}

    /// The current figures.
    pub fn stats(&self) -> MediaStats {
        MediaStats::default()
    }

    /// The WebRTC socket as bound (for tests and logs).
    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 0))
    }

    /// Stops the thread(s), releasing every session; returns when they are gone.
    pub fn stop(&self) {}
}
