//! What every component shares, so no component writes it twice.
//!
//! Pure modules (no host calls, unit-tested natively):
//! [`error`], [`router`], [`correlation`], [`headers`], [`json`],
//! [`validate`], [`pagination`], [`principal`], [`logging`], [`time`],
//! [`encoding`], and the pure halves of [`tokens`], [`rate_limit`],
//! [`cache`], [`metrics`] and [`config`].
//!
//! Spin-facing modules (they call the host): [`pipeline`] (one request from
//! arrival to log line), [`kv`], [`accounts`] (the shared user records in
//! SQLite), [`db`] (the shared SQLite database, migrations, transactions),
//! [`events`] (the event envelope and the transactional outbox),
//! [`expiry`] (the expiry index of key-value keys and the sweeper),
//! [`password`] (Argon2id, pure but slow), and the Spin halves of the
//! modules above.

pub mod accounts;
pub mod cache;
pub mod config;
pub mod correlation;
pub mod counters;
pub mod db;
pub mod encoding;
pub mod error;
pub mod events;
pub mod expiry;
#[cfg(test)]
mod fuzz_tests;
pub mod headers;
pub mod ids;
pub mod json;
pub mod kv;
pub mod logging;
pub mod metrics;
pub mod pagination;
pub mod password;
pub mod pipeline;
pub mod principal;
pub mod rate_limit;
pub mod router;
pub mod time;
pub mod tokens;
pub mod validate;

pub use error::{ApiError, Detail};
pub use pipeline::{serve, serve_with, ApiRequest, ApiResponse, BodyMode};
pub use principal::{Principal, Role};
pub use router::{Method, Router};
