//! The WAF's state: see the `imsgw-store` crate (the [`Store`] trait, its caps, the stores),
//! and [`OffRuntime`], which keeps a store that waits on a disk from stalling the async tasks.

use std::sync::Arc;

pub use imsgw_store::*;

/// A store whose every call may block (a durable store waits for fsync, up to milliseconds):
/// on a multi-threaded tokio runtime the call runs with `block_in_place`, so the worker's
/// other tasks (WebSockets, SIP) move to another thread meanwhile; elsewhere it runs as is.
pub struct OffRuntime(pub Arc<dyn Store>);

fn in_place<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl Store for OffRuntime {
    fn revoke(&self, jti: &str, exp: u64, now: u64) -> Result<(), StoreError> {
        in_place(|| self.0.revoke(jti, exp, now))
    }

    fn is_revoked(&self, jti: &str, now: u64) -> Result<bool, StoreError> {
        in_place(|| self.0.is_revoked(jti, now))
    }

    fn revocations(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        in_place(|| self.0.revocations(now))
    }

    fn revoked_count(&self) -> usize {
        in_place(|| self.0.revoked_count())
    }

    fn modify(
        &self,
        ns: &'static str,
        key: &str,
        now: u64,
        f: &mut dyn FnMut(Option<Record>) -> Option<Record>,
    ) -> Result<(), StoreError> {
        in_place(|| self.0.modify(ns, key, now, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrapped_store_works_on_both_runtimes() -> Result<(), StoreError> {
        let s = OffRuntime(Arc::new(MemoryStore::new()));
        s.put("k", "a", 1, &1u32, 100)?;
        assert_eq!(s.get::<u32>("k", "a", 2)?, Some(1));
        // and off any runtime
        let t = std::thread::spawn(move || s.get::<u32>("k", "a", 2));
        assert_eq!(t.join().unwrap_or(Ok(None))?, Some(1));
        Ok(())
    }
}
