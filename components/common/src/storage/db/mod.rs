//! The app's one relational database, on either engine:
//!
//! - **SQLite** (default): the `default` database the host gives every
//!   component, nothing to set up, records on this instance's disk.
//! - **PostgreSQL**: when the `database_url` variable (a secret
//!   `postgres://` URL) is set, the records every instance shares.
//!
//! Callers write one SQL text with `?` placeholders and get [`Value`]s and
//! [`QueryResult`] rows back; they never learn which engine runs. What
//! differs between the engines lives in [`dialect`] (placeholders, DDL
//! types) and in the four engine-aware functions here: [`open`],
//! [`migrate`] (its lock), [`transaction`] (how it begins) and the error
//! classification ([`is_unavailable`], [`is_unique_violation`]). Queries
//! are otherwise written in the SQL both engines speak (`ON CONFLICT`,
//! `RETURNING`, `CASE`, `coalesce`).
//!
//! Each component (or shared module) owns a schema name and its tables;
//! whichever instance touches the database first applies what is missing,
//! under the engine's write lock, so parallel instances never race.

pub mod dialect;
mod migrate;
mod value;

pub use migrate::migrate;
pub use value::*;

use anyhow::{Context as _, Result};
use spin_sdk::pg4;
use spin_sdk::sqlite;

/// The SQLite database every component shares (the only one that exists
/// without runtime config).
pub const DATABASE: &str = "default";

/// The variable that, when set, moves every record to PostgreSQL.
pub const DATABASE_URL_VARIABLE: &str = "database_url";

/// One schema's migrations: `(version, statements)`, in version order,
/// written for SQLite; [`dialect::postgres_ddl`] adapts them.
pub type Migrations = &'static [(i64, &'static [&'static str])];

/// Which engine holds the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// An open connection to whichever engine is configured.
pub struct Connection {
    backend: Backend,
    /// Inside [`transaction`]: a nested one joins it.
    in_transaction: std::cell::Cell<bool>,
}

enum Backend {
    Sqlite(sqlite::Connection),
    Postgres(pg4::Connection),
}

/// Why a statement failed, classified so callers can tell a dependency
/// outage (503) and a uniqueness conflict (409) from a bug (500).
#[derive(Debug)]
pub struct SqlFailure {
    pub kind: FailureKind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Unreachable, locked past its timeout, overloaded, or a transaction
    /// the engine chose to abort (serialisation, deadlock): retry later.
    Unavailable,
    UniqueViolation,
    Other,
}

impl std::fmt::Display for SqlFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SqlFailure {}

impl SqlFailure {
    fn from_sqlite(e: sqlite::Error) -> SqlFailure {
        const TRANSIENT: [&str; 3] = ["database is locked", "database is busy", "unavailable"];
        let message = e.to_string();
        let kind = match &e {
            sqlite::Error::Io(m) if TRANSIENT.iter().any(|t| m.contains(t)) => {
                FailureKind::Unavailable
            }
            sqlite::Error::Io(m) if m.contains("UNIQUE constraint failed") => {
                FailureKind::UniqueViolation
            }
            _ => FailureKind::Other,
        };
        SqlFailure { kind, message }
    }

    fn from_postgres(e: pg4::PgError) -> SqlFailure {
        let (kind, message) = match &e {
            // A refusal by `allowed_outbound_hosts` is configuration, not
            // an outage: retrying cannot help.
            pg4::PgError::ConnectionFailed(m) if m.contains("not permitted") => (
                FailureKind::Other,
                format!(
                    "{m}: set the `database_host` variable to postgres://HOST:PORT of \
                     `database_url` (the components' allowed_outbound_hosts)"
                ),
            ),
            pg4::PgError::ConnectionFailed(m) => {
                (FailureKind::Unavailable, format!("connection failed: {m}"))
            }
            pg4::PgError::QueryFailed(pg4::QueryError::DbError(db)) => {
                (dialect::postgres_failure(&db.code), db.as_text.clone())
            }
            pg4::PgError::QueryFailed(pg4::QueryError::Text(m)) => {
                // Without a SQLSTATE, a lost connection still shows as such.
                let kind = if m.contains("connection") || m.contains("closed") {
                    FailureKind::Unavailable
                } else {
                    FailureKind::Other
                };
                (kind, m.clone())
            }
            other => (FailureKind::Other, format!("{other:?}")),
        };
        SqlFailure { kind, message }
    }
}

/// Which engine this component is configured for (`database_url` set or
/// not), and the URL.
fn configured() -> Result<Option<String>> {
    crate::config::var(DATABASE_URL_VARIABLE)
}

/// Opens the configured database.
pub fn open() -> Result<Connection> {
    match configured()? {
        None => sqlite::Connection::open(DATABASE)
            .map_err(SqlFailure::from_sqlite)
            .with_context(|| format!("open SQLite database `{DATABASE}`"))
            .map(|c| Connection::new(Backend::Sqlite(c))),
        Some(url) => {
            dialect::check_postgres_url(&url)?;
            pg4::Connection::open(&url)
                .map_err(SqlFailure::from_postgres)
                // Never the URL itself: it holds the password.
                .with_context(|| {
                    format!(
                        "open PostgreSQL at {} (the `{DATABASE_URL_VARIABLE}` variable)",
                        dialect::redacted_address(&url)
                    )
                })
                .map(|c| Connection::new(Backend::Postgres(c)))
        }
    }
}

impl Connection {
    fn new(backend: Backend) -> Connection {
        Connection {
            backend,
            in_transaction: std::cell::Cell::new(false),
        }
    }

    pub fn engine(&self) -> Engine {
        match self.backend {
            Backend::Sqlite(_) => Engine::Sqlite,
            Backend::Postgres(_) => Engine::Postgres,
        }
    }

    /// Runs one statement with `?` placeholders bound to `params`.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<QueryResult, SqlFailure> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let params: Vec<sqlite::Value> = params.iter().map(to_sqlite).collect();
                let result = conn
                    .execute(sql, &params)
                    .map_err(SqlFailure::from_sqlite)?;
                Ok(QueryResult {
                    rows: result
                        .rows
                        .into_iter()
                        .map(|r| RowResult {
                            values: r.values.into_iter().map(from_sqlite).collect(),
                        })
                        .collect(),
                })
            }
            Backend::Postgres(conn) => {
                let sql = dialect::numbered_placeholders(sql);
                let params: Vec<pg4::ParameterValue> = params.iter().map(to_postgres).collect();
                let result = conn
                    .query(&sql, &params)
                    .map_err(SqlFailure::from_postgres)?;
                Ok(QueryResult {
                    rows: result
                        .rows
                        .into_iter()
                        .map(|r| RowResult {
                            values: r.into_iter().map(from_postgres).collect(),
                        })
                        .collect(),
                })
            }
        }
    }
}

fn to_sqlite(v: &Value) -> sqlite::Value {
    match v {
        Value::Integer(n) => sqlite::Value::Integer(*n),
        Value::Real(f) => sqlite::Value::Real(*f),
        Value::Text(s) => sqlite::Value::Text(s.clone()),
        Value::Blob(b) => sqlite::Value::Blob(b.clone()),
        Value::Null => sqlite::Value::Null,
    }
}

fn from_sqlite(v: sqlite::Value) -> Value {
    match v {
        sqlite::Value::Integer(n) => Value::Integer(n),
        sqlite::Value::Real(f) => Value::Real(f),
        sqlite::Value::Text(s) => Value::Text(s),
        sqlite::Value::Blob(b) => Value::Blob(b),
        sqlite::Value::Null => Value::Null,
    }
}

fn to_postgres(v: &Value) -> pg4::ParameterValue {
    match v {
        Value::Integer(n) => pg4::ParameterValue::Int64(*n),
        Value::Real(f) => pg4::ParameterValue::Floating64(*f),
        Value::Text(s) => pg4::ParameterValue::Str(s.clone()),
        Value::Blob(b) => pg4::ParameterValue::Binary(b.clone()),
        Value::Null => pg4::ParameterValue::DbNull,
    }
}

/// PostgreSQL's richer types as the four the app uses: every integer
/// width and booleans as integers, exact numerics (what `SUM` of a
/// `BIGINT` gives) as integers when whole, text-like types as text.
fn from_postgres(v: pg4::DbValue) -> Value {
    use pg4::DbValue as D;
    match v {
        D::Boolean(b) => Value::Integer(i64::from(b)),
        D::Int8(n) => Value::Integer(n.into()),
        D::Int16(n) => Value::Integer(n.into()),
        D::Int32(n) => Value::Integer(n.into()),
        D::Int64(n) => Value::Integer(n),
        D::Floating32(f) => Value::Real(f.into()),
        D::Floating64(f) => Value::Real(f),
        D::Str(s) | D::Uuid(s) => Value::Text(s),
        D::Decimal(s) => s.parse().map_or(Value::Text(s), Value::Integer),
        D::Binary(b) => Value::Blob(b),
        D::Jsonb(b) => Value::Text(String::from_utf8_lossy(&b).into_owned()),
        D::DbNull => Value::Null,
        other => Value::Text(format!("{other:?}")),
    }
}

/// Runs one statement; errors carry the statement (whitespace collapsed).
pub fn exec(conn: &Connection, sql: &str, params: &[Value]) -> Result<QueryResult> {
    conn.execute(sql, params)
        .map_err(anyhow::Error::new)
        .with_context(|| {
            format!(
                "SQL `{}`",
                sql.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        })
}

fn failure_kind(error: &anyhow::Error) -> Option<FailureKind> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<SqlFailure>().map(|f| f.kind))
}

/// Whether `error` is the database failing as a dependency (unreachable,
/// its lock held past the busy timeout, a transaction the engine aborted)
/// rather than a bug here, wherever it sits in the context chain.
pub fn is_unavailable(error: &anyhow::Error) -> bool {
    failure_kind(error) == Some(FailureKind::Unavailable)
}

/// Whether a statement failed on a UNIQUE constraint.
pub fn is_unique_violation(error: &anyhow::Error) -> bool {
    failure_kind(error) == Some(FailureKind::UniqueViolation)
}

/// Runs `work` inside one transaction; an error rolls everything back.
/// Called inside another transaction, `work` joins it.
/// SQLite takes its write lock up front (`BEGIN IMMEDIATE`), so concurrent
/// writers queue instead of failing on upgrade. PostgreSQL runs it at READ
/// COMMITTED: every write the app makes in a transaction is a conditional
/// statement (`ON CONFLICT`, `WHERE version = ?`) that holds under it.
pub fn transaction<T>(conn: &Connection, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    if conn.in_transaction.get() {
        return work(conn);
    }
    let begin = match conn.engine() {
        Engine::Sqlite => "BEGIN IMMEDIATE",
        Engine::Postgres => "BEGIN",
    };
    exec(conn, begin, &[])?;
    conn.in_transaction.set(true);
    let outcome = work(conn);
    conn.in_transaction.set(false);
    match outcome {
        Ok(value) => {
            if let Err(e) = exec(conn, "COMMIT", &[]) {
                let _ = exec(conn, "ROLLBACK", &[]);
                return Err(e);
            }
            Ok(value)
        }
        Err(e) => {
            let _ = exec(conn, "ROLLBACK", &[]);
            Err(e)
        }
    }
}
