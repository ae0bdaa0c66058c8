//! The media run's numbers: relayed packets/s per core of the measured processes, memory per
//! call, set-up times and loss, printed as aligned text plus one `JSON: ` line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::media::cli::MediaArgs;
use crate::procfs::Sample;
use crate::stats::{Latencies, Summary};

/// Measured processes by command name.
pub type ByName = BTreeMap<String, Sample>;

/// Counters and a process sample at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Instant,
    pub server: Option<ByName>,
    /// Frames the browsers sent.
    pub sent: u64,
    /// Frames the browsers got back.
    pub received: u64,
    /// RTP packets that reached the echo (relayed toward the IMS).
    pub echo_in: u64,
    pub echo_out: u64,
    pub unmatched: u64,
    pub send_errors: u64,
    /// CPU seconds the tool itself has used so far.
    pub tool_cpu_s: f64,
    pub bundle_added: u64,
    /// Host-wide UDP receive-buffer drops so far (/proc/net/snmp).
    pub rcvbuf_errors: Option<u64>,
}

pub struct Inputs<'a> {
    pub args: &'a MediaArgs,
    pub timed_out: bool,
    pub elapsed: Duration,
    pub setup_elapsed: Duration,
    pub registered: usize,
    pub register_failed: BTreeMap<String, usize>,
    pub invite_ok: usize,
    pub invite_failed: BTreeMap<String, usize>,
    pub media_connected: usize,
    pub echoing: usize,
    pub media_failed: BTreeMap<String, usize>,
    pub late_failures: usize,
    pub to_200: Latencies,
    pub to_connected: Latencies,
    pub to_echo: Latencies,
    pub hangup_ok: usize,
    pub hangup_failed: BTreeMap<String, usize>,
    pub echo_invites: u64,
    pub mem_before: Option<ByName>,
    pub before: Snapshot,
    pub after: Snapshot,
    pub totals: Snapshot,
    /// Before anything was sent.
    pub rcvbuf_errors_start: Option<u64>,
    pub tool_cpu_s: f64,
    pub tool_rss_kib: u64,
}

/// Everything a media run measured; the `JSON:` line's field names are the contract.
#[derive(Debug, Serialize)]
pub struct MediaReport {
    pub label: String,
    pub url: String,
    pub codec: String,
    pub calls: usize,
    /// Every call registered, got 200, connected and echoed, within the time limit.
    pub success: bool,
    pub timed_out: bool,
    pub elapsed_s: f64,
    pub registered: usize,
    pub register_failed: BTreeMap<String, usize>,
    pub invite_ok: usize,
    pub invite_failed: BTreeMap<String, usize>,
    /// INVITEs the echo received (fewer than sent: lost before the IMS).
    pub echo_invites: u64,
    pub media_connected: usize,
    pub echoing: usize,
    pub media_failed: BTreeMap<String, usize>,
    pub setup: SetupReport,
    pub window: WindowReport,
    /// Absent when no process was named.
    pub server: Option<ServerReport>,
    pub loss: LossReport,
    pub hangup_ok: usize,
    pub hangup_failed: BTreeMap<String, usize>,
    pub late_media_failures: usize,
    /// SDP answers without `a=group:BUNDLE` that the tool completed (rtpengine 10.5 drops it).
    pub answers_without_bundle: u64,
    pub tool_cpu_s: f64,
    pub tool_rss_kib: u64,
}

#[derive(Debug, Serialize)]
pub struct SetupReport {
    /// INVITE sent → 200 OK received.
    pub invite_to_200: Summary,
    /// INVITE sent → ICE and DTLS connected.
    pub invite_to_connected: Summary,
    /// INVITE sent → first echoed RTP received.
    pub invite_to_first_echo: Summary,
    /// First INVITE to the last call set up (or the set-up timeout).
    pub elapsed_s: f64,
}

#[derive(Debug, Serialize)]
pub struct WindowReport {
    pub seconds: f64,
    /// Frames/s the echoing calls should have sent (50 each).
    pub asked_per_s: f64,
    /// Frames/s the browsers sent.
    pub sent_per_s: f64,
    /// RTP packets/s the gateway relayed: toward the IMS (seen by the echo) plus back to the
    /// browsers (received by them).
    pub relayed_per_s: f64,
    /// Cores the tool (browsers and echo) kept busy in the window, on the same host.
    pub tool_cores: f64,
}

#[derive(Debug, Serialize)]
pub struct ServerReport {
    pub processes: usize,
    /// CPU seconds of the measured processes in the window.
    pub cpu_s: f64,
    /// Cores busy on average in the window.
    pub cores: f64,
    /// Relayed RTP packets per CPU second: the headline figure.
    pub relayed_per_core_s: f64,
    pub rss_before_kib: u64,
    pub rss_during_kib: u64,
    /// (RSS during the calls − RSS with everyone registered, no call) / calls echoing.
    pub rss_per_call_kib: f64,
    pub pss_per_call_kib: f64,
    /// The same, per command name (`kamailio`, `rtpengine`, `imsgw`).
    pub by_process: BTreeMap<String, ProcessReport>,
}

#[derive(Debug, Serialize)]
pub struct ProcessReport {
    pub processes: usize,
    pub cpu_s: f64,
    pub rss_per_call_kib: f64,
    pub pss_per_call_kib: f64,
}

/// All the processes of a sample together.
fn total(by: &ByName) -> Sample {
    by.values().fold(Sample::default(), |a, s| Sample {
        processes: a.processes + s.processes,
        cpu_s: a.cpu_s + s.cpu_s,
        pss_kib: a.pss_kib + s.pss_kib,
        rss_kib: a.rss_kib + s.rss_kib,
    })
}

#[derive(Debug, Serialize)]
pub struct LossReport {
    /// Over the whole run, after a drain.
    pub sent: u64,
    pub reached_echo: u64,
    pub received: u64,
    /// 1 − received / sent, percent.
    pub loss_pct: f64,
    /// 1 − reached_echo / sent, percent.
    pub toward_ims_pct: f64,
    /// 1 − received / echoed, percent.
    pub from_ims_pct: f64,
    pub unmatched_datagrams: u64,
    pub send_errors: u64,
    /// UDP datagrams the kernel dropped on this host for full receive buffers during the run
    /// (any process: the gateway's, the tool's, or someone else's).
    pub host_udp_rcvbuf_drops: Option<u64>,
}

fn pct_lost(got: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * (1.0 - got as f64 / of as f64)
    }
}

pub fn build(i: Inputs<'_>) -> MediaReport {
    let secs = i.after.at.duration_since(i.before.at).as_secs_f64();
    let rate = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let relayed = (i.after.echo_in - i.before.echo_in) + (i.after.received - i.before.received);
    let per_call = |a: u64, b: u64| {
        if i.echoing == 0 {
            0.0
        } else {
            (a as f64 - b as f64) / i.echoing as f64
        }
    };
    let server = match (&i.mem_before, &i.before.server, &i.after.server) {
        (Some(m0n), Some(c0n), Some(c1n)) => {
            let by_process = c1n
                .iter()
                .map(|(name, c1)| {
                    let c0 = c0n.get(name).copied().unwrap_or_default();
                    let m0 = m0n.get(name).copied().unwrap_or_default();
                    let r = ProcessReport {
                        processes: c1.processes,
                        cpu_s: c1.cpu_s - c0.cpu_s,
                        rss_per_call_kib: per_call(c1.rss_kib, m0.rss_kib),
                        pss_per_call_kib: per_call(c1.pss_kib, m0.pss_kib),
                    };
                    (name.clone(), r)
                })
                .collect();
            let (m0, c0, c1) = (total(m0n), total(c0n), total(c1n));
            let cpu = c1.cpu_s - c0.cpu_s;
            Some(ServerReport {
                processes: c1.processes,
                cpu_s: cpu,
                cores: if secs > 0.0 { cpu / secs } else { 0.0 },
                relayed_per_core_s: if cpu > 0.0 { relayed as f64 / cpu } else { 0.0 },
                rss_before_kib: m0.rss_kib,
                rss_during_kib: c1.rss_kib,
                rss_per_call_kib: per_call(c1.rss_kib, m0.rss_kib),
                pss_per_call_kib: per_call(c1.pss_kib, m0.pss_kib),
                by_process,
            })
        }
        _ => None,
    };
    let t = &i.totals;
    let success = !i.timed_out
        && i.registered == i.args.calls
        && i.echoing == i.args.calls
        && i.media_failed.is_empty();
    MediaReport {
        label: i.args.label.clone(),
        url: i.args.url.clone(),
        codec: format!("{:?}", i.args.codec).to_uppercase(),
        calls: i.args.calls,
        success,
        timed_out: i.timed_out,
        elapsed_s: i.elapsed.as_secs_f64(),
        registered: i.registered,
        register_failed: i.register_failed,
        invite_ok: i.invite_ok,
        invite_failed: i.invite_failed,
        echo_invites: i.echo_invites,
        media_connected: i.media_connected,
        echoing: i.echoing,
        media_failed: i.media_failed,
        setup: SetupReport {
            invite_to_200: i.to_200.summary(),
            invite_to_connected: i.to_connected.summary(),
            invite_to_first_echo: i.to_echo.summary(),
            elapsed_s: i.setup_elapsed.as_secs_f64(),
        },
        window: WindowReport {
            seconds: secs,
            asked_per_s: 50.0 * i.echoing as f64,
            sent_per_s: rate(i.after.sent - i.before.sent),
            relayed_per_s: rate(relayed),
            tool_cores: if secs > 0.0 {
                (i.after.tool_cpu_s - i.before.tool_cpu_s) / secs
            } else {
                0.0
            },
        },
        server,
        loss: LossReport {
            sent: t.sent,
            reached_echo: t.echo_in,
            received: t.received,
            loss_pct: pct_lost(t.received, t.sent),
            toward_ims_pct: pct_lost(t.echo_in, t.sent),
            from_ims_pct: pct_lost(t.received, t.echo_out),
            unmatched_datagrams: t.unmatched,
            send_errors: t.send_errors,
            host_udp_rcvbuf_drops: match (i.rcvbuf_errors_start, t.rcvbuf_errors) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            },
        },
        hangup_ok: i.hangup_ok,
        hangup_failed: i.hangup_failed,
        late_media_failures: i.late_failures,
        answers_without_bundle: t.bundle_added,
        tool_cpu_s: i.tool_cpu_s,
        tool_rss_kib: i.tool_rss_kib,
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl MediaReport {
    pub fn render(&self) -> String {
        let mut o = String::new();
        // `writeln!` to a String cannot fail.
        let _ = writeln!(
            o,
            "media bench: {} ({}), {} {} calls",
            self.label, self.url, self.calls, self.codec
        );
        let _ = writeln!(
            o,
            "  calls        registered {}  200 OK {}  ICE+DTLS up {}  echoing {}  (echo saw {} INVITEs)",
            self.registered, self.invite_ok, self.media_connected, self.echoing, self.echo_invites
        );
        for (what, m) in [
            ("REGISTER failed", &self.register_failed),
            ("INVITE failed", &self.invite_failed),
            ("media failed", &self.media_failed),
        ] {
            if !m.is_empty() {
                let _ = writeln!(o, "  {what:<12} {m:?}");
            }
        }
        let s = &self.setup;
        for (what, v) in [
            ("INVITE→200", &s.invite_to_200),
            ("INVITE→ICE+DTLS", &s.invite_to_connected),
            ("INVITE→echo", &s.invite_to_first_echo),
        ] {
            let _ = writeln!(
                o,
                "  set-up       {what:<16} p50 {:7.1} ms  p99 {:7.1} ms  max {:7.1} ms  (n={})",
                ms(v.p50_us),
                ms(v.p99_us),
                ms(v.max_us),
                v.count
            );
        }
        let w = &self.window;
        let _ = writeln!(
            o,
            "  window       {:.1} s: browsers sent {:.0} pkt/s, gateway relayed {:.0} pkt/s (both ways); tool busy {:.2} cores",
            w.seconds, w.sent_per_s, w.relayed_per_s, w.tool_cores
        );
        if w.sent_per_s < 0.98 * w.asked_per_s {
            let _ = writeln!(
                o,
                "  WARNING      the browsers sent {:.0} of the {:.0} pkt/s asked: the tool could not keep pace \
                 (CPU?); the per-core figure holds, the load is lighter than asked",
                w.sent_per_s, w.asked_per_s
            );
        }
        match &self.server {
            Some(sv) => {
                let _ = writeln!(
                    o,
                    "  gateway      {} processes: {:.2} CPU-s = {:.3} cores → {:.0} relayed pkt/s per core",
                    sv.processes, sv.cpu_s, sv.cores, sv.relayed_per_core_s
                );
                let _ = writeln!(
                    o,
                    "  memory       RSS {} → {} KiB: {:.1} KiB per call (PSS {:.1} KiB per call)",
                    sv.rss_before_kib, sv.rss_during_kib, sv.rss_per_call_kib, sv.pss_per_call_kib
                );
                if sv.by_process.len() > 1 {
                    for (name, p) in &sv.by_process {
                        let _ = writeln!(
                            o,
                            "    {name:<10} {} processes: {:.2} CPU-s, {:.1} KiB per call (PSS {:.1})",
                            p.processes, p.cpu_s, p.rss_per_call_kib, p.pss_per_call_kib
                        );
                    }
                }
            }
            None => {
                let _ = writeln!(
                    o,
                    "  gateway      not measured (no --pid/--pidfile/--pgrep-parent)"
                );
            }
        }
        let l = &self.loss;
        let _ = writeln!(
            o,
            "  loss         sent {} reached echo {} back {}: {:.3} % lost (toward IMS {:.3} %, back {:.3} %)",
            l.sent, l.reached_echo, l.received, l.loss_pct, l.toward_ims_pct, l.from_ims_pct
        );
        if self.answers_without_bundle > 0 {
            let _ = writeln!(
                o,
                "  note         {} SDP answers had no a=group:BUNDLE; the tool added it (a browser accepts them)",
                self.answers_without_bundle
            );
        }
        if let Some(d) = l.host_udp_rcvbuf_drops.filter(|&d| d > 0) {
            let _ = writeln!(
                o,
                "  kernel       {d} UDP datagrams dropped on this host for full receive buffers"
            );
        }
        if l.unmatched_datagrams + l.send_errors > 0 {
            let _ = writeln!(
                o,
                "  tool         {} datagrams matched no call, {} sends failed",
                l.unmatched_datagrams, l.send_errors
            );
        }
        let _ = writeln!(
            o,
            "  hang-up      BYE 200 {}  failed {:?}; tool used {:.1} CPU-s, {} KiB RSS; {:.1} s in all{}",
            self.hangup_ok,
            self.hangup_failed,
            self.tool_cpu_s,
            self.tool_rss_kib,
            self.elapsed_s,
            if self.timed_out {
                " (TIME LIMIT REACHED)"
            } else {
                ""
            }
        );
        if let Ok(j) = serde_json::to_string(self) {
            let _ = writeln!(o, "JSON: {j}");
        }
        o
    }
}
