//! Outbound HTTP from guests: `allowed_outbound_hosts` and service chaining.
//!
//! Semantics follow Spin's `outbound-networking-config` and
//! `trigger-http/src/outbound_http.rs`:
//! - entries of `allowed_outbound_hosts` are matched by
//!   [`super::allowed_hosts`];
//! - a request to a host not allowed fails with `HttpRequestDenied`, the
//!   error Spin gives (p2: from `future-incoming-response.get`, p3: from
//!   `send`);
//! - `http://<component>.spin.internal/...` (allowed by that host or by
//!   `http://*.spin.internal`) is dispatched in-process to that component,
//!   bypassing the router, so private routes are reachable this way and only
//!   this way.

pub use super::allowed_hosts::{OutboundRules, address_parts, chaining_target};
use crate::state::{AppContext, ComponentContext};
use http::uri::Scheme;
use std::future::Future;
use std::sync::Arc;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// The `wasi:http` hooks of one instance: checks every outbound request and
/// dispatches service chaining in-process.
pub struct OutboundHooks {
    app: Arc<AppContext>,
    component: Arc<ComponentContext>,
}

impl OutboundHooks {
    pub fn new(app: Arc<AppContext>, component: Arc<ComponentContext>) -> Self {
        Self { app, component }
    }
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for OutboundHooks {
    fn default_scheme(&mut self) -> Option<Scheme> {
        Some(Scheme::HTTP)
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_io: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let sent = self.route(request, options);
        let faults = self.app.faults.clone();
        if faults.is_empty() {
            return sent;
        }
        // `--faults outbound-http=...`: delayed, or refused before anything is sent.
        Box::new(async move {
            faults
                .on_call(crate::faults::Capability::OutboundHttp)
                .await
                .map_err(|_| HttpError::ConnectionRefused)?;
            Box::into_pin(sent).await
        })
    }
}

impl OutboundHooks {
    /// Sends `request` where it is going: another component (service
    /// chaining), this app's own listener, or the network, each only if
    /// `allowed_outbound_hosts` says so.
    fn route(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let uri = request.uri().clone();
        let scheme = uri.scheme_str().unwrap_or("http").to_string();
        let host = uri.host().unwrap_or("").to_string();
        let port = uri.port_u16();
        let rules = &self.component.outbound;
        let denied = |what: &str| {
            tracing::info!(component = %self.component.id, target = what, "outbound request denied: not in allowed_outbound_hosts");
        };

        if let Some(target) = chaining_target(&host) {
            if !rules.allows(&scheme, &host, port) {
                denied(&host);
                return Box::new(async { Err(HttpError::HttpRequestDenied) });
            }
            let trigger = self.app.chaining.get().cloned();
            let target = target.to_string();
            return Box::new(async move {
                let Some(trigger) = trigger else {
                    return Err(HttpError::InternalError(Some(
                        "HTTP trigger not running".into(),
                    )));
                };
                let response = trigger.handle_chained(&target, request).await?;
                let done: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                    Box::new(async { Ok(()) });
                Ok((response, done))
            });
        }

        // A relative URL (or `self`) means this app's own listener; like Spin,
        // it goes through the router, so private routes stay unreachable.
        let request = if host.is_empty() || host == "self" || host == "self.alt" {
            let Some(addr) = self
                .app
                .listen_addr
                .get()
                .copied()
                .filter(|_| rules.allows_self())
            else {
                denied("self");
                return Box::new(async { Err(HttpError::HttpRequestDenied) });
            };
            let mut request = request;
            let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            match format!("http://{addr}{pq}").parse() {
                Ok(u) => *request.uri_mut() = u,
                Err(_) => return Box::new(async { Err(HttpError::HttpRequestUriInvalid) }),
            }
            request.headers_mut().remove(http::header::HOST);
            return Box::new(forward(request, options));
        } else {
            request
        };

        if !rules.allows(&scheme, &host, port) {
            denied(&format!("{scheme}://{host}"));
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        Box::new(forward(request, options))
    }
}

/// Sends a request over the network with wasmtime-wasi-http's client.
async fn forward(request: http::Request<WasiBody>, options: Option<RequestOptions>) -> SendResult {
    use http_body_util::BodyExt;
    let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
    let io: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> = Box::new(io);
    Ok((response.map(BodyExt::boxed_unsync), io))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chaining_targets() {
        assert_eq!(chaining_target("users.spin.internal"), Some("users"));
        assert_eq!(chaining_target("a.b.spin.internal"), None);
        assert_eq!(chaining_target("example.com"), None);
    }
}
