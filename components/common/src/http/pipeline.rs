//! One request from arrival to log line, the same in every component:
//!
//! 1. correlation id (echoed when sane), client address (`spin-client-addr`);
//! 2. `OPTIONS` on a known route → 204 with `Allow` (+ CORS preflight
//!    headers for allowed origins);
//! 3. `/api/*` rate limit per client address;
//! 4. route lookup → 404 / 405 with `Allow`;
//! 5. body read with the JSON body limit (413, `Content-Length` first),
//!    unless the route streams its body ([`BodyMode::Streamed`], see
//!    [`serve_with`]): then the handler reads it with
//!    [`ApiRequest::body_stream`] under a limit of its own;
//! 6. the component's handler;
//! 7. error shape, security headers, CORS, `RateLimit-*`, `Cache-Control`;
//! 8. one structured log line and the request metrics (not for a
//!    [`crate::ApiResponse::liveness`] answer, which touches no store: neither
//!    here nor in step 9);
//! 9. when this component's sweep lease is due, one bounded sweep of
//!    expired state ([`crate::storage::expiry::maybe_sweep`]; one key-value read
//!    otherwise).
//!
//! When the key-value store is down the `/api/*` rate limit cannot count,
//! and such requests are refused with 503 and `Retry-After` (fail closed:
//! an uncounted API would let a client guess passwords exactly while the
//! limiter is blind). Routes outside `/api/` (health, metrics) are not rate
//! limited. Recording metrics is best-effort and bounded by the host, so a
//! store outage never fails or holds a request because of it.

use crate::config::CommonSettings;
use crate::http::access_log;
use crate::http::body::{BodyMode, read_body};
use crate::http::error::ApiError;
use crate::http::rate_limit::{self, Decision};
use crate::http::request::{ApiRequest, RequestHead};
use crate::http::response::{ApiResponse, Finished};
use crate::http::router::{Method, Resolution, Router, allow_header};
use spin_sdk::http::{IncomingRequest, Response};
use std::cell::{Cell, RefCell};
use std::time::Instant;

/// Route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// What the pipeline learnt while serving, for headers, log and metrics.
struct Facts {
    route: &'static str,
    user_id: Option<String>,
    rate_limit: Option<Decision>,
    cors: Vec<(&'static str, String)>,
}

/// Serves one request of `component` through `router` and `handle`, every
/// body read with the JSON body limit.
pub async fn serve<E, F>(
    component: &'static str,
    router: &Router<E>,
    incoming: IncomingRequest,
    handle: F,
) -> Response
where
    E: Copy,
    F: AsyncFn(E, &ApiRequest) -> Result<ApiResponse, ApiError>,
{
    serve_with(component, router, incoming, |_| BodyMode::Buffered, handle).await
}

/// As [`serve`], with `body_mode` choosing per endpoint whether the
/// pipeline reads the body ([`BodyMode::Buffered`]) or leaves it to the
/// handler ([`BodyMode::Streamed`]).
pub async fn serve_with<E, B, F>(
    component: &'static str,
    router: &Router<E>,
    incoming: IncomingRequest,
    body_mode: B,
    handle: F,
) -> Response
where
    E: Copy,
    B: Fn(E) -> BodyMode,
    F: AsyncFn(E, &ApiRequest) -> Result<ApiResponse, ApiError>,
{
    let started = Instant::now();
    let head = RequestHead::from_incoming(&incoming);
    let mut facts = Facts {
        route: UNMATCHED_ROUTE,
        user_id: None,
        rate_limit: None,
        cors: Vec::new(),
    };
    let result = match CommonSettings::load() {
        Ok(settings) => {
            process(
                router, &head, incoming, settings, body_mode, handle, &mut facts,
            )
            .await
        }
        Err(e) => Err(ApiError::internal(e.context("load settings"))),
    };
    let liveness = is_liveness(&result);
    let response = finish(component, &head, facts, result, started);
    // After the metrics, so the sweep is not counted as the request's time.
    if !liveness {
        crate::storage::expiry::maybe_sweep(component, &[]);
    }
    response
}

async fn process<E, B, F>(
    router: &Router<E>,
    head: &RequestHead,
    incoming: IncomingRequest,
    settings: CommonSettings,
    body_mode: B,
    handle: F,
    facts: &mut Facts,
) -> Result<ApiResponse, ApiError>
where
    E: Copy,
    B: Fn(E) -> BodyMode,
    F: AsyncFn(E, &ApiRequest) -> Result<ApiResponse, ApiError>,
{
    let origin = head.header("origin");
    facts.cors = settings.cors.response_headers(origin);
    let resolution = router.resolve(head.method, &head.path);
    if head.method == Method::Options
        && let Resolution::MethodNotAllowed { template, allow } = &resolution
    {
        // Preflights are answered without counting against rate limits.
        facts.route = template;
        facts.cors = settings.cors.preflight_headers(origin, allow);
        return Ok(ApiResponse::no_content().with_header("allow", allow_header(allow)));
    }
    if head.path.starts_with("/api/") {
        let decision = rate_limit::hit("api", &head.client, settings.api_limit)?;
        facts.rate_limit = Some(decision);
        if !decision.allowed {
            return Err(decision.refusal("requests"));
        }
    }
    let (endpoint, template, params) = match resolution {
        Resolution::Matched {
            endpoint,
            template,
            params,
        } => (endpoint, template, params),
        Resolution::MethodNotAllowed { template, allow } => {
            facts.route = template;
            return Err(ApiError::method_not_allowed(&allow_header(&allow)));
        }
        Resolution::NotFound => {
            return Err(ApiError::new(
                404,
                "route_not_found",
                format!(
                    "no route matches {} {}",
                    head.method,
                    head.path.chars().take(200).collect::<String>()
                ),
            ));
        }
    };
    facts.route = template;
    let (body, unread) = match body_mode(endpoint) {
        BodyMode::Buffered => {
            let limit = settings.json_body_limit;
            let body = read_body(incoming, head.header("content-length"), limit).await?;
            (body, None)
        }
        BodyMode::Streamed => (Vec::new(), Some(incoming)),
    };
    let request = ApiRequest {
        route: template,
        params,
        head: head.clone(),
        body,
        settings,
        unread: RefCell::new(unread),
        user_id: RefCell::new(None),
        rate_limit: Cell::new(facts.rate_limit),
    };
    let result = handle(endpoint, &request).await;
    facts.user_id = request.user_id.take();
    facts.rate_limit = request.rate_limit.get();
    result
}

fn is_liveness(result: &Result<ApiResponse, ApiError>) -> bool {
    matches!(result, Ok(response) if response.liveness)
}

/// Correlation id and security headers ([`Finished::new`]), CORS and
/// `RateLimit-*` headers, then the log line and the metrics.
fn finish(
    component: &'static str,
    head: &RequestHead,
    facts: Facts,
    result: Result<ApiResponse, ApiError>,
    started: Instant,
) -> Response {
    let record_metrics = !is_liveness(&result);
    let mut finished = Finished::new(result, &head.correlation_id);
    finished.add_headers(facts.cors);
    if let Some(decision) = facts.rate_limit {
        finished.add_headers(decision.headers());
    }
    access_log::record(
        component,
        head,
        facts.route,
        facts.user_id.as_deref(),
        &mut finished,
        started,
        record_metrics,
    );
    finished.into_response()
}
