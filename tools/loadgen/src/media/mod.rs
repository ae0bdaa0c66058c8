//! The media benchmark, `imsgw-loadgen media …` (issue 10 §5): N browsers (SIP over WebSocket
//! with str0m WebRTC media) call an RTP echo at the IMS side through the gateway under test and
//! send G.711 at 50 packets/s; the report gives relayed packets/s per core and memory per call
//! of the gateway's processes, set-up times and loss. A tool, not a test.
//!
//! Layers: `msg` and `dialog` (SIP text, no I/O), `lenient` (SDP and RTP a browser tolerates)
//! → `call` (one WebSocket per browser), `rtc`
//! (every browser's media on one thread), `echo` (the IMS side) → `run` (phases, sampling) →
//! `report`.

mod call;
pub mod cli;
mod dialog;
mod echo;
mod lenient;
mod msg;
mod report;
mod rtc;
mod run;

use std::net::SocketAddr;

use anyhow::Context;

pub use cli::MediaArgs;

/// Runs the benchmark and prints its report; `Ok(true)` when every call echoed.
pub fn start(args: MediaArgs) -> anyhow::Result<bool> {
    // One runtime thread for the signalling; the media thread and the echo are threads of their
    // own, so the tool stays off most of the second core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = runtime.block_on(run::run(args))?;
    print!("{}", report.render());
    runtime.shutdown_background();
    Ok(report.success)
}

/// A UDP socket bound to `addr` with receive and send buffers of `buf` bytes asked for (Linux caps
/// them at `net.core.rmem_max`/`wmem_max`): at 50 packets/s per call, a thread descheduled for a
/// few tens of milliseconds must not make the kernel drop what the default ~200 KiB cannot hold.
pub(crate) fn bind_udp(addr: SocketAddr, buf: usize) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer still works, only less well.
    let _ = s.set_recv_buffer_size(buf);
    let _ = s.set_send_buffer_size(buf);
    s.bind(&addr.into())?;
    Ok(s.into())
}
