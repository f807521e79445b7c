//! `POST /maintenance/run`: the work no request should wait for, done when
//! a scheduler asks (Akamai Functions' cron, a Kubernetes `CronJob`, or
//! `runtime-host up --schedule` locally): publish what the event outbox
//! holds, and sweep expired key-value state. Bounded per call; a backlog
//! says to call again.
//!
//! Only a caller with `Authorization: Bearer <maintenance_token>` (or
//! `?token=<maintenance_token>`: Akamai's cron sends a `GET` to a path and
//! query, with no headers) may run it; while the variable is empty the
//! route is off (403 naming it).

use app_common::events;
use app_common::storage::expiry;
use app_common::{ApiError, ApiRequest, ApiResponse};
use serde_json::json;

/// Outbox batches (of `events::FLUSH_BATCH`) one call publishes at most.
const MAX_OUTBOX_BATCHES: usize = 10;

pub fn run(request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    authorize(request)?;
    let settings = events::EventSettings::load().map_err(ApiError::internal)?;
    let drained = events::drain(&settings, MAX_OUTBOX_BATCHES).map_err(|e| {
        let mut error = ApiError::service_unavailable(format!(
            "the event outbox could not be published ({e:#}); its events stay queued, call again"
        ));
        error.retry_after = Some(5);
        error
    })?;
    let swept = expiry::sweep(&[]).map_err(ApiError::internal)?;
    ApiResponse::json(
        200,
        &json!({
            "published": drained.published,
            "outboxBacklog": drained.backlog,
            "expiredKeysRemoved": swept.keys,
            "sweepBacklog": swept.backlog,
        }),
    )
}

fn authorize(request: &ApiRequest) -> Result<(), ApiError> {
    let expected = app_common::config::var("maintenance_token")
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::forbidden(
                "maintenance is off: set the `maintenance_token` variable and send it as a bearer token",
            )
        })?;
    // Akamai's cron sends a GET to a path and query and no headers, so the
    // token may come in the query; the app never logs query strings.
    let given = request
        .bearer_token()
        .map(str::to_string)
        .or_else(|| request.query_param("token"))
        .unwrap_or_default();
    if !crate::tokens_match(given.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::unauthenticated(
            "/maintenance/run needs `Authorization: Bearer <maintenance token>` (or `?token=<maintenance token>` from a cron that cannot send headers)",
        ));
    }
    Ok(())
}
