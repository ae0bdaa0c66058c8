//! `imsgw-loadgen life`: whole client lives (TCP connect, WebSocket handshake, REGISTER,
//! un-REGISTER, close) started at a fixed offered rate, an open loop: a new client starts on
//! schedule whatever the server does with the ones before it, so the latency it reports is what
//! a person arriving at that rate sees (a closed loop with N in flight only measures
//! N / throughput). Reports REGISTER latency percentiles, the lives that failed, and the CPU the
//! measured processes spent per life.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::cli::{MeasureArgs, MintArgs, SourceIps, parse_source_ips};
use crate::client::{self, Outcome, Shared};
use crate::procfs;
use crate::sip::RegisterTemplate;
use crate::stats::{Latencies, Summary};
use crate::tokens;

/// Open-loop client lives at a fixed rate.
#[derive(Debug, Parser)]
#[command(name = "imsgw-loadgen life")]
pub struct LifeArgs {
    /// Edge WebSocket URL (ws:// only).
    #[arg(long, default_value = "ws://127.0.0.1:8080/sip")]
    pub url: String,

    /// New clients a second, offered whatever the server answers.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,

    /// Seconds of offered load; rate × duration clients in all.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,

    /// SIP domain: Request-URI `sip:DOMAIN`, AOR `sip:USER@DOMAIN`.
    #[arg(long, default_value = "ims.example")]
    pub domain: String,

    /// User part prefix; client i registers `PREFIX<i>`.
    #[arg(long, default_value = "life")]
    pub user_prefix: String,

    /// Contact expiry asked for, seconds.
    #[arg(long, default_value_t = 600)]
    pub expires: u32,

    /// Source addresses for client sockets, round-robin (`A-B`, comma list, or one address).
    #[arg(long, value_parser = parse_source_ips)]
    pub source_ips: Option<SourceIps>,

    #[command(flatten)]
    pub measure: MeasureArgs,

    #[command(flatten)]
    pub tokens: MintArgs,

    /// Per-request (and per-handshake) timeout, seconds.
    #[arg(long, default_value_t = 32)]
    pub request_timeout: u64,

    /// Lives in flight at most; a client due while this many are still running is counted as
    /// shed (not started), so a stalled server cannot exhaust the tool's descriptors.
    #[arg(long, default_value_t = 8000)]
    pub max_in_flight: usize,

    /// Runtime worker threads of the tool.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// What a run measured; also printed as one JSON line.
#[derive(Debug, Serialize)]
pub struct LifeReport {
    pub offered_per_s: f64,
    pub duration_s: f64,
    pub started: usize,
    pub shed: usize,
    pub connect_failed: usize,
    pub register_ok: usize,
    pub register_failed: usize,
    pub unregister_failed: usize,
    /// Lives that ended with every step done (connect, 200 to REGISTER and to un-REGISTER).
    pub complete: usize,
    pub connect: Summary,
    pub register: Summary,
    pub unregister: Summary,
    pub life: Summary,
    /// How late the generator started clients behind the schedule, µs (its own saturation).
    pub generator_lag: Summary,
    /// CPU of the measured processes over the run, seconds, and per completed life, ms.
    pub server_cpu_s: f64,
    pub server_cpu_ms_per_life: f64,
    pub server_cpu_util: f64,
    pub tool_cpu_s: f64,
    /// Failures by reason, a few examples.
    pub failures: Vec<String>,
}

pub fn start(args: LifeArgs) -> Result<bool> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = runtime.block_on(run(args))?;
    print!("{}", render(&report));
    runtime.shutdown_background();
    Ok(report.complete == report.started && report.shed == 0)
}

async fn run(args: LifeArgs) -> Result<LifeReport> {
    if !(args.rate > 0.0 && args.rate <= 100_000.0) {
        bail!("--rate must be in (0, 100000]");
    }
    let (addr, via_transport) = crate::run::resolve(&args.url).await?;
    let targets = args.measure.targets()?;
    let total = (args.rate * args.duration as f64).round() as usize;
    if total == 0 {
        bail!("--rate × --duration is no client at all");
    }
    let bearers = match args.tokens.options() {
        Some(opts) => {
            let users: Vec<String> = (0..total)
                .map(|i| format!("{}{i}", args.user_prefix))
                .collect();
            tokens::mint_all(&opts, &args.domain, &users)?.bearers
        }
        None => Vec::new(),
    };
    let shared = Arc::new(Shared {
        url: args.url.clone(),
        addr,
        source_ips: args.source_ips.clone(),
        template: RegisterTemplate {
            domain: args.domain.clone(),
            via_transport,
            extra_headers: Vec::new(),
        },
        user_prefix: args.user_prefix.clone(),
        expires: args.expires,
        request_timeout: Duration::from_secs(args.request_timeout),
        unregister: true,
        reregister: 0,
        refresh: None,
        bearers,
        connect_slots: Semaphore::new(Semaphore::MAX_PERMITS),
        register_slots: Semaphore::new(Semaphore::MAX_PERMITS),
        requests_answered: AtomicU64::new(0),
    });

    let cpu_before = targets.sample_if_any()?;
    let tool_before = procfs::self_cpu_s();
    let began = Instant::now();
    let every = Duration::from_secs_f64(1.0 / args.rate);
    let mut tick = tokio::time::interval(every);
    // The schedule is fixed: a generator that fell behind starts the late ones at once.
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut lives = JoinSet::new();
    let mut lag = Latencies::default();
    let mut shed = 0;
    let mut done = Vec::with_capacity(total);
    for idx in 0..total {
        let due = tick.tick().await;
        lag.record(u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX));
        while let Some(r) = lives.try_join_next() {
            done.push(r.context("a client task failed")?);
        }
        if lives.len() >= args.max_in_flight {
            shed += 1;
            continue;
        }
        lives.spawn(client::life(shared.clone(), idx));
    }
    let offered_for = began.elapsed();
    let limit = Duration::from_secs(args.request_timeout * 3 + 5);
    let end = tokio::time::timeout(limit, async {
        let mut rest = Vec::new();
        while let Some(r) = lives.join_next().await {
            rest.push(r);
        }
        rest
    })
    .await;
    match end {
        Ok(rest) => {
            for r in rest {
                done.push(r.context("a client task failed")?);
            }
        }
        Err(_) => lives.abort_all(),
    }
    let elapsed = began.elapsed();
    let cpu_after = targets.sample_if_any()?;
    let tool_cpu_s = procfs::self_cpu_s() - tool_before;

    let (mut connect, mut register, mut unregister, mut life) = (
        Latencies::default(),
        Latencies::default(),
        Latencies::default(),
        Latencies::default(),
    );
    let mut r = LifeReport {
        offered_per_s: args.rate,
        duration_s: offered_for.as_secs_f64(),
        started: total - shed,
        shed,
        connect_failed: 0,
        register_ok: 0,
        register_failed: 0,
        unregister_failed: 0,
        complete: 0,
        connect: Summary::default(),
        register: Summary::default(),
        unregister: Summary::default(),
        life: Summary::default(),
        generator_lag: Summary::default(),
        server_cpu_s: 0.0,
        server_cpu_ms_per_life: 0.0,
        server_cpu_util: 0.0,
        tool_cpu_s,
        failures: Vec::new(),
    };
    let failure = |what: String, r: &mut LifeReport| {
        if r.failures.len() < 8 && !r.failures.contains(&what) {
            r.failures.push(what);
        }
    };
    for l in &done {
        life.record(l.total_us);
        match &l.connect {
            Ok(us) => connect.record(*us),
            Err(e) => {
                r.connect_failed += 1;
                failure(format!("connect: {e}"), &mut r);
                continue;
            }
        }
        match &l.register {
            Some((Outcome::Final(200), us)) => {
                r.register_ok += 1;
                register.record(*us);
            }
            Some((o, _)) => {
                r.register_failed += 1;
                failure(format!("REGISTER: {o:?}"), &mut r);
            }
            None => r.register_failed += 1,
        }
        match &l.unregister {
            Some((Outcome::Final(200), us)) => {
                unregister.record(*us);
                r.complete += 1;
            }
            Some((o, _)) => {
                r.unregister_failed += 1;
                failure(format!("un-REGISTER: {o:?}"), &mut r);
            }
            None => {}
        }
    }
    // Lives still running at the limit were aborted: they count as failed.
    let unfinished = r.started.saturating_sub(done.len());
    if unfinished > 0 {
        failure(
            format!("{unfinished} lives unfinished at the time limit"),
            &mut r,
        );
    }
    r.connect = connect.summary();
    r.register = register.summary();
    r.unregister = unregister.summary();
    r.life = life.summary();
    r.generator_lag = lag.summary();
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        r.server_cpu_s = b.cpu_s - a.cpu_s;
        r.server_cpu_ms_per_life = if r.complete > 0 {
            r.server_cpu_s * 1000.0 / r.complete as f64
        } else {
            0.0
        };
        r.server_cpu_util = r.server_cpu_s / elapsed.as_secs_f64();
    }
    Ok(r)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn render(r: &LifeReport) -> String {
    let line = |name: &str, s: &Summary| {
        format!(
            "  {name:<12} n={:<7} p50 {:>8.2} ms  p90 {:>8.2}  p99 {:>8.2}  max {:>8.2}\n",
            s.count,
            ms(s.p50_us),
            ms(s.p90_us),
            ms(s.p99_us),
            ms(s.max_us)
        )
    };
    let mut out = String::new();
    out.push_str(&format!(
        "open loop: {:.0} lives/s offered for {:.1} s: {} started, {} shed, {} complete; \
         failed: {} connect, {} REGISTER, {} un-REGISTER\n",
        r.offered_per_s,
        r.duration_s,
        r.started,
        r.shed,
        r.complete,
        r.connect_failed,
        r.register_failed,
        r.unregister_failed
    ));
    out.push_str(&line("connect", &r.connect));
    out.push_str(&line("REGISTER", &r.register));
    out.push_str(&line("un-REGISTER", &r.unregister));
    out.push_str(&line("whole life", &r.life));
    out.push_str(&line("gen. lag", &r.generator_lag));
    out.push_str(&format!(
        "  server CPU {:.2} s ({:.0}% of a core), {:.3} ms per complete life; tool CPU {:.2} s\n",
        r.server_cpu_s,
        r.server_cpu_util * 100.0,
        r.server_cpu_ms_per_life,
        r.tool_cpu_s
    ));
    for f in &r.failures {
        out.push_str(&format!("  failure: {f}\n"));
    }
    out.push_str(&format!(
        "JSON: {}\n",
        serde_json::to_string(r).unwrap_or_default()
    ));
    out
}
