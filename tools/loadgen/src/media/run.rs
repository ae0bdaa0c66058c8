//! One bounded media run: starts the echo and the media thread, moves the callers through
//! register → call → (measured window) → hang-up, samples the gateway's processes around the
//! window, and returns the numbers. `--time-limit` bounds every wait.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};

use crate::media::call::{self, CallEvent, Outcome, Phase, Shared};
use crate::media::cli::MediaArgs;
use crate::media::dialog::CallTemplate;
use crate::media::echo::Echo;
use crate::media::report::{self, Inputs, MediaReport, Snapshot};
use crate::media::rtc::{self, Command, MediaEvent};
use crate::procfs::{self, Targets};
use crate::sip::RegisterTemplate;
use crate::stats::Latencies;
use crate::tokens;

/// Open files besides the per-call WebSocket and media socket.
const FD_HEADROOM: u64 = 64;
/// Time for echoes in flight to come back after the browsers stop sending.
const DRAIN: Duration = Duration::from_millis(500);
/// Time for BYEs and un-REGISTERs at the end.
const HANGUP_GRACE: Duration = Duration::from_secs(10);

pub async fn run(args: MediaArgs) -> Result<MediaReport> {
    let (addr, via_transport) = crate::run::resolve(&args.url).await?;
    check_limits(&args)?;
    let targets = args.measure.targets()?;
    let sample = |t: &Targets| {
        if t.is_empty() {
            Ok(None)
        } else {
            t.sample_by_name().map(Some)
        }
    };

    let bearers = match args.tokens.options() {
        Some(opts) => {
            let users: Vec<String> = (0..args.calls)
                .map(|i| format!("{}{i}", args.user_prefix))
                .collect();
            tokens::mint_all(&opts, &args.domain, &users)?.bearers
        }
        None => Vec::new(),
    };

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.time_limit);
    let self_cpu_start = procfs::self_cpu_s();
    let rcvbuf_errors_start = procfs::udp_rcvbuf_errors();
    let echo = Echo::start(args.ims, args.echo_ip, &args.domain)?;
    let (media_tx, mut media_rx) = mpsc::unbounded_channel();
    let media = Arc::new(rtc::spawn(
        rtc::Config {
            codec: args.codec,
            source_ips: args.source_ips.clone().map(|s| s.0).unwrap_or_default(),
            call_sockets: args.call_sockets,
            threads: usize::from(args.media_threads),
        },
        media_tx,
    )?);
    let shared = Arc::new(Shared {
        url: args.url.clone(),
        addr,
        source_ips: args.source_ips.clone(),
        register: RegisterTemplate {
            domain: args.domain.clone(),
            via_transport,
            extra_headers: Vec::new(),
        },
        call: CallTemplate {
            domain: args.domain.clone(),
            via_transport,
            callee: echo.user.clone(),
        },
        user_prefix: args.user_prefix.clone(),
        bearers,
        request_timeout: Duration::from_secs(args.request_timeout),
        setup_slots: Semaphore::new(args.setup_concurrency.max(1)),
        media: media.clone(),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Register);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    for idx in 0..args.calls {
        tasks.spawn(call::run(
            shared.clone(),
            idx,
            phase_rx.clone(),
            ev_tx.clone(),
        ));
    }
    drop(ev_tx);
    let mut t = Tally::default();
    let mut timed_out = false;

    // Register: every caller connected and registered (or failed).
    timed_out |= !t
        .wait(&mut ev_rx, &mut media_rx, deadline, |t| {
            t.registered_done() == args.calls
        })
        .await;
    let mem_before = sample(&targets)?;

    // Call: INVITEs, bounded by --setup-concurrency; wait for every call's first echo or failure.
    let calls_started = Instant::now();
    let setup_end = (calls_started + Duration::from_secs(args.setup_timeout)).min(deadline);
    if !timed_out {
        phase_tx.send_replace(Phase::Call);
        let all_set = t
            .wait(&mut ev_rx, &mut media_rx, setup_end, |t| {
                t.setup_done() >= t.registered
            })
            .await;
        timed_out |= !all_set && setup_end == deadline;
    }
    let setup_elapsed = calls_started.elapsed();

    // The measured window: steady media, nothing else happening.
    let before = snapshot(&targets, &echo, &media)?;
    let window_end = (Instant::now() + Duration::from_secs(args.duration)).min(deadline);
    t.wait(&mut ev_rx, &mut media_rx, window_end, |_| false)
        .await;
    let after = snapshot(&targets, &echo, &media)?;
    timed_out |= window_end == deadline;

    // Loss: stop sending, let what is in flight come back, then count everything.
    media.send(Command::StopSending);
    t.wait(&mut ev_rx, &mut media_rx, Instant::now() + DRAIN, |_| false)
        .await;
    let totals = snapshot(&targets, &echo, &media)?;

    phase_tx.send_replace(if timed_out {
        Phase::Abort
    } else {
        Phase::Hangup
    });
    let grace_end = Instant::now() + HANGUP_GRACE;
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { break },
            Some(ev) = ev_rx.recv() => t.call(ev),
            Some(ev) = media_rx.recv() => t.media_after_window(ev),
            _ = tokio::time::sleep_until(grace_end) => { tasks.abort_all(); break; }
        }
    }
    while let Ok(ev) = ev_rx.try_recv() {
        t.call(ev);
    }
    let echo_invites = echo.counters.invites.load(Ordering::Relaxed);
    echo.stop();
    drop(shared);
    if let Ok(m) = Arc::try_unwrap(media) {
        m.shutdown();
    }

    Ok(report::build(Inputs {
        args: &args,
        timed_out,
        elapsed: started.elapsed(),
        setup_elapsed,
        registered: t.registered,
        register_failed: t.register_failed,
        invite_ok: t.invite_ok,
        invite_failed: t.invite_failed,
        media_connected: t.connected,
        echoing: t.echoing,
        media_failed: t.media_failed,
        late_failures: t.late_failures,
        to_200: t.to_200,
        to_connected: t.to_connected,
        to_echo: t.to_echo,
        hangup_ok: t.hangup_ok,
        hangup_failed: t.hangup_failed,
        echo_invites,
        mem_before,
        before,
        after,
        totals,
        rcvbuf_errors_start,
        tool_cpu_s: procfs::self_cpu_s() - self_cpu_start,
        tool_rss_kib: procfs::self_rss_kib(),
    }))
}

fn snapshot(targets: &Targets, echo: &Echo, media: &rtc::Handle) -> Result<Snapshot> {
    Ok(Snapshot {
        at: Instant::now(),
        server: if targets.is_empty() {
            None
        } else {
            Some(targets.sample_by_name()?)
        },
        sent: media.counters.sent.load(Ordering::Relaxed),
        received: media.counters.received.load(Ordering::Relaxed),
        echo_in: echo.counters.rtp_in.load(Ordering::Relaxed),
        echo_out: echo.counters.rtp_out.load(Ordering::Relaxed),
        unmatched: media.counters.unmatched.load(Ordering::Relaxed),
        send_errors: media.counters.send_errors.load(Ordering::Relaxed),
        tool_cpu_s: procfs::self_cpu_s(),
        bundle_added: media.counters.bundle_added.load(Ordering::Relaxed),
        rcvbuf_errors: procfs::udp_rcvbuf_errors(),
    })
}

/// Refuses a run that cannot fit the open-file limit.
fn check_limits(args: &MediaArgs) -> Result<()> {
    if args.calls == 0 {
        bail!("--calls must be at least 1");
    }
    let sockets = if args.call_sockets == 0 {
        args.calls
    } else {
        args.call_sockets
    };
    if let Some(limit) = procfs::open_file_limit() {
        let need = (args.calls + sockets) as u64 + FD_HEADROOM;
        if need > limit {
            bail!(
                "--calls {} needs about {need} open files (a WebSocket and a media socket per \
                 call) but the limit is {limit}; lower --calls or share sockets (--call-sockets)",
                args.calls
            );
        }
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    registered: usize,
    register_failed: BTreeMap<String, usize>,
    invite_ok: usize,
    invite_failed: BTreeMap<String, usize>,
    connected: usize,
    echoing: usize,
    media_failed: BTreeMap<String, usize>,
    /// Media failures after the window (ICE giving up once the gateway freed the call).
    late_failures: usize,
    to_200: Latencies,
    to_connected: Latencies,
    to_echo: Latencies,
    hangup_ok: usize,
    hangup_failed: BTreeMap<String, usize>,
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn kind(o: &Outcome) -> String {
    match o {
        Outcome::Final(c) => c.to_string(),
        Outcome::Timeout => "timeout".into(),
        Outcome::ConnectionLost => "connection lost".into(),
        Outcome::Failed(why) => why.clone(),
    }
}

impl Tally {
    fn registered_done(&self) -> usize {
        self.registered + self.register_failed.values().sum::<usize>()
    }

    /// Calls whose set-up is over: echoing, or failed at the INVITE or in the media.
    fn setup_done(&self) -> usize {
        self.echoing
            + self.invite_failed.values().sum::<usize>()
            + self.media_failed.values().sum::<usize>()
    }

    fn call(&mut self, ev: CallEvent) {
        match ev {
            CallEvent::Registered {
                outcome: Outcome::Final(200),
                ..
            } => self.registered += 1,
            CallEvent::Registered { outcome, .. } => {
                *self.register_failed.entry(kind(&outcome)).or_default() += 1;
            }
            CallEvent::Invited {
                outcome: Outcome::Final(200..=299),
                after,
                ..
            } => {
                self.invite_ok += 1;
                self.to_200.record(us(after));
            }
            CallEvent::Invited { outcome, .. } => {
                *self.invite_failed.entry(kind(&outcome)).or_default() += 1;
            }
            CallEvent::HungUp {
                outcome: Outcome::Final(200),
                ..
            } => self.hangup_ok += 1,
            CallEvent::HungUp { outcome, .. } => {
                *self.hangup_failed.entry(kind(&outcome)).or_default() += 1;
            }
        }
    }

    fn media(&mut self, ev: MediaEvent) {
        match ev {
            MediaEvent::Connected { after, .. } => {
                self.connected += 1;
                self.to_connected.record(us(after));
            }
            MediaEvent::FirstEcho { after, .. } => {
                self.echoing += 1;
                self.to_echo.record(us(after));
            }
            MediaEvent::Failed { reason, .. } => {
                *self.media_failed.entry(reason).or_default() += 1;
            }
        }
    }

    fn media_after_window(&mut self, ev: MediaEvent) {
        match ev {
            MediaEvent::Failed { .. } => self.late_failures += 1,
            ev => self.media(ev),
        }
    }

    /// Applies events until `done` holds (true) or `until` passes (false).
    async fn wait(
        &mut self,
        calls: &mut mpsc::UnboundedReceiver<CallEvent>,
        media: &mut mpsc::UnboundedReceiver<MediaEvent>,
        until: Instant,
        done: impl Fn(&Self) -> bool,
    ) -> bool {
        while !done(self) {
            tokio::select! {
                Some(ev) = calls.recv() => self.call(ev),
                Some(ev) = media.recv() => self.media(ev),
                r = timeout_at(until, std::future::pending::<()>()) => {
                    let _ = r;
                    return false;
                }
            }
        }
        true
    }
}
