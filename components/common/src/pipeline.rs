//! One request from arrival to log line, the same in every component:
//!
//! 1. correlation id (echoed when sane), client address (`spin-client-addr`);
//! 2. `OPTIONS` on a known route → 204 with `Allow` (+ CORS preflight
//!    headers for allowed origins);
//! 3. `/api/*` rate limit per client address;
//! 4. route lookup → 404 / 405 with `Allow`;
//! 5. body read with the JSON body limit (413, `Content-Length` first),
//!    unless the route streams its body ([`BodyMode::Streamed`], see
//!    [`serve_with`]): then the handler reads it with
//!    [`ApiRequest::body_stream`] under a limit of its own;
//! 6. the component's handler;
//! 7. error shape, security headers, CORS, `RateLimit-*`, `Cache-Control`;
//! 8. one structured log line and the request metrics (not for a
//!    [`ApiResponse::liveness`] answer, which touches no store: neither
//!    here nor in step 9);
//! 9. when this component's sweep lease is due, one bounded sweep of
//!    expired state ([`crate::expiry::maybe_sweep`]; one key-value read
//!    otherwise).
//!
//! When the key-value store is down the `/api/*` rate limit cannot count,
//! and such requests are refused with 503 and `Retry-After` (fail closed:
//! an uncounted API would let a client guess passwords exactly while the
//! limiter is blind). Routes outside `/api/` (health, metrics) are not rate
//! limited. Recording metrics is best-effort and bounded by the host, so a
//! store outage never fails or holds a request because of it.

use crate::config::CommonSettings;
use crate::correlation;
use crate::error::ApiError;
use crate::headers::{JSON_CONTENT_TYPE, SECURITY_HEADERS};
use crate::logging::{self, RequestLog};
use crate::principal::Principal;
use crate::rate_limit::{self, Decision, Limit};
use crate::router::{allow_header, Method, Params, Resolution, Router};
use crate::tokens::{self, PublicKeySet, Rejection};
use futures::{Stream, StreamExt as _};
use serde::de::DeserializeOwned;
use serde::Serialize;
use spin_sdk::http::{IncomingRequest, Response};
use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// Route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// A routed request with its body read, as handlers see it.
pub struct ApiRequest {
    /// The matched route template (`/api/users/:id`).
    pub route: &'static str,
    params: Params,
    head: RequestHead,
    /// The body, read with the JSON body limit; empty on routes whose body
    /// is [`BodyMode::Streamed`].
    pub body: Vec<u8>,
    pub settings: CommonSettings,
    /// The unread request of a [`BodyMode::Streamed`] route.
    unread: RefCell<Option<IncomingRequest>>,
    user_id: RefCell<Option<String>>,
    rate_limit: Cell<Option<Decision>>,
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

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(&self.head.query, name)
    }

    /// 400 naming any query parameter not in `known` (a misspelt filter
    /// must not silently select everything).
    pub fn reject_unknown_query_params(&self, known: &[&str]) -> Result<(), ApiError> {
        let details: Vec<crate::error::Detail> = query_names(&self.head.query)
            .into_iter()
            .filter(|name| !known.contains(&name.as_str()))
            .map(|name| {
                crate::error::Detail::field(
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

    /// The body as JSON of type `T` (see [`crate::json`]).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        crate::json::parse_body(self.header("content-type"), &self.body)
    }

    /// The body of a [`BodyMode::Streamed`] route as a stream of chunks,
    /// refused beyond `limit` bytes: by `Content-Length` here, before
    /// anything is read (413), and while streaming (the stream then yields
    /// [`BodyError::TooLarge`]). The body can be taken once; on a buffered
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
        crate::headers::cookie_value(self.header("cookie")?, name)
    }

    /// The credential of `Authorization: Bearer <token>`.
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.header("authorization")?.trim();
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }

    /// The caller, from a bearer access token verified with the
    /// `jwt_public_keys` variable; 401 for any bad token, 503 when no keys
    /// are configured.
    pub fn authenticate(&self) -> Result<Principal, ApiError> {
        let keys = self
            .settings
            .public_keys
            .as_ref()
            .map_err(|why| ApiError::service_unavailable(why.clone()))?;
        self.authenticate_with(keys)
    }

    /// As [`ApiRequest::authenticate`], with the given keys.
    pub fn authenticate_with(&self, keys: &PublicKeySet) -> Result<Principal, ApiError> {
        let token = self.bearer_token().ok_or_else(|| {
            ApiError::unauthenticated(
                "this route needs an `Authorization: Bearer <access token>` header",
            )
        })?;
        let verified = tokens::verify_token(keys, &self.settings.token_policy, token)
            .map_err(|rejection| ApiError::unauthenticated(rejection.message()))?;
        if tokens::is_refused(&verified)? {
            return Err(ApiError::unauthenticated(Rejection::Revoked.message()));
        }
        let principal = verified.principal;
        self.set_user(&principal.user_id);
        Ok(principal)
    }

    /// Names the user this request acts for, in its log line.
    pub fn set_user(&self, user_id: &str) {
        *self.user_id.borrow_mut() = Some(user_id.to_string());
    }

    /// Counts this request against a further per-client limit; 429 when
    /// exceeded. The `RateLimit-*` headers show the tightest limit.
    pub fn limit(&self, scope: &str, limit: Limit, what: &str) -> Result<(), ApiError> {
        let decision = rate_limit::hit(scope, self.client(), limit)?;
        let shown = match self.rate_limit.get() {
            Some(previous) => rate_limit::tighter(previous, decision),
            None => decision,
        };
        self.rate_limit.set(Some(shown));
        if decision.allowed {
            Ok(())
        } else {
            Err(decision.refusal(what))
        }
    }
}

/// A successful answer from a handler.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    liveness: bool,
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

/// How the pipeline treats a route's request body before the handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// Read whole into [`ApiRequest::body`] with the JSON body limit
    /// (`json_body_limit_bytes`). What [`serve`] does for every route.
    Buffered,
    /// Left unread for the handler, which streams it with
    /// [`ApiRequest::body_stream`] under a limit of its own (uploads).
    Streamed,
}

/// Why a streamed body could not be read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// More than `limit` bytes arrived (or were announced).
    TooLarge { limit: u64 },
    /// The body ended before the `Content-Length` it announced (the client
    /// went away mid-request).
    Incomplete { expected: u64, received: u64 },
    /// The host reported a failure while reading.
    Read(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { limit } => {
                write!(f, "the request body exceeds the limit of {limit} bytes")
            }
            BodyError::Incomplete { expected, received } => write!(
                f,
                "the request body ended after {received} of the {expected} bytes announced by Content-Length"
            ),
            BodyError::Read(why) => write!(f, "the request body could not be read: {why}"),
        }
    }
}

impl std::error::Error for BodyError {}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> ApiError {
        match e {
            BodyError::TooLarge { limit } => ApiError::payload_too_large(limit),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

/// A request body as a stream of chunks that counts what it yields and
/// stops with [`BodyError::TooLarge`] past its limit, or with
/// [`BodyError::Incomplete`] when it ends short of `Content-Length`.
/// Nothing is buffered beyond the chunk the host hands over.
pub struct BodyStream {
    inner: Pin<Box<dyn Stream<Item = Result<Vec<u8>, BodyError>> + Send>>,
    limit: u64,
    declared: Option<u64>,
    received: u64,
    done: bool,
}

impl BodyStream {
    fn new(
        incoming: IncomingRequest,
        content_length: Option<&str>,
        limit: u64,
    ) -> Result<BodyStream, ApiError> {
        let declared = check_content_length(content_length, limit)?;
        let inner = incoming
            .into_body_stream()
            .map(|chunk| chunk.map_err(|e| BodyError::Read(format!("{e:?}"))));
        Ok(BodyStream::from_chunks(inner, declared, limit))
    }

    /// Limits any stream of chunks (`declared`: the announced length).
    pub fn from_chunks(
        chunks: impl Stream<Item = Result<Vec<u8>, BodyError>> + Send + 'static,
        declared: Option<u64>,
        limit: u64,
    ) -> BodyStream {
        BodyStream {
            inner: Box::pin(chunks),
            limit,
            declared,
            received: 0,
            done: false,
        }
    }
}

impl Stream for BodyStream {
    type Item = Result<Vec<u8>, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let item = match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        let outcome = match item {
            Some(Ok(chunk)) => {
                self.received += chunk.len() as u64;
                if self.received > self.limit {
                    Some(Err(BodyError::TooLarge { limit: self.limit }))
                } else {
                    return Poll::Ready(Some(Ok(chunk)));
                }
            }
            Some(Err(e)) => Some(Err(e)),
            None => match self.declared {
                Some(expected) if self.received < expected => Some(Err(BodyError::Incomplete {
                    expected,
                    received: self.received,
                })),
                _ => None,
            },
        };
        self.done = true;
        Poll::Ready(outcome)
    }
}

/// The announced body length: 413 above `limit`, 400 when not a number.
fn check_content_length(content_length: Option<&str>, limit: u64) -> Result<Option<u64>, ApiError> {
    let Some(declared) = content_length else {
        return Ok(None);
    };
    match declared.trim().parse::<u64>() {
        Ok(n) if n > limit => Err(ApiError::payload_too_large(limit)),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(ApiError::bad_request("Content-Length is not a number")),
    }
}

/// What arrived, before routing.
#[derive(Clone)]
struct RequestHead {
    method_name: String,
    method: Method,
    path: String,
    query: String,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    correlation_id: String,
    client: String,
}

impl RequestHead {
    fn from_incoming(incoming: &IncomingRequest) -> RequestHead {
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

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the pipeline learnt while serving, for headers, log and metrics.
struct Facts {
    route: &'static str,
    user_id: Option<String>,
    rate_limit: Option<Decision>,
    cors: Vec<(&'static str, String)>,
}

/// Serves one request of `component` through `router` and `handle`, every
/// body read with the JSON body limit.
pub async fn serve<E, F>(
    component: &'static str,
    router: &Router<E>,
    incoming: IncomingRequest,
    handle: F,
) -> Response
where
    E: Copy,
    F: AsyncFn(E, &ApiRequest) -> Result<ApiResponse, ApiError>,
{
    serve_with(component, router, incoming, |_| BodyMode::Buffered, handle).await
}

/// As [`serve`], with `body_mode` choosing per endpoint whether the
/// pipeline reads the body ([`BodyMode::Buffered`]) or leaves it to the
/// handler ([`BodyMode::Streamed`]).
pub async fn serve_with<E, B, F>(
    component: &'static str,
    router: &Router<E>,
    incoming: IncomingRequest,
    body_mode: B,
    handle: F,
) -> Response
where
    E: Copy,
    B: Fn(E) -> BodyMode,
    F: AsyncFn(E, &ApiRequest) -> Result<ApiResponse, ApiError>,
{
    let started = Instant::now();
    let head = RequestHead::from_incoming(&incoming);
    let mut facts = Facts {
        route: UNMATCHED_ROUTE,
        user_id: None,
        rate_limit: None,
        cors: Vec::new(),
    };
    let result = match CommonSettings::load() {
        Ok(settings) => {
            process(
                router, &head, incoming, settings, body_mode, handle, &mut facts,
            )
            .await
        }
        Err(e) => Err(ApiError::internal(e.context("load settings"))),
    };
    let liveness = is_liveness(&result);
    let response = finish(component, &head, facts, result, started);
    // After the metrics, so the sweep is not counted as the request's time.
    if !liveness {
        crate::expiry::maybe_sweep(component, &[]);
    }
    response
}

async fn process<E, B, F>(
    router: &Router<E>,
    head: &RequestHead,
    incoming: IncomingRequest,
    settings: CommonSettings,
    body_mode: B,
    handle: F,
    facts: &mut Facts,
) -> Result<ApiResponse, ApiError>
where
    E: Copy,
    B: Fn(E) -> BodyMode,
    F: AsyncFn(E, &ApiRequest) -> Result<ApiResponse, ApiError>,
{
    let origin = head.header("origin");
    facts.cors = settings.cors.response_headers(origin);
    let resolution = router.resolve(head.method, &head.path);
    if head.method == Method::Options {
        if let Resolution::MethodNotAllowed { template, allow } = &resolution {
            // Preflights are answered without counting against rate limits.
            facts.route = template;
            facts.cors = settings.cors.preflight_headers(origin, allow);
            return Ok(ApiResponse::no_content().with_header("allow", allow_header(allow)));
        }
    }
    if head.path.starts_with("/api/") {
        let decision = rate_limit::hit("api", &head.client, settings.api_limit)?;
        facts.rate_limit = Some(decision);
        if !decision.allowed {
            return Err(decision.refusal("requests"));
        }
    }
    let (endpoint, template, params) = match resolution {
        Resolution::Matched {
            endpoint,
            template,
            params,
        } => (endpoint, template, params),
        Resolution::MethodNotAllowed { template, allow } => {
            facts.route = template;
            return Err(ApiError::method_not_allowed(&allow_header(&allow)));
        }
        Resolution::NotFound => {
            return Err(ApiError::new(
                404,
                "route_not_found",
                format!(
                    "no route matches {} {}",
                    head.method,
                    head.path.chars().take(200).collect::<String>()
                ),
            ))
        }
    };
    facts.route = template;
    let (body, unread) = match body_mode(endpoint) {
        BodyMode::Buffered => {
            let limit = settings.json_body_limit;
            let body = read_body(incoming, head.header("content-length"), limit).await?;
            (body, None)
        }
        BodyMode::Streamed => (Vec::new(), Some(incoming)),
    };
    let request = ApiRequest {
        route: template,
        params,
        head: head.clone(),
        body,
        settings,
        unread: RefCell::new(unread),
        user_id: RefCell::new(None),
        rate_limit: Cell::new(facts.rate_limit),
    };
    let result = handle(endpoint, &request).await;
    facts.user_id = request.user_id.take();
    facts.rate_limit = request.rate_limit.get();
    result
}

fn is_liveness(result: &Result<ApiResponse, ApiError>) -> bool {
    matches!(result, Ok(response) if response.liveness)
}

/// Reads the body, refusing more than `limit` bytes: by `Content-Length`
/// before reading anything, and while streaming for bodies without one.
async fn read_body(
    incoming: IncomingRequest,
    content_length: Option<&str>,
    limit: u64,
) -> Result<Vec<u8>, ApiError> {
    collect_body(BodyStream::new(incoming, content_length, limit)?).await
}

async fn collect_body(mut stream: BodyStream) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk?);
    }
    Ok(body)
}

fn finish(
    component: &'static str,
    head: &RequestHead,
    facts: Facts,
    result: Result<ApiResponse, ApiError>,
    started: Instant,
) -> Response {
    let mut error_code = None;
    let mut error_cause = None;
    let record_metrics = !is_liveness(&result);
    let (status, mut headers, body) = match result {
        Ok(response) => (response.status, response.headers, response.body),
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
            error_code = Some(error.code);
            error_cause = error.cause.as_ref().map(|c| format!("{c:#}"));
            let body = error.body(&head.correlation_id).to_string().into_bytes();
            (error.status, headers, body)
        }
    };
    let has = |headers: &[(String, String)], name: &str| headers.iter().any(|(n, _)| n == name);
    if !body.is_empty() && !has(&headers, "content-type") {
        headers.push(("content-type".into(), JSON_CONTENT_TYPE.into()));
    }
    if !has(&headers, "cache-control") {
        headers.push(("cache-control".into(), "no-store".into()));
    }
    headers.push((correlation::HEADER.into(), head.correlation_id.clone()));
    for (name, value) in SECURITY_HEADERS {
        headers.push((name.into(), value.into()));
    }
    for (name, value) in facts.cors {
        headers.push((name.into(), value));
    }
    if let Some(decision) = facts.rate_limit {
        for (name, value) in decision.headers() {
            headers.push((name.into(), value));
        }
    }
    let duration = started.elapsed().as_secs_f64();
    logging::emit(&RequestLog {
        ts: crate::time::rfc3339_millis(crate::time::now_millis()),
        level: if status >= 500 { "error" } else { "info" },
        msg: "request",
        component,
        method: &head.method_name,
        route: facts.route,
        status,
        duration_ms: (duration * 1e6).round() / 1e3,
        correlation_id: &head.correlation_id,
        user_id: facts.user_id.as_deref(),
        client: &head.client,
        error_code,
        error: error_cause,
    });
    if record_metrics {
        crate::metrics::record_request(
            component,
            head.method.as_str(),
            facts.route,
            status,
            duration,
        );
    }
    let mut response = Response::builder();
    response.status(status);
    for (name, value) in headers {
        response.header(name, value);
    }
    response.body(body).build()
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

/// The first value of `name` in a query string, `+` and `%XX` decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
        .next()
}

/// Every parameter name in a query string, decoded.
pub fn query_names(query: &str) -> Vec<String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| percent_decode(pair.split_once('=').map_or(pair, |(k, _)| k)))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(h, l)| (h << 4) | l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

    fn chunks(
        parts: &[&'static [u8]],
        failure: Option<BodyError>,
    ) -> impl Stream<Item = Result<Vec<u8>, BodyError>> + Send + 'static {
        let mut items: Vec<Result<Vec<u8>, BodyError>> =
            parts.iter().map(|p| Ok(p.to_vec())).collect();
        items.extend(failure.map(Err));
        futures::stream::iter(items)
    }

    fn collect(stream: BodyStream) -> Result<Vec<u8>, ApiError> {
        futures::executor::block_on(collect_body(stream))
    }

    #[test]
    fn bodies_are_limited_while_streaming() {
        let ok = BodyStream::from_chunks(chunks(&[b"ab", b"cd"], None), None, 4);
        assert_eq!(collect(ok).unwrap(), b"abcd");
        let big = BodyStream::from_chunks(chunks(&[b"ab", b"cde", b"never"], None), None, 4);
        assert_eq!(collect(big).unwrap_err().status, 413);
        // The stream ends after the refusal.
        let mut big = BodyStream::from_chunks(chunks(&[b"abcde", b"f"], None), None, 4);
        futures::executor::block_on(async {
            assert_eq!(
                big.next().await,
                Some(Err(BodyError::TooLarge { limit: 4 }))
            );
            assert_eq!(big.next().await, None);
        });
    }

    #[test]
    fn short_and_failed_bodies_are_errors() {
        let short = BodyStream::from_chunks(chunks(&[b"ab"], None), Some(3), 10);
        let e = collect(short).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("2 of the 3 bytes"), "{}", e.message);
        let failed = BodyStream::from_chunks(
            chunks(&[b"ab"], Some(BodyError::Read("reset".into()))),
            None,
            10,
        );
        assert_eq!(collect(failed).unwrap_err().status, 400);
    }

    #[test]
    fn content_length_is_checked_before_reading() {
        assert_eq!(check_content_length(None, 5).unwrap(), None);
        assert_eq!(check_content_length(Some(" 5 "), 5).unwrap(), Some(5));
        assert_eq!(check_content_length(Some("6"), 5).unwrap_err().status, 413);
        assert_eq!(check_content_length(Some("x"), 5).unwrap_err().status, 400);
    }

    #[test]
    fn query_parameters_are_decoded() {
        let q = "emailPrefix=ada%40ex&role=admin&x=a+b&bad=%zz&end=%4";
        assert_eq!(query_param(q, "emailPrefix").as_deref(), Some("ada@ex"));
        assert_eq!(query_param(q, "role").as_deref(), Some("admin"));
        assert_eq!(query_param(q, "x").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "bad").as_deref(), Some("%zz"));
        assert_eq!(query_param(q, "end").as_deref(), Some("%4"));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param("", "x"), None);
        assert_eq!(query_names("a=1&b&&c%41=2"), vec!["a", "b", "cA"]);
    }
}
