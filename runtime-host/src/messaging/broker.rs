//! The embedded message broker: a durable queue in SQLite under the state
//! dir.
//!
//! `publish` writes one row per subscribing component in a single
//! transaction, so a message is either queued for every subscriber or for
//! none, and a queued message survives the host being killed. Delivery is
//! at-least-once: a row is deleted only after its handler succeeded; a
//! handler that fails (returns an error or traps) is retried with
//! exponential backoff, and after `max_attempts` the row moves to
//! `dead_letters` with the last error. Rows in flight when the host died are
//! delivered again after a restart.

use anyhow::{Context as _, Result};
use rusqlite::{Connection, params};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1` (after `attempt` failures).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        (self.first_delay * factor).min(self.max_delay)
    }
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub channel: String,
    pub component: String,
    pub payload: Vec<u8>,
    pub attempts: u32,
}

#[derive(Debug, serde::Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub channel: String,
    pub component: String,
    pub payload: String,
    pub error: String,
    pub attempts: u32,
    pub failed_at_ms: i64,
}

pub struct Broker {
    conn: Mutex<Connection>,
    /// channel → subscribing components.
    subscribers: BTreeMap<String, Vec<String>>,
    pub policy: RetryPolicy,
    pub notify: Notify,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn open_db(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open message queue {}", path.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS queue (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             channel TEXT NOT NULL,
             component TEXT NOT NULL,
             payload BLOB NOT NULL,
             attempts INTEGER NOT NULL DEFAULT 0,
             next_at INTEGER NOT NULL,
             last_error TEXT
         );
         CREATE INDEX IF NOT EXISTS queue_due ON queue (next_at);
         CREATE TABLE IF NOT EXISTS dead_letters (
             id INTEGER PRIMARY KEY,
             channel TEXT NOT NULL,
             component TEXT NOT NULL,
             payload BLOB NOT NULL,
             error TEXT NOT NULL,
             attempts INTEGER NOT NULL,
             failed_at INTEGER NOT NULL
         );",
    )
    .context("cannot initialise the message queue")?;
    Ok(conn)
}

impl Broker {
    pub fn open(
        path: &Path,
        subscribers: BTreeMap<String, Vec<String>>,
        policy: RetryPolicy,
    ) -> Result<Broker> {
        Ok(Broker {
            conn: Mutex::new(open_db(path)?),
            subscribers,
            policy,
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| anyhow::anyhow!("message queue lock poisoned"))
    }

    /// How many components subscribe to `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.subscribers.get(channel).map_or(0, Vec::len)
    }

    /// Queues `payload` for every component subscribed to `channel` and
    /// returns how many that is (what Redis `PUBLISH` answers). A channel
    /// nobody subscribes to drops the message, as Redis pub/sub does.
    pub fn publish(&self, channel: &str, payload: &[u8]) -> Result<usize> {
        let Some(components) = self.subscribers.get(channel) else {
            return Ok(0);
        };
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO queue (channel, component, payload, next_at) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let now = now_ms();
            for c in components {
                insert.execute(params![channel, c, payload, now])?;
            }
        }
        tx.commit()?;
        drop(conn);
        self.notify.notify_one();
        Ok(components.len())
    }

    /// Up to `limit` deliveries that are due and not already in flight.
    pub fn due(&self, limit: usize, in_flight: &HashSet<i64>) -> Result<Vec<Delivery>> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, channel, component, payload, attempts FROM queue
             WHERE next_at <= ?1 ORDER BY next_at, id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now_ms(), (limit + in_flight.len()) as i64], |r| {
            Ok(Delivery {
                id: r.get(0)?,
                channel: r.get(1)?,
                component: r.get(2)?,
                payload: r.get(3)?,
                attempts: r.get(4)?,
            })
        })?;
        let mut out = Vec::new();
        for d in rows {
            let d = d?;
            if !in_flight.contains(&d.id) {
                out.push(d);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Milliseconds until the next queued delivery is due, if any.
    pub fn next_due_in(&self) -> Result<Option<Duration>> {
        let conn = self.lock()?;
        let next: Option<i64> =
            conn.query_row("SELECT MIN(next_at) FROM queue", [], |r| r.get(0))?;
        Ok(next.map(|t| Duration::from_millis((t - now_ms()).max(0) as u64)))
    }

    pub fn ack(&self, id: i64) -> Result<()> {
        self.lock()?
            .prepare_cached("DELETE FROM queue WHERE id = ?1")?
            .execute(params![id])?;
        Ok(())
    }

    /// Records a failed attempt: schedules a retry, or dead-letters the
    /// message once it has used all its attempts. Returns true if dead-lettered.
    pub fn fail(&self, d: &Delivery, error: &str) -> Result<bool> {
        let attempts = d.attempts + 1;
        let mut conn = self.lock()?;
        if attempts >= self.policy.max_attempts {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO dead_letters (id, channel, component, payload, error, attempts, failed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![d.id, d.channel, d.component, d.payload, error, attempts, now_ms()],
            )?;
            tx.execute("DELETE FROM queue WHERE id = ?1", params![d.id])?;
            tx.commit()?;
            return Ok(true);
        }
        let next = now_ms() + self.policy.delay(attempts).as_millis() as i64;
        conn.execute(
            "UPDATE queue SET attempts = ?2, next_at = ?3, last_error = ?4 WHERE id = ?1",
            params![d.id, attempts, next, error],
        )?;
        Ok(false)
    }

    /// Dead-letters a message that never went through the queue (Redis mode).
    pub fn dead_letter(
        &self,
        channel: &str,
        component: &str,
        payload: &[u8],
        error: &str,
        attempts: u32,
    ) -> Result<()> {
        self.lock()?.execute(
            "INSERT INTO dead_letters (channel, component, payload, error, attempts, failed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![channel, component, payload, error, attempts, now_ms()],
        )?;
        Ok(())
    }
}

impl Broker {
    /// The host's own dead-letter count: the rows of its `dead_letters`
    /// table, in the host's state dir (never in the app's stores).
    pub fn dead_letter_count(&self) -> Result<i64> {
        Ok(self
            .lock()?
            .query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?)
    }
}

/// Reads the dead letters of a state dir (for `runtime-host dead-letters`).
pub fn read_dead_letters(path: &Path) -> Result<Vec<DeadLetter>> {
    let conn = open_db(path)?;
    let mut stmt = conn.prepare(
        "SELECT id, channel, component, payload, error, attempts, failed_at
         FROM dead_letters ORDER BY failed_at, id",
    )?;
    let rows = stmt.query_map([], |r| {
        let payload: Vec<u8> = r.get(3)?;
        Ok(DeadLetter {
            id: r.get(0)?,
            channel: r.get(1)?,
            component: r.get(2)?,
            payload: String::from_utf8_lossy(&payload).into_owned(),
            error: r.get(4)?,
            attempts: r.get(5)?,
            failed_at_ms: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 5,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(2), Duration::from_millis(200));
        assert_eq!(p.delay(3), Duration::from_millis(400));
        assert_eq!(p.delay(4), Duration::from_millis(500));
    }
}
