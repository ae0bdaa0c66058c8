//! The browsers' media: one str0m `Rtc` per call (full ICE, controlling: it makes the offer;
//! DTLS-SRTP; BUNDLE and rtcp-mux as str0m always offers them; audio only, PCMA or PCMU), all
//! driven by a few threads (`--media-threads`, default 1), each over a mio poll, owning its
//! calls' `Rtc`s and sockets. Once a session is connected it sends one 160-byte G.711 frame
//! every 20 ms and counts what comes back.
//!
//! Sockets: by default each call has its own UDP socket (its own local address), which is the
//! only way to tell calls apart when the gateway serves every call from one port (imsgw's
//! `media.listen`). With `--call-sockets K` the calls share K sockets and are told apart by the
//! gateway's address (str0m's `accepts`), which needs one gateway port per call (rtpengine).
//!
//! The rest of the tool talks to it through [`Handle`] (commands in, [`MediaEvent`]s out).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::{mpsc as tmpsc, oneshot};

use crate::media::cli::Codec;
use crate::media::lenient::{unsignaled_rtp_ssrc, with_bundle_group};

/// 20 ms of G.711 at 8 kHz.
pub const FRAME_BYTES: usize = 160;
const FRAME: Duration = Duration::from_millis(20);
const WAKER: Token = Token(0);
/// Longest poll wait: bounds how late a stop is seen.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// Shortest time between two passes over all sessions (frames go out within this of their due
/// time; str0m's timers are no finer than this).
const TICK: Duration = Duration::from_millis(1);
/// Incoming SSRCs a session accepts without signalling (a gateway may change SSRC once or twice).
const MAX_RX_SSRCS: usize = 4;

/// Requests to the media thread.
pub enum Command {
    /// Make a session for call `idx` and reply with its id and SDP offer.
    Offer {
        idx: usize,
        reply: oneshot::Sender<Result<(usize, String), String>>,
    },
    /// The SDP answer of session `sid`; `invite_sent` dates the set-up figures.
    Answer {
        sid: usize,
        sdp: String,
        invite_sent: Instant,
    },
    /// Stop sending media (the run measures loss after a drain).
    StopSending,
}

/// What the media thread reports, per call.
#[derive(Debug)]
pub enum MediaEvent {
    /// ICE and DTLS are up, `after` the INVITE was sent.
    Connected {
        after: Duration,
    },
    /// The first echoed RTP packet arrived, `after` the INVITE was sent.
    FirstEcho {
        after: Duration,
    },
    Failed {
        reason: String,
    },
}

/// Packet counts of all sessions, readable at any time.
#[derive(Debug, Default)]
pub struct Counters {
    /// RTP frames written (each one SRTP packet to the gateway).
    pub sent: AtomicU64,
    /// RTP frames received back (decrypted, from the echo through the gateway).
    pub received: AtomicU64,
    /// Datagrams the kernel refused to send.
    pub send_errors: AtomicU64,
    /// Datagrams no session accepted.
    pub unmatched: AtomicU64,
    /// Answers that lacked `a=group:BUNDLE` and got one added (see [`with_bundle_group`]).
    pub bundle_added: AtomicU64,
}

/// The running media thread.
pub struct Handle {
    workers: Vec<Worker>,
    stop: Arc<AtomicBool>,
    pub counters: Arc<Counters>,
}

struct Worker {
    tx: mpsc::Sender<Command>,
    waker: Arc<Waker>,
    thread: JoinHandle<()>,
}

impl Handle {
    /// Hands `c` to the thread that owns (or will own) its session; `StopSending` to all.
    pub fn send(&self, c: Command) {
        let n = self.workers.len();
        let targets: Vec<&Worker> = match &c {
            Command::Offer { idx, .. } => vec![&self.workers[idx % n]],
            Command::Answer { sid, .. } => vec![&self.workers[sid % n]],
            Command::StopSending => self.workers.iter().collect(),
        };
        if let [one] = targets.as_slice() {
            let _ = one.tx.send(c);
            let _ = one.waker.wake();
            return;
        }
        for w in targets {
            let _ = w.tx.send(Command::StopSending);
            let _ = w.waker.wake();
        }
    }

    /// Stops the threads and drops every session (no DTLS close: the calls are over).
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in &self.workers {
            let _ = w.waker.wake();
        }
        for w in self.workers {
            let _ = w.thread.join();
        }
    }
}

/// How the threads set up their sessions.
#[derive(Clone)]
pub struct Config {
    pub codec: Codec,
    /// Local addresses, round-robin over sockets.
    pub source_ips: Vec<Ipv4Addr>,
    /// Shared sockets (split among the threads); 0 = one per call.
    pub call_sockets: usize,
    /// Media threads; call `idx` belongs to thread `idx % threads`.
    pub threads: usize,
}

/// Starts the media threads.
pub fn spawn(cfg: Config, events: tmpsc::UnboundedSender<MediaEvent>) -> Result<Handle> {
    let threads = cfg.threads.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let mut workers = Vec::with_capacity(threads);
    for id in 0..threads {
        let poll = Poll::new().context("mio poll")?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).context("mio waker")?);
        let (tx, rx) = mpsc::channel();
        let mut engine = Engine {
            cfg: cfg.clone(),
            id,
            threads,
            poll,
            sockets: Vec::new(),
            sessions: Vec::new(),
            by_remote: HashMap::new(),
            counters: counters.clone(),
            events: events.clone(),
            sending: true,
            payload: Arc::from(vec![0xd5u8; FRAME_BYTES]),
            next_due: Instant::now(),
        };
        for _ in 0..cfg.call_sockets.div_ceil(threads) {
            engine.add_socket()?;
        }
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("media-{id}"))
                .spawn(move || engine.run(&rx, &stop))
                .context("starting a media thread")?
        };
        workers.push(Worker { tx, waker, thread });
    }
    Ok(Handle {
        workers,
        stop,
        counters,
    })
}

struct Sock {
    udp: UdpSocket,
    local: SocketAddr,
    sessions: Vec<usize>,
}

struct Session {
    rtc: Rtc,
    sock: usize,
    mid: Mid,
    pending: Option<SdpPendingOffer>,
    invite_sent: Option<Instant>,
    pt: Option<Pt>,
    next_timeout: Instant,
    next_send: Option<Instant>,
    frames: u64,
    /// SSRCs of RTP from the gateway declared to str0m (bounded by MAX_RX_SSRCS).
    rx_ssrcs: Vec<u32>,
    echoed: bool,
    dead: bool,
}

struct Engine {
    cfg: Config,
    /// This thread's number and how many there are: session ids outside are
    /// `local * threads + id`.
    id: usize,
    threads: usize,
    poll: Poll,
    sockets: Vec<Sock>,
    sessions: Vec<Session>,
    /// (socket, gateway address) → session, learnt from packets a session accepted.
    by_remote: HashMap<(usize, SocketAddr), usize>,
    counters: Arc<Counters>,
    events: tmpsc::UnboundedSender<MediaEvent>,
    sending: bool,
    payload: Arc<[u8]>,
    /// When the next pass over the sessions is due.
    next_due: Instant,
}

impl Engine {
    /// The loop: wait for a datagram, a command or the next due time; read; then, when due,
    /// one pass over the sessions (str0m timeouts and frames). The pass is O(sessions), so it runs
    /// at most once per [`TICK`]; per datagram the work is O(1), so hundreds of calls cost what
    /// their packets cost.
    fn run(mut self, rx: &mpsc::Receiver<Command>, stop: &AtomicBool) {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wait = self.next_due.saturating_duration_since(now).min(MAX_WAIT);
            if let Err(e) = self.poll.poll(&mut events, Some(wait))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                eprintln!("imsgw-loadgen: media poll failed: {e}");
                return;
            }
            for ev in &events {
                match ev.token() {
                    WAKER => {
                        while let Ok(c) = rx.try_recv() {
                            self.command(c);
                        }
                    }
                    Token(t) => self.read(t - 1, &mut buf),
                }
            }
            let now = Instant::now();
            if now >= self.next_due {
                self.tick(now);
            }
        }
    }

    fn add_socket(&mut self) -> Result<usize> {
        let i = self.sockets.len();
        let ips = &self.cfg.source_ips;
        let ip = if ips.is_empty() {
            Ipv4Addr::LOCALHOST
        } else {
            ips[(i * self.threads + self.id) % ips.len()]
        };
        // A shared socket carries many calls: give it room in proportion.
        let buf = if self.cfg.call_sockets == 0 {
            256 << 10
        } else {
            4 << 20
        };
        let std_udp = crate::media::bind_udp(SocketAddr::new(ip.into(), 0), buf)
            .with_context(|| format!("binding a media socket on {ip}"))?;
        std_udp.set_nonblocking(true).context("set_nonblocking")?;
        let mut udp = UdpSocket::from_std(std_udp);
        let local = udp.local_addr().context("local_addr")?;
        self.poll
            .registry()
            .register(&mut udp, Token(i + 1), Interest::READABLE)
            .context("registering a media socket")?;
        self.sockets.push(Sock {
            udp,
            local,
            sessions: Vec::new(),
        });
        Ok(i)
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Offer { idx, reply } => {
                let (threads, id) = (self.threads, self.id);
                let global = move |sid| sid * threads + id;
                let _ = reply.send(
                    self.offer(idx / self.threads)
                        .map(|(sid, sdp)| (global(sid), sdp))
                        .map_err(|e| format!("{e:#}")),
                );
            }
            Command::Answer {
                sid,
                sdp,
                invite_sent,
            } => {
                let sid = sid / self.threads;
                if let Err(e) = self.answer(sid, &sdp, invite_sent) {
                    self.fail(sid, format!("{e:#}"));
                }
            }
            Command::StopSending => self.sending = false,
        }
    }

    /// A new session with a host candidate on its socket and an audio m-line; `idx` numbers the
    /// calls of this thread. Returns the session's id in this thread.
    fn offer(&mut self, idx: usize) -> Result<(usize, String)> {
        let now = Instant::now();
        let sock = if self.cfg.call_sockets == 0 {
            self.add_socket()?
        } else {
            idx % self.sockets.len()
        };
        let builder = Rtc::builder().clear_codecs().set_ice_lite(false);
        let builder = match self.cfg.codec {
            Codec::Pcma => builder.enable_pcma(true, false),
            Codec::Pcmu => builder.enable_pcmu(true, false),
        };
        let mut rtc = builder.build(now);
        let cand = Candidate::host(self.sockets[sock].local, "udp").context("host candidate")?;
        rtc.add_local_candidate(cand);
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply().context("str0m made no offer")?;
        let sid = self.sessions.len();
        // PEERS.md: in the demultiplexing table before the SDP leaves.
        self.sockets[sock].sessions.push(sid);
        self.sessions.push(Session {
            rtc,
            sock,
            mid,
            pending: Some(pending),
            invite_sent: None,
            pt: None,
            next_timeout: now,
            next_send: None,
            frames: 0,
            rx_ssrcs: Vec::new(),
            echoed: false,
            dead: false,
        });
        self.drain(sid, now);
        Ok((sid, offer.to_sdp_string()))
    }

    fn answer(&mut self, sid: usize, sdp: &str, invite_sent: Instant) -> Result<()> {
        let s = self.sessions.get_mut(sid).context("no such session")?;
        s.invite_sent = Some(invite_sent);
        let pending = s.pending.take().context("answer already applied")?;
        let fixed = with_bundle_group(sdp);
        if fixed.is_some() {
            self.counters.bundle_added.fetch_add(1, Ordering::Relaxed);
        }
        let sdp = fixed.as_deref().unwrap_or(sdp);
        let answer = SdpAnswer::from_sdp_string(sdp).context("the SDP answer does not parse")?;
        s.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .context("str0m refused the SDP answer")?;
        self.drain(sid, Instant::now());
        Ok(())
    }

    /// Reads socket `si` until it would block, handing each datagram to its session.
    fn read(&mut self, si: usize, buf: &mut [u8]) {
        loop {
            let (n, source) = match self.sockets[si].udp.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // ICMP errors (a gateway port closed) surface here; keep reading.
                Err(_) => continue,
            };
            let now = Instant::now();
            let sock = &self.sockets[si];
            let Ok(recv) = Receive::new(Protocol::Udp, source, sock.local, &buf[..n]) else {
                self.counters.unmatched.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let input = Input::Receive(now, recv);
            let sid = match (sock.sessions.as_slice(), self.by_remote.get(&(si, source))) {
                ([only], _) => Some(*only),
                (_, Some(&sid)) => Some(sid),
                (all, None) => {
                    let found = all
                        .iter()
                        .copied()
                        .find(|&sid| self.sessions[sid].rtc.accepts(&input));
                    if let Some(sid) = found
                        && !matches!(buf.first(), Some(0..=3))
                    {
                        // Not STUN (RFC 7983 §7: first byte 0-3): the gateway's address for
                        // this session is known from now on.
                        self.by_remote.insert((si, source), sid);
                    }
                    found
                }
            };
            let Some(sid) = sid else {
                self.counters.unmatched.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let s = &mut self.sessions[sid];
            if s.dead {
                continue;
            }
            if let Some(ssrc) = unsignaled_rtp_ssrc(&buf[..n])
                && !s.rx_ssrcs.contains(&ssrc)
                && s.rx_ssrcs.len() < MAX_RX_SSRCS
            {
                // A browser plays the RTP of an SSRC the answer did not signal when the m-line
                // is the only one it could belong to (the "unsignaled SSRC" of JSEP, RFC 8829
                // §5.9; rtpengine's answers carry no a=ssrc); str0m needs it declared.
                s.rx_ssrcs.push(ssrc);
                let mut api = s.rtc.direct_api();
                if api.stream_rx(&ssrc.into()).is_none() {
                    api.expect_stream_rx(ssrc.into(), None, s.mid, None);
                }
                self.drain(sid, now);
            }
            let s = &mut self.sessions[sid];
            if let Err(e) = s.rtc.handle_input(input) {
                self.fail(sid, format!("str0m: {e}"));
                continue;
            }
            self.drain(sid, now);
        }
    }

    /// Timeouts and the 20 ms frames that are due; sets the next due time, no sooner than
    /// [`TICK`] from now.
    fn tick(&mut self, now: Instant) {
        self.next_due = now + MAX_WAIT;
        for sid in 0..self.sessions.len() {
            let s = &mut self.sessions[sid];
            if s.dead {
                continue;
            }
            if s.next_timeout <= now {
                if let Err(e) = s.rtc.handle_input(Input::Timeout(now)) {
                    self.fail(sid, format!("str0m: {e}"));
                    continue;
                }
                self.drain(sid, now);
            }
            let s = &mut self.sessions[sid];
            if !self.sending || s.dead {
                continue;
            }
            let (Some(due), Some(pt)) = (s.next_send, s.pt) else {
                continue;
            };
            if due > now {
                continue;
            }
            let Some(w) = s.rtc.writer(s.mid) else {
                continue;
            };
            let ts = MediaTime::new(s.frames * FRAME_BYTES as u64, Frequency::EIGHT_KHZ);
            if let Err(e) = w.write(pt, now, ts, self.payload.clone()) {
                self.fail(sid, format!("str0m write: {e}"));
                continue;
            }
            s.frames += 1;
            // Keep the 50/s pace; after a stall longer than a second, restart it instead of
            // sending a burst.
            let next = due + FRAME;
            s.next_send = Some(if next + Duration::from_secs(1) < now {
                now + FRAME
            } else {
                next
            });
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
            self.drain(sid, now);
        }
        for s in self.sessions.iter().filter(|s| !s.dead) {
            let send = s.next_send.filter(|_| self.sending);
            let due = send.map_or(s.next_timeout, |t| t.min(s.next_timeout));
            self.next_due = self.next_due.min(due);
        }
        self.next_due = self.next_due.max(now + TICK);
    }

    /// Polls session `sid` until its next timeout (str0m's single-mutation rule), sending what
    /// it transmits and reporting what happens.
    fn drain(&mut self, sid: usize, now: Instant) {
        loop {
            let s = &mut self.sessions[sid];
            let out = match s.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    self.fail(sid, format!("str0m: {e}"));
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    s.next_timeout = t;
                    self.next_due = self.next_due.min(t);
                    return;
                }
                Output::Transmit(t) => {
                    if self.sockets[s.sock]
                        .udp
                        .send_to(&t.contents, t.destination)
                        .is_err()
                    {
                        self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Output::Event(Event::Connected) => {
                    s.pt = s
                        .rtc
                        .writer(s.mid)
                        .and_then(|w| w.payload_params().next().map(|p| p.pt()));
                    s.next_send = Some(now);
                    self.next_due = now;
                    let after = since(s.invite_sent, now);
                    let _ = self.events.send(MediaEvent::Connected { after });
                    if s.pt.is_none() {
                        self.fail(sid, "connected but no codec was negotiated".into());
                        return;
                    }
                }
                Output::Event(Event::MediaData(_)) => {
                    self.counters.received.fetch_add(1, Ordering::Relaxed);
                    if !s.echoed {
                        s.echoed = true;
                        let after = since(s.invite_sent, now);
                        let _ = self.events.send(MediaEvent::FirstEcho { after });
                    }
                }
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                )) => {
                    self.fail(sid, "ICE disconnected".into());
                    return;
                }
                Output::Event(_) => {}
            }
        }
    }

    fn fail(&mut self, sid: usize, reason: String) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        if !s.dead {
            s.dead = true;
            let _ = self.events.send(MediaEvent::Failed { reason });
        }
    }
}

fn since(start: Option<Instant>, now: Instant) -> Duration {
    start.map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
}
