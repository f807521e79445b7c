//! The transactional outbox: rows written with the change they announce,
//! delivered after the commit (holding no database connection meanwhile),
//! retried with back-off, dead-lettered when the transport says so, pruned
//! after retention.

use super::transport::{Transport, Undelivered};
use super::{Event, EventSettings, CLAIM_MILLIS, FLUSH_BATCH, RETENTION_MILLIS};
use crate::db::Connection;
use crate::db::{self, exec, int, text, Migrations};
use anyhow::{bail, Context as _, Result};
use std::sync::atomic::{AtomicBool, Ordering};

const SCHEMA: &str = "events";

const MIGRATIONS: Migrations = &[
    (
        1,
        &[
            "CREATE TABLE IF NOT EXISTS event_outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL UNIQUE,
            channel TEXT NOT NULL,
            type TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            claimed_until INTEGER NOT NULL DEFAULT 0,
            sent_at INTEGER,
            last_error TEXT
        )",
            "CREATE INDEX IF NOT EXISTS event_outbox_unsent ON event_outbox (seq)
            WHERE sent_at IS NULL",
            "CREATE INDEX IF NOT EXISTS event_outbox_sent ON event_outbox (sent_at)
            WHERE sent_at IS NOT NULL",
        ],
    ),
    (
        2,
        // A dead letter: HTTP delivery gave up (see [`MAX_HTTP_ATTEMPTS`]). Its
        // `sent_at` is set too, so it leaves the queue and is pruned like a
        // sent row; `dead_at` and `last_error` say why it never arrived.
        &["ALTER TABLE event_outbox ADD COLUMN dead_at INTEGER"],
    ),
];

static MIGRATED: AtomicBool = AtomicBool::new(false);

/// Creates the outbox table if missing (every function here calls it).
pub fn migrate(conn: &Connection) -> Result<()> {
    if !MIGRATED.load(Ordering::Relaxed) {
        db::migrate(conn, SCHEMA, MIGRATIONS)?;
        MIGRATED.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// Writes `event` to the outbox (for the `events_channel` of `settings`).
/// Call inside the transaction that makes the change the event announces.
/// The row starts claimed by the caller, who publishes it after the commit
/// with [`publish_after_commit`].
pub fn enqueue(conn: &Connection, settings: &EventSettings, event: &Event) -> Result<()> {
    migrate(conn)?;
    let now = crate::time::now_millis();
    exec(
        conn,
        "INSERT INTO event_outbox (event_id, channel, type, payload, created_at, claimed_until)
         VALUES (?, ?, ?, ?, ?, ?)",
        &[
            text(&event.event_id),
            text(&settings.channel),
            text(&event.kind),
            text(&event.to_json()),
            int(now as i64),
            int((now + CLAIM_MILLIS) as i64),
        ],
    )?;
    Ok(())
}

/// A row to publish.
pub(super) struct Outgoing {
    seq: i64,
    pub(super) event_id: String,
    pub(super) channel: String,
    pub(super) payload: String,
    /// Failed attempts so far.
    attempts: i64,
}

/// After the commit: publishes `events` (enqueued by this request), then
/// any other unsent rows ([`flush`]). Never fails the request: a failure
/// is logged and the rows stay for a later request.
///
/// Takes the request's connection and closes it first: delivery holds no
/// database connection, because the consumer (order-events, over HTTP)
/// needs one from the same pool, and requests holding theirs while waiting
/// for it would starve it.
pub fn publish_after_commit(conn: Connection, settings: &EventSettings, events: &[Event]) {
    drop(conn);
    let own = events
        .iter()
        .map(|e| Outgoing {
            seq: 0,
            event_id: e.event_id.clone(),
            channel: settings.channel.clone(),
            payload: e.to_json(),
            attempts: 0,
        })
        .collect();
    match deliver_and_record(settings, own) {
        Ok(_) => flush(settings),
        Err(e) => log_failure(&e),
    }
}

/// Publishes unsent rows nobody holds a claim on (up to [`FLUSH_BATCH`]).
/// Cheap when there are none (one indexed read, no write lock). Never
/// fails; problems are logged.
pub fn flush(settings: &EventSettings) {
    if let Err(e) = try_flush(settings) {
        log_failure(&e);
    }
}

/// What [`drain`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub published: usize,
    /// Publishable rows remain (more than `max_batches` batches were due).
    pub backlog: bool,
}

/// Publishes due rows, up to `max_batches` batches of [`FLUSH_BATCH`]:
/// the relay's home on platforms without a long-lived process (a
/// scheduler calls the maintenance route, which calls this), so no event
/// waits for unrelated traffic. Fails when a delivery failed (the rows
/// stay for the next call).
pub fn drain(settings: &EventSettings, max_batches: usize) -> Result<Drained> {
    let mut published = 0;
    for _ in 0..max_batches {
        let sent = try_flush(settings)?;
        published += sent;
        if sent < FLUSH_BATCH as usize {
            return Ok(Drained {
                published,
                backlog: false,
            });
        }
    }
    Ok(Drained {
        published,
        backlog: true,
    })
}

fn try_flush(settings: &EventSettings) -> Result<usize> {
    let rows = claim_due(&db::open()?)?;
    deliver_and_record(settings, rows)
}

/// Claims up to [`FLUSH_BATCH`] due rows, oldest first.
fn claim_due(conn: &Connection) -> Result<Vec<Outgoing>> {
    migrate(conn)?;
    let now = crate::time::now_millis() as i64;
    let pending = exec(
        conn,
        "SELECT 1 FROM event_outbox WHERE sent_at IS NULL AND claimed_until < ? LIMIT 1",
        &[int(now)],
    )?;
    if pending.rows.is_empty() {
        return Ok(Vec::new());
    }
    let claimed = exec(
        conn,
        // The outer condition repeats the inner one: on PostgreSQL a
        // concurrent flusher re-checks it after waiting for the row, so it
        // skips rows another instance has just claimed.
        "UPDATE event_outbox SET claimed_until = ?
         WHERE seq IN (SELECT seq FROM event_outbox
                       WHERE sent_at IS NULL AND claimed_until < ?
                       ORDER BY seq LIMIT ?)
           AND sent_at IS NULL AND claimed_until < ?
         RETURNING seq, event_id, channel, payload, attempts",
        &[
            int(now + CLAIM_MILLIS as i64),
            int(now),
            int(FLUSH_BATCH),
            int(now),
        ],
    )?;
    let mut rows = claimed
        .rows
        .iter()
        .map(|r| {
            let s = |i: usize| {
                r.get::<&str>(i)
                    .map(str::to_string)
                    .with_context(|| format!("event_outbox column {i} is not text"))
            };
            Ok(Outgoing {
                seq: r.get::<i64>(0).context("event_outbox seq")?,
                event_id: s(1)?,
                channel: s(2)?,
                payload: s(3)?,
                attempts: r.get::<i64>(4).context("event_outbox attempts")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    rows.sort_by_key(|r| r.seq);
    Ok(rows)
}

/// Delivers claimed rows (holding no database connection meanwhile), then
/// records what happened; fails if a delivery failed.
fn deliver_and_record(settings: &EventSettings, rows: Vec<Outgoing>) -> Result<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    let round = deliver(settings, &rows);
    let sent = record(&db::open()?, &rows, &round)?;
    match round.failed {
        Some(error) => bail!("{error}"),
        None => Ok(sent),
    }
}

/// What one delivery round did. `done` holds the results of the first
/// rows, in order (`Err`: refused for good); when `failed` is set, the
/// next row failed (worth retrying) and the rest were not tried.
struct Round {
    done: Vec<Result<(), String>>,
    failed: Option<String>,
    max_attempts: Option<i64>,
}

/// Delivers rows in order until one fails in a way worth retrying.
fn deliver(settings: &EventSettings, rows: &[Outgoing]) -> Round {
    let transport = match Transport::open(settings) {
        Ok(transport) => transport,
        Err(error) => {
            return Round {
                done: Vec::new(),
                failed: Some(error),
                max_attempts: None,
            }
        }
    };
    let max_attempts = transport.max_attempts();
    let mut done = Vec::with_capacity(rows.len());
    for row in rows {
        match transport.deliver(row) {
            Ok(()) => done.push(Ok(())),
            Err(Undelivered::Refused(error)) => done.push(Err(error)),
            Err(Undelivered::Retry(error)) => {
                return Round {
                    done,
                    failed: Some(error),
                    max_attempts,
                }
            }
        }
    }
    Round {
        done,
        failed: None,
        max_attempts,
    }
}

/// Marks delivered rows sent, refused ones dead, and gives the rest back
/// for a later attempt; returns how many were sent.
fn record(conn: &Connection, rows: &[Outgoing], round: &Round) -> Result<usize> {
    let mut sent = 0;
    for (row, result) in rows.iter().zip(&round.done) {
        match result {
            Ok(()) => {
                exec(
                    conn,
                    "UPDATE event_outbox SET sent_at = ?, attempts = attempts + 1, last_error = NULL
                     WHERE event_id = ?",
                    &[int(crate::time::now_millis() as i64), text(&row.event_id)],
                )?;
                sent += 1;
            }
            Err(error) => dead_letter(conn, row, error)?,
        }
    }
    if let Some(error) = &round.failed {
        release(conn, &rows[round.done.len()..], error, round.max_attempts)?;
    }
    prune(conn)?;
    Ok(sent)
}

/// Delay before retrying a row that failed `attempts` times before this
/// failure: 1 s, 2 s, 4 s, … at most 60 s, so a consumer that is down is
/// not hammered by every request.
pub fn retry_delay_millis(attempts: i64) -> i64 {
    1000_i64
        .saturating_mul(1 << attempts.clamp(0, 6))
        .min(60_000)
}

/// Gives claimed rows back for a later attempt: the first failed (one
/// more attempt, retried after [`retry_delay_millis`]; dead-lettered once
/// it reaches `max_attempts`), the rest were not tried and wait as long.
fn release(
    conn: &Connection,
    rows: &[Outgoing],
    error: &str,
    max_attempts: Option<i64>,
) -> Result<()> {
    let Some(failed) = rows.first() else {
        return Ok(());
    };
    if max_attempts.is_some_and(|max| failed.attempts + 1 >= max) {
        dead_letter(conn, failed, error)?;
        return release_untried(conn, &rows[1..], crate::time::now_millis() as i64, error);
    }
    let retry_at = crate::time::now_millis() as i64 + retry_delay_millis(failed.attempts);
    exec(
        conn,
        "UPDATE event_outbox SET attempts = attempts + 1, last_error = ?, claimed_until = ?
         WHERE event_id = ? AND sent_at IS NULL",
        &[text(error), int(retry_at), text(&failed.event_id)],
    )?;
    release_untried(conn, &rows[1..], retry_at, error)
}

/// Rows that waited behind a failure: due again at `retry_at`, attempts
/// unchanged.
fn release_untried(conn: &Connection, rows: &[Outgoing], retry_at: i64, error: &str) -> Result<()> {
    for row in rows {
        exec(
            conn,
            "UPDATE event_outbox SET last_error = ?, claimed_until = ?
             WHERE event_id = ? AND sent_at IS NULL",
            &[text(error), int(retry_at), text(&row.event_id)],
        )?;
    }
    Ok(())
}

/// Gives up on a row: marked dead (and sent, so it leaves the queue),
/// counted in `events_dead_lettered_total`, logged as an error.
fn dead_letter(conn: &Connection, row: &Outgoing, error: &str) -> Result<()> {
    let now = crate::time::now_millis() as i64;
    exec(
        conn,
        "UPDATE event_outbox SET sent_at = ?, dead_at = ?, attempts = attempts + 1, last_error = ?
         WHERE event_id = ? AND sent_at IS NULL",
        &[int(now), int(now), text(error), text(&row.event_id)],
    )?;
    let kind = Event::parse(row.payload.as_bytes())
        .map(|e| e.kind)
        .unwrap_or_else(|_| "unknown".into());
    crate::metrics::add_to_counter("events_dead_lettered_total", &[("type", &kind)], 1);
    crate::logging::emit_value(serde_json::json!({
        "ts": crate::time::rfc3339_millis(now as u64),
        "level": "error",
        "msg": "event dead-lettered: the consumer will not get it; it stays in event_outbox (dead_at) for inspection",
        "event_id": row.event_id,
        "type": kind,
        "attempts": row.attempts + 1,
        "error": error,
    }));
    Ok(())
}

/// Removes sent rows past retention, oldest first and at most
/// [`FLUSH_BATCH`] at a time, so no request deletes an unbounded backlog.
fn prune(conn: &Connection) -> Result<()> {
    let cutoff = crate::time::now_millis().saturating_sub(RETENTION_MILLIS);
    exec(
        conn,
        "DELETE FROM event_outbox WHERE seq IN (
             SELECT seq FROM event_outbox WHERE sent_at IS NOT NULL AND sent_at < ?
             ORDER BY sent_at LIMIT ?)",
        &[int(cutoff as i64), int(FLUSH_BATCH)],
    )?;
    Ok(())
}

fn log_failure(e: &anyhow::Error) {
    crate::logging::emit_value(serde_json::json!({
        "ts": crate::time::rfc3339_millis(crate::time::now_millis()),
        "level": "warn",
        "msg": "events not published yet; they stay in the outbox for a later request",
        "error": format!("{e:#}"),
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_minute() {
        let delays: Vec<i64> = (0..9).map(retry_delay_millis).collect();
        assert_eq!(
            delays,
            [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
        );
        assert_eq!(retry_delay_millis(-1), 1000);
        assert_eq!(retry_delay_millis(i64::MAX), 60000);
    }
}
