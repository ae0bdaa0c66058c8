//! The `imsgw` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use imsgw::config::{Config, LogFormat};

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
    /// Read and validate a config file (with environment overrides), print the effective
    /// listeners and upstream, and exit: 0 if valid, 2 with a message naming the key if not.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
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
                println!(
                    "config ok: http.listen={} sip.listen={} sip.upstream={} ({:?})",
                    c.http.listen, c.sip.listen, c.sip.upstream.uri, c.sip.upstream.transport
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("imsgw: {e}");
                ExitCode::from(2)
            }
        },
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
