//! The `imsgw` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: measured on the REGISTER load run (see README, Benchmark):
/// less CPU per REGISTER and freed memory returned to the system after bursts. Its v2 line, not
/// v3: after a flood of 10k connections (`tools/loadgen/flood-memory.sh`) v3 kept all 120 MiB
/// until other work came along, v2 gives most of it back (35–45 MiB against a 25 MiB
/// baseline), at the same CPU per client life (`tools/loadgen/life-bench.sh`).
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
/// `--features dhat-heap`: where the heap goes, by allocation site (a measurement build).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;
use imsgw::config::{Config, LogFormat, StoreKind};

/// imsgw: WebRTC IMS gateway. Browsers speak SIP over WebSocket (RFC 7118) to it; it forwards
/// to the operator's P-CSCF as an RFC 5626 outbound edge proxy.
#[derive(Parser)]
#[command(name = "imsgw", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: HTTP/WebSocket listener, SIP toward the IMS. SIGTERM or Ctrl-C drains
    /// (stops accepting, closes WebSockets with a close frame) and exits 0.
    Serve {
        /// TOML config file; every key can be overridden as IMSGW_<SECTION>__<KEY>.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Signing keys of the WAF (ES256, in waf.key_dir).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Access tokens for operators and tests.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Read and validate a config file (with environment overrides), check the WAF's state
    /// directory and file without opening them (a running gateway may hold them), print the
    /// effective listeners, upstream and store, and exit: 0 if valid, 2 with a message naming
    /// the key if not.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Add a new signing key to waf.key_dir. Running gateways start signing with it within
    /// waf.key_reload_secs; tokens signed by older keys keep verifying until they expire, and
    /// older keys are deleted once none of their tokens can still be valid.
    Rotate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// List the key ids (kid) in waf.key_dir or waf.key_files; the signing one is marked.
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Mint one access token signed with the current key and print it on stdout.
    Mint {
        #[arg(long, short)]
        config: PathBuf,
        /// The IMS public identity, e.g. sip:alice@ims.example or tel:+15551234: no password,
        /// parameters, headers or port. The token carries its canonical form.
        #[arg(long)]
        impu: String,
        /// The IMS private identity; default: the IMPU's user@host (required for a tel: IMPU).
        #[arg(long)]
        impi: Option<String>,
        /// Lifetime in seconds; default waf.token_ttl_secs, at most waf.max_token_ttl_secs.
        #[arg(long)]
        ttl: Option<u64>,
        /// Scope; default waf.scope.
        #[arg(long)]
        scope: Option<String>,
        /// Subject; default the IMPU.
        #[arg(long)]
        sub: Option<String>,
        /// The token's client_id (RFC 9068 §2.2): only that client may revoke it at
        /// /oauth/revoke (RFC 7009 §2.1). Default `imsgw-operator`, which only a confidential
        /// [[waf.clients]] entry with that id can revoke; otherwise a client of waf.clients.
        #[arg(long, default_value = imsgw::waf::OPERATOR_CLIENT_ID)]
        client_id: String,
        /// Bind the token to a key: the RFC 7638 thumbprint of the client's public key (43
        /// base64url characters), written as `"cnf": {"jkt": …}` (RFC 9449 §6.1). The SIP edge
        /// then accepts the token only on a connection that proves that key (a `Proof` header).
        #[arg(long)]
        cnf_jkt: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("imsgw: warning: {w}");
                }
                let state = match c.waf.store {
                    StoreKind::Durable => {
                        let dir = c.state_dir();
                        // Read-only: a running gateway may hold the file.
                        if let Err(e) = imsgw::waf::store::durable::check(&dir) {
                            eprintln!("imsgw: waf.state_dir: {e}");
                            return ExitCode::from(2);
                        }
                        format!("durable in {}", dir.display())
                    }
                    StoreKind::Memory => "memory (forgotten on restart)".to_string(),
                };
                println!(
                    "config ok: http.listen={} sip.listen={} sip.upstream={} ({:?}) waf.store={state}",
                    c.http.listen, c.sip.listen, c.sip.upstream.uri, c.sip.upstream.transport
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("imsgw: {e}");
                ExitCode::from(2)
            }
        },
        Command::Keys { action } => keys(action),
        Command::Token { action } => token(action),
        Command::Serve { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("imsgw: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(&config);
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("imsgw: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            rt.block_on(serve(config))
        }
    }
}

async fn serve(config: Config) -> ExitCode {
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
    let running = match imsgw::app::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imsgw: {e}");
            return ExitCode::from(2);
        }
    };
    wait_for_signal().await;
    tracing::info!("shutting down: draining connections");
    running.stop().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load_or_exit(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("imsgw: {e}");
        ExitCode::from(2)
    })
}

fn keys(action: KeysAction) -> ExitCode {
    use imsgw::waf::keys::KeySource;
    let now = imsgw::waf::unix_now();
    match action {
        KeysAction::Rotate { config } => {
            let config = match load_or_exit(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if !config.waf.key_files.is_empty() {
                eprintln!(
                    "imsgw: waf.key_files are managed by the operator: rotate by adding a file"
                );
                return ExitCode::from(2);
            }
            match imsgw_token::KeyRing::rotate(&config.key_dir(), now) {
                Ok(kid) => {
                    println!("{kid}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("imsgw: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        KeysAction::List { config } => {
            let config = match load_or_exit(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match KeySource::from_config(&config).load(now) {
                Ok(ring) => {
                    for kid in ring.kids() {
                        let mark = if kid == ring.signing_kid() {
                            "  (signing)"
                        } else {
                            ""
                        };
                        println!("{kid}{mark}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("imsgw: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn token(action: TokenAction) -> ExitCode {
    use imsgw::waf::keys::KeySource;
    let TokenAction::Mint {
        config,
        impu,
        impi,
        ttl,
        scope,
        sub,
        client_id,
        cnf_jkt,
    } = action;
    let impu = match imsgw_sip::Impu::parse(&impu) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("imsgw: --impu `{}`: {e}", impu.escape_debug());
            return ExitCode::FAILURE;
        }
    };
    let cnf_jkt = match cnf_jkt.as_deref().map(imsgw_token::pop::Jkt::parse) {
        None => None,
        Some(Some(j)) => Some(j),
        Some(None) => {
            eprintln!(
                "imsgw: --cnf-jkt is not a JWK thumbprint (RFC 7638: 43 base64url characters of a SHA-256)"
            );
            return ExitCode::FAILURE;
        }
    };
    let impi = match impi.or_else(|| impu.user_at_host().map(str::to_owned)) {
        Some(i) => i,
        None => {
            eprintln!("imsgw: --impi is needed with a tel: IMPU");
            return ExitCode::FAILURE;
        }
    };
    let config = match load_or_exit(&config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let now = imsgw::waf::unix_now();
    let ring = match KeySource::from_config(&config).load(now) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imsgw: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Minting keeps no state, and the durable store is locked by the running gateway: an
    // empty store in memory, dropped when this command ends.
    let store = std::sync::Arc::new(imsgw::waf::store::MemoryStore::new());
    let waf = match imsgw::waf::Waf::new(&config, ring, store) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("imsgw: {e}");
            return ExitCode::FAILURE;
        }
    };
    if client_id != imsgw::waf::OPERATOR_CLIENT_ID && !waf.clients.contains_key(&client_id) {
        eprintln!(
            "imsgw: --client-id `{}` is neither {} nor a client of waf.clients",
            client_id.escape_debug(),
            imsgw::waf::OPERATOR_CLIENT_ID
        );
        return ExitCode::FAILURE;
    }
    let req = imsgw_token::MintRequest {
        sub: sub.unwrap_or_else(|| impu.to_string()),
        impu: impu.to_string(),
        impi,
        scope: scope.unwrap_or_else(|| config.waf.scope.clone()),
        client_id,
        ttl,
    };
    match waf.mint_bound(now, req, imsgw_token::new_jti(), cnf_jkt.as_ref()) {
        Ok((token, _)) => {
            println!("{}", token.expose());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("imsgw: {e}");
            ExitCode::FAILURE
        }
    }
}
