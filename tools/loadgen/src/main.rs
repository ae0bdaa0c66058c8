//! imsgw-loadgen: N WebSocket SIP clients (RFC 7118) REGISTER through an edge; prints rate,
//! latency, and the CPU and memory of the measured server processes. Exit status 0 only when
//! every REGISTER got 200 within the time limit, 1 when some did not (the report is still
//! printed), 2 when the run could not start (bad option, unreachable name, fd limit).
//!
//! `imsgw-loadgen media …` is the media benchmark instead (see `media`); `imsgw-loadgen
//! udp-floor` measures what the kernel alone costs a UDP relay here (see `floor`).
//!
//! Layers: `sip` (messages, no I/O) → `client` (one socket) → `run` (phases, sampling) →
//! `report` (numbers and output); `procfs` reads /proc; `cli` parses options; `tokens` mints the
//! per-user Bearer tokens before the run.

mod cli;
mod client;
mod floor;
mod life;
mod media;
mod procfs;
mod report;
mod run;
mod sip;
mod stats;
mod tokens;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

fn main() -> ExitCode {
    // `imsgw-loadgen media …` is the media benchmark; anything else is the REGISTER load as before.
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let result = if argv.get(1).is_some_and(|a| a == "media") {
        argv.remove(1);
        media::start(media::MediaArgs::parse_from(argv))
    } else if argv.get(1).is_some_and(|a| a == "life") {
        argv.remove(1);
        life::start(life::LifeArgs::parse_from(argv))
    } else if argv.get(1).is_some_and(|a| a == "udp-floor") {
        argv.remove(1);
        floor::start(floor::FloorArgs::parse_from(argv))
    } else {
        start(cli::Args::parse_from(argv))
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("imsgw-loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the load and prints the report; `Ok(true)` when every REGISTER got 200.
fn start(args: cli::Args) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = runtime.block_on(run::run(args))?;
    print!("{}", report.render());
    // Do not wait for stragglers (clients aborted at the time limit): the report is out.
    runtime.shutdown_background();
    Ok(report.success)
}
