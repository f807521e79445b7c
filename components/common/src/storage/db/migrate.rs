//! Schema migrations: each schema's versions newer than the one recorded
//! in `schema_version`, applied once whichever instance gets there first.

use super::{Connection, Engine, Migrations, Value, dialect, exec, int, text, transaction};
use anyhow::{Context as _, Result};

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
                    Value::Integer(crate::util::time::now_millis() as i64),
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
