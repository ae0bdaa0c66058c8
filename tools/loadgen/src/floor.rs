//! `imsgw-loadgen udp-floor`: what the kernel alone costs a UDP relay on this machine. A relay
//! thread that does no work at all (receive a datagram on one loopback socket, send it on to
//! another, one system call each) is driven flat out; its CPU per relayed datagram is the floor
//! under any relay that moves packets one system call at a time, and its reciprocal the most
//! relayed packets per second per core such a relay can reach here. On loopback the sender's
//! system call also pays for the receiving side's delivery and wake-up (the kernel runs it in
//! the sender's context), as it does for the gateway in the media benchmark.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

/// The kernel's floor under a UDP relay on loopback (see the module documentation).
#[derive(Parser, Debug)]
#[command(name = "imsgw-loadgen udp-floor")]
pub struct FloorArgs {
    /// Datagrams to relay.
    #[arg(long, default_value_t = 300_000)]
    pub packets: u64,
    /// Datagrams per second offered to the relay, in bursts every millisecond (default: what
    /// the media benchmark's 400 calls relay); 0 sends flat out.
    #[arg(long, default_value_t = 40_000)]
    pub rate: u64,
    /// Payload bytes per datagram (172: a 20 ms G.711 frame with its RTP header).
    #[arg(long, default_value_t = 172)]
    pub size: usize,
}

/// This thread's CPU seconds (user + system), from /proc/thread-self/stat.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|t| crate::procfs::parse_stat(&t))
        .map_or(0.0, |s| s.cpu_s)
}

pub fn start(args: FloorArgs) -> anyhow::Result<bool> {
    let lo: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let source = UdpSocket::bind(lo).context("binding a loopback UDP socket")?;
    // Room for bursts, so the figure is for datagrams delivered, not dropped.
    let roomy = || crate::media::bind_udp(lo, 4 << 20).context("binding a loopback UDP socket");
    let (relay, sink) = (roomy()?, roomy()?);
    let (relay_addr, sink_addr) = (relay.local_addr()?, sink.local_addr()?);
    relay.set_read_timeout(Some(Duration::from_millis(500)))?;
    sink.set_read_timeout(Some(Duration::from_millis(500)))?;
    let done = Arc::new(AtomicBool::new(false));

    let sink_done = done.clone();
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut n = 0u64;
        while !sink_done.load(Ordering::Relaxed) {
            if sink.recv_from(&mut buf).is_ok() {
                n += 1;
            }
        }
        n
    });
    let total = args.packets;
    let relayer = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let (mut n, cpu0, t0) = (0u64, thread_cpu_s(), Instant::now());
        while n < total {
            let Ok((len, _)) = relay.recv_from(&mut buf) else {
                break; // the source stopped (or the kernel dropped the rest): count what came
            };
            let _ = relay.send_to(&buf[..len], sink_addr);
            n += 1;
        }
        (n, thread_cpu_s() - cpu0, t0.elapsed())
    });
    let payload = vec![0x55u8; args.size];
    let (t0, per_ms) = (Instant::now(), args.rate.div_ceil(1000).max(1));
    for i in 0..total {
        let _ = source.send_to(&payload, relay_addr);
        if args.rate > 0 && (i + 1) % per_ms == 0 {
            let due = t0 + Duration::from_secs_f64((i + 1) as f64 / args.rate as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
    let (relayed, cpu_s, wall) = relayer.join().expect("relay thread");
    done.store(true, Ordering::Relaxed);
    let delivered = drain.join().expect("sink thread");
    let us = cpu_s * 1e6 / relayed.max(1) as f64;
    println!(
        "udp-floor: {relayed} of {total} datagrams of {} bytes offered at {} relayed in {:.2} s ({delivered} delivered)",
        args.size,
        if args.rate == 0 {
            "full speed".to_string()
        } else {
            format!("{}/s", args.rate)
        },
        wall.as_secs_f64()
    );
    println!(
        "  relay thread  {cpu_s:.2} CPU-s = {us:.2} us per relayed datagram (one recvfrom + one sendto, no work)"
    );
    println!(
        "  ceiling       {:.0} relayed datagrams/s per core for any relay with one system call per datagram each way",
        1e6 / us.max(f64::MIN_POSITIVE)
    );
    Ok(relayed > 0)
}
