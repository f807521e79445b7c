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

mod outbox;
mod transport;

pub use outbox::{
    Drained, drain, enqueue, flush, migrate, publish_after_commit, retry_delay_millis,
};
pub use transport::MAX_HTTP_ATTEMPTS;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
            &crate::util::ids::new_record_id(),
            correlation_id,
            crate::util::time::now_millis(),
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
            occurred_at: crate::util::time::rfc3339_millis(unix_millis),
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
    fn consumers_ignore_fields_they_do_not_know() {
        let text = r#"{"type":"x","version":1,"eventId":"i","correlationId":"c",
            "occurredAt":"t","data":{},"producer":"future"}"#;
        assert_eq!(Event::parse(text.as_bytes()).unwrap().kind, "x");
    }
}
