//! Harness for black-box tests: starts `runtime-host` as a real process on a
//! free loopback port with its own state directory, and speaks HTTP to it.
//! It builds nothing: `cargo xtask test` builds the host and every `.wasm`
//! first.
//!
//! Modules: [`process`] (the host process, its logs, scratch directories),
//! [`requests`] (HTTP requests and replies), [`services`] (Redis, MQTT, PostgreSQL),
//! [`schemathesis`] (the OpenAPI tester, installed on first use),
//! [`wait`] (polling for events with a deadline), [`releases`] (composing
//! the app from component releases over HTTP), [`app`] (the
//! application's API: start it, register, log in, check the contract).
//! Everything but [`app`] is re-exported at the root.

pub mod app;
pub mod process;
pub mod releases;
pub mod requests;
pub mod schemathesis;
pub mod services;
pub mod wait;

pub use app::app_manifest;
pub use process::*;
pub use requests::*;
pub use services::*;
pub use wait::*;
