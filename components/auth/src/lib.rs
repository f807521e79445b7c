//! Component `auth`: accounts come into being here and callers prove who
//! they are.
//!
//! | route | handler |
//! |---|---|
//! | `POST /api/auth/register` | [`handlers::register`] |
//! | `POST /api/auth/login` | [`handlers::login`] |
//! | `POST /api/auth/refresh` | [`handlers::refresh`] |
//! | `POST /api/auth/logout` | [`handlers::logout`] |
//! | `GET  /api/auth/me` | [`handlers::me`] |
//! | `GET  /.well-known/jwks.json` | [`handlers::jwks`] |
//!
//! Everything else under the component's routes is a 404 (unknown path) or
//! a 405 (known path, other method) in the API's error shape.

mod handlers;
mod lockout;
mod refresh;
mod settings;
mod signing;

use app_common::{ApiError, ApiRequest, ApiResponse, Router, serve};
use settings::AuthSettings;
use spin_sdk::http::{IncomingRequest, Response};
use spin_sdk::http_component;

/// The name in logs and metrics.
pub const COMPONENT: &str = "auth";

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Register,
    Login,
    Refresh,
    Logout,
    Me,
    Jwks,
}

fn routes() -> Router<Endpoint> {
    Router::new()
        .post("/api/auth/register", Endpoint::Register)
        .post("/api/auth/login", Endpoint::Login)
        .post("/api/auth/refresh", Endpoint::Refresh)
        .post("/api/auth/logout", Endpoint::Logout)
        .get("/api/auth/me", Endpoint::Me)
        .get("/.well-known/jwks.json", Endpoint::Jwks)
}

#[http_component]
async fn handle(request: IncomingRequest) -> Response {
    serve(COMPONENT, &routes(), request, dispatch).await
}

async fn dispatch(endpoint: Endpoint, request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let settings = AuthSettings::load(&request.settings)?;
    match endpoint {
        Endpoint::Register => handlers::register(request, &settings),
        Endpoint::Login => handlers::login(request, &settings),
        Endpoint::Refresh => handlers::refresh(request, &settings),
        Endpoint::Logout => handlers::logout(request, &settings),
        Endpoint::Me => handlers::me(request, &settings),
        Endpoint::Jwks => handlers::jwks(&settings),
    }
}
