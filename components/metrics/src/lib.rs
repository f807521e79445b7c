//! Component `metrics`: the Prometheus scrape endpoint and health checks.
//!
//! | route | handler |
//! |---|---|
//! | `GET /metrics` | [`metrics`]: every component's counters, format 0.0.4; bearer token if `metrics_token` is set |
//! | `GET /health` | [`health`]: liveness, no dependencies touched |
//! | `GET /health/ready` | [`ready`]: key-value store, database and message backend (answering, and the events channel subscribed); 503 naming what is down |
//! | `POST /maintenance/run`, `GET /maintenance/run?token=` | [`maintenance::run`]: drains the event outbox and sweeps expired state; bearer `maintenance_token` (or `token` in the query, for a platform cron that sends no headers), for a scheduler |
//! | any other path (the `/...` catch-all route in `spin.toml`) | the app's JSON `route_not_found` 404 (or 405), so an unknown path gets the same answer under `spin up`, the edge and `runtime-host` |

pub mod exposition;
mod maintenance;
mod readiness;

use app_common::{ApiError, ApiRequest, ApiResponse, Router, serve};
use spin_sdk::http::{IncomingRequest, Response};
use spin_sdk::http_component;

/// The name in logs and metrics.
pub const COMPONENT: &str = "metrics";

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Metrics,
    Health,
    Ready,
    Maintenance,
}

fn routes() -> Router<Endpoint> {
    Router::new()
        .get("/metrics", Endpoint::Metrics)
        .get("/health", Endpoint::Health)
        .get("/health/ready", Endpoint::Ready)
        .post("/maintenance/run", Endpoint::Maintenance)
        // For a platform cron that sends a GET with no headers (Akamai's).
        .get("/maintenance/run", Endpoint::Maintenance)
}

#[http_component]
async fn handle(request: IncomingRequest) -> Response {
    serve(COMPONENT, &routes(), request, dispatch).await
}

async fn dispatch(endpoint: Endpoint, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    match endpoint {
        Endpoint::Metrics => metrics(request),
        Endpoint::Health => health(),
        Endpoint::Ready => ready(),
        Endpoint::Maintenance => maintenance::run(request),
    }
}

/// The exposition. With the `metrics_token` variable set, the scraper must
/// send it as a bearer token.
fn metrics(request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    if let Some(expected) = app_common::config::var("metrics_token")
        .map_err(ApiError::internal)?
        .filter(|t| !t.is_empty())
    {
        let given = request.bearer_token().unwrap_or_default();
        if !tokens_match(given.as_bytes(), expected.as_bytes()) {
            return Err(ApiError::unauthenticated(
                "GET /metrics needs `Authorization: Bearer <metrics token>`",
            ));
        }
    }
    let entries = readiness::read_counters().map_err(ApiError::internal)?;
    let dead_letters = entries
        .iter()
        .find(|(k, _)| k == DEAD_LETTERS_KEY)
        .map(|(_, v)| *v)
        .unwrap_or(0);
    let text = exposition::render(&entries, dead_letters);
    Ok(ApiResponse::bytes(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        text.into_bytes(),
    ))
}

/// Compares without an early exit, so timing does not reveal how much of a
/// guessed token was right.
pub(crate) fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    given.ct_eq(expected).into()
}

/// Where runtime-host counts dead letters (in the `default` store).
pub const DEAD_LETTERS_KEY: &str = "metrics:dead_letters_total";

/// Liveness: the process answers. Touches no dependency, not even to
/// count itself in the metrics (see `ApiResponse::liveness`).
fn health() -> Result<ApiResponse, ApiError> {
    Ok(ApiResponse::json(200, &serde_json::json!({ "status": "ok" }))?.liveness())
}

fn ready() -> Result<ApiResponse, ApiError> {
    let checks = readiness::check_all();
    let down: Vec<&readiness::Check> = checks.iter().filter(|c| c.error.is_some()).collect();
    let body = serde_json::json!({
        "status": if down.is_empty() { "ready" } else { "unavailable" },
        "checks": checks.iter().map(|c| serde_json::json!({
            "name": c.name,
            "status": if c.error.is_some() { "down" } else { "up" },
            "error": c.error,
        })).collect::<Vec<_>>(),
    });
    if down.is_empty() {
        return ApiResponse::json(200, &body);
    }
    let names: Vec<&str> = down.iter().map(|c| c.name.as_str()).collect();
    Err(
        ApiError::service_unavailable(format!("not ready: {} down", names.join(", ")))
            .with_details(
                down.iter()
                    .map(|c| {
                        app_common::Detail::field(
                            &c.name,
                            "down",
                            c.error.clone().unwrap_or_default(),
                        )
                    })
                    .collect(),
            ),
    )
}
