//! Component `order-events`: reacts to domain events, delivered by either
//! trigger with the same idempotent code:
//! - the Redis trigger on the `events_channel` channel (runtime-host, Spin,
//!   SpinKube), or
//! - HTTP on a private route, reachable only through service chaining
//!   ([`delivery`]): the outbox POSTs each event when `events_url` is set
//!   (the edge profile, whose platform has no Redis trigger).
//!
//! | event | effect |
//! |---|---|
//! | `order.created` | a notification for the order's owner |
//! | `order.status_changed` | a notification for the order's owner |
//! | `user.deleted` | the user's orders anonymised (amounts and statuses kept, owner and shipping address dropped), their notifications and cached profile removed |
//! | any other type | ignored (other consumers' events share the channel) |
//!
//! **Idempotent by event id**: the event id is claimed in
//! `processed_events` in the same transaction as the effect, so a
//! redelivered event (the outbox and the broker both deliver at least
//! once) changes nothing.
//!
//! **Failures** return an error, so the sender retries the message with
//! backoff and finally dead-letters it (runtime-host's broker: the
//! dead-letter store and `metrics:dead_letters_total`; the HTTP outbox:
//! the row marked dead, `events_dead_lettered_total`). Every message is counted in
//! `business_operations_total{operation="event_processing"}` with outcome
//! `success`, `duplicate`, `ignored` or `failure`.
//!
//! **Retention**: after each message, when its sweep lease is due, the
//! component removes expired key-value state and claims in
//! `processed_events` older than `processed_events_retention_seconds`.

mod delivery;
mod handling;

use spin_sdk::redis_component;

/// The name in logs and metrics.
pub const COMPONENT: &str = "order-events";

/// The Redis trigger: a message on `events_channel`.
#[redis_component]
fn on_message(message: bytes::Bytes) -> anyhow::Result<()> {
    process(&message, "redis")
        .map(|_| ())
        .map_err(Failure::into_error)
}

/// Why a message was not handled.
#[derive(Debug)]
pub enum Failure {
    /// Not a readable event (bad envelope, unknown version, unusable
    /// data): no retry can help.
    Unreadable(anyhow::Error),
    /// Reading it worked, applying it did not (the database down, the
    /// order not visible yet): worth retrying.
    Failed(anyhow::Error),
}

impl Failure {
    pub fn into_error(self) -> anyhow::Error {
        match self {
            Failure::Unreadable(e) | Failure::Failed(e) => e,
        }
    }
}

/// One message from either trigger (`trigger` names it in the log):
/// handled, counted, logged, then expired state swept.
fn process(message: &[u8], trigger: &str) -> Result<handling::Outcome, Failure> {
    let started = std::time::Instant::now();
    let result = match handling::read(message) {
        Err(e) => Err(Failure::Unreadable(e)),
        Ok((event, effect)) => handling::apply(&event, effect).map_err(Failure::Failed),
    };
    let (outcome, level, error) = match &result {
        Ok(outcome) => (outcome.as_str(), "info", None),
        Err(Failure::Unreadable(e) | Failure::Failed(e)) => {
            ("failure", "error", Some(format!("{e:#}")))
        }
    };
    app_common::telemetry::metrics::record_business("event_processing", outcome);
    let head = handling::peek(message);
    app_common::telemetry::logging::emit_value(serde_json::json!({
        "ts": app_common::util::time::rfc3339_millis(app_common::util::time::now_millis()),
        "level": level,
        "msg": "event",
        "component": COMPONENT,
        "trigger": trigger,
        "type": head.kind,
        "event_id": head.event_id,
        "correlation_id": head.correlation_id,
        "outcome": outcome,
        "duration_ms": (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        "error": error,
    }));
    sweep();
    result
}

/// How long event ids stay claimed in `processed_events` unless
/// `processed_events_retention_seconds` says otherwise (7 days): far
/// beyond any redelivery (broker retries, outbox re-publishes).
pub const DEFAULT_RETENTION_SECS: u64 = 7 * 24 * 3600;

/// Expired key-value state and old `processed_events` claims, in bounded
/// steps, when this component's sweep lease is due (see
/// `app_common::storage::expiry`). Never fails the message.
fn sweep() {
    let retention =
        app_common::config::var_u64("processed_events_retention_seconds", DEFAULT_RETENTION_SECS);
    let processed = |conn: &app_common::storage::db::Connection, now: u64, limit: i64| {
        let retention_millis = retention.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))? * 1000;
        // The table exists once this crate's migrations ran.
        orders_model::store::connect()?;
        orders_model::notifications::sweep_processed(
            conn,
            now.saturating_sub(retention_millis),
            limit,
        )
    };
    app_common::storage::expiry::maybe_sweep(COMPONENT, &[&processed]);
}
