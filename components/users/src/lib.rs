//! Component `users`: user profiles, read through a key-value cache and
//! written with optimistic concurrency (`ETag` / `If-Match`).
//!
//! | route | handler |
//! |---|---|
//! | `GET    /api/users` (admin) | [`handlers::list`] |
//! | `GET    /api/users/me` | [`handlers::me`] |
//! | `GET    /api/users/:id` (self or admin) | [`handlers::get`] |
//! | `PATCH  /api/users/:id` (self or admin) | [`handlers::patch`] |
//! | `DELETE /api/users/:id` (self or admin) | [`handlers::delete`] |
//! | `GET    /internal/users/:id` (self or admin; service chaining only) | [`handlers::get`] |
//!
//! Everything else under the component's routes is a 404 (unknown path) or
//! a 405 (known path, other method) in the API's error shape.
//!
//! `/internal/users/:id` is how other components (orders) read a profile
//! through service chaining (`http://users.spin.internal/internal/...`).
//! It lies outside the component's public route (`/api/users/...`), so the
//! router never sends an outside request there; and it checks the
//! forwarded caller's token like the public route, so a chained call can
//! read nothing its caller could not. Unlike `/api/*` it is not counted
//! against the per-client rate limit: chained requests carry no client
//! address of their own, and the outside request was already counted.
//!
//! Deleting a user publishes `user.deleted` through the event outbox
//! ([`app_common::events`]); every request also publishes events still
//! waiting there.

mod handlers;
mod rules;

use app_common::config::var_u64;
use app_common::events::EventSettings;
use app_common::{ApiError, ApiRequest, ApiResponse, Router, serve};
use spin_sdk::http::{IncomingRequest, Response};
use spin_sdk::http_component;

/// The name in logs and metrics.
pub const COMPONENT: &str = "users";

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    List,
    Me,
    Get,
    Patch,
    Delete,
}

fn routes() -> Router<Endpoint> {
    Router::new()
        .get("/api/users", Endpoint::List)
        .get("/api/users/me", Endpoint::Me)
        .get("/api/users/:id", Endpoint::Get)
        .patch("/api/users/:id", Endpoint::Patch)
        .delete("/api/users/:id", Endpoint::Delete)
        .get("/internal/users/:id", Endpoint::Get)
}

#[http_component]
async fn handle(request: IncomingRequest) -> Response {
    serve(COMPONENT, &routes(), request, dispatch).await
}

async fn dispatch(endpoint: Endpoint, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    // `user_cache_ttl_seconds` (default 60): how long a read stays cached.
    let cache = handlers::profile_cache(var_u64("user_cache_ttl_seconds", 60)?);
    let events = EventSettings::load()?;
    let result = match endpoint {
        Endpoint::List => handlers::list(request),
        Endpoint::Me => handlers::me(request, &cache),
        Endpoint::Get => handlers::get(request, &cache),
        Endpoint::Patch => handlers::patch(request, &cache),
        // Publishes its event and then the rest of the outbox.
        Endpoint::Delete => return handlers::delete(request, &cache, &events),
    };
    app_common::events::flush(&events);
    result
}
