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

use anyhow::{anyhow, Context as _, Result};
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

/// A value bound to a `?` or read from a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

/// One row of a result.
#[derive(Debug, Clone, PartialEq)]
pub struct RowResult {
    values: Vec<Value>,
}

impl RowResult {
    /// Column `i` as `T`, if it has that type.
    pub fn get<'a, T: FromValue<'a>>(&'a self, i: usize) -> Option<T> {
        self.values.get(i).and_then(T::from_value)
    }
}

/// What a statement returned (no rows for writes without `RETURNING`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    pub rows: Vec<RowResult>,
}

/// Reading a column as a Rust type.
pub trait FromValue<'a>: Sized {
    fn from_value(value: &'a Value) -> Option<Self>;
}

impl<'a> FromValue<'a> for &'a str {
    fn from_value(value: &'a Value) -> Option<Self> {
        match value {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl FromValue<'_> for i64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }
}

impl FromValue<'_> for f64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Real(f) => Some(*f),
            Value::Integer(n) => Some(*n as f64),
            _ => None,
        }
    }
}

impl<'a> FromValue<'a> for &'a [u8] {
    fn from_value(value: &'a Value) -> Option<Self> {
        match value {
            Value::Blob(b) => Some(b),
            _ => None,
        }
    }
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

/// Column `i` of a row of `table` as text; an error names both otherwise.
pub fn column_text(row: &RowResult, table: &str, i: usize) -> Result<String> {
    row.get::<&str>(i)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{table} column {i} is not text"))
}

/// Column `i` of a row of `table` as an integer; an error names both otherwise.
pub fn column_int(row: &RowResult, table: &str, i: usize) -> Result<i64> {
    row.get::<i64>(i)
        .ok_or_else(|| anyhow!("{table} column {i} is not an integer"))
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

/// Applies the migrations of `schema` newer than its recorded version, in
/// one transaction under the engine's write lock (SQLite `BEGIN
/// IMMEDIATE`; PostgreSQL a transaction-scoped advisory lock), so two
/// instances starting at once apply each version exactly once.
pub fn migrate(conn: &Connection, schema: &str, migrations: Migrations) -> Result<()> {
    // The common case, every request of a migrated database: one read, no
    // lock (a WASIp2 instance serves one request, so this runs each time).
    let latest = migrations.last().map_or(0, |(version, _)| *version);
    if recorded_version(conn, schema).is_some_and(|v| v >= latest) {
        return Ok(());
    }
    let engine = conn.engine();
    transaction(conn, |conn| {
        if engine == Engine::Postgres {
            exec(
                conn,
                "SELECT 1 FROM (SELECT pg_advisory_xact_lock(?)) AS locked",
                &[int(dialect::MIGRATION_LOCK_KEY)],
            )?;
        }
        exec(
            conn,
            &dialect::ddl(
                engine,
                "CREATE TABLE IF NOT EXISTS schema_version (
                    schema TEXT PRIMARY KEY,
                    version INTEGER NOT NULL,
                    applied_at INTEGER NOT NULL
                )",
            ),
            &[],
        )?;
        let current = exec(
            conn,
            "SELECT version FROM schema_version WHERE schema = ?",
            &[text(schema)],
        )?
        .rows
        .first()
        .and_then(|r| r.get::<i64>(0))
        .unwrap_or(0);
        for (version, statements) in migrations.iter().filter(|(v, _)| *v > current) {
            for statement in *statements {
                exec(conn, &dialect::ddl(engine, statement), &[])?;
            }
            exec(
                conn,
                "INSERT INTO schema_version (schema, version, applied_at) VALUES (?, ?, ?)
                 ON CONFLICT (schema) DO UPDATE SET version = excluded.version,
                 applied_at = excluded.applied_at",
                &[
                    text(schema),
                    Value::Integer(*version),
                    Value::Integer(crate::time::now_millis() as i64),
                ],
            )?;
        }
        Ok(())
    })
    .with_context(|| format!("migrate schema `{schema}`"))
}

/// The version `schema_version` records for `schema`; `None` when there is
/// none yet (or no table: a fresh database; callers inside a transaction
/// have opened the database through their schema's migration first, so
/// the table exists and the read cannot abort their transaction).
fn recorded_version(conn: &Connection, schema: &str) -> Option<i64> {
    conn.execute(
        "SELECT version FROM schema_version WHERE schema = ?",
        &[text(schema)],
    )
    .ok()?
    .rows
    .first()
    .and_then(|r| r.get::<i64>(0))
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

pub fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

pub fn int(n: i64) -> Value {
    Value::Integer(n)
}

/// Text, or `NULL` for `None`.
pub fn opt_text(s: Option<&str>) -> Value {
    s.map_or(Value::Null, text)
}
