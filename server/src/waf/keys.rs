//! The WAF's signing keys at run time: loaded from `waf.key_dir` (or `waf.key_files`),
//! re-read periodically so `imsgw keys rotate` takes effect without a restart, old keys retired
//! once no token they signed can still be valid.
//!
//! Owns: key loading and the reload loop. Must not touch: token semantics (imsgw-token).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use imsgw_token::{KeyError, KeyRing};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Waf;
use crate::config::Config;
use crate::hub::HubInput;

/// Where keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A directory imsgw manages (creates, rotates into, retires from).
    Dir(PathBuf),
    /// Operator-managed PEM files; imsgw only reads them.
    Files(Vec<(String, PathBuf)>),
}

impl KeySource {
    pub fn from_config(c: &Config) -> Self {
        if c.waf.key_files.is_empty() {
            return KeySource::Dir(c.key_dir());
        }
        KeySource::Files(
            c.waf
                .key_files
                .iter()
                .map(|p| {
                    let p = c.beside_config(p.clone());
                    let kid = p
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    (kid, p)
                })
                .collect(),
        )
    }

    /// Reads the keys (making a first one in an empty directory).
    pub fn load(&self, now: u64) -> Result<KeyRing, KeyError> {
        match self {
            KeySource::Dir(d) => KeyRing::load_or_create(d, now),
            KeySource::Files(f) => KeyRing::from_pem_files(f),
        }
    }
}

/// Re-reads keys every `every`; retires old ones in a managed directory; tells the WAF and the
/// edge when the set changed.
pub async fn reload_loop(
    source: KeySource,
    waf: Arc<Waf>,
    hub: mpsc::Sender<HubInput>,
    every: Duration,
    max_ttl: u64,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.reset();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = super::unix_now();
        if let KeySource::Dir(dir) = &source {
            match KeyRing::retire(dir, now, max_ttl) {
                Ok(gone) if !gone.is_empty() => info!(kids = ?gone, "retired signing keys"),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "could not retire old keys"),
            }
        }
        match source.load(now) {
            Ok(ring) => {
                if waf.replace_keys(&ring) {
                    info!(signing = ring.signing_kid(), "signing keys changed");
                    let _ = hub.send(HubInput::OurKeys(Box::new(ring))).await;
                }
            }
            Err(e) => warn!(error = %e, "could not reload signing keys; keeping the current ones"),
        }
    }
}
