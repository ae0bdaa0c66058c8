//! One bounded load run: mints the clients' tokens (with --mint-key-dir), spawns the clients,
//! moves them through connect → register → re-register (with --reregister) → hold → close,
//! samples the measured processes between phases, and returns the numbers as a [`Report`]. The
//! deadline (`--time-limit`) bounds every wait.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};

use crate::cli::Args;
use crate::client::{self, Event, Outcome, Phase, Round, Shared, Stage};
use crate::procfs::{self, Sample};
use crate::report::{self, Report};
use crate::sip::RegisterTemplate;
use crate::stats::Latencies;
use crate::tokens;

/// File descriptors the tool needs besides one per client (runtime, stdio, /proc reads).
const FD_HEADROOM: u64 = 64;
/// Time given to clients to close (and un-register) once the run ends.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

pub async fn run(args: Args) -> Result<Report> {
    let (addr, via_transport) = resolve(&args.url).await?;
    check_limits(&args)?;
    let targets = args.measure.targets()?;

    // Tokens first: minting is the client's cost, so it happens before anything is measured.
    let minted = match args.tokens.options() {
        Some(opts) => {
            if args.time_limit > opts.ttl_s {
                eprintln!(
                    "imsgw-loadgen: warning: --time-limit {} s is longer than --token-ttl {} s; \
                     requests late in the run may carry expired tokens",
                    args.time_limit, opts.ttl_s
                );
            }
            let users: Vec<String> = (0..args.count)
                .map(|i| format!("{}{i}", args.user_prefix))
                .collect();
            Some(tokens::mint_all(&opts, &args.domain, &users)?)
        }
        None => None,
    };
    let token_report = minted.as_ref().map(|m| report::TokenInputs {
        minted: m.bearers.len(),
        kid: m.kid.clone(),
        elapsed: m.elapsed,
        tool_cpu_s: m.tool_cpu_s,
    });

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.time_limit);
    let self_cpu_start = procfs::self_cpu_s();
    let mem_before = targets.sample_if_any()?;

    let shared = Arc::new(Shared {
        url: args.url.clone(),
        addr,
        source_ips: args.source_ips.clone(),
        template: RegisterTemplate {
            domain: args.domain.clone(),
            via_transport,
            extra_headers: args.headers.clone(),
        },
        user_prefix: args.user_prefix.clone(),
        expires: args.expires,
        request_timeout: args.request_timeout(),
        unregister: args.unregister,
        reregister: args.reregister,
        refresh: args
            .refresh
            .then(|| Duration::from_millis(u64::from(args.expires) * 900)),
        bearers: minted.map(|m| m.bearers).unwrap_or_default(),
        connect_slots: Semaphore::new(args.connect_concurrency.max(1)),
        register_slots: Semaphore::new(args.concurrency.max(1)),
        requests_answered: AtomicU64::new(0),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Connect);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    for idx in 0..args.count {
        tasks.spawn(client::run(
            shared.clone(),
            idx,
            phase_rx.clone(),
            ev_tx.clone(),
        ));
    }
    drop(ev_tx);
    let mut tally = Tally::default();
    let mut timed_out = false;

    // Connect phase.
    let connect_started = Instant::now();
    timed_out |= !tally
        .wait(&mut ev_rx, deadline, |t| t.connect_done() == args.count)
        .await;
    let connect_elapsed = connect_started.elapsed();

    // Register phase: CPU sampled right before the first REGISTER and after the last final.
    let cpu_before = targets.sample_if_any()?;
    let self_cpu_before = procfs::self_cpu_s();
    let register_started = Instant::now();
    if !timed_out {
        phase_tx.send_replace(Phase::Register);
        timed_out |= !tally
            .wait(&mut ev_rx, deadline, |t| t.register_done() >= t.connected)
            .await;
    }
    let cpu_after = targets.sample_if_any()?;
    let self_cpu_after = procfs::self_cpu_s();
    let register_elapsed = tally.first.elapsed().unwrap_or(register_started.elapsed());

    // Re-register phase, measured like the register phase.
    let mut again = None;
    if args.reregister > 0 && !timed_out {
        let cpu_before = targets.sample_if_any()?;
        let self_cpu_before = procfs::self_cpu_s();
        let started = Instant::now();
        phase_tx.send_replace(Phase::Reregister);
        timed_out |= !tally
            .wait(&mut ev_rx, deadline, |t| {
                t.reregister_finished >= t.in_reregister_phase()
            })
            .await;
        again = Some(PhaseSamples {
            cpu_before,
            cpu_after: targets.sample_if_any()?,
            self_cpu_s: procfs::self_cpu_s() - self_cpu_before,
            elapsed: tally.again.elapsed().unwrap_or(started.elapsed()),
        });
    }

    // Hold: everything registered sits idle, then memory is measured.
    if !timed_out {
        let hold_end = (Instant::now() + Duration::from_secs(args.hold)).min(deadline);
        tally.wait(&mut ev_rx, hold_end, |_| false).await;
        timed_out |= hold_end == deadline;
    }
    let mem_after = targets.sample_if_any()?;
    let self_rss_kib = procfs::self_rss_kib();
    let open_at_measure = tally.connected - tally.dropped_total();

    // Close: un-register if asked, then close every connection, bounded.
    phase_tx.send_replace(if timed_out {
        Phase::Abort
    } else {
        Phase::Close
    });
    // Un-registering may use what is left of the time limit; plain closing gets a short grace.
    let grace_end = Instant::now() + CLOSE_GRACE;
    let close_deadline = if args.unregister && !timed_out {
        deadline.max(grace_end)
    } else {
        grace_end
    };
    loop {
        tokio::select! {
            joined = tasks.join_next() => if joined.is_none() { break },
            Some(ev) = ev_rx.recv() => tally.apply(ev),
            _ = tokio::time::sleep_until(close_deadline) => {
                tasks.abort_all();
                break;
            }
        }
    }
    while let Ok(ev) = ev_rx.try_recv() {
        tally.apply(ev);
    }

    let self_cpu_end = procfs::self_cpu_s();
    let reregister = again.map(|p| report::PhaseInputs {
        elapsed: p.elapsed,
        finals: tally.again.finals,
        timeouts: tally.again.timeouts,
        lost: tally.again.lost,
        latencies: tally.again.latencies,
        cpu_before: p.cpu_before,
        cpu_after: p.cpu_after,
        self_cpu_s: p.self_cpu_s,
    });
    Ok(report::build(report::Inputs {
        args: &args,
        timed_out,
        total_elapsed: started.elapsed(),
        connect_elapsed,
        register_elapsed,
        connected: tally.connected,
        connect_failures: tally.connect_failures,
        finals: tally.first.finals,
        timeouts: tally.first.timeouts,
        lost_in_register: tally.first.lost,
        dropped_idle: tally.dropped_idle,
        latencies: tally.first.latencies,
        reregister,
        refresh: args.refresh.then(|| report::RefreshInputs {
            finals: tally.refresh.finals.clone(),
            timeouts: tally.refresh.timeouts,
            lost: tally.refresh.lost,
            latencies: std::mem::take(&mut tally.refresh.latencies),
        }),
        tokens: token_report,
        unregister_ok: tally.unregister_ok,
        unregister_failed: tally.unregister_failed,
        requests_answered: shared.requests_answered.load(Ordering::Relaxed),
        open_at_measure,
        mem_before,
        mem_after,
        cpu_before,
        cpu_after,
        self_cpu_register: self_cpu_after - self_cpu_before,
        self_cpu_total: self_cpu_end - self_cpu_start,
        self_rss_kib,
    }))
}

/// Resolves the URL's host and port and picks the Via transport (RFC 7118 §5.2).
pub async fn resolve(url: &str) -> Result<(SocketAddr, &'static str)> {
    let uri: tokio_tungstenite::tungstenite::http::Uri = url
        .parse()
        .with_context(|| format!("--url `{url}` is not a URL"))?;
    let (transport, default_port) = match uri.scheme_str() {
        Some("ws") => ("WS", 80),
        Some("wss") => bail!("--url: wss:// is not supported by this tool; point it at ws://"),
        _ => bail!("--url `{url}` must start with ws://"),
    };
    let host = uri.host().context("--url has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(default_port);
    let addr = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving {host}:{port}"))?
        .next()
        .with_context(|| format!("{host}:{port} resolves to no address"))?;
    Ok((addr, transport))
}

/// Refuses a run that cannot fit the open-file limit instead of failing half-way.
fn check_limits(args: &Args) -> Result<()> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let auth_header = |h: &String| {
        h.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("authorization"))
    };
    if args.tokens.mint_key_dir.is_some() && args.headers.iter().any(auth_header) {
        bail!("--header Authorization and --mint-key-dir both set Authorization; drop one");
    }
    if let Some(limit) = procfs::open_file_limit() {
        let need = args.count as u64 + FD_HEADROOM;
        if need > limit {
            bail!(
                "--count {} needs about {need} open files but the limit is {limit}; \
                 lower --count or raise `ulimit -n`",
                args.count
            );
        }
    }
    Ok(())
}

/// Samples taken around the re-register phase.
struct PhaseSamples {
    cpu_before: Option<Sample>,
    cpu_after: Option<Sample>,
    self_cpu_s: f64,
    elapsed: Duration,
}

/// Outcomes of the REGISTER transactions of one phase.
#[derive(Default)]
struct Transactions {
    finals: BTreeMap<u16, usize>,
    timeouts: usize,
    /// The connection was lost before a final response.
    lost: usize,
    latencies: Latencies,
    first_sent: Option<Instant>,
    last_done: Option<Instant>,
}

impl Transactions {
    fn record(&mut self, outcome: Outcome, sent_at: Instant, done_at: Instant) {
        self.first_sent = Some(self.first_sent.map_or(sent_at, |f| f.min(sent_at)));
        self.last_done = Some(self.last_done.map_or(done_at, |l| l.max(done_at)));
        match outcome {
            Outcome::Final(code) => {
                *self.finals.entry(code).or_default() += 1;
                if code == 200 {
                    let us = done_at.duration_since(sent_at).as_micros();
                    self.latencies.record(u64::try_from(us).unwrap_or(u64::MAX));
                }
            }
            Outcome::Timeout => self.timeouts += 1,
            Outcome::ConnectionLost => self.lost += 1,
        }
    }

    fn done(&self) -> usize {
        self.finals.values().sum::<usize>() + self.timeouts + self.lost
    }

    /// First REGISTER sent to last final response received.
    fn elapsed(&self) -> Option<Duration> {
        Some(self.last_done?.duration_since(self.first_sent?))
    }
}

/// Running counts of client events.
#[derive(Default)]
struct Tally {
    connected: usize,
    connect_failures: BTreeMap<String, usize>,
    /// The register phase.
    first: Transactions,
    /// The re-register phase.
    again: Transactions,
    /// Refreshes while holding (--refresh).
    refresh: Transactions,
    reregister_finished: usize,
    /// Dropped while idle before their REGISTER was sent.
    dropped_before_register: usize,
    /// Dropped while idle after registering, before finishing the re-register phase.
    dropped_registered: usize,
    /// Dropped while idle after registering (either stage).
    dropped_idle: usize,
    unregister_ok: usize,
    unregister_failed: BTreeMap<String, usize>,
}

impl Tally {
    fn connect_done(&self) -> usize {
        self.connected + self.connect_failures.values().sum::<usize>()
    }

    fn register_done(&self) -> usize {
        self.first.done() + self.dropped_before_register
    }

    fn dropped_total(&self) -> usize {
        self.dropped_before_register + self.dropped_idle + self.first.lost + self.again.lost
    }

    /// Clients the re-register phase waits for: every one still connected when it began, or
    /// gone during it. Each ends it with exactly one of `ReregisterFinished`, a lost connection
    /// in a re-REGISTER, or `Dropped(Stage::Registered)`.
    fn in_reregister_phase(&self) -> usize {
        // Each client counts in at most one of these, so this cannot underflow; saturate anyway.
        self.connected.saturating_sub(
            self.dropped_before_register
                + self.first.lost
                + self.dropped_registered
                + self.again.lost,
        )
    }

    fn apply(&mut self, ev: Event) {
        match ev {
            Event::Connected => self.connected += 1,
            Event::ConnectFailed(reason) => *self.connect_failures.entry(reason).or_default() += 1,
            Event::Registered {
                round,
                outcome,
                sent_at,
                done_at,
            } => match round {
                Round::First => self.first.record(outcome, sent_at, done_at),
                Round::Again => self.again.record(outcome, sent_at, done_at),
                Round::Refresh => self.refresh.record(outcome, sent_at, done_at),
            },
            Event::ReregisterFinished => self.reregister_finished += 1,
            Event::Dropped(Stage::Unregistered) => self.dropped_before_register += 1,
            Event::Dropped(Stage::Registered) => {
                self.dropped_registered += 1;
                self.dropped_idle += 1;
            }
            Event::Dropped(Stage::Reregistered) => self.dropped_idle += 1,
            Event::Unregistered(Outcome::Final(200)) => self.unregister_ok += 1,
            Event::Unregistered(o) => {
                let kind = match o {
                    Outcome::Final(code) => code.to_string(),
                    Outcome::Timeout => "timeout".into(),
                    Outcome::ConnectionLost => "connection lost".into(),
                };
                *self.unregister_failed.entry(kind).or_default() += 1;
            }
        }
    }

    /// Applies events until `done` holds (true) or `until` passes (false). A closed channel means
    /// every client has finished, which counts as done.
    async fn wait(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Event>,
        until: Instant,
        done: impl Fn(&Self) -> bool,
    ) -> bool {
        while !done(self) {
            match timeout_at(until, rx.recv()).await {
                Ok(Some(ev)) => self.apply(ev),
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
        true
    }
}
