//! The HTTP layer every component serves through: [`pipeline`] composes
//! one request from arrival to log line out of short modules, one concern
//! each:
//!
//! - [`request`] / [`response`]: what handlers see and return;
//! - [`body`]: body modes and the body limit; [`query`]: query strings;
//! - [`correlation`], [`cors`], [`rate_limit`], [`auth`] (bearer tokens),
//!   [`access_log`] (log line and request metrics);
//! - [`router`] (route tables), [`error`] (the error shape), [`headers`],
//!   [`json`] (bodies), [`validate`] (field rules), [`pagination`].

mod access_log;
pub mod auth;
pub mod body;
pub mod correlation;
pub mod cors;
pub mod error;
pub mod headers;
pub mod json;
pub mod pagination;
pub mod pipeline;
pub mod query;
pub mod rate_limit;
pub mod request;
pub mod response;
pub mod router;
pub mod validate;
