//! Domain events: the versioned JSON envelope every component publishes,
//! and the transactional outbox that gets them out.
//!
//! Envelope (version 1), one JSON object per message:
//! `{"type": "order.created", "version": 1, "eventId": "<uuid v7>",
//!   "correlationId": "...", "occurredAt": "<RFC 3339>", "data": {...}}`.
//! Consumers ignore fields they do not know (additive changes keep the
//! version); an incompatible change gets a new `version`.
//!
//! # Outbox and the delivery guarantee
//!
//! A component that changes state and announces it writes the event into
//! the `event_outbox` table **in the same SQLite transaction** as the change
//! ([`enqueue`]), so there is never a change without its event or an event
//! without its change. After the commit it delivers the event and marks
//! the row sent ([`publish_after_commit`]), by one of two transports:
//!
//! - Redis pub/sub (the default): `PUBLISH` to the `events_channel`
//!   channel at `redis_address`; the Redis trigger of order-events
//!   consumes it.
//! - HTTP, when `events_url` is set (the edge profile: the platform has no
//!   Redis trigger): a `POST` of the envelope to that URL, order-events'
//!   private route reached by service chaining, which handles the event
//!   before it answers. A refusal that no retry can fix (422) and
//!   [`MAX_HTTP_ATTEMPTS`] failed attempts dead-letter the row: kept with
//!   `dead_at` for inspection, counted in `events_dead_lettered_total`.
//!
//! If publishing fails (Redis down, host killed between commit and publish),
//! the row stays unsent and a later request to any component using the
//! outbox (orders, users) publishes it ([`flush`]), after a back-off that
//! doubles per failed attempt (1 s … 60 s). A row being published is
//! claimed for [`CLAIM_MILLIS`] so parallel requests do not publish it at
//! the same time; a claim left by a crashed instance simply expires.
//!
//! The guarantee is therefore **at least once**: an event can be published
//! twice (a crash after publishing but before marking the row sent, or a
//! publish slower than the claim), never zero times once its transaction
//! committed — provided some request reaches an outbox component later.
//! Consumers must be idempotent by `eventId` (order-events is).
//! Sent rows are kept for [`RETENTION_MILLIS`] and then pruned.
//!
//! A row counts as sent only when a subscriber received it: the outbox
//! publishes with `PUBLISH` through `execute`, whose reply is the number of
//! receivers (under Spin too; `publish` hides it), and treats 0 like a
//! failure. Redis pub/sub hands a message only to the subscribers
//! connected at that moment, so an event published after a Redis restart
//! but before the Redis trigger has subscribed again is retried, not lost.
//! What happens after reception depends on the message backend. With
//! runtime-host's embedded broker a message is durable: queued (surviving
//! restarts), retried with backoff, finally dead-lettered. With real Redis
//! the receiving host retries in memory: a host killed while handling a
//! message loses that delivery.

use crate::db::Connection;
use crate::db::{self, exec, int, text, Migrations};
use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};

/// The envelope version this code writes and reads.
pub const VERSION: u32 = 1;

/// Default of the `events_channel` variable.
pub const DEFAULT_CHANNEL: &str = "app.events";

/// Default of the `redis_address` variable.
pub const DEFAULT_REDIS_ADDRESS: &str = "redis://127.0.0.1:6379";

/// How long a publisher owns an unsent row before others may take it.
pub const CLAIM_MILLIS: u64 = 10_000;

/// How long sent rows are kept (for inspection and replays).
pub const RETENTION_MILLIS: u64 = 7 * 24 * 3600 * 1000;

/// Most unsent rows one request publishes on the side.
pub const FLUSH_BATCH: i64 = 50;

/// One domain event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    pub event_id: String,
    pub correlation_id: String,
    pub occurred_at: String,
    pub data: Value,
}

impl Event {
    /// A new event of `kind`, now, with a fresh id.
    pub fn new(kind: &str, correlation_id: &str, data: Value) -> Event {
        Event::at(
            kind,
            &crate::ids::new_record_id(),
            correlation_id,
            crate::time::now_millis(),
            data,
        )
    }

    pub fn at(
        kind: &str,
        event_id: &str,
        correlation_id: &str,
        unix_millis: u64,
        data: Value,
    ) -> Event {
        Event {
            kind: kind.to_string(),
            version: VERSION,
            event_id: event_id.to_string(),
            correlation_id: correlation_id.to_string(),
            occurred_at: crate::time::rfc3339_millis(unix_millis),
            data,
        }
    }

    /// Reads a message: JSON of the envelope, in a version this code knows.
    pub fn parse(payload: &[u8]) -> Result<Event> {
        let event: Event =
            serde_json::from_slice(payload).context("the message is not an event envelope")?;
        if event.version != VERSION {
            bail!(
                "event {} has version {}; this consumer reads version {VERSION}",
                event.event_id,
                event.version
            );
        }
        if event.kind.is_empty() || event.event_id.is_empty() || event.event_id.len() > 100 {
            bail!("the event has an empty type or a missing or oversized eventId");
        }
        Ok(event)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an event always serialises")
    }
}

/// Where events go: variables `events_channel` and `redis_address`, or
/// `events_url` when set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSettings {
    pub channel: String,
    pub redis_address: String,
    /// Deliver over HTTP (a `POST` per event) to this URL instead of
    /// publishing to Redis: the edge profile, where the platform has no
    /// Redis trigger (`http://order-events.spin.internal`, a private route
    /// reached by service chaining).
    pub url: Option<String>,
}

impl EventSettings {
    pub fn load() -> Result<EventSettings> {
        Ok(EventSettings {
            channel: crate::config::var("events_channel")?
                .unwrap_or_else(|| DEFAULT_CHANNEL.into()),
            redis_address: crate::config::var("redis_address")?
                .unwrap_or_else(|| DEFAULT_REDIS_ADDRESS.into()),
            url: crate::config::var("events_url")?,
        })
    }
}

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
struct Outgoing {
    seq: i64,
    event_id: String,
    channel: String,
    payload: String,
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

/// How events leave the outbox.
enum Transport {
    /// `PUBLISH` on the row's channel (the Redis trigger consumes it).
    Redis(spin_sdk::redis::Connection),
    /// `POST` of the envelope to `events_url` (order-events' private route).
    Http(String),
}

/// Why one delivery did not go through.
#[derive(Debug, PartialEq, Eq)]
enum Undelivered {
    /// Worth retrying later (down, busy, failed while handling).
    Retry(String),
    /// The consumer says it can never take this event.
    Refused(String),
}

impl Transport {
    fn open(settings: &EventSettings) -> Result<Transport, String> {
        if let Some(url) = &settings.url {
            return Ok(Transport::Http(url.clone()));
        }
        spin_sdk::redis::Connection::open(&settings.redis_address)
            .map(Transport::Redis)
            .map_err(|e| format!("open Redis at the `redis_address` variable: {e}"))
    }

    fn deliver(&self, row: &Outgoing) -> Result<(), Undelivered> {
        match self {
            Transport::Redis(redis) => publish(redis, row).map_err(Undelivered::Retry),
            Transport::Http(url) => post(url, row),
        }
    }

    /// Attempts before a row is dead-lettered. Redis pub/sub has none here:
    /// a failed publish reached nobody, and the receiving host dead-letters
    /// what its subscriber keeps failing on.
    fn max_attempts(&self) -> Option<i64> {
        match self {
            Transport::Redis(_) => None,
            Transport::Http(_) => Some(MAX_HTTP_ATTEMPTS),
        }
    }
}

/// Failed HTTP deliveries of one event before it is dead-lettered: with
/// the back-off of [`retry_delay_millis`], about two minutes of retrying.
pub const MAX_HTTP_ATTEMPTS: i64 = 8;

/// One `POST` of the envelope. Service chaining from inside a handler: the
/// call is driven to completion here, so the outbox stays synchronous.
fn post(url: &str, row: &Outgoing) -> Result<(), Undelivered> {
    use spin_sdk::http::{Method, Request, Response};
    let request = Request::builder()
        .method(Method::Post)
        .uri(url)
        .header("content-type", "application/json")
        .body(row.payload.clone())
        .build();
    let response: Response = spin_sdk::http::run(spin_sdk::http::send(request))
        .map_err(|e| Undelivered::Retry(format!("POST the event to `events_url` ({url}): {e}")))?;
    let status = *response.status();
    let body =
        String::from_utf8_lossy(&response.body()[..response.body().len().min(300)]).into_owned();
    classify(
        status,
        &format!("the consumer at {url} answered {status}: {body}"),
    )
}

/// What a consumer's status means for the row: 2xx delivered; 404 (a
/// route not deployed yet), 408, 429 and 5xx retried; any other refusal
/// (422 unreadable, 413 too large) is final.
fn classify(status: u16, error: &str) -> Result<(), Undelivered> {
    match status {
        200..=299 => Ok(()),
        404 | 408 | 429 | 500..=599 => Err(Undelivered::Retry(error.to_string())),
        _ => Err(Undelivered::Refused(error.to_string())),
    }
}

/// `PUBLISH` through `execute`, which (unlike `publish`, under Spin too)
/// returns how many subscribers received the message: 0 means nobody was
/// listening (the Redis trigger between a Redis restart and its
/// resubscription), so the message is gone and the row must stay unsent.
fn publish(redis: &spin_sdk::redis::Connection, row: &Outgoing) -> Result<(), String> {
    use spin_sdk::redis::{RedisParameter, RedisResult};
    let reply = redis
        .execute(
            "PUBLISH",
            &[
                RedisParameter::Binary(row.channel.clone().into_bytes()),
                RedisParameter::Binary(row.payload.clone().into_bytes()),
            ],
        )
        .map_err(|e| format!("publish to channel `{}`: {e}", row.channel))?;
    match reply.first() {
        Some(RedisResult::Int64(n)) if *n > 0 => Ok(()),
        Some(RedisResult::Int64(_)) => Err(format!(
            "no subscriber on channel `{}` received the event (the consumer is not subscribed yet); it stays in the outbox",
            row.channel
        )),
        other => Err(format!(
            "PUBLISH to channel `{}` answered {other:?}, not a receiver count",
            row.channel
        )),
    }
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
    let kind = crate::events::Event::parse(row.payload.as_bytes())
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
    use serde_json::json;

    #[test]
    fn envelopes_have_the_documented_shape() {
        let e = Event::at(
            "order.created",
            "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee",
            "corr-1",
            1_714_564_800_123,
            json!({"orderId": "o1"}),
        );
        let v: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(
            v,
            json!({
                "type": "order.created",
                "version": 1,
                "eventId": "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee",
                "correlationId": "corr-1",
                "occurredAt": "2024-05-01T12:00:00.123Z",
                "data": {"orderId": "o1"}
            })
        );
        assert_eq!(Event::parse(e.to_json().as_bytes()).unwrap(), e);
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused() {
        let mut e = Event::at("x", "id", "c", 0, json!({}));
        e.version = 2;
        assert!(Event::parse(e.to_json().as_bytes()).is_err());
        assert!(Event::parse(b"not json").is_err());
        assert!(Event::parse(br#"{"type":"x"}"#).is_err());
        e.version = 1;
        e.event_id.clear();
        assert!(Event::parse(e.to_json().as_bytes()).is_err());
    }

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

    #[test]
    fn consumer_answers_decide_retry_or_dead_letter() {
        assert_eq!(classify(200, "e"), Ok(()));
        assert_eq!(classify(204, "e"), Ok(()));
        for retried in [404, 408, 429, 500, 503] {
            assert_eq!(classify(retried, "e"), Err(Undelivered::Retry("e".into())));
        }
        for refused in [400, 405, 413, 422] {
            assert_eq!(
                classify(refused, "e"),
                Err(Undelivered::Refused("e".into()))
            );
        }
    }

    #[test]
    fn consumers_ignore_fields_they_do_not_know() {
        let text = r#"{"type":"x","version":1,"eventId":"i","correlationId":"c",
            "occurredAt":"t","data":{},"producer":"future"}"#;
        assert_eq!(Event::parse(text.as_bytes()).unwrap().kind, "x");
    }
}
