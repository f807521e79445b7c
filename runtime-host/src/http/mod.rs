//! The HTTP trigger: listener, Spin route table, per-component handlers and
//! outbound requests (allowed hosts and service chaining).

pub mod allowed_hosts;
pub mod banner;
mod headers;
pub mod host_response;
mod instances;
pub mod outbound;
pub mod router;
pub mod server;
pub mod trigger;
