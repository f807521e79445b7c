//! The HTTP trigger: listener, Spin route table, per-component handlers and
//! outbound requests (allowed hosts and service chaining).

pub mod banner;
mod headers;
mod instances;
pub mod outbound;
pub mod router;
pub mod server;
pub mod trigger;
