//! Command-line options and their parsing into typed values.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Opens N WebSocket connections (subprotocol `sip`, RFC 7118) to an edge, REGISTERs each one
/// through it, holds them idle, then reports registrations/s, latency, and the CPU and memory of
/// the measured processes per REGISTER and per idle connection.
#[derive(Debug, Parser)]
#[command(name = "imsgw-loadgen", version)]
pub struct Args {
    /// Edge WebSocket URL (ws:// only; wss:// is not supported by this tool).
    #[arg(long, default_value = "ws://127.0.0.1:8080/sip")]
    pub url: String,

    /// Number of clients (connections), each REGISTERing one AOR.
    #[arg(long, default_value_t = 100)]
    pub count: usize,

    /// REGISTERs in flight at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,

    /// WebSocket handshakes in flight at once during the connect phase.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,

    /// SIP domain: Request-URI `sip:DOMAIN`, AOR `sip:USER@DOMAIN`.
    #[arg(long, default_value = "ims.example")]
    pub domain: String,

    /// User part prefix; client i registers `PREFIX<i>`.
    #[arg(long, default_value = "load")]
    pub user_prefix: String,

    /// Contact expiry asked for, seconds.
    #[arg(long, default_value_t = 3600)]
    pub expires: u32,

    /// Source addresses for client sockets, spread round-robin: `A-B` range, comma list, or one
    /// address. Many connections from one address exhaust its ephemeral ports.
    #[arg(long, value_parser = parse_source_ips)]
    pub source_ips: Option<SourceIps>,

    #[command(flatten)]
    pub measure: MeasureArgs,

    /// Seconds to keep all registered connections idle before measuring memory.
    #[arg(long, default_value_t = 3)]
    pub hold: u64,

    /// Hard limit for the whole run, seconds; the run stops and reports when it is reached.
    #[arg(long, default_value_t = 300)]
    pub time_limit: u64,

    /// Per-request (and per-handshake) timeout, seconds (RFC 3261 Timer F is 32 s).
    #[arg(long, default_value_t = 32)]
    pub request_timeout: u64,

    /// Extra header added to every REGISTER, `Name: value` (repeatable).
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<String>,

    /// Un-REGISTER (expires=0) every registered client before closing.
    #[arg(long)]
    pub unregister: bool,

    /// Runtime worker threads of the tool. 1 leaves the other cores to the server under test.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// After the first round, each client whose REGISTER got 200 re-REGISTERs N more times (same
    /// Call-ID and token, next CSeq), measured as a phase of its own: with tokens, the first
    /// round pays for verifying a token and these show the cost of a cached one.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub reregister: u32,

    /// While holding, each registered client refreshes its registration (RFC 3261 §10.2.4)
    /// when nine tenths of --expires have passed since its last REGISTER, as a browser does:
    /// reported as the steady-state REGISTERs, apart from the first ones.
    #[arg(long)]
    pub refresh: bool,

    #[command(flatten)]
    pub tokens: MintArgs,
}

/// The processes whose CPU and memory a run reports (the REGISTER and the media benchmark).
#[derive(Debug, Clone, clap::Args)]
pub struct MeasureArgs {
    /// Process to measure (repeatable).
    #[arg(long = "pid")]
    pub pids: Vec<u32>,

    /// File holding the pid of a process to measure (repeatable).
    #[arg(long = "pidfile")]
    pub pidfiles: Vec<PathBuf>,

    /// Measure this pid and all its descendants (repeatable; for forking servers like Kamailio).
    #[arg(long = "pgrep-parent")]
    pub trees: Vec<u32>,
}

impl MeasureArgs {
    /// The processes as named, after checking that the pids given exist.
    pub fn targets(&self) -> anyhow::Result<crate::procfs::Targets> {
        for &p in self.pids.iter().chain(&self.trees) {
            crate::procfs::check_exists(p)?;
        }
        Ok(crate::procfs::Targets {
            pids: self.pids.clone(),
            pidfiles: self.pidfiles.clone(),
            trees: self.trees.clone(),
        })
    }
}

/// Per-client RFC 8898 Bearer tokens minted before a run (both benchmarks).
#[derive(Debug, Clone, clap::Args)]
pub struct MintArgs {
    /// Give every client its own RFC 8898 Bearer token, minted before the run with the keys in
    /// this directory (the gateway's `waf.key_dir`, read as `KeyRing::load_or_create` reads it;
    /// this tool never creates a key, so start the gateway first). Needs --issuer and --audience.
    #[arg(long, value_name = "DIR", requires_all = ["issuer", "audience"])]
    pub mint_key_dir: Option<PathBuf>,

    /// `iss` of the minted tokens (the gateway's `waf.issuer`).
    #[arg(long, value_name = "URL", requires = "mint_key_dir")]
    pub issuer: Option<String>,

    /// `aud` of the minted tokens (the gateway's `waf.audience`).
    #[arg(long, value_name = "AUD", requires = "mint_key_dir")]
    pub audience: Option<String>,

    /// `scope` of the minted tokens (space-separated, RFC 6749 §3.3).
    #[arg(long, default_value = "sip", requires = "mint_key_dir")]
    pub scope: String,

    /// Lifetime of the minted tokens, seconds. Tokens are minted before the run, so a run longer
    /// than this sends expired tokens at its end.
    #[arg(long, default_value_t = 600, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..), requires = "mint_key_dir")]
    pub token_ttl: u64,
}

/// What `--mint-key-dir` and its companions ask for; `None` when tokens are off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintOptions {
    pub key_dir: PathBuf,
    pub issuer: String,
    pub audience: String,
    pub scope: String,
    pub ttl_s: u64,
}

impl Args {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout)
    }
}

impl MintArgs {
    /// The token options, when `--mint-key-dir` is given (clap has made sure its companions are).
    pub fn options(&self) -> Option<MintOptions> {
        Some(MintOptions {
            key_dir: self.mint_key_dir.clone()?,
            issuer: self.issuer.clone()?,
            audience: self.audience.clone()?,
            scope: self.scope.clone(),
            ttl_s: self.token_ttl,
        })
    }
}

/// Source addresses to bind client sockets to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIps(pub Vec<Ipv4Addr>);

impl SourceIps {
    /// Address for client `i`, round-robin.
    pub fn for_client(&self, i: usize) -> Ipv4Addr {
        self.0[i % self.0.len()]
    }
}

/// Largest accepted address range; more makes no sense for one host.
const MAX_SOURCE_IPS: u32 = 65_536;

pub fn parse_source_ips(s: &str) -> Result<SourceIps, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let ip = |t: &str| {
            t.trim()
                .parse::<Ipv4Addr>()
                .map_err(|e| format!("`{t}` is not an IPv4 address: {e}"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (u32::from(ip(a)?), u32::from(ip(b)?));
                if b < a || b - a >= MAX_SOURCE_IPS {
                    return Err(format!("range `{part}` is empty or too large"));
                }
                out.extend((a..=b).map(Ipv4Addr::from));
            }
            None => out.push(ip(part)?),
        }
    }
    if out.is_empty() {
        return Err("no source address given".into());
    }
    Ok(SourceIps(out))
}

fn parse_header(s: &str) -> Result<String, String> {
    if s.contains(['\r', '\n']) {
        return Err("a header must be one line".into());
    }
    match s.split_once(':') {
        Some((name, _))
            if !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b)) =>
        {
            Ok(s.trim().to_owned())
        }
        _ => Err(format!("`{s}` is not `Name: value`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ip_ranges_and_lists() {
        let s = parse_source_ips("127.0.0.2-127.0.0.4, 10.0.0.1").expect("valid");
        assert_eq!(
            s.0,
            vec![
                Ipv4Addr::new(127, 0, 0, 2),
                Ipv4Addr::new(127, 0, 0, 3),
                Ipv4Addr::new(127, 0, 0, 4),
                Ipv4Addr::new(10, 0, 0, 1)
            ]
        );
        assert_eq!(s.for_client(5), Ipv4Addr::new(127, 0, 0, 3));
        assert!(parse_source_ips("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_source_ips("nope").is_err());
        assert!(parse_source_ips("").is_err());
    }

    #[test]
    fn headers_must_be_one_named_line() {
        assert_eq!(
            parse_header("Authorization: Bearer x"),
            Ok("Authorization: Bearer x".into())
        );
        assert!(parse_header("X-A: 1\r\nX-B: 2").is_err());
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": empty name").is_err());
    }

    #[test]
    fn token_options_come_together_and_default_to_off() {
        let parse = |extra: &[&str]| {
            Args::try_parse_from(["imsgw-loadgen"].iter().chain(extra)).map(|a| a.tokens.options())
        };
        assert_eq!(parse(&[]).expect("no options"), None);
        let m = parse(&[
            "--mint-key-dir",
            "/k",
            "--issuer",
            "http://waf",
            "--audience",
            "sip:ims.example",
        ])
        .expect("complete")
        .expect("tokens on");
        assert_eq!((m.scope.as_str(), m.ttl_s), ("sip", 600));
        assert!(parse(&["--mint-key-dir", "/k", "--issuer", "http://waf"]).is_err());
        assert!(parse(&["--audience", "a", "--issuer", "i"]).is_err());
        assert!(parse(&["--scope", "sip"]).is_err());
        assert!(
            parse(&[
                "--mint-key-dir",
                "/k",
                "--issuer",
                "i",
                "--audience",
                "a",
                "--token-ttl",
                "0"
            ])
            .is_err()
        );
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
