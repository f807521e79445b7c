//! How events leave the outbox: Redis pub/sub (the Redis trigger consumes
//! them) or HTTP (`events_url`: order-events' private route, by service
//! chaining, at the edge), and what a consumer's answer means for the row.

use super::EventSettings;
use super::outbox::Outgoing;

/// How events leave the outbox.
pub(super) enum Transport {
    /// `PUBLISH` on the row's channel (the Redis trigger consumes it).
    Redis(spin_sdk::redis::Connection),
    /// `POST` of the envelope to `events_url` (order-events' private route).
    Http(String),
}

/// Why one delivery did not go through.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Undelivered {
    /// Worth retrying later (down, busy, failed while handling).
    Retry(String),
    /// The consumer says it can never take this event.
    Refused(String),
}

impl Transport {
    pub(super) fn open(settings: &EventSettings) -> Result<Transport, String> {
        if let Some(url) = &settings.url {
            return Ok(Transport::Http(url.clone()));
        }
        spin_sdk::redis::Connection::open(&settings.redis_address)
            .map(Transport::Redis)
            .map_err(|e| format!("open Redis at the `redis_address` variable: {e}"))
    }

    pub(super) fn deliver(&self, row: &Outgoing) -> Result<(), Undelivered> {
        match self {
            Transport::Redis(redis) => publish(redis, row).map_err(Undelivered::Retry),
            Transport::Http(url) => post(url, row),
        }
    }

    /// Attempts before a row is dead-lettered. Redis pub/sub has none here:
    /// a failed publish reached nobody, and the receiving host dead-letters
    /// what its subscriber keeps failing on.
    pub(super) fn max_attempts(&self) -> Option<i64> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
