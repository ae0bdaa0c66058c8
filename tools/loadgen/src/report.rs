//! Turns the raw counts of a run into the numbers people compare (rates, CPU per REGISTER,
//! memory per idle connection) and prints them as aligned text plus one `JSON: ` line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::cli::Args;
use crate::procfs::Sample;
use crate::stats::{Latencies, Summary};

/// Raw results handed over by the run.
pub struct Inputs<'a> {
    pub args: &'a Args,
    pub timed_out: bool,
    pub total_elapsed: Duration,
    pub connect_elapsed: Duration,
    pub register_elapsed: Duration,
    pub connected: usize,
    pub connect_failures: BTreeMap<String, usize>,
    pub finals: BTreeMap<u16, usize>,
    pub timeouts: usize,
    pub lost_in_register: usize,
    pub dropped_idle: usize,
    pub latencies: Latencies,
    /// The re-register phase, when it ran.
    pub reregister: Option<PhaseInputs>,
    /// The refreshes while holding, with --refresh.
    pub refresh: Option<RefreshInputs>,
    /// The tokens minted before the run, with --mint-key-dir.
    pub tokens: Option<TokenInputs>,
    pub unregister_ok: usize,
    pub unregister_failed: BTreeMap<String, usize>,
    pub requests_answered: u64,
    pub open_at_measure: usize,
    pub mem_before: Option<Sample>,
    pub mem_after: Option<Sample>,
    pub cpu_before: Option<Sample>,
    pub cpu_after: Option<Sample>,
    pub self_cpu_register: f64,
    pub self_cpu_total: f64,
    pub self_rss_kib: u64,
}

/// Raw results of the refreshes while holding.
pub struct RefreshInputs {
    pub finals: BTreeMap<u16, usize>,
    pub timeouts: usize,
    pub lost: usize,
    pub latencies: Latencies,
}

/// The refreshes while holding: the steady state's REGISTERs.
#[derive(Debug, Serialize)]
pub struct RefreshReport {
    pub ok: usize,
    pub non_200: BTreeMap<u16, usize>,
    pub timeouts: usize,
    pub connection_lost: usize,
    pub latency: Summary,
}

/// Raw results of the re-register phase.
pub struct PhaseInputs {
    pub elapsed: Duration,
    pub finals: BTreeMap<u16, usize>,
    pub timeouts: usize,
    pub lost: usize,
    pub latencies: Latencies,
    pub cpu_before: Option<Sample>,
    pub cpu_after: Option<Sample>,
    pub self_cpu_s: f64,
}

/// What minting the tokens cost the tool.
pub struct TokenInputs {
    pub minted: usize,
    pub kid: String,
    pub elapsed: Duration,
    pub tool_cpu_s: f64,
}

/// Everything a run measured. Serialized as the `JSON:` line; field names are the contract with
/// scripts that record runs.
#[derive(Debug, Serialize)]
pub struct Report {
    pub url: String,
    pub count: usize,
    pub concurrency: usize,
    pub source_ips: usize,
    /// True when every client connected and got 200 to its REGISTER (and un-REGISTER, with
    /// --unregister), within the time limit.
    pub success: bool,
    pub timed_out: bool,
    pub elapsed_s: f64,
    pub connect: ConnectReport,
    pub register: RegisterReport,
    /// With --reregister: the re-REGISTERs, measured apart from the first ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reregister: Option<ReregisterReport>,
    /// With --refresh: the refreshes while holding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshReport>,
    /// With --mint-key-dir: the tokens, minted before any phase (the tool's cost, not the
    /// server's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokensReport>,
    /// Absent when no process was named with --pid/--pidfile/--pgrep-parent.
    pub server: Option<ServerReport>,
    pub tool: ToolReport,
    pub requests_answered: u64,
    pub dropped_while_idle: usize,
    pub unregister_ok: usize,
    /// Un-REGISTERs that did not get 200: by status code, `timeout` or `connection lost`.
    pub unregister_failed: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
pub struct ConnectReport {
    pub ok: usize,
    pub failed: BTreeMap<String, usize>,
    pub elapsed_s: f64,
    pub per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct RegisterReport {
    pub ok: usize,
    /// Final responses other than 200, by status code.
    pub non_200: BTreeMap<u16, usize>,
    pub timeouts: usize,
    pub connection_lost: usize,
    /// First REGISTER sent to last final response received.
    pub elapsed_s: f64,
    /// Successful registrations per second over the register phase.
    pub per_s: f64,
    /// Latency of the 200 responses.
    pub latency: Summary,
}

#[derive(Debug, Serialize)]
pub struct ReregisterReport {
    /// Re-REGISTERs asked of each client whose first REGISTER got 200 (`--reregister`).
    pub per_client: u32,
    pub ok: usize,
    /// Final responses other than 200, by status code.
    pub non_200: BTreeMap<u16, usize>,
    pub timeouts: usize,
    pub connection_lost: usize,
    /// First re-REGISTER sent to last final response received.
    pub elapsed_s: f64,
    /// Successful re-registrations per second over the phase.
    pub per_s: f64,
    /// Latency of the 200 responses.
    pub latency: Summary,
    /// utime+stime of the measured processes during the phase; absent when none was named.
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_register: Option<f64>,
    pub tool_cpu_s: f64,
}

#[derive(Debug, Serialize)]
pub struct TokensReport {
    pub minted: usize,
    /// `kid` of the signing key (public: it is in every token's header).
    pub kid: String,
    /// Wall time of minting them all, before the run.
    pub mint_s: f64,
    pub mint_us_per_token: Option<f64>,
    pub tool_cpu_s: f64,
}

#[derive(Debug, Serialize)]
pub struct ServerReport {
    pub processes: usize,
    /// utime+stime of the measured processes during the register phase.
    pub cpu_s: f64,
    pub cpu_us_per_register: Option<f64>,
    pub pss_before_kib: u64,
    pub pss_after_kib: u64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// Connections open when memory was measured.
    pub idle_connections: usize,
    pub pss_kib_per_connection: Option<f64>,
    pub rss_kib_per_connection: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct ToolReport {
    pub cpu_s_register_phase: f64,
    pub cpu_s_total: f64,
    /// The tool's own RSS when the server's memory was measured.
    pub rss_kib: u64,
}

pub fn build(i: Inputs<'_>) -> Report {
    let args = i.args;
    let ok = i.finals.get(&200).copied().unwrap_or(0);
    let non_200: BTreeMap<u16, usize> = i
        .finals
        .iter()
        .filter(|(c, _)| **c != 200)
        .map(|(c, n)| (*c, *n))
        .collect();
    let server = match (i.mem_before, i.mem_after, i.cpu_before, i.cpu_after) {
        (Some(mb), Some(ma), Some(cb), Some(ca)) => {
            let per_conn = |before: u64, after: u64| {
                (i.open_at_measure > 0)
                    .then(|| (after as f64 - before as f64) / i.open_at_measure as f64)
            };
            let cpu_s = (ca.cpu_s - cb.cpu_s).max(0.0);
            Some(ServerReport {
                processes: ma.processes,
                cpu_s,
                cpu_us_per_register: (ok > 0).then(|| cpu_s * 1e6 / ok as f64),
                pss_before_kib: mb.pss_kib,
                pss_after_kib: ma.pss_kib,
                rss_before_kib: mb.rss_kib,
                rss_after_kib: ma.rss_kib,
                idle_connections: i.open_at_measure,
                pss_kib_per_connection: per_conn(mb.pss_kib, ma.pss_kib),
                rss_kib_per_connection: per_conn(mb.rss_kib, ma.rss_kib),
            })
        }
        _ => None,
    };
    let connect_s = i.connect_elapsed.as_secs_f64();
    let register_s = i.register_elapsed.as_secs_f64();
    let reregister = i.reregister.map(|p| reregister_report(args.reregister, p));
    // Every client registered with 200 must also get 200 to each of its re-REGISTERs.
    let reregister_ok = reregister
        .as_ref()
        .is_none_or(|r| r.ok == ok * r.per_client as usize);
    let tokens = i.tokens.map(|t| {
        let mint_s = t.elapsed.as_secs_f64();
        TokensReport {
            minted: t.minted,
            kid: t.kid,
            mint_s,
            mint_us_per_token: (t.minted > 0).then(|| mint_s * 1e6 / t.minted as f64),
            tool_cpu_s: t.tool_cpu_s,
        }
    });
    Report {
        url: args.url.clone(),
        count: args.count,
        concurrency: args.concurrency,
        source_ips: args.source_ips.as_ref().map_or(0, |s| s.0.len()),
        // An un-REGISTER is a REGISTER too: with --unregister each must get 200 as well.
        success: !i.timed_out
            && ok == args.count
            && reregister_ok
            && i.unregister_failed.is_empty(),
        timed_out: i.timed_out,
        elapsed_s: i.total_elapsed.as_secs_f64(),
        connect: ConnectReport {
            ok: i.connected,
            failed: i.connect_failures,
            elapsed_s: connect_s,
            per_s: rate(i.connected, connect_s),
        },
        register: RegisterReport {
            ok,
            non_200,
            timeouts: i.timeouts,
            connection_lost: i.lost_in_register,
            elapsed_s: register_s,
            per_s: rate(ok, register_s),
            latency: i.latencies.summary(),
        },
        reregister,
        refresh: i.refresh.map(|r| {
            let mut non_200 = r.finals;
            let ok = non_200.remove(&200).unwrap_or(0);
            RefreshReport {
                ok,
                non_200,
                timeouts: r.timeouts,
                connection_lost: r.lost,
                latency: r.latencies.summary(),
            }
        }),
        tokens,
        server,
        tool: ToolReport {
            cpu_s_register_phase: i.self_cpu_register,
            cpu_s_total: i.self_cpu_total,
            rss_kib: i.self_rss_kib,
        },
        requests_answered: i.requests_answered,
        dropped_while_idle: i.dropped_idle,
        unregister_ok: i.unregister_ok,
        unregister_failed: i.unregister_failed,
    }
}

fn reregister_report(per_client: u32, p: PhaseInputs) -> ReregisterReport {
    let ok = p.finals.get(&200).copied().unwrap_or(0);
    let server_cpu_s = match (p.cpu_before, p.cpu_after) {
        (Some(b), Some(a)) => Some((a.cpu_s - b.cpu_s).max(0.0)),
        _ => None,
    };
    let elapsed_s = p.elapsed.as_secs_f64();
    ReregisterReport {
        per_client,
        ok,
        non_200: p.finals.into_iter().filter(|(c, _)| *c != 200).collect(),
        timeouts: p.timeouts,
        connection_lost: p.lost,
        elapsed_s,
        per_s: rate(ok, elapsed_s),
        latency: p.latencies.summary(),
        server_cpu_s,
        server_cpu_us_per_register: server_cpu_s
            .and_then(|s| (ok > 0).then(|| s * 1e6 / ok as f64)),
        tool_cpu_s: p.self_cpu_s,
    }
}

fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

impl Report {
    /// Aligned human-readable text followed by the `JSON: ` line.
    pub fn render(&self) -> String {
        let mut o = String::new();
        // `writeln!` to a String cannot fail; results are ignored on purpose.
        let mut line = |k: &str, v: String| {
            let _ = writeln!(o, "{k:<30} {v}");
        };
        line("url", self.url.clone());
        line(
            "clients",
            format!(
                "{} (register concurrency {}, {} source addresses)",
                self.count, self.concurrency, self.source_ips
            ),
        );
        let status = match (self.success, self.timed_out) {
            (true, _) => "OK: every REGISTER got 200",
            (false, true) => "FAILED: time limit reached",
            (false, false) => "FAILED: not every REGISTER got 200",
        };
        line("result", status.into());
        line("elapsed", format!("{:.2} s", self.elapsed_s));
        if let Some(t) = &self.tokens {
            line(
                "tokens minted (before run)",
                format!(
                    "{} in {:.3} s = {} each; tool CPU {:.2} s; kid {}",
                    t.minted,
                    t.mint_s,
                    opt(t.mint_us_per_token, "us"),
                    t.tool_cpu_s,
                    t.kid
                ),
            );
        }
        let c = &self.connect;
        line(
            "connect",
            format!(
                "{} ok, {} failed in {:.2} s ({:.0}/s)",
                c.ok,
                c.failed.values().sum::<usize>(),
                c.elapsed_s,
                c.per_s
            ),
        );
        for (reason, n) in &c.failed {
            line("  connect failure", format!("{n} x {reason}"));
        }
        let r = &self.register;
        line(
            "register",
            format!(
                "{} x 200, {} other finals, {} timeouts, {} connections lost",
                r.ok,
                r.non_200.values().sum::<usize>(),
                r.timeouts,
                r.connection_lost
            ),
        );
        for (code, n) in &r.non_200 {
            line("  final", format!("{n} x {code}"));
        }
        line(
            "registrations/s",
            format!("{:.1} (over {:.3} s)", r.per_s, r.elapsed_s),
        );
        let l = &r.latency;
        line("latency of 200s (ms)", latency_text(l));
        match &self.server {
            Some(s) => {
                line("server processes", s.processes.to_string());
                line(
                    "server CPU, register phase",
                    format!(
                        "{:.2} s = {} per REGISTER",
                        s.cpu_s,
                        opt(s.cpu_us_per_register, "us")
                    ),
                );
                line(
                    "server PSS before/after",
                    format!("{} / {} KiB", s.pss_before_kib, s.pss_after_kib),
                );
                line(
                    "server RSS before/after",
                    format!("{} / {} KiB", s.rss_before_kib, s.rss_after_kib),
                );
                line(
                    "memory per idle connection",
                    format!(
                        "PSS {}  RSS {}  ({} connections)",
                        opt(s.pss_kib_per_connection, "KiB"),
                        opt(s.rss_kib_per_connection, "KiB"),
                        s.idle_connections
                    ),
                );
                line(
                    "  note",
                    "PSS counts shared pages once; preallocated pools (Kamailio shm) count only once touched"
                        .into(),
                );
            }
            None => line(
                "server",
                "not measured (no --pid/--pidfile/--pgrep-parent)".into(),
            ),
        }
        if let Some(r) = &self.reregister {
            line(
                "re-register",
                format!(
                    "{} x 200 ({} per client), {} other finals, {} timeouts, {} connections lost",
                    r.ok,
                    r.per_client,
                    r.non_200.values().sum::<usize>(),
                    r.timeouts,
                    r.connection_lost
                ),
            );
            for (code, n) in &r.non_200 {
                line("  final", format!("{n} x {code}"));
            }
            line(
                "re-registrations/s",
                format!("{:.1} (over {:.3} s)", r.per_s, r.elapsed_s),
            );
            let l = &r.latency;
            line("re-register latency (ms)", latency_text(l));
            if let Some(cpu) = r.server_cpu_s {
                line(
                    "server CPU, re-register phase",
                    format!(
                        "{cpu:.2} s = {} per REGISTER",
                        opt(r.server_cpu_us_per_register, "us")
                    ),
                );
            }
            line(
                "tool CPU, re-register phase",
                format!("{:.2} s", r.tool_cpu_s),
            );
        }
        line(
            "tool CPU",
            format!(
                "{:.2} s register phase, {:.2} s total; RSS {} KiB",
                self.tool.cpu_s_register_phase, self.tool.cpu_s_total, self.tool.rss_kib
            ),
        );
        if let Some(r) = &self.refresh {
            let other: usize = r.non_200.values().sum();
            line(
                "refresh (steady state)",
                format!(
                    "{} x 200, {other} other finals, {} timeouts, {} connections lost",
                    r.ok, r.timeouts, r.connection_lost
                ),
            );
            line("refresh latency (ms)", latency_text(&r.latency));
        }
        line("requests answered", self.requests_answered.to_string());
        line("dropped while idle", self.dropped_while_idle.to_string());
        let unreg_failed: usize = self.unregister_failed.values().sum();
        if self.unregister_ok + unreg_failed > 0 {
            line(
                "un-register",
                format!("{} ok, {unreg_failed} failed", self.unregister_ok),
            );
            for (kind, n) in &self.unregister_failed {
                line("  un-register failure", format!("{n} x {kind}"));
            }
        }
        // Serializing plain structs of numbers, strings and maps with string/integer keys
        // cannot fail.
        let json = serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        let _ = writeln!(o, "JSON: {json}");
        o
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.1} {unit}"))
}

/// One latency summary as the report prints it, in milliseconds.
fn latency_text(l: &Summary) -> String {
    format!(
        "p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}",
        ms(l.p50_us),
        ms(l.p90_us),
        ms(l.p99_us),
        ms(l.max_us),
        ms(l.mean_us)
    )
}
