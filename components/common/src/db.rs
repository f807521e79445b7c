//! The SQLite database every component shares (`default`, the only one
//! that exists without runtime config): opening it, statements with their
//! SQL in the error context, idempotent migrations recorded per schema in
//! `schema_version`, and `BEGIN IMMEDIATE … COMMIT` transactions.
//!
//! Each component (or shared module) owns a schema name and its tables;
//! whichever component touches the database first applies what is missing.
//! Migrations use only `CREATE … IF NOT EXISTS`, so two instances applying
//! the same migration at once both succeed.

use anyhow::{anyhow, Context as _, Result};
use spin_sdk::sqlite::{Connection, QueryResult, RowResult, Value};

pub const DATABASE: &str = "default";

/// One schema's migrations: `(version, statements)`, in version order.
pub type Migrations = &'static [(i64, &'static [&'static str])];

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

/// Opens the `default` database.
pub fn open() -> Result<Connection> {
    Connection::open(DATABASE)
        .map_err(anyhow::Error::new)
        .with_context(|| format!("open SQLite database `{DATABASE}`"))
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

/// Whether `error` is the database failing as a dependency (its lock held
/// past the busy timeout, the backend unreachable) rather than a bug here,
/// wherever it sits in the context chain. SQLite reports every failure as
/// `io(message)`, so the message decides: constraint violations and SQL
/// mistakes stay 500s.
pub fn is_unavailable(error: &anyhow::Error) -> bool {
    use spin_sdk::sqlite::Error as SqlError;
    const TRANSIENT: [&str; 3] = ["database is locked", "database is busy", "unavailable"];
    error
        .chain()
        .any(|cause| match cause.downcast_ref::<SqlError>() {
            Some(SqlError::Io(message)) => TRANSIENT.iter().any(|t| message.contains(t)),
            _ => false,
        })
}

/// Applies the migrations of `schema` newer than its recorded version.
pub fn migrate(conn: &Connection, schema: &str, migrations: Migrations) -> Result<()> {
    exec(
        conn,
        "CREATE TABLE IF NOT EXISTS schema_version (
            schema TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            applied_at INTEGER NOT NULL
        )",
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
            exec(conn, statement, &[])?;
        }
        exec(
            conn,
            "INSERT INTO schema_version (schema, version, applied_at) VALUES (?, ?, ?)
             ON CONFLICT (schema) DO UPDATE SET version = max(version, excluded.version),
             applied_at = excluded.applied_at",
            &[
                text(schema),
                Value::Integer(*version),
                Value::Integer(crate::time::now_millis() as i64),
            ],
        )?;
    }
    Ok(())
}

/// Runs `work` inside `BEGIN IMMEDIATE … COMMIT` (the write lock is taken
/// up front, so concurrent writers queue instead of failing on upgrade);
/// an error rolls everything back.
pub fn transaction<T>(conn: &Connection, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    exec(conn, "BEGIN IMMEDIATE", &[])?;
    match work(conn) {
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

/// Whether a statement failed on a UNIQUE constraint.
pub fn is_unique_violation(e: &anyhow::Error) -> bool {
    format!("{e:#}").contains("UNIQUE constraint failed")
}
