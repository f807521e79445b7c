//! The CORS policy: an allow-list of exact origins from the
//! `cors_allowed_origins` variable. Allowed origins get CORS headers (and a
//! preflight answer); every other origin gets none, so browsers block it.

use crate::http::router::{Method, allow_header};

/// Request headers a cross-origin caller may send.
pub const CORS_ALLOWED_HEADERS: &str = "authorization, content-type, if-match, x-correlation-id";

/// Response headers a cross-origin caller may read.
pub const CORS_EXPOSED_HEADERS: &str =
    "etag, x-correlation-id, ratelimit-limit, ratelimit-remaining, ratelimit-reset, retry-after";

/// How long a browser may cache a preflight answer, in seconds.
pub const CORS_MAX_AGE: &str = "600";

/// Origins allowed to call the API from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: Vec<String>,
}

impl CorsPolicy {
    /// A comma- or whitespace-separated list of exact origins
    /// (`https://app.example.com, http://localhost:5173`); trailing slashes
    /// are ignored. Empty: no cross-origin access at all.
    pub fn parse(list: &str) -> CorsPolicy {
        CorsPolicy {
            origins: list
                .split(|c: char| c == ',' || c.is_whitespace())
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect(),
        }
    }

    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        self.origins.contains(&origin)
    }

    /// Headers for an ordinary (non-preflight) response.
    pub fn response_headers(&self, origin: Option<&str>) -> Vec<(&'static str, String)> {
        match origin {
            Some(origin) if self.allows(origin) => vec![
                ("access-control-allow-origin", origin.trim().to_string()),
                ("access-control-allow-credentials", "true".to_string()),
                (
                    "access-control-expose-headers",
                    CORS_EXPOSED_HEADERS.to_string(),
                ),
                ("vary", "Origin".to_string()),
            ],
            _ => vec![("vary", "Origin".to_string())],
        }
    }

    /// Headers answering a preflight `OPTIONS` for a route serving `methods`.
    pub fn preflight_headers(
        &self,
        origin: Option<&str>,
        methods: &[Method],
    ) -> Vec<(&'static str, String)> {
        match origin {
            Some(origin) if self.allows(origin) => vec![
                ("access-control-allow-origin", origin.trim().to_string()),
                ("access-control-allow-credentials", "true".to_string()),
                ("access-control-allow-methods", allow_header(methods)),
                (
                    "access-control-allow-headers",
                    CORS_ALLOWED_HEADERS.to_string(),
                ),
                ("access-control-max-age", CORS_MAX_AGE.to_string()),
                ("vary", "Origin".to_string()),
            ],
            _ => vec![("vary", "Origin".to_string())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(headers: &[(&'static str, String)]) -> Vec<&'static str> {
        headers.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn parses_the_allow_list() {
        let p = CorsPolicy::parse(" https://a.example/, http://localhost:5173 https://B.example");
        assert!(p.allows("https://a.example"));
        assert!(p.allows("http://localhost:5173"));
        assert!(p.allows("https://b.example"));
        assert!(!p.allows("https://evil.example"));
        assert!(!CorsPolicy::parse("").allows("https://a.example"));
    }

    #[test]
    fn only_allowed_origins_get_cors_headers() {
        let p = CorsPolicy::parse("https://a.example");
        let ok = p.preflight_headers(Some("https://a.example"), &[Method::Get, Method::Options]);
        assert!(names(&ok).contains(&"access-control-allow-origin"));
        assert!(ok.contains(&("access-control-allow-methods", "GET, OPTIONS".to_string())));
        for other in [Some("https://evil.example"), None] {
            let h = p.preflight_headers(other, &[Method::Get]);
            assert!(!names(&h).iter().any(|n| n.starts_with("access-control-")));
            let h = p.response_headers(other);
            assert!(!names(&h).iter().any(|n| n.starts_with("access-control-")));
        }
    }
}
