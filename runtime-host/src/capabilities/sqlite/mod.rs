//! SQLite databases, served through `fermyon:spin/sqlite@2.0.0` and
//! `spin:sqlite/sqlite@3.x`.
//!
//! Semantics follow Spin's `factor-sqlite`: a component opens only the
//! labels in its `sqlite_databases` (others: `access-denied`); the `default`
//! label is `<state-dir>/sqlite_db.db`, as in Spin. Other labels get
//! `<state-dir>/sqlite_db_<label>.db` (Spin requires a runtime-config entry
//! for those; runtime config can point any label at an explicit path).
//!
//! Each guest `open` checks a connection out of a small per-database pool and
//! returns it when the guest drops the handle, so a guest's `BEGIN … COMMIT`
//! sequence is never interleaved with another instance's statements. A
//! connection returned with an open transaction is rolled back first.
//! Files use WAL, so a committed transaction survives the host being killed.
//! Writers take turns through the database's [`writer::WriteGate`] instead
//! of SQLite's sleeping busy handler, and keep the WAL bounded.

pub mod guest;
mod writer;

use crate::faults::{Capability, Faults};
use anyhow::{Context as _, Result};
use rusqlite::Connection;
use rusqlite::types::{Value as SqlValue, ValueRef};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use writer::{WAL_SIZE_LIMIT_BYTES, WRITE_WAIT, WriteGate, WritePermit};

#[derive(Debug, Clone)]
pub enum SqlError {
    NoSuchDatabase,
    AccessDenied,
    DatabaseFull,
    Io(String),
}

/// A value crossing the guest boundary (identical in every WIT version).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// A pool of connections to one database file.
pub struct Database {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    writer: WriteGate,
    /// `--faults sqlite=...`, applied to every statement.
    faults: Arc<Faults>,
}

/// Prepared statements each connection keeps.
const STATEMENT_CACHE: usize = 256;

/// How many idle connections a database keeps for reuse.
const MAX_IDLE: usize = 32;

impl Database {
    pub fn new(path: PathBuf, faults: Arc<Faults>) -> Result<Arc<Database>> {
        let db = Database {
            path,
            idle: Mutex::new(Vec::new()),
            writer: WriteGate::default(),
            faults,
        };
        // Open one connection now so a bad path fails at start, not on the
        // first request.
        let conn = db.connect()?;
        db.idle.lock().expect("fresh mutex").push(conn);
        Ok(Arc::new(db))
    }

    fn connect(&self) -> Result<Connection> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let conn = Connection::open(&self.path)
            .with_context(|| format!("cannot open SQLite database {}", self.path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)?;
        // Writers wait for the gate, not here; this covers what the gate
        // does not order: a `RESTART` checkpoint waiting for readers, and
        // other processes sharing the file.
        conn.busy_timeout(WRITE_WAIT)?;
        // Room for every statement the app's components prepare, so none is
        // parsed again per request (rusqlite keeps 16 by default).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    /// Checks out a connection for one guest handle.
    pub fn checkout(self: &Arc<Self>) -> Result<PooledConnection, SqlError> {
        let conn = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match conn {
            Some(c) => c,
            None => self.connect().map_err(|e| SqlError::Io(format!("{e:#}")))?,
        };
        Ok(PooledConnection::new(conn, self.clone()))
    }
}

/// Most memory one statement's result may take in the host, counting each
/// value's in-memory size, so a guest `SELECT` over a huge table fails with
/// an error instead of making the host allocate without bound. Half the
/// default `--max-memory`: a larger result could hardly be copied into the
/// guest anyway.
pub const MAX_RESULT_BYTES: usize = 64 << 20;

/// A connection held by a guest handle. Clones share it, so a statement can
/// run on a blocking thread while the handle stays in the instance's table;
/// it goes back to the pool when the last clone is dropped.
#[derive(Clone)]
pub struct PooledConnection(Arc<Checkout>);

struct Checkout {
    conn: Mutex<Option<Connection>>,
    /// Held from the start of a write transaction to its end.
    permit: Mutex<Option<WritePermit>>,
    db: Arc<Database>,
}

impl PooledConnection {
    fn new(conn: Connection, db: Arc<Database>) -> Self {
        Self(Arc::new(Checkout {
            conn: Mutex::new(Some(conn)),
            permit: Mutex::new(None),
            db,
        }))
    }

    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        // A panic mid-statement leaves the connection usable: SQLite
        // statements are atomic.
        let guard = self.0.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(guard.as_ref().expect("present until drop"))
    }

    /// Runs one statement on the calling thread. It may wait for another
    /// connection's write lock (`busy_timeout`), so it runs as blocking work:
    /// the async runtime moves its other tasks off this thread, and the
    /// instance holding the lock can always finish its transaction instead
    /// of waiting for a thread. For callers that own their instance (p2).
    pub fn execute(&self, statement: &str, params: Vec<Value>) -> Result<QueryResult, SqlError> {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.execute_now(statement, params))
            }
            _ => self.execute_now(statement, params),
        }
    }

    /// Runs one statement on a blocking thread; awaiting it leaves the
    /// caller's thread (and a p3 instance's other requests) free meanwhile.
    pub async fn execute_async(
        &self,
        statement: String,
        params: Vec<Value>,
    ) -> Result<QueryResult, SqlError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.execute_now(&statement, params))
            .await
            .map_err(|e| SqlError::Io(format!("SQLite statement did not finish: {e}")))?
    }

    fn execute_now(&self, statement: &str, params: Vec<Value>) -> Result<QueryResult, SqlError> {
        self.0
            .db
            .faults
            .on_blocking_call(Capability::Sqlite)
            .map_err(|fault| SqlError::Io(fault.to_string()))?;
        self.with_conn(|conn| {
            let mut permit = self.0.permit.lock().unwrap_or_else(|e| e.into_inner());
            if permit.is_none() && starts_writing(conn, statement) {
                *permit = Some(self.0.db.writer.acquire(WRITE_WAIT).ok_or_else(|| {
                    SqlError::Io(format!(
                        "database is busy: another writer held it for {} s; retry the request",
                        WRITE_WAIT.as_secs()
                    ))
                })?);
            }
            let result = run_statement(conn, statement, params);
            if conn.is_autocommit()
                && let Some(mut done) = permit.take()
                && done.finished_transaction()
            {
                // Best effort: a reader outlasting the busy timeout only
                // postpones the restart to the next round.
                let _ = conn.execute_batch("PRAGMA wal_checkpoint(RESTART)");
            }
            result
        })
    }

    pub fn last_insert_rowid(&self) -> i64 {
        self.with_conn(Connection::last_insert_rowid)
    }

    pub fn changes(&self) -> u64 {
        self.with_conn(Connection::changes)
    }

    /// `f` on the connection without blocking the caller's thread: inline
    /// when the connection is free, otherwise (a statement of another guest
    /// task still holds it) on a blocking thread.
    pub async fn with_conn_async<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> T + Send + 'static,
    ) -> T {
        if let Ok(guard) = self.0.conn.try_lock() {
            return f(guard.as_ref().expect("present until drop"));
        }
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.with_conn(f)).await {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

/// Whether `statement`, run on `conn` now, begins writing: it opens a
/// transaction (which may write: taking the turn at `BEGIN` keeps a
/// transaction from reading a snapshot it then cannot write on), or it
/// writes outside one.
fn starts_writing(conn: &Connection, statement: &str) -> bool {
    if !conn.is_autocommit() {
        return false;
    }
    let head = statement.trim_start();
    let opens = ["BEGIN", "SAVEPOINT"].iter().any(|kw| {
        head.get(..kw.len())
            .is_some_and(|word| word.eq_ignore_ascii_case(kw))
    });
    // A statement that does not prepare fails in `run_statement`, unlocked.
    opens || conn.prepare_cached(statement).is_ok_and(|s| !s.readonly())
}

fn run_statement(
    conn: &Connection,
    statement: &str,
    params: Vec<Value>,
) -> Result<QueryResult, SqlError> {
    let mut stmt = conn.prepare_cached(statement).map_err(map_err)?;
    let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
    let params = params.into_iter().map(|v| match v {
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(f) => SqlValue::Real(f),
        Value::Text(s) => SqlValue::Text(s),
        Value::Blob(b) => SqlValue::Blob(b),
        Value::Null => SqlValue::Null,
    });
    let mut rows_out = Vec::new();
    let mut size = 0usize;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(map_err)?;
    while let Some(row) = rows.next().map_err(map_err)? {
        let mut values = Vec::with_capacity(columns.len());
        size += std::mem::size_of::<Vec<Value>>();
        for i in 0..columns.len() {
            let value = row.get_ref(i).map_err(map_err)?;
            size += std::mem::size_of::<Value>()
                + match value {
                    ValueRef::Text(b) | ValueRef::Blob(b) => b.len(),
                    _ => 0,
                };
            // Checked before copying, so one huge value is not copied either.
            if size > MAX_RESULT_BYTES {
                return Err(SqlError::Io(format!(
                    "query result exceeds the host's limit of {} MiB for one statement; \
                     select fewer rows or smaller values (LIMIT, paging)",
                    MAX_RESULT_BYTES >> 20
                )));
            }
            values.push(match value {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Integer(i),
                ValueRef::Real(f) => Value::Real(f),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            });
        }
        rows_out.push(values);
    }
    Ok(QueryResult {
        columns,
        rows: rows_out,
    })
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let conn = self
            .conn
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(conn) = conn {
            if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
                return; // a connection we cannot reset is not reused
            }
            if let Ok(mut idle) = self.db.idle.lock()
                && idle.len() < MAX_IDLE
            {
                idle.push(conn);
            }
        }
    }
}

fn map_err(e: rusqlite::Error) -> SqlError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
            SqlError::DatabaseFull
        }
        _ => SqlError::Io(e.to_string()),
    }
}

/// The databases of one application, by label.
#[derive(Clone, Default)]
pub struct Databases {
    dbs: HashMap<String, Arc<Database>>,
}

impl Databases {
    pub fn insert(&mut self, label: &str, db: Arc<Database>) {
        self.dbs.insert(label.to_string(), db);
    }

    pub fn open(&self, allowed: &[String], label: &str) -> Result<PooledConnection, SqlError> {
        if !allowed.iter().any(|a| a == label) {
            return Err(SqlError::AccessDenied);
        }
        self.dbs
            .get(label)
            .ok_or(SqlError::NoSuchDatabase)?
            .checkout()
    }
}

/// The file a label lives in when runtime config says nothing about it.
pub fn default_path(state_dir: &std::path::Path, label: &str) -> PathBuf {
    if label == "default" {
        state_dir.join("sqlite_db.db")
    } else {
        state_dir.join(format!("sqlite_db_{label}.db"))
    }
}

#[cfg(test)]
mod tests;
