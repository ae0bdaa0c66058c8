//! What verifying off the edge's task would cost per token (issue 11 §3). The edge is one tokio
//! task that owns its state and reads its input channel; today it verifies a new token inline.
//! The alternative hands the token to another thread and carries on, taking the answer later as
//! one more input.
//!
//! `offload_latency` (wall time: what a REGISTER waits):
//! - `inline_verify`: today, the whole verification on the edge's task.
//! - `*_roundtrip_*`: one handoff and its answer, awaited from a task on a two-worker runtime
//!   (as `#[tokio::main]` on this machine): `spawn_blocking`, or a dedicated worker thread fed
//!   by a tokio channel that answers on another. `noop` rows hand over no work, so they are the
//!   handoff alone; `verify` rows do the real verification.
//!
//! `offload_edge_cpu` (thread CPU time: what the edge's thread spends per new token):
//! - `inline_verify`: today.
//! - `handoff_*`: copy the token, send the job, later take the answer from the queue; the
//!   worker's time is not counted.
//! - `clock_reads_of_one_at_a_time`: the part of `handoff_one_at_a_time` that is the clock.
use std::hint::black_box;
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use cpu_time::ThreadTime;
use criterion::measurement::WallTime;
use criterion::{Criterion, criterion_group, criterion_main};
use imsgw_token::Verifier;
use imsgw_tokenbench::{Fixtures, ThreadCpu, cpu_config, criterion_config, self_check};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

/// Tokens in flight at once in the pipelined row.
const BATCH: u64 = 64;

/// Work handed to the verification thread.
enum Job {
    /// Nothing: measures the handoff alone.
    Noop,
    /// Verify this token.
    Verify(String),
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime")
}

fn offload(c: &mut Criterion) {
    let f = Fixtures::new();
    self_check(&f);
    let now = f.now;
    let rt = runtime();
    let mut g = c.benchmark_group("offload_latency");

    let mut inline = f.verifier(0);
    g.bench_function("inline_verify", |b| {
        b.iter(|| inline.verify(now, black_box(&f.es256)).expect("ok"))
    });

    g.bench_function("spawn_blocking_roundtrip_noop", |b| {
        b.iter_custom(|iters| {
            on_task(&rt, async move {
                let t = Instant::now();
                for _ in 0..iters {
                    tokio::task::spawn_blocking(|| black_box(()))
                        .await
                        .expect("join");
                }
                t.elapsed()
            })
        })
    });
    let mut parked = Some(f.verifier(0));
    g.bench_function("spawn_blocking_roundtrip_verify", |b| {
        b.iter_custom(|iters| {
            let mut v = parked.take().expect("verifier is put back after each run");
            let token = f.es256.clone();
            let (v, took) = on_task(&rt, async move {
                let t = Instant::now();
                for _ in 0..iters {
                    let tok = token.clone();
                    let (back, ok) = tokio::task::spawn_blocking(move || {
                        let ok = v.verify(now, &tok).is_ok();
                        (v, ok)
                    })
                    .await
                    .expect("join");
                    assert!(ok);
                    v = back;
                }
                (v, t.elapsed())
            });
            parked = Some(v);
            took
        })
    });

    let mut worker = Worker::start(f.verifier(0), now);
    for (name, verify) in [
        ("worker_thread_roundtrip_noop", false),
        ("worker_thread_roundtrip_verify", true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let jobs = worker.jobs.clone();
                let mut answers = worker.answers.take().expect("answers are put back");
                let token = f.es256.clone();
                let (answers, took) = on_task(&rt, async move {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let job = if verify {
                            Job::Verify(token.clone())
                        } else {
                            Job::Noop
                        };
                        jobs.send(job).await.map_err(|_| ()).expect("worker up");
                        assert!(answers.recv().await.expect("answer"));
                    }
                    (answers, t.elapsed())
                });
                worker.answers = Some(answers);
                took
            })
        });
    }

    g.finish();
    worker.stop();
}

/// The edge's own CPU per token, in thread CPU time: inline, and handing off without waiting
/// (copy the token, send the job, later take the answer), the worker's time not counted.
fn edge_cpu(c: &mut Criterion<ThreadCpu>) {
    let f = Fixtures::new();
    self_check(&f);
    let now = f.now;
    let mut g = c.benchmark_group("offload_edge_cpu");

    let mut inline = f.verifier(0);
    g.bench_function("inline_verify", |b| {
        b.iter(|| inline.verify(now, black_box(&f.es256)).expect("ok"))
    });

    let mut worker = Worker::start(f.verifier(0), now);
    // `BATCH` in flight: a busy edge, whose worker is awake. 1: a quiet one, whose every job
    // wakes a parked worker (a futex wake on the edge's thread).
    for (name, batch) in [("handoff_pipelined", BATCH), ("handoff_one_at_a_time", 1)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut answers = worker.answers.take().expect("answers are put back");
                let mut edge = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(batch);
                    left -= n;
                    let t = ThreadTime::now();
                    for _ in 0..n {
                        let job = Job::Verify(black_box(&f.es256).clone());
                        worker.jobs.try_send(job).map_err(|_| ()).expect("room");
                    }
                    edge += t.elapsed();
                    // The worker's time is not the edge's: wait for the answers untimed.
                    while answers.len() < n as usize {
                        thread::yield_now();
                    }
                    let t = ThreadTime::now();
                    for _ in 0..n {
                        assert!(answers.try_recv().expect("answer ready"));
                    }
                    edge += t.elapsed();
                }
                worker.answers = Some(answers);
                edge
            })
        });
    }
    // What reading the thread CPU clock twice per token adds to `handoff_one_at_a_time`.
    g.bench_function("clock_reads_of_one_at_a_time", |b| {
        b.iter_custom(|iters| {
            let mut edge = Duration::ZERO;
            for _ in 0..iters {
                let t = ThreadTime::now();
                edge += t.elapsed();
                let t = ThreadTime::now();
                edge += t.elapsed();
            }
            edge
        })
    });
    g.finish();
    worker.stop();
}

/// Runs `fut` as a task on `rt`'s workers (not on the bench thread) and returns its output.
fn on_task<T: Send + 'static>(rt: &Runtime, fut: impl Future<Output = T> + Send + 'static) -> T {
    rt.block_on(rt.spawn(fut)).expect("task")
}

/// A thread that owns a verifier and answers jobs in order.
struct Worker {
    jobs: mpsc::Sender<Job>,
    /// Taken by a bench while it runs (its task needs it by value) and put back after.
    answers: Option<mpsc::Receiver<bool>>,
    done: std_mpsc::Receiver<()>,
}

impl Worker {
    fn start(mut verifier: Verifier, now: u64) -> Worker {
        let (jobs, mut rx) = mpsc::channel::<Job>(BATCH as usize);
        let (tx, answers) = mpsc::channel::<bool>(BATCH as usize);
        let (done_tx, done) = std_mpsc::channel();
        thread::spawn(move || {
            while let Some(job) = rx.blocking_recv() {
                let ok = match job {
                    Job::Noop => true,
                    Job::Verify(token) => verifier.verify(now, &token).is_ok(),
                };
                if tx.blocking_send(ok).is_err() {
                    break;
                }
            }
            let _ = done_tx.send(());
        });
        Worker {
            jobs,
            answers: Some(answers),
            done,
        }
    }

    fn stop(self) {
        drop(self.jobs);
        let _ = self.done.recv_timeout(Duration::from_secs(5));
    }
}

criterion_group! {
    name = latency;
    config = criterion_config(WallTime);
    targets = offload
}
criterion_group! {
    name = cpu;
    config = cpu_config();
    targets = edge_cpu
}
criterion_main!(latency, cpu);
