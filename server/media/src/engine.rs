//! The media thread: one mio poll loop over the shared WebRTC socket, every call's IMS-side
//! port pair, the command channel's waker, and the sessions' timers.
//!
//! Owns: the sessions (by slot), the demultiplexing tables (STUN by local ufrag, then by the
//! browser's transport address: no per-packet scan over sessions), the port pool, the session
//! cap, the timer heap, the stats counters, and the events sent to the edge.
//! Must not touch: SIP, tokio (events leave on an unbounded channel; the thread never blocks
//! on the edge).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use str0m::net::{Protocol, Receive};
use str0m::{Input, Output, RtcError};
use tokio::sync::mpsc::UnboundedSender;

use crate::batch::{BUF, RecvBatch};
use crate::demux::{stun_local_ufrag, stun_request_valid};
use crate::ims_leg::{self, ImsLeg};
use crate::ports::PortPool;
use crate::relay::{relay_to_browser, relay_to_ims};
use crate::session::{Refusal, RtcContext, Session};
use crate::{CallRef, Command, EndReason, Event, MediaConfig, MediaStats};

pub(crate) const WAKER: Token = Token(0);
const WEBRTC: Token = Token(1);
/// Browser addresses remembered per session (a browser may switch candidate pairs).
const MAX_ADDRS_PER_SESSION: usize = 8;

/// A socket the engine reads: the shared WebRTC one, or one of a call's IMS-side pair.
#[derive(Debug, Clone, Copy)]
enum Source {
    WebRtc,
    Ims { slot: usize, rtcp: bool },
}

/// What the handle sends the thread.
pub(crate) enum Msg {
    Cmd(Command),
    Stop,
}

/// Counters the handle reads without locking.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub sessions: AtomicU64,
    pub ports_in_use: AtomicU64,
    pub packets_to_ims: AtomicU64,
    pub packets_to_browser: AtomicU64,
    pub bytes_to_ims: AtomicU64,
    pub bytes_to_browser: AtomicU64,
    pub dropped: AtomicU64,
    pub consent_lost: AtomicU64,
    pub refused_offers: AtomicU64,
    pub failed: AtomicU64,
}

impl Stats {
    pub fn snapshot(&self) -> MediaStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MediaStats {
            sessions: l(&self.sessions),
            ports_in_use: l(&self.ports_in_use),
            packets_to_ims: l(&self.packets_to_ims),
            packets_to_browser: l(&self.packets_to_browser),
            bytes_to_ims: l(&self.bytes_to_ims),
            bytes_to_browser: l(&self.bytes_to_browser),
            dropped: l(&self.dropped),
            consent_lost: l(&self.consent_lost),
            refused_offers: l(&self.refused_offers),
            failed: l(&self.failed),
        }
    }
    pub(crate) fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

pub(crate) struct Engine {
    cfg: MediaConfig,
    poll: Poll,
    socket: UdpSocket,
    ctx: RtcContext,
    cmds: Receiver<Msg>,
    events: UnboundedSender<Event>,
    stats: Arc<Stats>,
    ports: PortPool,
    /// Boxed: a session is about 11 KiB (str0m's `Rtc` is 10 KiB inline), and a vector of
    /// them inline grows by doubling, costing up to twice that per call in unused slots.
    sessions: Vec<Option<Box<Session>>>,
    free_slots: Vec<usize>,
    by_call: HashMap<CallRef, usize>,
    by_ufrag: HashMap<String, usize>,
    by_addr: HashMap<SocketAddr, usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    epoch: Instant,
    stopping: bool,
    /// The session being worked on, and the command being done: what a panic ends (`guarded`).
    current: Option<usize>,
    current_cmd: Option<(CallRef, u64)>,
    /// The WebRTC socket's address (a fallback destination when no candidate matches).
    local: SocketAddr,
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: MediaConfig,
        poll: Poll,
        mut socket: UdpSocket,
        ctx: RtcContext,
        cmds: Receiver<Msg>,
        events: UnboundedSender<Event>,
        stats: Arc<Stats>,
        ports: PortPool,
    ) -> std::io::Result<Engine> {
        poll.registry()
            .register(&mut socket, WEBRTC, Interest::READABLE)?;
        let local = socket.local_addr()?;
        Ok(Engine {
            cfg,
            poll,
            socket,
            ctx,
            cmds,
            events,
            stats,
            ports,
            sessions: Vec::new(),
            free_slots: Vec::new(),
            by_call: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            timers: BinaryHeap::new(),
            epoch: Instant::now(),
            stopping: false,
            current: None,
            current_cmd: None,
            local,
        })
    }

    /// Runs until [`Msg::Stop`] or every handle is gone; frees every session on the way out.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        // The shared WebRTC socket carries every call: a busy one has many datagrams waiting.
        // A call's IMS-side sockets hold one or two at a time. One batch per socket family
        // (batch.rs): the WebRTC socket and the IMS sockets may be of different ones.
        let mut webrtc = RecvBatch::new(32);
        let mut ims = RecvBatch::new(4);
        let mut out = vec![0u8; BUF];
        while !self.stopping {
            let timeout = self
                .timers
                .peek()
                .map(|Reverse((t, _))| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "media poll failed; media thread stops");
                break;
            }
            for ev in events.iter() {
                let token = ev.token();
                // After a panic the queue or socket is read again: readiness is edge-triggered,
                // so nothing else would wake the thread for what is still waiting there. Each
                // try consumes what it failed on, so this ends.
                while !self.guarded(|e| match token {
                    WAKER => e.drain_commands(),
                    WEBRTC => e.read_webrtc(&mut webrtc, &mut out),
                    Token(t) => e.read_ims((t - 2) / 2, t % 2 == 1, &mut ims, &mut out),
                }) {}
            }
            while !self.guarded(|e| e.run_timers(&mut out)) {}
        }
        let slots: Vec<usize> = (0..self.sessions.len()).collect();
        for slot in slots {
            self.remove(slot, None);
        }
    }

    /// Runs `f`; a panic in it (a bug in the WebRTC stack on input nobody expected, say) ends
    /// only the session or command being worked on, never the thread that carries every call.
    /// False when `f` panicked.
    fn guarded(&mut self, f: impl FnOnce(&mut Engine)) -> bool {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut *self)));
        let (slot, cmd) = (self.current.take(), self.current_cmd.take());
        let Err(panic) = r else {
            return true;
        };
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Stats::add(&self.stats.failed, 1);
        let call = slot.and_then(|s| self.sessions.get(s)?.as_ref().map(|s| s.call));
        tracing::error!(call, panic = %what, "media engine failed on a call; the call ends, the others go on");
        if let Some(slot) = slot {
            self.remove(slot, Some(EndReason::Failed));
        } else if let Some((call, req)) = cmd {
            let r = Refusal {
                status: 500,
                warning: "media engine error".into(),
            };
            self.refuse(call, req, r, false);
        }
        false
    }

    fn drain_commands(&mut self) {
        loop {
            match self.cmds.try_recv() {
                Ok(Msg::Cmd(c)) => self.command(c),
                Ok(Msg::Stop) | Err(TryRecvError::Disconnected) => {
                    self.stopping = true;
                    return;
                }
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    fn emit(&self, e: Event) {
        // The edge may be gone during shutdown; nothing to do then.
        let _ = self.events.send(e);
    }

    fn refuse(&self, call: CallRef, req: u64, r: Refusal, offer: bool) {
        if offer {
            Stats::add(&self.stats.refused_offers, 1);
        }
        tracing::debug!(call, req, status = r.status, warning = %r.warning, "media refused");
        self.emit(Event::Refused {
            call,
            req,
            status: r.status,
            warning: r.warning,
        });
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        // What a panic while doing it ends: the call's session, or else the command (answered
        // as refused, when it expects an answer).
        let (call, req) = match &cmd {
            Command::BrowserOffer { call, req, .. }
            | Command::ImsOffer { call, req, .. }
            | Command::ImsAnswer { call, req, .. }
            | Command::BrowserAnswer { call, req, .. } => (*call, Some(*req)),
            Command::Release { call } => (*call, None),
            #[cfg(feature = "fault-injection")]
            Command::Fault { call } => (*call, None),
        };
        self.current_cmd = req.map(|req| (call, req));
        self.current = self.by_call.get(&call).copied();
        self.command_inner(cmd, now);
        self.current = None;
        self.current_cmd = None;
    }

    fn command_inner(&mut self, cmd: Command, now: Instant) {
        match cmd {
            #[cfg(feature = "fault-injection")]
            Command::Fault { .. } => panic!("fault injected"),
            Command::BrowserOffer { call, req, sdp } => match self.by_call.get(&call) {
                Some(&slot) => {
                    let r = self.session(slot).map(|s| s.browser_reoffer(&sdp));
                    self.answer(slot, call, req, r, true);
                }
                None => self.create(call, req, &sdp, true, now),
            },
            Command::ImsOffer { call, req, sdp } => match self.by_call.get(&call) {
                Some(&slot) => {
                    let r = self.session(slot).map(|s| s.ims_reoffer(&sdp));
                    self.answer(slot, call, req, r, true);
                }
                None => self.create(call, req, &sdp, false, now),
            },
            Command::ImsAnswer { call, req, sdp } => {
                let Some(&slot) = self.by_call.get(&call) else {
                    return self.refuse(call, req, Refusal::sdp("unknown call"), false);
                };
                let r = self.session(slot).map(|s| s.ims_answer(&sdp, now));
                self.answer(slot, call, req, r, false);
            }
            Command::BrowserAnswer { call, req, sdp } => {
                let Some(&slot) = self.by_call.get(&call) else {
                    return self.refuse(call, req, Refusal::sdp("unknown call"), false);
                };
                let r = self.session(slot).map(|s| s.browser_answer(&sdp, now));
                self.answer(slot, call, req, r, false);
            }
            Command::Release { call } => {
                if let Some(&slot) = self.by_call.get(&call) {
                    self.remove(slot, None);
                }
            }
        }
    }

    fn session(&mut self, slot: usize) -> Option<&mut Session> {
        self.sessions.get_mut(slot).and_then(Option::as_deref_mut)
    }

    fn answer(
        &mut self,
        slot: usize,
        call: CallRef,
        req: u64,
        r: Option<Result<String, Refusal>>,
        offer: bool,
    ) {
        match r {
            Some(Ok(sdp)) => {
                // str0m may have output after a negotiation (and a new timeout).
                let mut out = vec![0u8; BUF];
                self.drive(slot, Instant::now(), &mut out);
                self.emit(Event::Sdp { call, req, sdp });
            }
            Some(Err(refusal)) => self.refuse(call, req, refusal, offer),
            None => self.refuse(call, req, Refusal::sdp("unknown call"), offer),
        }
    }

    fn create(&mut self, call: CallRef, req: u64, sdp: &str, browser: bool, now: Instant) {
        if self.by_call.len() >= self.cfg.max_sessions {
            let r = Refusal {
                status: 503,
                warning: "media session limit reached".into(),
            };
            return self.refuse(call, req, r, true);
        }
        let (ports, latch) = (&mut self.ports, self.cfg.latch);
        let take_leg = || match ports.take() {
            Some(pair) => Ok(ImsLeg::new(pair, latch, rand::random(), now)),
            None => Err(Refusal {
                status: 503,
                warning: "no media port free".into(),
            }),
        };
        let made = if browser {
            Session::from_browser_offer(call, sdp, &self.ctx, take_leg, now)
        } else {
            Session::from_ims_offer(call, sdp, &self.ctx, take_leg, now)
        };
        let (mut session, out_sdp) = match made {
            Ok(x) => x,
            Err(refusal) => return self.refuse(call, req, refusal, true),
        };
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.sessions.push(None);
            self.sessions.len() - 1
        });
        let reg = self.poll.registry();
        let r1 = reg.register(
            &mut session.ims.rtp,
            Token(2 + 2 * slot),
            Interest::READABLE,
        );
        let r2 = reg.register(
            &mut session.ims.rtcp,
            Token(3 + 2 * slot),
            Interest::READABLE,
        );
        if let Err(e) = r1.and(r2) {
            tracing::error!(error = %e, "cannot register IMS-side sockets");
            self.ports.give_back(session.ims.port);
            self.free_slots.push(slot);
            let r = Refusal {
                status: 503,
                warning: "media ports unavailable".into(),
            };
            return self.refuse(call, req, r, true);
        }
        // Registered before the browser can know the ufrag (its first STUN may come at once).
        self.by_ufrag.insert(session.ufrag.clone(), slot);
        self.by_call.insert(call, slot);
        self.sessions[slot] = Some(Box::new(session));
        self.update_gauges();
        let mut out = vec![0u8; BUF];
        self.drive(slot, now, &mut out);
        self.emit(Event::Sdp {
            call,
            req,
            sdp: out_sdp,
        });
    }

    fn update_gauges(&self) {
        self.stats
            .sessions
            .store(self.by_call.len() as u64, Ordering::Relaxed);
        self.stats
            .ports_in_use
            .store(self.ports.in_use() as u64, Ordering::Relaxed);
    }

    /// Frees a session; with a reason, tells the edge it ended by itself.
    fn remove(&mut self, slot: usize, reason: Option<EndReason>) {
        let Some(mut s) = self.sessions.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let reg = self.poll.registry();
        let _ = reg.deregister(&mut s.ims.rtp);
        let _ = reg.deregister(&mut s.ims.rtcp);
        self.by_ufrag.remove(&s.ufrag);
        for a in &s.browser_addrs {
            if self.by_addr.get(a) == Some(&slot) {
                self.by_addr.remove(a);
            }
        }
        self.by_call.remove(&s.call);
        self.ports.give_back(s.ims.port);
        self.free_slots.push(slot);
        // After a panic inside it, str0m's state is not to be trusted: dropped, not closed.
        if reason != Some(EndReason::Failed) {
            s.rtc.disconnect();
        }
        self.update_gauges();
        if let Some(reason) = reason {
            if reason == EndReason::ConsentLost {
                Stats::add(&self.stats.consent_lost, 1);
            }
            tracing::info!(call = s.call, reason = reason.as_str(), "media ended");
            self.emit(Event::Ended {
                call: s.call,
                reason,
            });
        }
    }

    fn read_webrtc(&mut self, batch: &mut RecvBatch, out: &mut [u8]) {
        let local = self.local;
        self.read_all(Source::WebRtc, batch, |e, data, src, now| {
            e.current = None;
            e.webrtc_datagram(data, src, local, now, out);
        });
    }

    /// The socket `src` names, while it exists.
    fn socket(&self, src: Source) -> Option<&UdpSocket> {
        match src {
            Source::WebRtc => Some(&self.socket),
            Source::Ims { slot, rtcp } => {
                let s = self.sessions.get(slot)?.as_deref()?;
                Some(if rtcp { &s.ims.rtcp } else { &s.ims.rtp })
            }
        }
    }

    /// Reads `src`'s socket a batch at a time until it is empty, handing each datagram to
    /// `each`. A batch that comes back short means the socket was empty (see batch.rs).
    fn read_all(
        &mut self,
        src: Source,
        batch: &mut RecvBatch,
        mut each: impl FnMut(&mut Engine, &[u8], SocketAddr, Instant),
    ) {
        loop {
            let Some(socket) = self.socket(src) else {
                return; // the session went meanwhile
            };
            let n = match batch.read(socket) {
                Ok(n) => n,
                Err(e) => {
                    // Not a busy loop on a persistent error: the next datagram wakes us.
                    tracing::debug!(error = %e, socket = ?src, "media socket read");
                    return;
                }
            };
            let now = Instant::now();
            for i in 0..n {
                match batch.get(i) {
                    Some((data, from)) => each(self, data, from, now),
                    None => Stats::add(&self.stats.dropped, 1),
                }
            }
            if n < batch.size() {
                return;
            }
        }
    }

    fn webrtc_datagram(
        &mut self,
        data: &[u8],
        src: SocketAddr,
        local: SocketAddr,
        now: Instant,
        out: &mut [u8],
    ) {
        let Some(slot) = self.demux(data, src) else {
            Stats::add(&self.stats.dropped, 1);
            return;
        };
        self.current = Some(slot);
        let Ok(contents) = data.try_into() else {
            Stats::add(&self.stats.dropped, 1);
            return;
        };
        let dest = self.destination_for(src, local);
        let Some(s) = self.session(slot) else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: src,
                destination: dest,
                contents,
            },
        );
        match s.rtc.handle_input(input) {
            Ok(()) => {}
            Err(RtcError::Dtls(e)) => {
                tracing::info!(error = %e, "DTLS failed");
                return self.remove(slot, Some(EndReason::DtlsFailed));
            }
            Err(e) => {
                tracing::debug!(error = %e, "browser packet refused");
                Stats::add(&self.stats.dropped, 1);
            }
        }
        self.drive(slot, now, out);
    }

    /// The host candidate address a datagram from `src` was sent to (str0m matches it).
    fn destination_for(&self, src: SocketAddr, local: SocketAddr) -> SocketAddr {
        self.ctx
            .candidates
            .iter()
            .find(|c| c.is_ipv4() == src.is_ipv4())
            .copied()
            .unwrap_or(local)
    }

    /// Which session a WebRTC datagram belongs to: STUN by the local ufrag in USERNAME
    /// (RFC 8445 §7.2.2), everything else by the browser address its STUN came from.
    fn demux(&mut self, data: &[u8], src: SocketAddr) -> Option<usize> {
        if data.first().is_some_and(|b| *b < 2) {
            let ufrag = stun_local_ufrag(data)?;
            let slot = match self.by_ufrag.get(ufrag) {
                Some(s) => *s,
                None => {
                    // The browser may have our SDP before we handled the command that made
                    // it (the edge sends commands and answers on other threads): look once
                    // more after the queue is drained.
                    let owned = ufrag.to_string();
                    self.drain_commands();
                    *self.by_ufrag.get(&owned)?
                }
            };
            let now = Instant::now();
            // An address another session's browser is using, with consent still fresh, is not
            // taken over: a client that can forge its source address could otherwise aim a
            // valid check for its own session at a stranger's address and take that call's
            // media until the stranger's next check (RFC 7675 §5.1 consent is per address).
            let inactivity = self.cfg.inactivity;
            let contested = self.by_addr.get(&src).copied().filter(|&other| {
                other != slot
                    && self
                        .sessions
                        .get(other)
                        .and_then(Option::as_ref)
                        .and_then(|o| o.consent_at)
                        .is_some_and(|c| now.duration_since(c) < inactivity)
            });
            if contested.is_some() {
                return None;
            }
            let s = self.sessions.get_mut(slot)?.as_mut()?;
            // ICE-lite: the browser only sends binding requests; one that fails integrity is
            // forged or stale and is dropped here (str0m would drop it too).
            if !stun_request_valid(data, &s.ice_pwd, &self.ctx.crypto) {
                return None;
            }
            // RFC 7675 §5.1: an authenticated binding request refreshes consent.
            s.consent_at = Some(now);
            if !s.browser_addrs.contains(&src) {
                if s.browser_addrs.len() >= MAX_ADDRS_PER_SESSION {
                    let old = s.browser_addrs.remove(0);
                    if self.by_addr.get(&old) == Some(&slot) {
                        self.by_addr.remove(&old);
                    }
                }
                s.browser_addrs.push(src);
                self.by_addr.insert(src, slot);
            }
            return Some(slot);
        }
        self.by_addr.get(&src).copied()
    }

    /// Feeds str0m's output: datagrams out, RTP relayed to the IMS, the next timeout queued.
    fn drive(&mut self, slot: usize, now: Instant, out: &mut [u8]) {
        // Also after a command that made the session: a panic here ends it (`guarded`).
        self.current = Some(slot);
        let Some(s) = self.sessions.get_mut(slot).and_then(Option::as_deref_mut) else {
            return;
        };
        let mut ended = None;
        loop {
            match s.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    s.rtc_timeout = t;
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    if let Err(e) = self.socket.send_to(&t.contents, t.destination) {
                        tracing::trace!(error = %e, "WebRTC send");
                    }
                }
                Ok(Output::Event(e)) => match e {
                    str0m::Event::RtpPacket(p) => {
                        relay_to_ims(s, &p, now, out, &self.stats);
                    }
                    str0m::Event::Connected => tracing::debug!(call = s.call, "DTLS connected"),
                    str0m::Event::Closed => {
                        // The browser closed its PeerConnection (DTLS close_notify): a normal
                        // hang-up whose BYE the edge carries; not a DTLS failure. Its STUN
                        // stops too, so without a Release consent ends the session.
                        tracing::debug!(call = s.call, "browser closed DTLS");
                        s.remote_closed = true;
                    }
                    str0m::Event::IceConnectionStateChange(st) => {
                        tracing::debug!(call = s.call, state = ?st, "ICE state");
                    }
                    _ => {}
                },
                Err(e) => {
                    tracing::info!(call = s.call, error = %e, "WebRTC session failed");
                    ended = Some(EndReason::DtlsFailed);
                    break;
                }
            }
        }
        if ended.is_none() && !s.rtc.is_alive() && !s.remote_closed && s.consent_at.is_some() {
            ended = Some(EndReason::DtlsFailed);
        }
        if let Some(reason) = ended {
            return self.remove(slot, Some(reason));
        }
        let deadline = next_deadline(s, self.cfg.inactivity);
        if s.scheduled.is_none_or(|t| deadline < t) {
            s.scheduled = Some(deadline);
            self.timers.push(Reverse((deadline, slot)));
        }
    }

    fn run_timers(&mut self, out: &mut [u8]) {
        let now = Instant::now();
        while let Some(Reverse((t, slot))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            self.current = Some(slot);
            let inactivity = self.cfg.inactivity;
            let Some(s) = self.session(slot) else {
                continue;
            };
            if s.scheduled != Some(t) {
                continue; // superseded by an earlier or later entry
            }
            s.scheduled = None;
            // RFC 7675 §5.1: no consent for the inactivity period ends the session.
            if s.consent_at
                .is_some_and(|c| now.duration_since(c) >= inactivity)
            {
                self.remove(slot, Some(EndReason::ConsentLost));
                continue;
            }
            if s.ims.next_report() <= now {
                s.ims.report(now);
            }
            if s.rtc_timeout <= now
                && let Err(e) = s.rtc.handle_input(Input::Timeout(now))
            {
                tracing::debug!(error = %e, "str0m timeout");
            }
            self.drive(slot, now, out);
        }
    }

    fn read_ims(&mut self, slot: usize, rtcp_port: bool, batch: &mut RecvBatch, out: &mut [u8]) {
        self.current = Some(slot);
        let src = Source::Ims {
            slot,
            rtcp: rtcp_port,
        };
        self.read_all(src, batch, |e, data, from, now| {
            e.ims_datagram(slot, rtcp_port, data, from, now, out);
        });
    }

    fn ims_datagram(
        &mut self,
        slot: usize,
        rtcp_port: bool,
        data: &[u8],
        src: SocketAddr,
        now: Instant,
        out: &mut [u8],
    ) {
        let epoch = self.epoch;
        let Some(s) = self.sessions.get_mut(slot).and_then(Option::as_deref_mut) else {
            return;
        };
        // RFC 5761 §4: on a muxed port, PT 200..=204 (marker bit folded in) is RTCP.
        let is_rtcp = rtcp_port || data.get(1).is_some_and(|b| (192..=223).contains(b));
        if !s.ims.accept_source(src, rtcp_port) {
            return Stats::add(&self.stats.dropped, 1);
        }
        if is_rtcp {
            return s.ims.on_rtcp(data, now);
        }
        let Some(rtp) = ims_leg::parse_rtp(data) else {
            return Stats::add(&self.stats.dropped, 1);
        };
        s.ims.on_rtp(&rtp, now, epoch);
        if !s.to_browser {
            return; // held toward the browser (RFC 3264 §8.4)
        }
        if relay_to_browser(s, &rtp, now, out) {
            Stats::add(&self.stats.packets_to_browser, 1);
            Stats::add(&self.stats.bytes_to_browser, rtp.payload.len() as u64);
            // Each write is polled out before the next (str0m queues per stream).
            self.drive(slot, now, out);
        } else {
            Stats::add(&self.stats.dropped, 1);
        }
    }
}

fn next_deadline(s: &Session, inactivity: Duration) -> Instant {
    let mut d = s.rtc_timeout.min(s.ims.next_report());
    if let Some(c) = s.consent_at {
        d = d.min(c + inactivity);
    }
    d
}
