//! The answer: [`ApiResponse`] as handlers build it, and its finishing into
//! the HTTP response every component sends: the error shape (with
//! `Retry-After`, `Allow`, `WWW-Authenticate`), the JSON content type,
//! `Cache-Control: no-store` unless set, the correlation id and the
//! security headers.

use crate::http::correlation;
use crate::http::error::ApiError;
use crate::http::headers::{JSON_CONTENT_TYPE, SECURITY_HEADERS};
use serde::Serialize;
use spin_sdk::http::Response;

/// A successful answer from a handler.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    pub(crate) liveness: bool,
}

impl ApiResponse {
    /// `value` as a JSON body.
    pub fn json(status: u16, value: &impl Serialize) -> Result<ApiResponse, ApiError> {
        let body = serde_json::to_vec(value)
            .map_err(|e| ApiError::internal(anyhow::anyhow!("serialise response: {e}")))?;
        Ok(ApiResponse {
            status,
            headers: Vec::new(),
            body,
            liveness: false,
        })
    }

    /// A non-JSON body with its content type (e.g. the Prometheus text format).
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> ApiResponse {
        ApiResponse {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body,
            liveness: false,
        }
    }

    pub fn no_content() -> ApiResponse {
        ApiResponse {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
            liveness: false,
        }
    }

    /// Marks a liveness answer: no request metrics and no sweep (both live
    /// in the key-value store), as liveness must answer without any
    /// dependency.
    pub fn liveness(mut self) -> ApiResponse {
        self.liveness = true;
        self
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> ApiResponse {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// A handler's outcome as status, headers and body, with what the log
/// line says of an error.
pub(crate) struct Finished {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub error_code: Option<&'static str>,
    pub error_cause: Option<String>,
}

impl Finished {
    /// The response or the error's shape, with the headers every answer
    /// carries.
    pub fn new(result: Result<ApiResponse, ApiError>, correlation_id: &str) -> Finished {
        let mut finished = match result {
            Ok(response) => Finished {
                status: response.status,
                headers: response.headers,
                body: response.body,
                error_code: None,
                error_cause: None,
            },
            Err(error) => {
                let mut headers = Vec::new();
                if let Some(secs) = error.retry_after {
                    headers.push(("retry-after".to_string(), secs.to_string()));
                }
                if let Some(allow) = &error.allow {
                    headers.push(("allow".to_string(), allow.clone()));
                }
                if error.status == 401 {
                    headers.push(("www-authenticate".to_string(), "Bearer".to_string()));
                }
                Finished {
                    status: error.status,
                    headers,
                    body: error.body(correlation_id).to_string().into_bytes(),
                    error_code: Some(error.code),
                    error_cause: error.cause.as_ref().map(|c| format!("{c:#}")),
                }
            }
        };
        let has = |headers: &[(String, String)], name: &str| headers.iter().any(|(n, _)| n == name);
        if !finished.body.is_empty() && !has(&finished.headers, "content-type") {
            finished
                .headers
                .push(("content-type".into(), JSON_CONTENT_TYPE.into()));
        }
        if !has(&finished.headers, "cache-control") {
            finished
                .headers
                .push(("cache-control".into(), "no-store".into()));
        }
        finished
            .headers
            .push((correlation::HEADER.into(), correlation_id.to_string()));
        for (name, value) in SECURITY_HEADERS {
            finished.headers.push((name.into(), value.into()));
        }
        finished
    }

    pub fn add_headers(&mut self, headers: impl IntoIterator<Item = (&'static str, String)>) {
        self.headers.extend(
            headers
                .into_iter()
                .map(|(name, value)| (name.to_string(), value)),
        );
    }

    pub fn into_response(self) -> Response {
        let mut response = Response::builder();
        response.status(self.status);
        for (name, value) in self.headers {
            response.header(name, value);
        }
        response.body(self.body).build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(finished: &'a Finished, name: &str) -> Option<&'a str> {
        finished
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn answers_carry_the_common_headers() {
        let ok = ApiResponse::json(200, &serde_json::json!({"a": 1})).unwrap();
        let finished = Finished::new(Ok(ok), "c-1");
        assert_eq!(finished.status, 200);
        assert_eq!(header(&finished, "content-type"), Some(JSON_CONTENT_TYPE));
        assert_eq!(header(&finished, "cache-control"), Some("no-store"));
        assert_eq!(header(&finished, correlation::HEADER), Some("c-1"));
        assert_eq!(header(&finished, "x-frame-options"), Some("DENY"));
        assert_eq!(finished.error_code, None);
        // A handler's own Cache-Control and type are kept; no body, no type.
        let own = ApiResponse::bytes(200, "text/plain", b"x".to_vec())
            .with_header("Cache-Control", "max-age=60");
        let finished = Finished::new(Ok(own), "c-2");
        assert_eq!(header(&finished, "content-type"), Some("text/plain"));
        assert_eq!(header(&finished, "cache-control"), Some("max-age=60"));
        let finished = Finished::new(Ok(ApiResponse::no_content()), "c-3");
        assert_eq!(header(&finished, "content-type"), None);
    }

    #[test]
    fn errors_get_their_shape_and_headers() {
        let finished = Finished::new(Err(ApiError::unauthenticated("no token")), "c-4");
        assert_eq!(finished.status, 401);
        assert_eq!(header(&finished, "www-authenticate"), Some("Bearer"));
        assert_eq!(header(&finished, "content-type"), Some(JSON_CONTENT_TYPE));
        assert!(finished.error_code.is_some());
        let body: serde_json::Value = serde_json::from_slice(&finished.body).unwrap();
        assert!(body.to_string().contains("c-4"), "{body}");
        let finished = Finished::new(Err(ApiError::method_not_allowed("GET")), "c-5");
        assert_eq!(header(&finished, "allow"), Some("GET"));
    }
}
