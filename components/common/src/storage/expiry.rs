//! Bounded lifetimes for what the app keeps in key-value: Spin's key-value
//! API has no TTLs and no prefix listing, so every expiring key is also
//! written to an index table in the `default` SQLite database, and a
//! sweeper walks that index in bounded steps.
//!
//! - [`schedule`] registers a key once, when it is created (a rate-limit
//!   window's first hit, a denylist entry, a cache fill, a refresh family),
//!   never on every request. Writers register before or right after they
//!   create the key; a later registration of the same key keeps the later
//!   time.
//! - [`sweep`] deletes at most [`SWEEP_BATCH`] due keys (and runs the
//!   component's own bounded SQL retention tasks): an indexed range read,
//!   one key-value `delete-many`, one transaction removing those rows. A
//!   row is removed only if its time did not move meanwhile, so a key
//!   re-registered during a sweep keeps its row.
//! - [`maybe_sweep`] is what requests call: the lease `sweep:<component>`
//!   in the counter store ([`Counters::claim_lease`]: one key-value read
//!   in the common case, no write; or one Redis `SET NX`); when it is due,
//!   the request claims it for `sweep_interval_seconds` (default 30) and
//!   sweeps. A full batch (a backlog) makes the next
//!   request sweep again, so removal keeps pace with creation.

use crate::storage::counters::Counters;
use crate::storage::db::Connection;
use crate::storage::db::{self, Migrations, exec, int, text};
use anyhow::{Context as _, Result};
use std::sync::atomic::{AtomicBool, Ordering};

/// Most keys (and most rows per retention task) one sweep removes.
pub const SWEEP_BATCH: i64 = 100;

/// Seconds between sweeps of one component unless `sweep_interval_seconds`
/// says otherwise.
pub const DEFAULT_INTERVAL_SECS: u64 = 30;

const SCHEMA: &str = "expiry";

const MIGRATIONS: Migrations = &[(
    1,
    &[
        "CREATE TABLE IF NOT EXISTS expiring_keys (
            key TEXT PRIMARY KEY,
            expires_at INTEGER NOT NULL
        )",
        "CREATE INDEX IF NOT EXISTS expiring_keys_expires_at ON expiring_keys (expires_at)",
    ],
)];

static MIGRATED: AtomicBool = AtomicBool::new(false);

fn connect() -> Result<Connection> {
    let conn = db::open()?;
    if !MIGRATED.load(Ordering::Relaxed) {
        db::migrate(&conn, SCHEMA, MIGRATIONS)?;
        MIGRATED.store(true, Ordering::Relaxed);
    }
    Ok(conn)
}

/// Registers key `key` of the `default` store for deletion at
/// `expires_at_millis` (Unix ms).
pub fn schedule(key: &str, expires_at_millis: u64) -> Result<()> {
    let conn = connect()?;
    exec(
        &conn,
        "INSERT INTO expiring_keys (key, expires_at) VALUES (?, ?)
         ON CONFLICT (key) DO UPDATE SET expires_at =
             CASE WHEN excluded.expires_at > expiring_keys.expires_at
                  THEN excluded.expires_at ELSE expiring_keys.expires_at END",
        &[text(key), int(expires_at_millis as i64)],
    )?;
    Ok(())
}

/// A component's own bounded retention work: given the connection, the
/// time (Unix ms) and the most rows it may remove, removes what is due and
/// returns how many rows it removed.
pub type Task<'a> = &'a dyn Fn(&Connection, u64, i64) -> Result<usize>;

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub keys: usize,
    pub rows: usize,
    /// Some batch was full: more may be due.
    pub backlog: bool,
}

/// One bounded sweep now, regardless of the lease (for a maintenance
/// route, and what [`maybe_sweep`] runs).
pub fn sweep(tasks: &[Task]) -> Result<Report> {
    let conn = connect()?;
    let now = crate::util::time::now_millis();
    let keys = sweep_keys(&conn, now)?;
    let mut report = Report {
        keys,
        rows: 0,
        backlog: keys as i64 >= SWEEP_BATCH,
    };
    for task in tasks {
        let rows = task(&conn, now, SWEEP_BATCH)?;
        report.rows += rows;
        report.backlog |= rows as i64 >= SWEEP_BATCH;
    }
    Ok(report)
}

fn sweep_keys(conn: &Connection, now: u64) -> Result<usize> {
    let due = exec(
        conn,
        "SELECT key, expires_at FROM expiring_keys WHERE expires_at <= ?
         ORDER BY expires_at LIMIT ?",
        &[int(now as i64), int(SWEEP_BATCH)],
    )?;
    let rows: Vec<(String, i64)> = due
        .rows
        .iter()
        .map(|r| {
            Ok((
                db::column_text(r, "expiring_keys", 0)?,
                db::column_int(r, "expiring_keys", 1)?,
            ))
        })
        .collect::<Result<_>>()?;
    if rows.is_empty() {
        return Ok(0);
    }
    let keys: Vec<String> = rows.iter().map(|(k, _)| k.clone()).collect();
    let bucket = crate::storage::kv::open_bucket()?;
    spin_sdk::wit::wasi::keyvalue::batch::delete_many(&bucket, &keys)
        .map_err(anyhow::Error::new)
        .context("delete expired keys")?;
    db::transaction(conn, |conn| {
        for (key, expires_at) in &rows {
            exec(
                conn,
                "DELETE FROM expiring_keys WHERE key = ? AND expires_at = ?",
                &[text(key), int(*expires_at)],
            )?;
        }
        Ok(())
    })?;
    Ok(rows.len())
}

pub fn lease_key(component: &str) -> String {
    format!("sweep:{component}")
}

/// Sweeps when `component`'s lease is due (see the module docs). Never
/// fails the caller: problems are logged.
pub fn maybe_sweep(component: &str, tasks: &[Task]) {
    if let Err(e) = try_maybe_sweep(component, tasks) {
        crate::telemetry::logging::emit_value(serde_json::json!({
            "ts": crate::util::time::rfc3339_millis(crate::util::time::now_millis()),
            "level": "warn",
            "msg": "sweeping expired state failed; a later request retries",
            "component": component,
            "error": format!("{e:#}"),
        }));
    }
}

fn try_maybe_sweep(component: &str, tasks: &[Task]) -> Result<()> {
    let key = lease_key(component);
    let counters = Counters::open()?;
    let interval = crate::config::var_u64("sweep_interval_seconds", DEFAULT_INTERVAL_SECS)?;
    if !counters.claim_lease(&key, interval.max(1) * 1000)? {
        return Ok(());
    }
    if sweep(tasks)?.backlog {
        counters.release_lease(&key)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_per_component() {
        assert_eq!(lease_key("auth"), "sweep:auth");
    }
}
