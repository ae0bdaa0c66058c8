//! The durable store: the WAF's state in one SQLite database, `<state dir>/waf.sqlite3`, so a
//! restart forgets nothing: revocations, refresh-token families, sign-in sessions, codes.
//!
//! Durability: every change is its own transaction, committed before [`Store::modify`] or
//! [`Store::revoke`] returns, in WAL mode with `synchronous=FULL` (the log is `fsync`ed at each
//! commit). A change that returned survives the process being killed (SIGKILL, a panic, an OOM
//! kill) and, on a disk that honours `fsync`, a power loss or kernel crash; a change that had
//! not returned is wholly there or wholly absent after restart. A disk (or a virtual disk) that
//! acknowledges writes it only cached can lose the last commits on power loss: that is the
//! disk's promise, not this store's.
//!
//! Each `modify` runs inside one transaction while holding the one connection, so a
//! concurrent read-and-rewrite of one record is atomic; one that changes nothing (a read) ends
//! without a commit and costs no `fsync`. Expired records and revocations are purged a few at a
//! time by each commit, all at once when a kind reaches its cap (at most once a second) and at
//! start-up, so the file stays bounded by what is live. Live counts per kind are kept in the
//! database, in the same transactions, so the cap check reads one number.
//!
//! While open, the file is locked (`locking_mode=EXCLUSIVE`): one gateway per state directory.
//! SQLite's write-ahead log `waf.sqlite3-wal` sits beside it while the gateway runs and is
//! folded back into the file when it stops. A full disk fails the writes that need room, with
//! [`StoreError::Unavailable`]; reads go on, and writes work again once there is room.
//!
//! SQLite (compiled in, `rusqlite`'s `bundled` feature) was chosen over redb by measurement:
//! see `examples/store_bench.rs` and the README ("The WAF's state").
//!
//! Owns: the file and its format. Must not touch: what the records mean.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, params};

use crate::{Caps, REVOKED_LEEWAY, Record, Store, StoreError};

/// The file in the state directory.
pub const FILE_NAME: &str = "waf.sqlite3";
/// `PRAGMA application_id`: marks the file as an imsgw state file ("imgw").
const APPLICATION_ID: i64 = 0x696d_6777;
/// `PRAGMA user_version`: the layout of the tables below. A file with another is refused,
/// never guessed at.
const FORMAT: i64 = 1;
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;
/// Expired entries removed by each commit, besides its own change.
const PURGE_PER_COMMIT: i64 = 8;

const SCHEMA: &str = "
    CREATE TABLE records(
        ns TEXT NOT NULL, key TEXT NOT NULL, expires INTEGER NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (ns, key)) WITHOUT ROWID;
    CREATE INDEX records_by_expiry ON records(expires);
    -- records held per kind (live, or expired and not yet purged): the caps read one row
    CREATE TABLE counts(ns TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE revoked(jti TEXT PRIMARY KEY, exp INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX revoked_by_exp ON revoked(exp);
";

/// Why the state file could not be opened. Each names the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "{path} has mode {mode:o}, open to group or others (whoever can change the WAF's state can sign in as anyone); run `chmod {want:o} {path}`"
    )]
    InsecurePermissions { path: PathBuf, mode: u32, want: u32 },
    #[error(
        "{path} is in use by another process (another imsgw with the same waf.state_dir?); stop it, or give each gateway its own state directory"
    )]
    InUse { path: PathBuf },
    #[error(
        "{path} is damaged or is not an imsgw state file ({detail}); restore it from a backup, or move it aside to start with an empty store (everyone signs in again, and revoked tokens are accepted until they expire)"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "{path} was written by a newer imsgw (format {found}, this one reads {FORMAT}); run that version, or move the file aside to start with an empty store"
    )]
    Newer { path: PathBuf, found: i64 },
    #[error("{path} cannot be used: {detail}")]
    Unusable { path: PathBuf, detail: String },
}

/// The durable store. One process at a time: the file is locked while open.
pub struct DurableStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    caps: Caps,
    /// When a full kind last caused a full purge: at most once a second, so a flood against a
    /// full kind costs no more than one commit a second.
    full_purge_at: AtomicU64,
}

impl DurableStore {
    /// Opens (or creates) `dir/waf.sqlite3`. Creates `dir` with mode 0700 and the file with
    /// mode 0600; refuses a directory others may write into (they could swap the file for one
    /// with sessions of their choosing) and a file others may read or write. Checks the whole
    /// file (`PRAGMA quick_check`) and purges what expired by `now`.
    pub fn open(dir: &Path, caps: Caps, now: u64) -> Result<Self, OpenError> {
        ensure_dir(dir)?;
        let path = dir.join(FILE_NAME);
        // Made here, not by SQLite, for its mode; SQLite gives its log the same.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(|source| OpenError::Io {
                path: path.clone(),
                source,
            })?;
        check_mode(&path, &file)?;
        let wal = dir.join(format!("{FILE_NAME}-wal"));
        if let Ok(log) = File::open(&wal) {
            check_mode(&wal, &log)?;
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(&path, e))?;
        let store = Self {
            conn: Mutex::new(conn),
            path,
            caps,
            full_purge_at: AtomicU64::new(0),
        };
        store.init(now).map_err(|e| open_error(&store.path, e))??;
        Ok(store)
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Settings, checks and the format mark (written into a new file); purges what expired.
    fn init(&self, now: u64) -> rusqlite::Result<Result<(), OpenError>> {
        let mut conn = self.conn();
        // A second gateway on the same file is told at once, not after a wait.
        conn.busy_timeout(Duration::ZERO)?;
        // Before WAL, so SQLite keeps the log's index in this process (no -shm file) and
        // holds the lock from the first access to the close.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        // Whose file is it? Asked before anything is written: another program's database is
        // refused untouched.
        let app: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
        let format: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
        let new = match (app, format) {
            (0, 0) if tables == 0 => true,
            (APPLICATION_ID, FORMAT) => false,
            (APPLICATION_ID, found) if found > FORMAT => {
                return Ok(Err(OpenError::Newer {
                    path: self.path.clone(),
                    found,
                }));
            }
            (APPLICATION_ID, found) => {
                return Ok(Err(self.corrupt(format!("unknown format {found}"))));
            }
            _ => return Ok(Err(self.corrupt("another program's SQLite database".into()))),
        };
        let check: String = conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
        if check != "ok" {
            return Ok(Err(self.corrupt(check)));
        }
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Ok(Err(
                self.unusable(format!("journal_mode is {mode}, not wal"))
            ));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "trusted_schema", "OFF")?;
        conn.pragma_update(None, "cell_size_check", "ON")?;
        // The log is folded back every 1000 pages (SQLite's default); keep its file small too.
        conn.pragma_update(None, "journal_size_limit", 8 * 1024 * 1024)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if new {
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            tx.pragma_update(None, "user_version", FORMAT)?;
        }
        purge(&tx, now, i64::MAX)?;
        tx.commit()?;
        // Into the file itself, so its header shows whose it is (`check`) while the gateway
        // runs.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(Ok(()))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection (in a caller's closure) unwinds through the
        // transaction's drop, which rolls it back: the connection is consistent.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn corrupt(&self, detail: String) -> OpenError {
        OpenError::Corrupt {
            path: self.path.clone(),
            detail,
        }
    }

    fn unusable(&self, detail: String) -> OpenError {
        OpenError::Unusable {
            path: self.path.clone(),
            detail,
        }
    }

    fn unavailable(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Unavailable(format!("state file {}: {e}", self.path.display()))
    }

    /// Runs one `modify` inside `tx`.
    fn modify_in(
        &self,
        tx: &Transaction<'_>,
        ns: &'static str,
        key: &str,
        now: u64,
        f: &mut dyn FnMut(Option<Record>) -> Option<Record>,
    ) -> Result<Outcome, StoreError> {
        let held: Option<(i64, String)> = tx
            .prepare_cached("SELECT expires, value FROM records WHERE ns = ?1 AND key = ?2")
            .and_then(|mut st| {
                st.query_row(params![ns, key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| self.unavailable(e))?;
        let held = match held {
            Some((expires, value)) => Some(Record {
                value: serde_json::from_str(&value).map_err(|e| {
                    StoreError::Unavailable(format!(
                        "state file {}: a `{ns}` record does not decode: {e}",
                        self.path.display()
                    ))
                })?,
                expires: u64::try_from(expires).unwrap_or(0),
            }),
            None => None,
        };
        let current = held.clone().filter(|r| r.expires > now);
        let next = f(current.clone());
        if next == current {
            // A read, or a rewrite to the same value; an expired record is left to the purge.
            return Ok(Outcome::Unchanged);
        }
        let sql = |e| self.unavailable(e);
        if current.is_none() && next.is_some() {
            let cap = u64::try_from(self.caps.of(ns)).unwrap_or(u64::MAX);
            let mut already = u64::from(held.is_some());
            if count(tx, ns).map_err(sql)?.saturating_sub(already) >= cap {
                let last = self.full_purge_at.swap(now, Ordering::Relaxed);
                let purged = last != now && purge(tx, now, i64::MAX).map_err(sql)? > 0;
                if purged {
                    already = u64::from(exists(tx, ns, key).map_err(sql)?);
                }
                if count(tx, ns).map_err(sql)?.saturating_sub(already) >= cap {
                    return Ok(Outcome::Full { purged });
                }
            }
        }
        let existed = exists(tx, ns, key).map_err(sql)?;
        match &next {
            Some(rec) => {
                let value = serde_json::to_string(&rec.value).map_err(|e| {
                    StoreError::Unavailable(format!("cannot encode a `{ns}` record: {e}"))
                })?;
                tx.prepare_cached(
                    "INSERT INTO records(ns, key, expires, value) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(ns, key) DO UPDATE SET expires = excluded.expires, value = excluded.value",
                )
                .and_then(|mut st| st.execute(params![ns, key, sql_int(rec.expires), value]))
                .map_err(sql)?;
                if !existed {
                    add_count(tx, ns, 1).map_err(sql)?;
                }
            }
            None if existed => {
                tx.prepare_cached("DELETE FROM records WHERE ns = ?1 AND key = ?2")
                    .and_then(|mut st| st.execute(params![ns, key]))
                    .map_err(sql)?;
                add_count(tx, ns, -1).map_err(sql)?;
            }
            None => {}
        }
        purge(tx, now, PURGE_PER_COMMIT).map_err(sql)?;
        Ok(Outcome::Changed)
    }
}

/// Checks, without opening, creating or changing anything, what [`DurableStore::open`] would
/// refuse at once: a directory that is not one or that others may write into, a state file
/// others may read, a file that is not an imsgw state file or is from a newer imsgw. For
/// `imsgw check-config`, which may run beside a gateway that holds the file; damage deeper
/// in the file is found by the whole-file check at start-up.
pub fn check(dir: &Path) -> Result<(), OpenError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OpenError::Io { path, source }
    };
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            // Made at start-up: under the nearest existing ancestor, which must be a directory.
            return match dir.ancestors().skip(1).find(|a| a.exists()) {
                Some(a) if !a.is_dir() => Err(OpenError::NotADirectory {
                    path: a.to_path_buf(),
                }),
                _ => Ok(()),
            };
        }
        Err(e) => return Err(io(dir)(e)),
    };
    check_dir(dir, &meta)?;
    let path = dir.join(FILE_NAME);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&path)(e)),
    };
    check_mode(&path, &file)?;
    // The database header (sqlite.org/fileformat.html §1.3): magic, user_version at 60,
    // application_id at 68, both big-endian.
    let mut header = Vec::with_capacity(100);
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, 100), &mut header)
        .map_err(io(&path))?;
    if header.is_empty() {
        return Ok(());
    }
    let corrupt = |detail: &str| OpenError::Corrupt {
        path: path.clone(),
        detail: detail.into(),
    };
    if header.len() < 100 || !header.starts_with(b"SQLite format 3\0") {
        return Err(corrupt("not an SQLite database"));
    }
    let word = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&header[at..at + 4]);
        i64::from(i32::from_be_bytes(b))
    };
    match (word(68), word(60)) {
        (0, 0) => Err(corrupt("another program's SQLite database")),
        (APPLICATION_ID, FORMAT) => Ok(()),
        (APPLICATION_ID, found) if found > FORMAT => Err(OpenError::Newer { path, found }),
        (APPLICATION_ID, found) => Err(corrupt(&format!("unknown format {found}"))),
        _ => Err(corrupt("another program's SQLite database")),
    }
}

/// What one `modify` came to inside its transaction.
enum Outcome {
    /// Nothing to write: end the transaction without a commit (no fsync).
    Unchanged,
    Changed,
    /// The kind is at its cap: nothing of `f`'s is stored; `purged`: expired records were
    /// removed on the way, worth committing.
    Full {
        purged: bool,
    },
}

impl Store for DurableStore {
    fn revoke(&self, jti: &str, exp: u64, now: u64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let write = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "INSERT INTO revoked(jti, exp) VALUES (?1, ?2)
                 ON CONFLICT(jti) DO UPDATE SET exp = max(exp, excluded.exp)",
            )?
            .execute(params![jti, sql_int(exp)])?;
            purge(&tx, now, PURGE_PER_COMMIT)?;
            tx.commit()
        })();
        write.map_err(|e| self.unavailable(e))
    }

    fn is_revoked(&self, jti: &str, now: u64) -> Result<bool, StoreError> {
        let conn = self.conn();
        let exp: Option<i64> = conn
            .prepare_cached("SELECT exp FROM revoked WHERE jti = ?1")
            .and_then(|mut st| st.query_row(params![jti], |r| r.get(0)).optional())
            .map_err(|e| self.unavailable(e))?;
        Ok(exp.is_some_and(|exp| revoked_at(exp, now)))
    }

    fn revocations(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.conn();
        let rows = (|| -> rusqlite::Result<Vec<(String, i64)>> {
            let mut st = conn.prepare_cached("SELECT jti, exp FROM revoked")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })();
        let rows = rows.map_err(|e| self.unavailable(e))?;
        Ok(rows
            .into_iter()
            .filter(|(_, exp)| revoked_at(*exp, now))
            .map(|(jti, exp)| (jti, u64::try_from(exp).unwrap_or(0)))
            .collect())
    }

    fn revoked_count(&self) -> usize {
        let conn = self.conn();
        let n: rusqlite::Result<i64> =
            conn.query_row("SELECT count(*) FROM revoked", [], |r| r.get(0));
        // A count for metrics and tests; a store that cannot be read holds, as far as anyone
        // can tell, nothing.
        n.map_or(0, |n| usize::try_from(n).unwrap_or(0))
    }

    fn modify(
        &self,
        ns: &'static str,
        key: &str,
        now: u64,
        f: &mut dyn FnMut(Option<Record>) -> Option<Record>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.unavailable(e))?;
        // On any error `tx` is dropped, which rolls it back: nothing of this call is kept.
        match self.modify_in(&tx, ns, key, now, f)? {
            Outcome::Changed => tx.commit().map_err(|e| self.unavailable(e)),
            Outcome::Unchanged => tx.rollback().map_err(|e| self.unavailable(e)),
            Outcome::Full { purged } => {
                let end = if purged { tx.commit() } else { tx.rollback() };
                end.map_err(|e| self.unavailable(e))?;
                Err(StoreError::Full(ns))
            }
        }
    }
}

/// A revocation with this `exp` is in force at `now` (until the verifiers' leeway has passed).
fn revoked_at(exp: i64, now: u64) -> bool {
    u64::try_from(exp).is_ok_and(|exp| exp.saturating_add(REVOKED_LEEWAY) >= now)
}

/// SQLite integers are i64; times are u64 seconds, far below the limit.
fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn count(tx: &Transaction<'_>, ns: &str) -> rusqlite::Result<u64> {
    let n: Option<i64> = tx
        .prepare_cached("SELECT n FROM counts WHERE ns = ?1")?
        .query_row(params![ns], |r| r.get(0))
        .optional()?;
    Ok(n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

fn exists(tx: &Transaction<'_>, ns: &str, key: &str) -> rusqlite::Result<bool> {
    tx.prepare_cached("SELECT 1 FROM records WHERE ns = ?1 AND key = ?2")?
        .exists(params![ns, key])
}

fn add_count(tx: &Transaction<'_>, ns: &str, delta: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO counts(ns, n) VALUES (?1, max(?2, 0))
         ON CONFLICT(ns) DO UPDATE SET n = max(n + ?2, 0)",
    )?
    .execute(params![ns, delta])?;
    Ok(())
}

/// Removes up to `limit` expired records and as many revocations past their leeway; returns
/// how many records went.
fn purge(tx: &Transaction<'_>, now: u64, limit: i64) -> rusqlite::Result<usize> {
    let victims: Vec<(String, String)> = {
        let mut st = tx.prepare_cached(
            "SELECT ns, key FROM records WHERE expires <= ?1 ORDER BY expires LIMIT ?2",
        )?;
        let rows = st.query_map(params![sql_int(now), limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (ns, key) in &victims {
        tx.prepare_cached("DELETE FROM records WHERE ns = ?1 AND key = ?2")?
            .execute(params![ns, key])?;
        add_count(tx, ns, -1)?;
    }
    tx.prepare_cached(
        "DELETE FROM revoked WHERE jti IN
         (SELECT jti FROM revoked WHERE exp < ?1 ORDER BY exp LIMIT ?2)",
    )?
    .execute(params![sql_int(now.saturating_sub(REVOKED_LEEWAY)), limit])?;
    Ok(victims.len())
}

/// An SQLite error at open, named for what the operator can do about it.
fn open_error(path: &Path, e: rusqlite::Error) -> OpenError {
    let path = path.to_path_buf();
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => OpenError::InUse { path },
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => OpenError::Corrupt {
            path,
            detail: e.to_string(),
        },
        _ => OpenError::Unusable {
            path,
            detail: e.to_string(),
        },
    }
}

/// Creates `dir` (mode 0700) if needed and refuses one that others may write into.
fn ensure_dir(dir: &Path) -> Result<(), OpenError> {
    let io = |source| OpenError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(io)?;
    }
    let meta = std::fs::metadata(dir).map_err(io)?;
    check_dir(dir, &meta)
}

/// Refuses `dir` (its metadata `meta`) if it is not a directory or others may write into it.
fn check_dir(dir: &Path, meta: &std::fs::Metadata) -> Result<(), OpenError> {
    if !meta.is_dir() {
        return Err(OpenError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(OpenError::InsecurePermissions {
            path: dir.to_path_buf(),
            mode,
            want: DIR_MODE,
        });
    }
    Ok(())
}

/// Refuses the opened `file` if group or others may read or write it.
fn check_mode(path: &Path, file: &File) -> Result<(), OpenError> {
    let meta = file.metadata().map_err(|source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(OpenError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
            want: FILE_MODE,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::StoreExt;
    use crate::suite::Harness;

    /// A fresh directory under the system temp dir, removed with its contents on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let path = std::env::temp_dir().join(format!(
                "imsgw-store-{tag}-{}-{}-{nanos}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            DirBuilder::new().mode(0o700).create(&path).unwrap();
            TempDir(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Durable stores in a temporary directory; a restart closes the file and opens it again.
    struct Durable {
        dir: TempDir,
        caps: Caps,
    }

    impl Durable {
        fn new() -> Self {
            Self {
                dir: TempDir::new("suite"),
                caps: Caps::unlimited(),
            }
        }

        fn state(&self) -> PathBuf {
            self.dir.path().join("state")
        }
    }

    impl Harness for Durable {
        type S = DurableStore;
        fn open(&mut self, caps: Caps, now: u64) -> DurableStore {
            self.caps = caps.clone();
            DurableStore::open(&self.state(), caps, now).unwrap()
        }
        fn reopen(&mut self, s: DurableStore, now: u64) -> Option<DurableStore> {
            drop(s);
            Some(DurableStore::open(&self.state(), self.caps.clone(), now).unwrap())
        }
    }

    mod suite {
        crate::store_suite!(super::Durable::new());
    }

    fn open(dir: &Path) -> Result<DurableStore, OpenError> {
        DurableStore::open(dir, Caps::unlimited(), 1)
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn created_private_and_a_group_writable_dir_or_readable_file_is_refused() {
        let tmp = TempDir::new("modes");
        let dir = tmp.path().join("state");
        let s = open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(s.path()), 0o600);
        s.put("session", "s", 1, &1, 100).unwrap();
        assert_eq!(mode(&dir.join("waf.sqlite3-wal")), 0o600, "the log too");
        assert!(
            !dir.join("waf.sqlite3-shm").exists(),
            "no shared-memory file"
        );
        drop(s);
        assert!(
            !dir.join("waf.sqlite3-wal").exists(),
            "the log is folded back at close"
        );

        chmod(&dir, 0o770);
        let e = open(&dir).err().unwrap();
        assert!(
            matches!(e, OpenError::InsecurePermissions { mode: 0o770, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 700"), "{e}");
        chmod(&dir, 0o700);
        let file = dir.join(FILE_NAME);
        chmod(&file, 0o644);
        let e = open(&dir).err().unwrap();
        assert!(
            matches!(e, OpenError::InsecurePermissions { mode: 0o644, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 600"), "{e}");
        chmod(&file, 0o600);
        assert_eq!(
            open(&dir).unwrap().get::<i32>("session", "s", 2).unwrap(),
            Some(1)
        );

        let plain = tmp.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        let e = open(&plain).err().unwrap();
        assert!(matches!(e, OpenError::NotADirectory { .. }), "{e}");
    }

    #[test]
    fn a_second_open_of_the_same_file_is_refused_while_the_first_holds_it() {
        let tmp = TempDir::new("lock");
        let s = open(tmp.path()).unwrap();
        let e = open(tmp.path()).err().unwrap();
        assert!(matches!(e, OpenError::InUse { .. }), "{e}");
        assert!(e.to_string().contains(FILE_NAME), "{e}");
        // the first one is unharmed
        s.put("session", "s", 1, &1, 100).unwrap();
        drop(s);
        assert_eq!(
            open(tmp.path())
                .unwrap()
                .get::<i32>("session", "s", 2)
                .unwrap(),
            Some(1)
        );
    }

    /// A damaged or foreign file is refused with an error naming it, and left as it was:
    /// never replaced by an empty store.
    #[test]
    fn a_damaged_or_foreign_file_is_refused_and_left_alone() {
        let tmp = TempDir::new("corrupt");
        let file = tmp.path().join(FILE_NAME);
        let write = |bytes: &[u8]| {
            std::fs::write(&file, bytes).unwrap();
            chmod(&file, 0o600);
        };
        let refused = |what: &str| {
            let before = std::fs::read(&file).unwrap();
            let e = open(tmp.path()).err().unwrap();
            assert!(matches!(e, OpenError::Corrupt { .. }), "{what}: {e}");
            let text = e.to_string();
            assert!(text.contains(&file.display().to_string()), "{what}: {text}");
            assert!(text.contains("move it aside"), "{what}: {text}");
            assert!(
                std::fs::read(&file).unwrap() == before,
                "{what}: left alone"
            );
        };
        write(&[0x42; 10_000]);
        refused("not a database at all");

        // a real store, cut in the middle
        std::fs::remove_file(&file).unwrap();
        let s = open(tmp.path()).unwrap();
        for i in 0..300 {
            s.put("session", &format!("s{i}"), 1, &"x".repeat(200), 10_000)
                .unwrap();
        }
        drop(s);
        let bytes = std::fs::read(&file).unwrap();
        write(&bytes[..bytes.len() / 2]);
        refused("truncated");

        // another program's SQLite database
        std::fs::remove_file(&file).unwrap();
        let other = Connection::open(&file).unwrap();
        other.execute_batch("CREATE TABLE notes(x TEXT)").unwrap();
        drop(other);
        chmod(&file, 0o600);
        refused("another program's database");
    }

    /// A record whose bytes rotted inside the file (its page intact): reading it is an error
    /// for that record, not a panic and not a silent absence; the rest is readable.
    #[test]
    fn a_rotten_record_is_an_error_for_that_record_only() {
        let tmp = TempDir::new("rot");
        let s = open(tmp.path()).unwrap();
        s.put("session", "bad", 1, &"y".repeat(40), 10_000).unwrap();
        s.put("session", "good", 1, &"z".repeat(40), 10_000)
            .unwrap();
        drop(s);
        let file = tmp.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&file).unwrap();
        let at = bytes.windows(40).position(|w| w == [b'y'; 40]).unwrap();
        bytes[at - 1] = b'{'; // the opening quote of the JSON string
        std::fs::write(&file, &bytes).unwrap();
        let s = open(tmp.path()).unwrap();
        let e = s.get::<String>("session", "bad", 2).unwrap_err();
        assert!(
            matches!(&e, StoreError::Unavailable(m) if m.contains("does not decode")),
            "{e}"
        );
        assert_eq!(
            s.get::<String>("session", "good", 2).unwrap(),
            Some("z".repeat(40))
        );
    }

    /// `check` says what `open` would refuse, and changes nothing, also beside a running store.
    #[test]
    fn check_without_opening_agrees_with_open() {
        let tmp = TempDir::new("check");
        let dir = tmp.path().join("state");
        check(&dir).unwrap();
        assert!(!dir.exists(), "check creates nothing");
        let s = open(&dir).unwrap();
        s.put("session", "s", 1, &1, 100).unwrap();
        check(&dir).unwrap();
        drop(s);
        check(&dir).unwrap();
        chmod(&dir, 0o777);
        assert!(matches!(
            check(&dir),
            Err(OpenError::InsecurePermissions { .. })
        ));
        chmod(&dir, 0o700);
        let file = dir.join(FILE_NAME);
        chmod(&file, 0o640);
        assert!(matches!(
            check(&dir),
            Err(OpenError::InsecurePermissions { .. })
        ));
        chmod(&file, 0o600);
        let good = std::fs::read(&file).unwrap();
        std::fs::write(&file, b"junk").unwrap();
        assert!(matches!(check(&dir), Err(OpenError::Corrupt { .. })));
        std::fs::write(&file, &good).unwrap();
        let c = Connection::open(&file).unwrap();
        c.pragma_update(None, "user_version", FORMAT + 1).unwrap();
        drop(c);
        assert!(matches!(
            check(&dir),
            Err(OpenError::Newer { found: 2, .. })
        ));
        let plain = tmp.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        assert!(matches!(
            check(&plain),
            Err(OpenError::NotADirectory { .. })
        ));
        assert!(matches!(
            check(&plain.join("state")),
            Err(OpenError::NotADirectory { .. })
        ));
    }

    #[test]
    fn a_file_from_a_newer_format_is_refused() {
        let tmp = TempDir::new("newer");
        drop(open(tmp.path()).unwrap());
        let file = tmp.path().join(FILE_NAME);
        let c = Connection::open(&file).unwrap();
        c.pragma_update(None, "user_version", FORMAT + 1).unwrap();
        drop(c);
        let e = open(tmp.path()).err().unwrap();
        assert!(matches!(e, OpenError::Newer { found: 2, .. }), "{e}");
    }

    /// Expired records and revocations leave the file: a few with each commit, all at a
    /// restart; the counts follow.
    #[test]
    fn expired_entries_are_purged_and_counted_out() {
        let tmp = TempDir::new("purge");
        let s = DurableStore::open(tmp.path(), Caps::unlimited(), 100).unwrap();
        for i in 0..40 {
            s.put("code", &format!("c{i}"), 100, &i, 200).unwrap();
            s.revoke(&format!("j{i}"), 150, 100).unwrap();
        }
        let held = |s: &DurableStore| {
            let c = s.conn();
            let records: i64 = c
                .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
                .unwrap();
            let counted: Option<i64> = c
                .query_row("SELECT n FROM counts WHERE ns = 'code'", [], |r| r.get(0))
                .optional()
                .unwrap();
            drop(c);
            (records, counted, s.revoked_count())
        };
        assert_eq!(held(&s), (40, Some(40), 40));
        // each commit after expiry removes a few
        s.put("session", "s", 300, &1, 400).unwrap();
        s.revoke("k", 1000, 300).unwrap();
        let n = 2 * PURGE_PER_COMMIT;
        assert_eq!(
            held(&s),
            (41 - n, Some(40 - n), usize::try_from(41 - n).unwrap())
        );
        // a restart purges the rest
        drop(s);
        let s = DurableStore::open(tmp.path(), Caps::unlimited(), 300).unwrap();
        assert_eq!(held(&s), (1, Some(0), 1));
    }
}
