//! Responses the host makes itself, when no component answers: a well-known
//! route, a request it refuses (overload, body limits), or a component that
//! failed. They are the host's, not the app's, so they carry no app error
//! shape and no app security policy: a plain-text body that says what
//! happened, and only these headers:
//!
//! | header | value |
//! |---|---|
//! | `content-type` | `text/plain; charset=utf-8` |
//! | `x-content-type-options` | `nosniff` |
//! | `cache-control` | `no-store` |
//! | `runtime-host-error` | a short code: `route_not_found`, `overloaded`, `internal_error`, `payload_too_large`, `response_too_large` |
//! | `x-correlation-id` | a fresh id, also in the host's log line for the request |
//!
//! An app that wants its own shape for unknown paths routes them to a
//! component (a `/...` catch-all route), as it would under Spin.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::WasiBody;

/// The header naming why the host answered.
pub const ERROR_HEADER: &str = "runtime-host-error";

pub fn new_correlation_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}

/// A response with a fixed plain-text body and no headers.
pub fn text_response(status: StatusCode, body: &'static str) -> Response<WasiBody> {
    with_body(status, Bytes::from_static(body.as_bytes()))
}

fn with_body(status: StatusCode, body: Bytes) -> Response<WasiBody> {
    let mut r = Response::new(
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

/// A response made by the host itself (see the module documentation).
pub fn host_error(status: StatusCode, code: &'static str, message: &str) -> Response<WasiBody> {
    host_error_with_id(status, code, message, &new_correlation_id())
}

/// [`host_error`] with a correlation id already written to the log.
pub fn host_error_with_id(
    status: StatusCode,
    code: &'static str,
    message: &str,
    correlation: &str,
) -> Response<WasiBody> {
    let mut r = with_body(status, Bytes::from(format!("{message}\n")));
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    h.insert(ERROR_HEADER, HeaderValue::from_static(code));
    if let Ok(v) = HeaderValue::from_str(correlation) {
        h.insert("x-correlation-id", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_errors_are_plain_text_and_carry_no_app_policy() {
        let r = host_error(
            StatusCode::NOT_FOUND,
            "route_not_found",
            "no route matches /x",
        );
        let h = r.headers();
        assert_eq!(h["content-type"], "text/plain; charset=utf-8");
        assert_eq!(h[ERROR_HEADER], "route_not_found");
        assert!(h.contains_key("x-correlation-id"));
        assert!(!h.contains_key("strict-transport-security"));
        assert!(!h.contains_key("x-frame-options"));
        assert!(!h.contains_key("content-security-policy"));
    }
}
