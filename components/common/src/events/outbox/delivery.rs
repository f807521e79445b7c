//! One delivery round of claimed outbox rows: delivered in order through
//! the transport, then recorded as sent, dead-lettered, or released for a
//! retry with back-off; old sent rows are pruned.

use super::Outgoing;
use crate::events::transport::{Transport, Undelivered};
use crate::events::{Event, EventSettings, FLUSH_BATCH, RETENTION_MILLIS};
use crate::storage::db::{Connection, exec, int, text};
use anyhow::Result;

/// What one delivery round did. `done` holds the results of the first
/// rows, in order (`Err`: refused for good); when `failed` is set, the
/// next row failed (worth retrying) and the rest were not tried.
pub(super) struct Round {
    done: Vec<Result<(), String>>,
    pub(super) failed: Option<String>,
    max_attempts: Option<i64>,
}

/// Delivers rows in order until one fails in a way worth retrying.
pub(super) fn deliver(settings: &EventSettings, rows: &[Outgoing]) -> Round {
    let transport = match Transport::open(settings) {
        Ok(transport) => transport,
        Err(error) => {
            return Round {
                done: Vec::new(),
                failed: Some(error),
                max_attempts: None,
            };
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
                };
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
pub(super) fn record(conn: &Connection, rows: &[Outgoing], round: &Round) -> Result<usize> {
    let mut sent = 0;
    for (row, result) in rows.iter().zip(&round.done) {
        match result {
            Ok(()) => {
                exec(
                    conn,
                    "UPDATE event_outbox SET sent_at = ?, attempts = attempts + 1, last_error = NULL
                     WHERE event_id = ?",
                    &[int(crate::util::time::now_millis() as i64), text(&row.event_id)],
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
        return release_untried(
            conn,
            &rows[1..],
            crate::util::time::now_millis() as i64,
            error,
        );
    }
    let retry_at = crate::util::time::now_millis() as i64 + retry_delay_millis(failed.attempts);
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
    let now = crate::util::time::now_millis() as i64;
    exec(
        conn,
        "UPDATE event_outbox SET sent_at = ?, dead_at = ?, attempts = attempts + 1, last_error = ?
         WHERE event_id = ? AND sent_at IS NULL",
        &[int(now), int(now), text(error), text(&row.event_id)],
    )?;
    let kind = Event::parse(row.payload.as_bytes())
        .map(|e| e.kind)
        .unwrap_or_else(|_| "unknown".into());
    crate::telemetry::metrics::add_to_counter("events_dead_lettered_total", &[("type", &kind)], 1);
    crate::telemetry::logging::emit_value(serde_json::json!({
        "ts": crate::util::time::rfc3339_millis(now as u64),
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
    let cutoff = crate::util::time::now_millis().saturating_sub(RETENTION_MILLIS);
    exec(
        conn,
        "DELETE FROM event_outbox WHERE seq IN (
             SELECT seq FROM event_outbox WHERE sent_at IS NOT NULL AND sent_at < ?
             ORDER BY sent_at LIMIT ?)",
        &[int(cutoff as i64), int(FLUSH_BATCH)],
    )?;
    Ok(())
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
