//! Helpers for this crate's unit tests: a temporary directory removed on drop.

use std::path::{Path, PathBuf};

/// A fresh directory under the system temp dir (mode 0700), removed with its contents on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let mut r = [0u8; 8];
        rand::fill(&mut r);
        let name = format!(
            "imsgw-token-{tag}-{}-{:016x}",
            std::process::id(),
            u64::from_le_bytes(r)
        );
        let path = std::env::temp_dir().join(name);
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .expect("create temp dir");
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
