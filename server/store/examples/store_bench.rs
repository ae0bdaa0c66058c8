//! The store benchmark: operations per second for the WAF's patterns, on ~200-byte JSON records
//! with every change committed durably (fsync), and the file's size after many records.
//!
//! ```text
//! cargo run --release -p imsgw-store --example store_bench -- --store durable --dir /var/tmp/sb
//! cargo run --release -p imsgw-store --example store_bench -- --store memory
//! ```
//!
//! Options: `--store durable|memory`, `--dir DIR` (a directory on the disk to measure; emptied
//! first), `--ops N` per phase (default 2000), `--fill N` records for the size phase (default
//! 100000; 0 skips it), `--churn` (after the fill, let it all expire and fill again: the file
//! must not grow much). Results: README, "The WAF's state".
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: any failure ends it

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use imsgw_store::{Caps, MemoryStore, Store, StoreError, StoreExt, key_of};
use serde::{Deserialize, Serialize};

/// Shaped like a refresh family: the WAF's largest common record (~200 bytes of JSON).
#[derive(Serialize, Deserialize, Clone)]
struct Family {
    client_id: String,
    person: Person,
    scope: String,
    current: String,
    revoked: bool,
    jtis: Vec<(String, u64)>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Person {
    provider: String,
    sub: String,
    impu: String,
    impi: String,
}

fn record(i: u64) -> Family {
    Family {
        client_id: "wic".into(),
        person: Person {
            provider: "demo".into(),
            sub: format!("user-{i:08}"),
            impu: format!("sip:user{i:08}@ims.example"),
            impi: format!("user{i:08}@ims.example"),
        },
        scope: "sip".into(),
        current: key_of(&format!("rt-{i}")),
        revoked: false,
        jtis: Vec::new(),
    }
}

struct Opts {
    store: String,
    dir: PathBuf,
    ops: u64,
    fill: u64,
    churn: bool,
}

fn opts() -> Opts {
    let mut o = Opts {
        store: "durable".into(),
        dir: std::env::temp_dir().join("imsgw-store-bench"),
        ops: 2000,
        fill: 100_000,
        churn: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("a value after each option");
        match a.as_str() {
            "--store" => o.store = val(),
            "--dir" => o.dir = PathBuf::from(val()),
            "--ops" => o.ops = val().parse().expect("--ops N"),
            "--fill" => o.fill = val().parse().expect("--fill N"),
            "--churn" => o.churn = true,
            _ => panic!("unknown option {a}; see the doc comment of examples/store_bench.rs"),
        }
    }
    o
}

const NOW: u64 = 1_000_000;

fn open(o: &Opts, caps: Caps, now: u64) -> Box<dyn Store> {
    match o.store.as_str() {
        "memory" => Box::new(MemoryStore::with_caps(caps)),
        "durable" => Box::new(imsgw_store::DurableStore::open(&o.dir, caps, now).expect("open")),
        other => panic!("--store {other}: durable or memory"),
    }
}

fn report(what: &str, n: u64, took: Duration) {
    let secs = took.as_secs_f64();
    println!(
        "{what:<34} {n:>7} ops  {:>10.0} ops/s  {:>8.1} µs/op",
        n as f64 / secs,
        secs * 1e6 / n as f64
    );
}

fn timed(what: &str, n: u64, mut op: impl FnMut(u64)) {
    let t = Instant::now();
    for i in 0..n {
        op(i);
    }
    report(what, n, t.elapsed());
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let o = opts();
    let _ = std::fs::remove_dir_all(&o.dir);
    let bytes = serde_json::to_vec(&record(1)).unwrap().len();
    println!(
        "store={} dir={} record={bytes} bytes of JSON",
        o.store,
        o.dir.display()
    );
    let mut caps = Caps::unlimited();
    caps.per_kind.insert("login", 100);
    let s = open(&o, caps.clone(), NOW);
    let n = o.ops;
    let key = |i: u64| key_of(&format!("k{i}"));

    timed("put (new record)", n, |i| {
        s.put("family", &key(i), NOW, &record(i), NOW + 3600)
            .unwrap()
    });
    timed("get (hit)", n, |i| {
        let k = key((i * 7919) % n);
        assert!(s.get::<Family>("family", &k, NOW).unwrap().is_some());
    });
    timed("get (miss)", n, |i| {
        assert!(
            s.get::<Family>("family", &key(n + i), NOW)
                .unwrap()
                .is_none()
        );
    });
    timed("update (rotate: read+rewrite)", n, |i| {
        let next = key_of(&format!("rt-{i}-2"));
        let won = s
            .update::<Family, bool>("family", &key(i), NOW, |f| match f {
                Some((mut f, exp)) => {
                    f.current = next.clone();
                    f.jtis.push((format!("jti-{i}"), NOW + 600));
                    (Some((f, exp)), true)
                }
                None => (None, false),
            })
            .unwrap();
        assert!(won);
    });
    timed("take (single use)", n, |i| {
        assert!(s.take::<Family>("family", &key(i), NOW).unwrap().is_some());
    });
    timed("revoke", n, |i| {
        s.revoke(&format!("jti-{i:032}"), NOW + 600, NOW).unwrap()
    });
    timed("is_revoked", n, |i| {
        assert!(
            s.is_revoked(&format!("jti-{:032}", (i * 7919) % n), NOW)
                .unwrap()
        );
    });
    let t = Instant::now();
    let listed = s.revocations(NOW).unwrap().len();
    report(&format!("revocations() of {listed}"), 1, t.elapsed());
    for i in 0..100 {
        s.put("login", &key(i), NOW, &record(i), NOW + 600).unwrap();
    }
    timed("put at the cap (Full)", n, |i| {
        let r = s.put("login", &key(1000 + i), NOW, &record(i), NOW + 600);
        assert_eq!(r, Err(StoreError::Full("login")));
    });
    let t = Instant::now();
    std::thread::scope(|sc| {
        for th in 0..8u64 {
            let s = &s;
            sc.spawn(move || {
                for i in 0..n / 8 {
                    let k = key_of(&format!("race-{th}-{i}"));
                    s.put("session", &k, NOW, &record(i), NOW + 3600).unwrap();
                }
            });
        }
    });
    report("put from 8 threads", n / 8 * 8, t.elapsed());

    if o.fill == 0 {
        return;
    }
    drop(s);
    let _ = std::fs::remove_dir_all(&o.dir);
    let s = open(&o, Caps::unlimited(), NOW);
    timed("fill: put", o.fill, |i| {
        s.put("family", &key(i), NOW, &record(i), NOW + 3600)
            .unwrap()
    });
    println!(
        "file size after {} records: {} bytes",
        o.fill,
        dir_size(&o.dir)
    );
    drop(s);
    let t = Instant::now();
    let s = open(&o, Caps::unlimited(), NOW);
    report("reopen (quick_check of the file)", 1, t.elapsed());
    if o.churn {
        // all of the first fill has expired: each commit purges some as new records arrive
        let later = NOW + 7200;
        timed("churn: put after all expired", o.fill, |i| {
            s.put("family", &key(o.fill + i), later, &record(i), later + 3600)
                .unwrap()
        });
        println!("file size after the churn: {} bytes", dir_size(&o.dir));
    }
}
