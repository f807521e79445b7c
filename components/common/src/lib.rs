//! What every component shares, so no component writes it twice, by
//! concern:
//!
//! - [`http`]: the request pipeline and its parts (request, response,
//!   body limits, correlation, CORS, rate limits, authentication, access
//!   log), the router, the error shape, JSON, validation, pagination;
//! - [`security`]: access tokens, passwords, the verified caller;
//! - [`storage`]: database, key-value, counters, cache, expiry;
//! - [`events`]: the event envelope, the transactional outbox and its
//!   transports;
//! - [`telemetry`]: structured logging and metrics;
//! - [`config`]: settings from Spin variables;
//! - [`util`]: identifiers, time, base64.
//!
//! Domain records live in their own crates (`accounts-model`,
//! `orders-model`). Pure code is unit-tested natively; modules that call
//! the host (the pipeline, storage, events) are covered by the black-box
//! tests.

pub mod config;
pub mod events;
#[cfg(test)]
mod fuzz_tests;
pub mod http;
pub mod security;
pub mod storage;
pub mod telemetry;
pub mod util;

pub use http::body::BodyMode;
pub use http::error::{ApiError, Detail};
pub use http::pipeline::{serve, serve_with};
pub use http::request::ApiRequest;
pub use http::response::ApiResponse;
pub use http::router::{Method, Router};
pub use security::principal::{Principal, Role};
