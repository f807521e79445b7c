//! The embedded key-value backend: one SQLite file in WAL mode under the
//! state dir, the same table layout as Spin's `sqlite_key_value.db`.

use super::{KeyValueStore, KvError, KvResult, decode_counter, other};
use anyhow::{Context as _, Result};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The embedded backend: every label is a partition of one SQLite file.
///
/// Crash safety: WAL journal with `synchronous = NORMAL` — a committed write
/// survives the host being killed (it is in the WAL before `set` returns);
/// only an OS crash or power loss can lose the last transactions, never
/// corrupt the file. That is what lets this store do tens of thousands of
/// writes a second where a rollback journal with a full sync per write (Spin's
/// default) manages hundreds.
pub struct SqliteKeyValue {
    conn: Arc<Mutex<Connection>>,
    store: String,
}

/// The SQL function `counter_add(value, delta)`: Spin's counter encoding
/// (8-byte little-endian `i64`, `NULL` = 0) plus `delta`.
const COUNTER_ADD: &str = "counter_add";
const NOT_A_COUNTER: &str = "not a counter";

fn register_counter_add(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        COUNTER_ADD,
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let current: Option<Vec<u8>> = ctx.get(0)?;
            let delta: i64 = ctx.get(1)?;
            let current = match current {
                None => 0,
                Some(bytes) => i64::from_le_bytes(
                    bytes
                        .try_into()
                        .map_err(|_| rusqlite::Error::UserFunctionError(NOT_A_COUNTER.into()))?,
                ),
            };
            let next = current
                .checked_add(delta)
                .ok_or_else(|| rusqlite::Error::UserFunctionError("counter overflow".into()))?;
            Ok(next.to_le_bytes().to_vec())
        },
    )
}

/// The write-ahead log's size bound: after a checkpoint SQLite truncates
/// the log back to this (`journal_size_limit`), so a burst of writes
/// cannot leave a file of gigabytes behind.
pub const MAX_WAL_BYTES: u64 = 16 << 20;

/// Opens (creating if needed) the shared key-value database file.
pub fn open_database(path: &Path) -> Result<Arc<Mutex<Connection>>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create state directory {}", dir.display()))?;
    }
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open key-value database {}", path.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "journal_size_limit", MAX_WAL_BYTES as i64)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    register_counter_add(&conn)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS spin_key_value (
             store TEXT NOT NULL,
             key   TEXT NOT NULL,
             value BLOB NOT NULL,
             PRIMARY KEY (store, key)
         )",
    )
    .with_context(|| format!("cannot initialise key-value database {}", path.display()))?;
    Ok(Arc::new(Mutex::new(conn)))
}

impl SqliteKeyValue {
    pub fn new(conn: Arc<Mutex<Connection>>, store: &str) -> Self {
        Self {
            conn,
            store: store.to_string(),
        }
    }

    /// Runs `f` with the connection. SQLite calls here are short, local and
    /// bounded, so they run inline on the calling task rather than paying
    /// for a thread hop on every request.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> KvResult<T> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| KvError::Other("key-value database lock poisoned".into()))?;
        f(&mut conn).map_err(other)
    }
}

const GET: &str = "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2";
const UPSERT: &str = "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                      ON CONFLICT(store, key) DO UPDATE SET value = excluded.value";
const DELETE: &str = "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2";

#[async_trait]
impl KeyValueStore for SqliteKeyValue {
    fn flush(&self) {
        // Fold the WAL back into the main file so the next start reads one file.
        let _ = self.with(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)"));
    }

    async fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.with(|c| {
            c.prepare_cached(GET)?
                .query_row(params![self.store, key], |r| r.get(0))
                .optional()
        })
    }

    async fn set(&self, key: &str, value: &[u8]) -> KvResult<()> {
        self.with(|c| {
            c.prepare_cached(UPSERT)?
                .execute(params![self.store, key, value])
        })
        .map(drop)
    }

    async fn delete(&self, key: &str) -> KvResult<()> {
        self.with(|c| c.prepare_cached(DELETE)?.execute(params![self.store, key]))
            .map(drop)
    }

    async fn exists(&self, key: &str) -> KvResult<bool> {
        self.with(|c| {
            c.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .exists(params![self.store, key])
        })
    }

    async fn get_keys(&self) -> KvResult<Vec<String>> {
        self.with(|c| {
            let mut stmt =
                c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")?;
            let keys = stmt
                .query_map(params![self.store], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(keys)
        })
    }

    async fn get_many(&self, keys: Vec<String>) -> KvResult<Vec<(String, Option<Vec<u8>>)>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(GET)?;
            keys.into_iter()
                .map(|k| {
                    let v = stmt
                        .query_row(params![self.store, k], |r| r.get(0))
                        .optional()?;
                    Ok((k, v))
                })
                .collect()
        })
    }

    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> KvResult<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(UPSERT)?;
                for (k, v) in &entries {
                    stmt.execute(params![self.store, k, v])?;
                }
            }
            tx.commit()
        })
    }

    async fn delete_many(&self, keys: Vec<String>) -> KvResult<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(DELETE)?;
                for k in &keys {
                    stmt.execute(params![self.store, k])?;
                }
            }
            tx.commit()
        })
    }

    /// One upsert statement, so one WAL commit: the counter arithmetic runs
    /// inside SQLite ([`COUNTER_ADD`]), atomic across processes sharing the file.
    async fn increment(&self, key: &str, delta: i64) -> KvResult<i64> {
        let stored: Vec<u8> = self
            .with(|c| {
                let mut stmt = c.prepare_cached(
                    "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, counter_add(NULL, ?3))
                     ON CONFLICT(store, key) DO UPDATE SET value = counter_add(value, ?3)
                     RETURNING value",
                )?;
                let mut rows = stmt.query(params![self.store, key, delta])?;
                let value: Vec<u8> = rows
                    .next()?
                    .ok_or(rusqlite::Error::QueryReturnedNoRows)?
                    .get(0)?;
                // Step to the end: SQLite commits and runs its automatic WAL
                // checkpoint only when a statement completes; a statement
                // merely reset commits without checkpointing, and a stream
                // of those grew the log without bound.
                while rows.next()?.is_some() {}
                Ok(value)
            })
            .map_err(|e| match e {
                KvError::Other(m) if m.contains(NOT_A_COUNTER) => KvError::Other(format!(
                    "value at `{key}` is not a counter (an 8-byte little-endian integer)"
                )),
                other => other,
            })?;
        decode_counter(key, &stored)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> KvResult<bool> {
        self.with(|c| {
            let changed = match expected {
                Some(old) => c
                    .prepare_cached(
                        "UPDATE spin_key_value SET value = ?4
                         WHERE store = ?1 AND key = ?2 AND value = ?3",
                    )?
                    .execute(params![self.store, key, old, new])?,
                None => c
                    .prepare_cached(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT(store, key) DO NOTHING",
                    )?
                    .execute(params![self.store, key, new])?,
            };
            Ok(changed == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempdir::Dir, SqliteKeyValue) {
        let dir = tempdir::Dir::new();
        let conn = open_database(&dir.0.join("kv.db")).unwrap();
        (dir, SqliteKeyValue::new(conn, "default"))
    }

    fn wal_bytes(dir: &tempdir::Dir) -> u64 {
        std::fs::metadata(dir.0.join("kv.db-wal")).map_or(0, |m| m.len())
    }

    /// Counters alone (the commonest write: rate limits and metrics) must
    /// leave the write-ahead log bounded. SQLite runs its automatic
    /// checkpoint only when a statement steps to completion, so a counter
    /// update read back with `RETURNING` and never finished once grew the
    /// log by ~8 KB a request, without bound.
    #[tokio::test]
    async fn the_write_ahead_log_stays_bounded_under_counters() {
        let (dir, kv) = store();
        for i in 0..12_000u32 {
            kv.increment(&format!("counter:{}", i % 8), 1)
                .await
                .unwrap();
        }
        let wal = wal_bytes(&dir);
        assert!(wal <= MAX_WAL_BYTES, "the WAL grew to {wal} bytes");
        assert_eq!(kv.increment("counter:0", 0).await.unwrap(), 1_500);
    }

    /// The same for every other kind of write, mixed.
    #[tokio::test]
    async fn the_write_ahead_log_stays_bounded_under_mixed_writes() {
        let (dir, kv) = store();
        for i in 0..12_000u32 {
            kv.set(&format!("key:{}", i % 16), &i.to_le_bytes())
                .await
                .unwrap();
            if i % 3 == 0 {
                assert!(kv.compare_and_swap("cas", None, b"x").await.unwrap());
                kv.delete("cas").await.unwrap();
                kv.set_many(vec![("a".into(), vec![1])]).await.unwrap();
                kv.delete_many(vec!["a".into()]).await.unwrap();
            }
        }
        let wal = wal_bytes(&dir);
        assert!(wal <= MAX_WAL_BYTES, "the WAL grew to {wal} bytes");
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "rh-kv-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[tokio::test]
    async fn counters_are_little_endian_and_start_at_zero() {
        let (_d, s) = store();
        assert_eq!(s.increment("c", 5).await.unwrap(), 5);
        assert_eq!(s.increment("c", -2).await.unwrap(), 3);
        assert_eq!(s.get("c").await.unwrap().unwrap(), 3i64.to_le_bytes());
        s.set("text", b"abc").await.unwrap();
        assert!(matches!(
            s.increment("text", 1).await,
            Err(KvError::Other(_))
        ));
    }

    #[tokio::test]
    async fn cas_on_absent_key_fails_if_created_meanwhile() {
        let (_d, s) = store();
        s.set("k", b"x").await.unwrap();
        assert!(!s.compare_and_swap("k", None, b"y").await.unwrap());
        assert!(s.compare_and_swap("k", Some(b"x"), b"y").await.unwrap());
        assert!(!s.compare_and_swap("k", Some(b"x"), b"z").await.unwrap());
        assert_eq!(s.get("k").await.unwrap().unwrap(), b"y");
    }

    #[tokio::test]
    async fn labels_are_separate_partitions() {
        let (d, a) = store();
        let b = SqliteKeyValue::new(open_database(&d.0.join("kv.db")).unwrap(), "other");
        a.set("k", b"1").await.unwrap();
        assert_eq!(b.get("k").await.unwrap(), None);
        assert_eq!(a.get_keys().await.unwrap(), vec!["k".to_string()]);
    }
}
