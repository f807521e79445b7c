//! Component `orders`: orders and their lifecycle, and the notifications
//! the `order-events` component writes for their owners.
//!
//! | route | handler |
//! |---|---|
//! | `POST  /api/orders` | [`handlers::create`] |
//! | `GET   /api/orders` | [`handlers::list`] |
//! | `GET   /api/orders/:id` (owner or admin) | [`handlers::get`] |
//! | `PATCH /api/orders/:id/status` (owner: cancel; admin) | [`handlers::change_status`] |
//! | `GET   /api/notifications` | [`notifications::list`] |
//! | `POST  /api/notifications/:id/read` | [`notifications::mark_read`] |
//!
//! Every request also publishes events still waiting in the outbox
//! ([`app_common::events::flush`]), so an event whose publication failed
//! goes out with the next request.
//!
//! Variables: `events_channel`, `redis_address` (where events go),
//! `users_base_url` (service chaining target for owner profiles, default
//! `http://users.spin.internal`), `user_cache_ttl_seconds` (profile cache,
//! default 60), `users_breaker_failure_threshold` (default 5; 0 disables)
//! and `users_breaker_open_seconds` (default 30).

mod breaker;
mod enrich;
mod handlers;
mod notifications;
mod rules;

use app_common::config::{var, var_u64};
use app_common::events::{self, EventSettings};
use app_common::{ApiError, ApiRequest, ApiResponse, Router, serve};
use breaker::BreakerPolicy;
use enrich::UsersClient;
use spin_sdk::http::{IncomingRequest, Response};
use spin_sdk::http_component;

/// The name in logs and metrics.
pub const COMPONENT: &str = "orders";

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Create,
    List,
    Get,
    ChangeStatus,
    Notifications,
    ReadNotification,
}

fn routes() -> Router<Endpoint> {
    Router::new()
        .post("/api/orders", Endpoint::Create)
        .get("/api/orders", Endpoint::List)
        .get("/api/orders/:id", Endpoint::Get)
        .patch("/api/orders/:id/status", Endpoint::ChangeStatus)
        .get("/api/notifications", Endpoint::Notifications)
        .post("/api/notifications/:id/read", Endpoint::ReadNotification)
}

/// What the handlers need from variables.
pub struct Settings {
    pub events: EventSettings,
    pub users: UsersClient,
}

impl Settings {
    fn load() -> anyhow::Result<Settings> {
        Ok(Settings {
            events: EventSettings::load()?,
            users: UsersClient {
                base_url: var("users_base_url")?
                    .unwrap_or_else(|| "http://users.spin.internal".into()),
                cache_ttl_secs: var_u64("user_cache_ttl_seconds", 60)?,
                breaker: BreakerPolicy {
                    failure_threshold: var_u64("users_breaker_failure_threshold", 5)?
                        .try_into()
                        .unwrap_or(u32::MAX),
                    open_millis: var_u64("users_breaker_open_seconds", 30)?.saturating_mul(1000),
                },
            },
        })
    }
}

#[http_component]
async fn handle(request: IncomingRequest) -> Response {
    serve(COMPONENT, &routes(), request, dispatch).await
}

async fn dispatch(endpoint: Endpoint, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let settings = Settings::load()?;
    let result = match endpoint {
        // Writes publish their own event and then the rest of the outbox.
        Endpoint::Create => return handlers::create(request, &settings),
        Endpoint::ChangeStatus => return handlers::change_status(request, &settings),
        Endpoint::List => handlers::list(request),
        Endpoint::Get => handlers::get(request, &settings).await,
        Endpoint::Notifications => notifications::list(request),
        Endpoint::ReadNotification => notifications::mark_read(request),
    };
    events::flush(&settings.events);
    result
}
