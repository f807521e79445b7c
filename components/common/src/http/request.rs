//! The request as handlers see it ([`ApiRequest`]): route parameters,
//! headers, query, the body (read, or left to stream), the caller's client
//! address, and what the handler tells the pipeline for the log line.
//! Authentication is in [`crate::http::auth`], further rate limits in
//! [`crate::http::rate_limit`].

use crate::config::CommonSettings;
use crate::http::body::BodyStream;
use crate::http::correlation;
use crate::http::error::ApiError;
use crate::http::query;
use crate::http::rate_limit::Decision;
use crate::http::router::{Method, Params};
use serde::de::DeserializeOwned;
use spin_sdk::http::IncomingRequest;
use std::cell::{Cell, RefCell};

/// A routed request with its body read, as handlers see it.
pub struct ApiRequest {
    /// The matched route template (`/api/users/:id`).
    pub route: &'static str,
    pub(crate) params: Params,
    pub(crate) head: RequestHead,
    /// The body, read with the JSON body limit; empty on routes whose body
    /// is [`crate::http::body::BodyMode::Streamed`].
    pub body: Vec<u8>,
    pub settings: CommonSettings,
    /// The unread request of a [`crate::http::body::BodyMode::Streamed`] route.
    pub(crate) unread: RefCell<Option<IncomingRequest>>,
    pub(crate) user_id: RefCell<Option<String>>,
    pub(crate) rate_limit: Cell<Option<Decision>>,
}

impl ApiRequest {
    pub fn method(&self) -> Method {
        self.head.method
    }

    /// The path, without the query string.
    pub fn path(&self) -> &str {
        &self.head.path
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    pub fn correlation_id(&self) -> &str {
        &self.head.correlation_id
    }

    /// The client's IP address (from `spin-client-addr`, port dropped).
    pub fn client(&self) -> &str {
        &self.head.client
    }

    /// A `:name` segment of the route template.
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The `:id` segment, which must be a record id (a lower-case UUID);
    /// otherwise 400 `invalid_id` saying it must be `what` id (`"an order"`).
    pub fn id_param(&self, what: &str) -> Result<&str, ApiError> {
        let id = self.param("id");
        if crate::util::ids::is_uuid(id) {
            Ok(id)
        } else {
            Err(ApiError::validation(vec![
                crate::http::error::Detail::field(
                    "id",
                    "invalid_id",
                    format!("must be {what} id (a lower-case UUID)"),
                ),
            ]))
        }
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query::query_param(&self.head.query, name)
    }

    /// 400 naming any query parameter not in `known` (a misspelt filter
    /// must not silently select everything).
    pub fn reject_unknown_query_params(&self, known: &[&str]) -> Result<(), ApiError> {
        let details: Vec<crate::http::error::Detail> = query::query_names(&self.head.query)
            .into_iter()
            .filter(|name| !known.contains(&name.as_str()))
            .map(|name| {
                crate::http::error::Detail::field(
                    &name,
                    "unknown_parameter",
                    format!("unknown query parameter; known: {}", known.join(", ")),
                )
            })
            .collect();
        if details.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(details))
        }
    }

    /// The body as JSON of type `T` (see [`crate::http::json`]).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        crate::http::json::parse_body(self.header("content-type"), &self.body)
    }

    /// The body of a [`crate::http::body::BodyMode::Streamed`] route as a stream of chunks,
    /// refused beyond `limit` bytes: by `Content-Length` here, before
    /// anything is read (413), and while streaming (the stream then yields
    /// [`crate::http::body::BodyError::TooLarge`]). The body can be taken once; on a buffered
    /// route (already read into [`ApiRequest::body`]) this is an internal
    /// error.
    pub fn body_stream(&self, limit: u64) -> Result<BodyStream, ApiError> {
        let incoming = self.unread.borrow_mut().take().ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!(
                "the body of `{}` was already read (is the route `BodyMode::Streamed`?)",
                self.route
            ))
        })?;
        BodyStream::new(incoming, self.header("content-length"), limit)
    }

    /// The value of a cookie sent with the request.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        crate::http::headers::cookie_value(self.header("cookie")?, name)
    }

    /// Names the user this request acts for, in its log line.
    pub fn set_user(&self, user_id: &str) {
        *self.user_id.borrow_mut() = Some(user_id.to_string());
    }
}

/// What arrived, before routing.
#[derive(Clone)]
pub(crate) struct RequestHead {
    pub(crate) method_name: String,
    pub(crate) method: Method,
    pub(crate) path: String,
    query: String,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    pub(crate) correlation_id: String,
    pub(crate) client: String,
}

impl RequestHead {
    pub(crate) fn from_incoming(incoming: &IncomingRequest) -> RequestHead {
        let method_name = incoming.method().to_string();
        let target = incoming.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target, String::new()),
        };
        let headers: Vec<(String, String)> = incoming
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| {
                (
                    name.to_ascii_lowercase(),
                    String::from_utf8_lossy(&value).into_owned(),
                )
            })
            .collect();
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let correlation_id = correlation::accept_or_generate(find(correlation::HEADER));
        let client = client_address(find("spin-client-addr"));
        RequestHead {
            method: Method::parse(&method_name),
            method_name,
            path,
            query,
            correlation_id,
            client,
            headers,
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The IP part of `spin-client-addr` (`127.0.0.1:5000`, `[::1]:5000`).
pub fn client_address(spin_client_addr: Option<&str>) -> String {
    let Some(raw) = spin_client_addr.map(str::trim).filter(|s| !s.is_empty()) else {
        return "unknown".into();
    };
    if let Ok(addr) = raw.parse::<std::net::SocketAddr>() {
        return addr.ip().to_string();
    }
    if let Ok(ip) = raw.parse::<std::net::IpAddr>() {
        return ip.to_string();
    }
    "unknown".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_drop_the_port() {
        assert_eq!(client_address(Some("127.0.0.1:5000")), "127.0.0.1");
        assert_eq!(client_address(Some("[::1]:5000")), "::1");
        assert_eq!(client_address(Some("10.0.0.7")), "10.0.0.7");
        assert_eq!(client_address(Some("garbage")), "unknown");
        assert_eq!(client_address(None), "unknown");
    }
}
