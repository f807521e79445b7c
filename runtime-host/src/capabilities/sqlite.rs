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

use anyhow::{Context as _, Result};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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
}

/// How many idle connections a database keeps for reuse.
const MAX_IDLE: usize = 32;

impl Database {
    pub fn new(path: PathBuf) -> Result<Arc<Database>> {
        let db = Database {
            path,
            idle: Mutex::new(Vec::new()),
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
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(conn)
    }

    /// Checks out a connection for one guest handle.
    pub fn checkout(self: &Arc<Self>) -> Result<PooledConnection, SqlError> {
        let conn = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match conn {
            Some(c) => c,
            None => self.connect().map_err(|e| SqlError::Io(format!("{e:#}")))?,
        };
        Ok(PooledConnection {
            conn: Some(conn),
            db: self.clone(),
        })
    }
}

/// A connection held by a guest; goes back to the pool on drop.
pub struct PooledConnection {
    conn: Option<Connection>,
    db: Arc<Database>,
}

impl PooledConnection {
    fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("present until drop")
    }

    /// Runs one statement. It may wait for another connection's write lock
    /// (`busy_timeout`), so it runs as blocking work: the async runtime moves
    /// its other tasks off this thread, and the instance holding the lock
    /// can always finish its transaction instead of waiting for a thread.
    pub fn execute(&self, statement: &str, params: Vec<Value>) -> Result<QueryResult, SqlError> {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.execute_now(statement, params))
            }
            _ => self.execute_now(statement, params),
        }
    }

    fn execute_now(&self, statement: &str, params: Vec<Value>) -> Result<QueryResult, SqlError> {
        let conn = self.conn();
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
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(map_err)?;
        while let Some(row) = rows.next().map_err(map_err)? {
            let mut values = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                values.push(match row.get_ref(i).map_err(map_err)? {
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

    pub fn last_insert_rowid(&self) -> i64 {
        self.conn().last_insert_rowid()
    }

    pub fn changes(&self) -> u64 {
        self.conn().changes()
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
                return; // a connection we cannot reset is not reused
            }
            if let Ok(mut idle) = self.db.idle.lock() {
                if idle.len() < MAX_IDLE {
                    idle.push(conn);
                }
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
