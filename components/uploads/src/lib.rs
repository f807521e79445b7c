//! Component `uploads`: files (JPEG, PNG, GIF, PDF — decided by their
//! first bytes) received as streams, stored as key-value chunks of at most
//! 1 MiB with their metadata in SQLite, and served back with `ETag`,
//! `If-None-Match` and single `Range` requests.
//!
//! | route | handler |
//! |---|---|
//! | `POST   /api/uploads` (body streamed) | [`handlers::create`] |
//! | `GET    /api/uploads` | [`handlers::list`] |
//! | `GET    /api/uploads/:id` (owner or admin) | [`handlers::get`] |
//! | `GET    /api/uploads/:id/content` (owner or admin) | [`handlers::content`] |
//! | `DELETE /api/uploads/:id` (owner or admin) | [`handlers::delete`] |
//!
//! Rules (types, names, ranges) are in [`rules`], the streaming intake of
//! one file in [`intake`], storage in [`store`].

mod form;
mod handlers;
mod intake;
mod rules;
mod store;

use app_common::{ApiError, ApiRequest, ApiResponse, BodyMode, Router, serve_with};
use spin_sdk::http::{IncomingRequest, Response};
use spin_sdk::http_component;

/// The name in logs and metrics.
pub const COMPONENT: &str = "uploads";

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Create,
    List,
    Get,
    Content,
    Delete,
}

fn routes() -> Router<Endpoint> {
    Router::new()
        .post("/api/uploads", Endpoint::Create)
        .get("/api/uploads", Endpoint::List)
        .get("/api/uploads/:id", Endpoint::Get)
        .get("/api/uploads/:id/content", Endpoint::Content)
        .delete("/api/uploads/:id", Endpoint::Delete)
}

/// Uploads stream their body under the upload limit; every other route
/// reads it with the JSON body limit.
fn body_mode(endpoint: Endpoint) -> BodyMode {
    match endpoint {
        Endpoint::Create => BodyMode::Streamed,
        _ => BodyMode::Buffered,
    }
}

#[http_component]
async fn handle(request: IncomingRequest) -> Response {
    serve_with(COMPONENT, &routes(), request, body_mode, dispatch).await
}

async fn dispatch(endpoint: Endpoint, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    match endpoint {
        Endpoint::Create => {
            let settings = handlers::Settings::load()?;
            handlers::create(request, &settings).await
        }
        Endpoint::List => handlers::list(request),
        Endpoint::Get => handlers::get(request),
        Endpoint::Content => handlers::content(request),
        Endpoint::Delete => handlers::delete(request),
    }
}
