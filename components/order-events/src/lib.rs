//! Component `order-events` (Redis trigger on the `events_channel`
//! channel, no HTTP route): reacts to domain events.
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
//! **Failures** return an error, so the host retries the message with
//! backoff and finally dead-letters it (runtime-host: the dead-letter
//! store and `metrics:dead_letters_total`). Every message is counted in
//! `business_operations_total{operation="event_processing"}` with outcome
//! `success`, `duplicate`, `ignored` or `failure`.

mod handling;

use spin_sdk::redis_component;

/// The name in logs and metrics.
pub const COMPONENT: &str = "order-events";

#[redis_component]
fn on_message(message: bytes::Bytes) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let result = handling::handle(&message);
    let (outcome, level, error) = match &result {
        Ok(outcome) => (outcome.as_str(), "info", None),
        Err(e) => ("failure", "error", Some(format!("{e:#}"))),
    };
    app_common::metrics::record_business("event_processing", outcome);
    let head = handling::peek(&message);
    app_common::logging::emit_value(serde_json::json!({
        "ts": app_common::time::rfc3339_millis(app_common::time::now_millis()),
        "level": level,
        "msg": "event",
        "component": COMPONENT,
        "type": head.kind,
        "event_id": head.event_id,
        "correlation_id": head.correlation_id,
        "outcome": outcome,
        "duration_ms": (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        "error": error,
    }));
    result.map(|_| ())
}
