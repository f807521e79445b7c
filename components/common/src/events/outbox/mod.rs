//! The transactional outbox: rows written with the change they announce,
//! delivered after the commit (holding no database connection meanwhile),
//! retried with back-off, dead-lettered when the transport says so, pruned
//! after retention.

use super::{CLAIM_MILLIS, Event, EventSettings, FLUSH_BATCH};
use crate::storage::db::Connection;
use crate::storage::db::{self, Migrations, exec, int, text};
use anyhow::{Context as _, Result, bail};
use std::sync::atomic::{AtomicBool, Ordering};

mod delivery;
pub use delivery::retry_delay_millis;
use delivery::{deliver, record};

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
    let now = crate::util::time::now_millis();
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
pub(crate) struct Outgoing {
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
    let now = crate::util::time::now_millis() as i64;
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

fn log_failure(e: &anyhow::Error) {
    crate::telemetry::logging::emit_value(serde_json::json!({
        "ts": crate::util::time::rfc3339_millis(crate::util::time::now_millis()),
        "level": "warn",
        "msg": "events not published yet; they stay in the outbox for a later request",
        "error": format!("{e:#}"),
    }));
}
