//! The WAF's state: see the `imsgw-store` crate (the [`Store`] trait, its caps, the stores).
//!
//! The durable store is called directly from the handlers: a write waits for its fsync (0.3–3
//! ms here) on the tokio worker. Moving the calls off the workers with `block_in_place` was
//! measured (`tools/wafbench`, 100 000 requests): same latency (p99 36 ms against 37 ms), but
//! 19 threads and a peak of 82 MB against 3 threads and 31 MB, so they stay direct. A store
//! thread behind a channel is the way if writes ever crowd the workers.

pub use imsgw_store::*;
