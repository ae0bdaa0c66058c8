//! Reads CPU time and memory of the measured processes from Linux /proc. Parsing is split from
//! reading so it can be tested on captured text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// /proc/PID/stat reports CPU times in USER_HZ clock ticks. USER_HZ is part of the Linux ABI and
/// is 100 on every architecture Linux supports (`getconf CLK_TCK` prints 100); reading it with
/// sysconf would need `unsafe`, which the workspace forbids.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// How the user named the processes to measure. Resolved afresh at every sample so a pid file
/// written late or a worker forked late is still counted.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub pids: Vec<u32>,
    pub pidfiles: Vec<PathBuf>,
    /// Each pid plus all its descendants (Kamailio forks its workers from the main process).
    pub trees: Vec<u32>,
}

/// CPU and memory of a set of processes at one instant.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    /// Number of processes that could be read.
    pub processes: usize,
    /// utime + stime, seconds, summed.
    pub cpu_s: f64,
    /// Proportional set size, KiB, summed (shared pages divided among the sharers).
    pub pss_kib: u64,
    /// Resident set size, KiB, summed (shared pages counted once per process).
    pub rss_kib: u64,
}

impl Targets {
    /// A sample of the processes, or None when none was named (nothing to measure).
    pub fn sample_if_any(&self) -> Result<Option<Sample>> {
        if self.is_empty() {
            Ok(None)
        } else {
            self.sample().map(Some)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pids.is_empty() && self.pidfiles.is_empty() && self.trees.is_empty()
    }

    /// The current pid set. Fails only when a pid file cannot be read or parsed.
    pub fn resolve(&self) -> Result<BTreeSet<u32>> {
        let mut set: BTreeSet<u32> = self.pids.iter().copied().collect();
        for f in &self.pidfiles {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading pid file {}", f.display()))?;
            let pid = text
                .trim()
                .parse()
                .with_context(|| format!("pid file {} does not hold a pid", f.display()))?;
            set.insert(pid);
        }
        if !self.trees.is_empty() {
            let parents = all_parents();
            for &root in &self.trees {
                set.insert(root);
                set.extend(descendants(root, &parents));
            }
        }
        Ok(set)
    }

    /// Samples the current pid set per command name (`kamailio`, `rtpengine`, …).
    pub fn sample_by_name(&self) -> Result<BTreeMap<String, Sample>> {
        let mut by = BTreeMap::new();
        for pid in self.resolve()? {
            if let Some(p) = read_process(pid) {
                let s: &mut Sample = by.entry(p.comm).or_default();
                s.processes += 1;
                s.cpu_s += p.cpu_s;
                s.pss_kib += p.pss_kib;
                s.rss_kib += p.rss_kib;
            }
        }
        Ok(by)
    }

    /// Samples the current pid set; processes that vanished are skipped.
    pub fn sample(&self) -> Result<Sample> {
        let mut s = Sample::default();
        for pid in self.resolve()? {
            if let Some(p) = read_process(pid) {
                s.processes += 1;
                s.cpu_s += p.cpu_s;
                s.pss_kib += p.pss_kib;
                s.rss_kib += p.rss_kib;
            }
        }
        Ok(s)
    }
}

/// CPU seconds used so far by this process (the load tool itself).
pub fn self_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|t| parse_stat(&t))
        .map_or(0.0, |s| s.cpu_s)
}

/// Resident set size of this process in KiB (the load tool itself).
pub fn self_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .map(|t| parse_rollup(&t).1)
        .unwrap_or(0)
}

/// Soft open-file limit of this process, from /proc/self/limits.
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Host-wide count of UDP datagrams the kernel dropped because a socket's receive buffer was
/// full (`RcvbufErrors` in /proc/net/snmp); `None` when unreadable.
pub fn udp_rcvbuf_errors() -> Option<u64> {
    parse_snmp_udp(
        &std::fs::read_to_string("/proc/net/snmp").ok()?,
        "RcvbufErrors",
    )
}

/// Field `name` of the `Udp:` table of /proc/net/snmp (a header line, then a value line).
fn parse_snmp_udp(text: &str, name: &str) -> Option<u64> {
    let mut rows = text.lines().filter_map(|l| l.strip_prefix("Udp:"));
    let (names, values) = (rows.next()?, rows.next()?);
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// Fails early with a clear message when a pid given with --pid does not exist.
pub fn check_exists(pid: u32) -> Result<()> {
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        bail!("process {pid} does not exist");
    }
    Ok(())
}

struct Process {
    comm: String,
    cpu_s: f64,
    pss_kib: u64,
    rss_kib: u64,
}

fn read_process(pid: u32) -> Option<Process> {
    let stat = parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    // smaps_rollup needs ptrace-read access; without it memory reads as 0 rather than failing.
    let (pss_kib, rss_kib) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map(|t| parse_rollup(&t))
        .unwrap_or((0, 0));
    Some(Process {
        comm: stat.comm,
        cpu_s: stat.cpu_s,
        pss_kib,
        rss_kib,
    })
}

#[derive(Debug, PartialEq)]
pub struct Stat {
    /// The command name (proc(5) field 2, at most 15 bytes).
    comm: String,
    ppid: u32,
    pub cpu_s: f64,
}

/// Parses /proc/PID/stat (proc(5)). The command name is in parentheses and may itself contain
/// spaces and ')', so fields are counted from the last ')'.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let close = text.rfind(')')?;
    let comm = text.get(text.find('(')? + 1..close)?.to_owned();
    let after = &text[close + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Stat {
        comm,
        ppid,
        cpu_s: (utime + stime) as f64 / CLOCK_TICKS_PER_SEC,
    })
}

/// (Pss, Rss) in KiB from /proc/PID/smaps_rollup.
fn parse_rollup(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Pss:"), field("Rss:"))
}

/// (pid, ppid) of every process now visible in /proc.
fn all_parents() -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
        Some((pid, stat.ppid))
    })
    .collect()
}

/// All descendants of `root` given (pid, ppid) pairs.
fn descendants(root: u32, parents: &[(u32, u32)]) -> BTreeSet<u32> {
    let mut found = BTreeSet::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, ppid) in parents {
            if ppid == p && child != root && found.insert(child) {
                frontier.push(child);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let line = "4242 (kamailio (tcp) x) S 4200 4200 4200 0 -1 4194624 1000 0 0 0 250 130 0 0 20 0 1 0 12345 123456789 2000 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                comm: "kamailio (tcp) x".into(),
                ppid: 4200,
                cpu_s: 3.8
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn rollup_reads_pss_and_rss() {
        let text = "55d0c-7ffd [rollup]\nRss:               12288 kB\nPss:                4100 kB\nPss_Anon:           2000 kB\nShared_Clean:       100 kB\n";
        assert_eq!(parse_rollup(text), (4100, 12288));
        assert_eq!(parse_rollup(""), (0, 0));
    }

    #[test]
    fn snmp_udp_field_by_name() {
        let t = "Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\nUdp: 10 0 3 9 3\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(parse_snmp_udp(t, "RcvbufErrors"), Some(3));
        assert_eq!(parse_snmp_udp(t, "InDatagrams"), Some(10));
        assert_eq!(parse_snmp_udp(t, "Nope"), None);
        assert_eq!(parse_snmp_udp("", "RcvbufErrors"), None);
    }

    #[test]
    fn descendants_walks_the_whole_tree() {
        let parents = [(10, 1), (11, 10), (12, 10), (13, 11), (20, 1), (21, 20)];
        assert_eq!(
            descendants(10, &parents),
            [11, 12, 13].into_iter().collect()
        );
        assert!(descendants(13, &parents).is_empty());
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        let t = Targets {
            trees: vec![me],
            ..Targets::default()
        };
        let s = t.sample().expect("own process is readable");
        assert!(s.processes >= 1);
        assert!(s.rss_kib > 0);
        let by = t.sample_by_name().expect("readable");
        assert_eq!(by.values().map(|s| s.processes).sum::<usize>(), s.processes);
    }
}
