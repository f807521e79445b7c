//! The one error shape of the API and the status code of every kind of
//! failure:
//! `{"error": {"code", "message", "details": [...]}, "correlationId"}`.
//!
//! Handlers return `Result<ApiResponse, ApiError>`; any `anyhow::Error`
//! converts into a 500 whose cause is logged, never sent, except a
//! key-value store outage, which is a 503 with `Retry-After`.

use serde::Serialize;
use serde_json::json;

/// One precise problem with a request: a field that failed a rule, or the
/// position of a JSON syntax error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl Detail {
    pub fn field(field: &str, code: &str, message: impl Into<String>) -> Detail {
        Detail {
            field: Some(field.to_string()),
            code: code.to_string(),
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

/// A failed request: what the client is told, plus (for 500s) the cause
/// that only goes to the log.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Detail>,
    /// Seconds, for 429 and 503 (`Retry-After`).
    pub retry_after: Option<u64>,
    /// Methods the route supports, for 405 (`Allow`).
    pub allow: Option<String>,
    /// What went wrong inside; logged with the correlation id, never sent.
    pub cause: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
            allow: None,
            cause: None,
        }
    }

    pub fn with_details(mut self, details: Vec<Detail>) -> ApiError {
        self.details = details;
        self
    }

    /// 400: the request breaks one or more rules; `details` lists each.
    pub fn validation(details: Vec<Detail>) -> ApiError {
        let message = match details.len() {
            1 => format!("the request is invalid: {}", details[0].message),
            n => format!("the request is invalid ({n} problems, see details)"),
        };
        ApiError::new(400, "validation_failed", message).with_details(details)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "bad_request", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(401, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "not_found", message)
    }

    pub fn method_not_allowed(allow: &str) -> ApiError {
        let mut e = ApiError::new(
            405,
            "method_not_allowed",
            format!("this route supports only {allow}"),
        );
        e.allow = Some(allow.to_string());
        e
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(409, "conflict", message)
    }

    pub fn precondition_failed(message: impl Into<String>) -> ApiError {
        ApiError::new(412, "precondition_failed", message)
    }

    pub fn payload_too_large(limit: u64) -> ApiError {
        ApiError::new(
            413,
            "payload_too_large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> ApiError {
        ApiError::new(415, "unsupported_media_type", message)
    }

    pub fn too_many_requests(
        code: &'static str,
        message: impl Into<String>,
        retry_after: u64,
    ) -> ApiError {
        let mut e = ApiError::new(429, code, message);
        e.retry_after = Some(retry_after.max(1));
        e
    }

    pub fn service_unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "service_unavailable", message)
    }

    /// 503 for a dependency that is down (`dependency` names it, e.g.
    /// "the key-value store"), with `Retry-After`; the cause is logged.
    pub fn dependency_unavailable(dependency: &str, cause: anyhow::Error) -> ApiError {
        let mut e =
            ApiError::service_unavailable(format!("{dependency} is unavailable; retry shortly"));
        e.retry_after = Some(DEPENDENCY_RETRY_AFTER_SECS);
        e.cause = Some(cause);
        e
    }

    /// 500: the client learns only that it failed and the correlation id.
    /// A failure caused by the key-value store, the counter store or the
    /// database being down or locked is not a bug here: it becomes
    /// [`ApiError::dependency_unavailable`] (503).
    pub fn internal(cause: anyhow::Error) -> ApiError {
        if crate::storage::kv::is_unavailable(&cause) {
            return ApiError::dependency_unavailable("the key-value store", cause);
        }
        if crate::storage::counters::is_unavailable(&cause) {
            return ApiError::dependency_unavailable("the counter store (Redis)", cause);
        }
        if crate::storage::db::is_unavailable(&cause) {
            return ApiError::dependency_unavailable("the database", cause);
        }
        let mut e = ApiError::new(
            500,
            "internal_error",
            "an internal error occurred; quote the correlation id when reporting it",
        );
        e.cause = Some(cause);
        e
    }

    /// The JSON body sent to the client.
    pub fn body(&self, correlation_id: &str) -> serde_json::Value {
        json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "details": self.details,
            },
            "correlationId": correlation_id,
        })
    }
}

/// `Retry-After` of a 503 for a dependency that is down: long enough not
/// to hammer it, short enough for a restart (Redis is back in seconds).
pub const DEPENDENCY_RETRY_AFTER_SECS: u64 = 5;

impl From<anyhow::Error> for ApiError {
    fn from(cause: anyhow::Error) -> ApiError {
        ApiError::internal(cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_shared_shape() {
        let e = ApiError::validation(vec![Detail::field("email", "invalid", "not an email")]);
        let body = e.body("abc");
        assert_eq!(e.status, 400);
        assert_eq!(body["error"]["code"], "validation_failed");
        assert_eq!(body["error"]["details"][0]["field"], "email");
        assert_eq!(body["correlationId"], "abc");
        assert!(body["error"]["details"][0].get("line").is_none());
    }

    #[test]
    fn internal_errors_never_carry_their_cause_into_the_body() {
        let e = ApiError::from(anyhow::anyhow!("database password is hunter2"));
        assert_eq!(e.status, 500);
        assert!(!e.body("x").to_string().contains("hunter2"));
        assert!(e.cause.is_some());
    }

    #[test]
    fn a_store_outage_is_503_with_retry_after() {
        let down = anyhow::Error::new(spin_sdk::key_value::Error::Other(
            "unavailable: Redis did not answer".into(),
        ))
        .context("key-value get `auth:x`");
        let e = ApiError::from(down);
        assert_eq!((e.status, e.code), (503, "service_unavailable"));
        assert_eq!(e.retry_after, Some(DEPENDENCY_RETRY_AFTER_SECS));
        assert!(e.message.contains("key-value store"), "{}", e.message);
        assert!(!e.body("x").to_string().contains("auth:x"));
        let denied = anyhow::Error::new(spin_sdk::key_value::Error::AccessDenied);
        assert_eq!(ApiError::from(denied).status, 500);
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        assert_eq!(
            ApiError::too_many_requests("rate_limited", "slow down", 0).retry_after,
            Some(1)
        );
    }
}
