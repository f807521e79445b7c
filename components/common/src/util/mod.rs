//! Small helpers: identifiers and random bytes ([`ids`]), time
//! ([`time`]), base64 ([`encoding`]).

pub mod encoding;
pub mod ids;
pub mod time;
