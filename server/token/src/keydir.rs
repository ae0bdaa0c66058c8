//! The key directory: one file `<kid>.pem` (PKCS#8, mode 0600) per key in a directory of mode
//! 0700. Loading, rotating and retiring keys are the only file I/O in this crate.
//!
//! Keys are never changed in place: `rotate` writes a new file (through a temporary name and an
//! atomic rename, so a concurrent loader never sees half a key) and `retire` deletes files whose
//! tokens can no longer be valid. A running process picks up a rotation when its driver loads
//! the ring again and calls `Minter::set_keys` / `Verifier::set_our_keys`.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::keys::{self, KeyError, KeyRing, RingKey};
use crate::kid;

/// Mode of a key file.
const FILE_MODE: u32 = 0o600;
/// Mode of a key directory we create.
const DIR_MODE: u32 = 0o700;
/// Margin past a token's lifetime before its key may go: the verifier's clock-skew leeway.
const RETIRE_MARGIN_SECS: u64 = 60;

/// Reads the listed key files (each must be mode 0600) into a ring; the newest signs.
fn load_files(files: &[KeyFile]) -> Result<KeyRing, KeyError> {
    let mut keys: Vec<RingKey> = Vec::with_capacity(files.len());
    for f in files {
        check_mode(&f.path, 0o077, FILE_MODE)?;
        let text = fs::read_to_string(&f.path).map_err(|e| io(&f.path, e))?;
        keys.push(keys::key_from_pem(f.kid.clone(), &text, &f.path)?);
    }
    KeyRing::from_keys(keys)
}

impl KeyRing {
    /// Loads every key in `dir` (files `<kid>.pem`, PKCS#8 or SEC1 PEM, mode 0600). Creates `dir`
    /// with mode 0700 and a first key when there is none. The newest key signs; all verify.
    ///
    /// Refuses key files readable or writable by group or others, and a directory writable by
    /// them (anyone who can plant a key there can mint tokens). Files whose name is not a
    /// generated `kid` (an operator's `prod.pem`) load as the oldest keys and are never retired.
    pub fn load_or_create(dir: &Path, now: u64) -> Result<KeyRing, KeyError> {
        ensure_dir(dir)?;
        let mut files = list(dir)?;
        if files.is_empty() {
            write_new_key(dir, now)?;
            files = list(dir)?;
        }
        load_files(&files)
    }

    /// Loads the keys in `dir` like [`KeyRing::load_or_create`] but never writes: a keyless
    /// directory is [`KeyError::NoKeys`], a missing one [`KeyError::Io`]. For tools that must sign with the keys a
    /// gateway already publishes, never with one of their own.
    pub fn load(dir: &Path) -> Result<KeyRing, KeyError> {
        let files = list(dir)?;
        if files.is_empty() {
            return Err(KeyError::NoKeys);
        }
        load_files(&files)
    }

    /// `imsgw keys rotate`: writes a new key into `dir` and returns its `kid`. It becomes the
    /// signing key the next time the ring is loaded; older keys keep verifying until retired.
    pub fn rotate(dir: &Path, now: u64) -> Result<String, KeyError> {
        ensure_dir(dir)?;
        write_new_key(dir, now)
    }

    /// Deletes keys that can no longer have valid tokens and returns their `kid`s: keys that are
    /// not the newest and were superseded (a newer key created) more than
    /// `max_token_lifetime + 60 s` before `now`. The 60 s is the verifier's leeway; this assumes
    /// every process reloads the ring promptly after a rotation, since a process still signing
    /// with the old key extends its tokens' life.
    pub fn retire(dir: &Path, now: u64, max_token_lifetime: u64) -> Result<Vec<String>, KeyError> {
        let mut dated: Vec<KeyFile> = list(dir)?.into_iter().filter(|f| f.created > 0).collect();
        dated.sort_by(|a, b| (a.created, &a.kid).cmp(&(b.created, &b.kid)));
        let mut retired = Vec::new();
        for pair in dated.windows(2) {
            let (old, newer) = (&pair[0], &pair[1]);
            let gone_after = newer
                .created
                .saturating_add(max_token_lifetime)
                .saturating_add(RETIRE_MARGIN_SECS);
            if now > gone_after {
                fs::remove_file(&old.path).map_err(|e| io(&old.path, e))?;
                retired.push(old.kid.clone());
            }
        }
        Ok(retired)
    }
}

/// A `<kid>.pem` file in the key directory.
struct KeyFile {
    kid: String,
    created: u64,
    path: PathBuf,
}

/// The key files in `dir`, oldest first (operator-named ones, with no date, before all others).
fn list(dir: &Path) -> Result<Vec<KeyFile>, KeyError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(kid) = name.strip_suffix(".pem") else {
            continue;
        };
        if !kid::is_valid_kid(kid) {
            continue; // temporary files start with '.', and other names are not ours
        }
        let path = entry.path();
        if !entry.file_type().map_err(|e| io(&path, e))?.is_file() {
            continue;
        }
        out.push(KeyFile {
            kid: kid.to_owned(),
            created: kid::created_from_kid(kid).unwrap_or(0),
            path,
        });
    }
    out.sort_by(|a, b| (a.created, &a.kid).cmp(&(b.created, &b.kid)));
    Ok(out)
}

/// Creates `dir` (mode 0700) if needed and refuses one that others may write into.
fn ensure_dir(dir: &Path) -> Result<(), KeyError> {
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| io(dir, e))?;
    }
    check_mode(dir, 0o022, DIR_MODE)
}

/// Generates a key and stores it as `<kid>.pem` with mode 0600; returns the `kid`.
fn write_new_key(dir: &Path, now: u64) -> Result<String, KeyError> {
    let (kid, pkcs8) = keys::generate(now)?;
    let pem = crate::pem::encode_private_key(&pkcs8);
    let tmp = dir.join(format!(".{kid}.pem.tmp"));
    let dest = dir.join(format!("{kid}.pem"));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    let written = file
        .write_all(pem.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io(&tmp, e));
    }
    fs::rename(&tmp, &dest).map_err(|e| io(&dest, e))?;
    // Make the rename durable before anyone is told the new kid.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))?;
    Ok(kid)
}

/// Refuses a file holding a secret that group or others may read or write (mode 0600 or
/// stricter passes): the rule key files get here, for every secret file imsgw reads (client
/// secrets, the HMAC and flow-token keys). The error names the file, its mode and the fix.
pub fn check_secret_file(path: &Path) -> Result<(), KeyError> {
    check_mode(path, 0o077, FILE_MODE)
}

/// Reads a secret file after checking, on the very file opened (no window for it to be
/// swapped between the check and the read), that group and others have no access to it.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    use std::io::Read;
    let mut f = fs::File::open(path).map_err(|e| io(path, e))?;
    let mode = f.metadata().map_err(|e| io(path, e))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
            want: FILE_MODE,
        });
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| io(path, e))?;
    Ok(bytes)
}

/// Refuses `path` if any of `forbidden` permission bits is set.
fn check_mode(path: &Path, forbidden: u32, want: u32) -> Result<(), KeyError> {
    let meta = fs::metadata(path).map_err(|e| io(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & forbidden != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
            want,
        });
    }
    Ok(())
}

fn io(path: &Path, source: std::io::Error) -> KeyError {
    KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    const T0: u64 = 1_778_581_800;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn load_never_creates_a_key() {
        let tmp = TempDir::new("load-only");
        assert!(matches!(KeyRing::load(tmp.path()), Err(KeyError::NoKeys)));
        assert_eq!(
            std::fs::read_dir(tmp.path())
                .map(|d| d.count())
                .unwrap_or(0),
            0
        );
        let made = KeyRing::load_or_create(tmp.path(), T0).expect("create");
        let loaded = KeyRing::load(tmp.path()).expect("load");
        assert_eq!(made.signing_kid(), loaded.signing_kid());
    }

    #[test]
    fn first_load_creates_dir_0700_and_one_key_0600() {
        let tmp = TempDir::new("create");
        let dir = tmp.path().join("keys");
        let ring = KeyRing::load_or_create(&dir, T0).expect("create");
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join(format!("{}.pem", ring.signing_kid()));
        assert_eq!(mode(&file), 0o600);
        assert_eq!(
            fs::read_dir(&dir).expect("ls").count(),
            1,
            "no temp file left behind"
        );
        let again = KeyRing::load_or_create(&dir, T0 + 5).expect("reload");
        assert_eq!(
            again.signing_kid(),
            ring.signing_kid(),
            "no second key on reload"
        );
    }

    #[test]
    fn rotated_key_signs_after_reload_and_old_one_still_verifies() {
        let tmp = TempDir::new("rotate");
        let first = KeyRing::load_or_create(tmp.path(), T0).expect("create");
        let new_kid = KeyRing::rotate(tmp.path(), T0 + 10).expect("rotate");
        assert_eq!(mode(&tmp.path().join(format!("{new_kid}.pem"))), 0o600);
        let ring = KeyRing::load_or_create(tmp.path(), T0 + 11).expect("reload");
        assert_eq!(ring.signing_kid(), new_kid);
        assert_eq!(
            ring.kids().collect::<Vec<_>>(),
            [first.signing_kid(), new_kid.as_str()]
        );
    }

    #[test]
    fn retire_waits_for_lifetime_plus_leeway_after_supersession() {
        let tmp = TempDir::new("retire");
        let old = KeyRing::load_or_create(tmp.path(), T0).expect("create");
        let new_kid = KeyRing::rotate(tmp.path(), T0 + 100).expect("rotate");
        let lifetime = 600;
        let limit = T0 + 100 + lifetime + 60;
        assert!(
            KeyRing::retire(tmp.path(), limit, lifetime)
                .expect("retire")
                .is_empty()
        );
        let gone = KeyRing::retire(tmp.path(), limit + 1, lifetime).expect("retire");
        assert_eq!(gone, [old.signing_kid().to_owned()]);
        let ring = KeyRing::load_or_create(tmp.path(), limit + 2).expect("reload");
        assert_eq!(ring.kids().collect::<Vec<_>>(), [new_kid.as_str()]);
        assert!(
            KeyRing::retire(tmp.path(), u64::MAX, lifetime)
                .expect("retire")
                .is_empty(),
            "the newest key is never retired"
        );
    }

    #[test]
    fn operator_named_key_is_loaded_but_never_retired() {
        let tmp = TempDir::new("opname");
        let (_, der) = keys::generate(0).expect("keygen");
        let p = tmp.path().join("prod.pem");
        fs::write(&p, crate::pem::encode_private_key(&der)).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).expect("chmod");
        let kid = KeyRing::rotate(tmp.path(), T0).expect("rotate");
        let ring = KeyRing::load_or_create(tmp.path(), T0).expect("load");
        assert_eq!(ring.kids().collect::<Vec<_>>(), ["prod", kid.as_str()]);
        assert!(
            KeyRing::retire(tmp.path(), u64::MAX, 0)
                .expect("retire")
                .is_empty()
        );
    }

    #[test]
    fn key_file_open_to_others_or_group_writable_dir_is_refused() {
        let tmp = TempDir::new("perms");
        let ring = KeyRing::load_or_create(tmp.path(), T0).expect("create");
        let file = tmp.path().join(format!("{}.pem", ring.signing_kid()));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = KeyRing::load_or_create(tmp.path(), T0).expect_err("0644 refused");
        assert!(
            matches!(err, KeyError::InsecurePermissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).expect("chmod");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = KeyRing::load_or_create(tmp.path(), T0).expect_err("0777 dir refused");
        assert!(
            matches!(err, KeyError::InsecurePermissions { mode: 0o777, .. }),
            "{err}"
        );
    }

    #[test]
    fn corrupt_key_file_is_named_in_the_error() {
        let tmp = TempDir::new("corrupt");
        let p = tmp.path().join("broken.pem");
        fs::write(
            &p,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .expect("w");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).expect("chmod");
        let err = KeyRing::load_or_create(tmp.path(), T0).expect_err("refused");
        assert!(err.to_string().contains("broken.pem"), "{err}");
    }
}
