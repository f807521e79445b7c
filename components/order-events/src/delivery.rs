//! The HTTP trigger: `POST` of one event envelope on a private route
//! (`route = { private = true }`, so only other components of the app
//! reach it, by service chaining). The event outbox delivers here when the
//! `events_url` variable is set; the status tells it what to do next:
//!
//! | status | meaning | the outbox |
//! |---|---|---|
//! | 200 | handled (or a duplicate, or not for us) | marks the event sent |
//! | 422 | not a readable event | dead-letters it at once |
//! | 503 | handling failed | retries with backoff, then dead-letters |
//! | 405 / 413 | not a `POST`, or an envelope over [`MAX_EVENT_BYTES`] | dead-letters it |

use spin_sdk::http::{Method, Request, Response};

/// Largest envelope accepted; events are small JSON documents.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

#[spin_sdk::http_component]
fn deliver(request: Request) -> Response {
    if *request.method() != Method::Post {
        return answer(405, "POST one event envelope (JSON) to deliver it");
    }
    let body = request.body();
    if body.len() > MAX_EVENT_BYTES {
        return answer(413, "an event envelope is at most 1 MiB");
    }
    match crate::process(body, "http") {
        Ok(outcome) => answer(200, outcome.as_str()),
        Err(crate::Failure::Unreadable(e)) => answer(422, &format!("{e:#}")),
        Err(crate::Failure::Failed(e)) => answer(503, &format!("{e:#}")),
    }
}

fn answer(status: u16, outcome: &str) -> Response {
    let key = if status == 200 { "outcome" } else { "error" };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(serde_json::json!({ key: outcome }).to_string())
        .build()
}
