//! The HTTP trigger: route a request, add Spin's `spin-*` headers, and run
//! it on an instance of the routed component.
//!
//! Each component gets a `wasmtime_wasi_http::handler::ProxyHandler` (what
//! `wasmtime serve` uses); how its instances are shared between requests is
//! [`super::instances`].

use super::headers::{add_spin_headers, set_absolute_uri, strip_forbidden_headers};
use super::host_response::{host_error, host_error_with_id, new_correlation_id, text_response};
pub use super::instances::HttpKind;
use super::instances::{ComponentHandlerState, InstancePolicy};
use super::router::{RouteMatch, Router};
use crate::platform::bodies::BodyLimit;
use crate::state::{AppContext, ComponentContext, HostState};
use http::{HeaderValue, Request, Response, StatusCode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::InstancePre;
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::{ProxyHandler, ProxyPre};

#[derive(Debug, Clone, Copy)]
pub struct TriggerOptions {
    pub fresh_instances: bool,
    pub reuse_p2_instances: bool,
    /// Requests (instances) in flight across the whole host; beyond: 503.
    pub max_concurrent_requests: usize,
    /// The platform's bound on client request and response bodies.
    pub body_limit: BodyLimit,
}

struct ComponentHandler {
    kind: HttpKind,
    proxy: ProxyHandler<ComponentHandlerState>,
}

pub struct HttpTrigger {
    router: Router,
    handlers: HashMap<String, ComponentHandler>,
    in_flight: Arc<Semaphore>,
    next_request: AtomicU64,
    body_limit: BodyLimit,
}

/// A prepared component: what the trigger needs to create instances of it.
pub struct PreparedComponent {
    pub context: Arc<ComponentContext>,
    pub pre: InstancePre<HostState>,
}

impl HttpTrigger {
    pub fn new(
        engine: &Engine,
        app: &Arc<AppContext>,
        router: Router,
        components: Vec<PreparedComponent>,
        opts: TriggerOptions,
    ) -> anyhow::Result<Arc<HttpTrigger>> {
        let mut handlers = HashMap::new();
        for c in components {
            let id = c.context.id.clone();
            let (kind, pre) = match wasmtime_wasi_http::p3::bindings::ServicePre::new(c.pre.clone())
            {
                Ok(pre) => (HttpKind::P3, ProxyPre::P3(pre)),
                Err(_) => {
                    let pre = wasmtime_wasi_http::p2::bindings::ProxyPre::new(c.pre).map_err(
                            |e| {
                                anyhow::anyhow!(
                                    "component `{id}` exports neither wasi:http/incoming-handler@0.2.x nor wasi:http/handler@0.3.0, so it cannot serve HTTP: {e:#}"
                                )
                            },
                        )?;
                    (HttpKind::P2, ProxyPre::P2(pre))
                }
            };
            let policy =
                InstancePolicy::choose(kind, opts.fresh_instances, opts.reuse_p2_instances);
            let state = ComponentHandlerState::new(engine, app, c.context, pre, policy);
            handlers.insert(
                id,
                ComponentHandler {
                    kind,
                    proxy: ProxyHandler::new(state),
                },
            );
        }
        Ok(Arc::new(HttpTrigger {
            router,
            handlers,
            in_flight: Arc::new(Semaphore::new(opts.max_concurrent_requests)),
            next_request: AtomicU64::new(0),
            body_limit: opts.body_limit,
        }))
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    pub fn kind_of(&self, component: &str) -> Option<HttpKind> {
        self.handlers.get(component).map(|h| h.kind)
    }

    /// Serves one request from the listener.
    pub async fn handle(&self, req: Request<WasiBody>, client: SocketAddr) -> Response<WasiBody> {
        let started = Instant::now();
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (mut req, tripwire) = match self.body_limit.admit(req) {
            Ok(admitted) => admitted,
            Err(too_large) => return too_large,
        };
        strip_forbidden_headers(req.headers_mut());
        let path = req.uri().path().to_string();
        // Spin answers these itself, before routing.
        if let Some(what) = path.strip_prefix("/.well-known/spin/") {
            return match what {
                "health" => text_response(StatusCode::OK, "OK"),
                _ => host_error(
                    StatusCode::NOT_FOUND,
                    "route_not_found",
                    &format!("no route matches {path}"),
                ),
            };
        }
        let Some(route) = self.router.route(&path) else {
            return host_error(
                StatusCode::NOT_FOUND,
                "route_not_found",
                &format!("no route matches {path}"),
            );
        };
        let component = route.route.component.clone();
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let full_url = full_url(&host, req.uri());
        add_spin_headers(req.headers_mut(), &route, &full_url, &client.to_string());
        set_absolute_uri(&mut req, &host);
        let method = req.method().clone();
        let response = self.dispatch(&component, req).await;
        let response = self.body_limit.bound(response, &tripwire, &component);
        tracing::debug!(
            request = id,
            %method,
            path,
            component,
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
        response
    }

    /// Serves a `http://<component>.spin.internal/...` request from a guest.
    pub async fn handle_chained(
        &self,
        component: &str,
        mut req: Request<WasiBody>,
    ) -> wasmtime_wasi_http::Result<Response<WasiBody>> {
        if !self.handlers.contains_key(component) {
            return Err(wasmtime_wasi_http::Error::InternalError(Some(format!(
                "unknown routing destination '{component}': it has no HTTP trigger"
            ))));
        }
        req.headers_mut().remove(http::header::HOST);
        let path = req.uri().path().to_string();
        let full_url = full_url("localhost", req.uri());
        let route = RouteMatch::chained(component, &path);
        add_spin_headers(req.headers_mut(), &route, &full_url, "0.0.0.0:0");
        // The callee sees `spin-component-route: ""`, as under Spin.
        req.headers_mut()
            .insert("spin-component-route", HeaderValue::from_static(""));
        Ok(self.dispatch(component, req).await)
    }

    async fn dispatch(&self, component: &str, req: Request<WasiBody>) -> Response<WasiBody> {
        let Some(handler) = self.handlers.get(component) else {
            return host_error(
                StatusCode::NOT_FOUND,
                "route_not_found",
                &format!("component `{component}` has no HTTP trigger"),
            );
        };
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            let mut r = host_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the host is at its limit of concurrent requests; retry shortly",
            );
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        };
        match handler.proxy.handle((), req).await {
            Ok(response) => response,
            Err(e) => {
                let correlation = new_correlation_id();
                tracing::error!(component, correlation_id = %correlation, "component failed: {e:?}");
                host_error_with_id(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the component failed while handling this request",
                    &correlation,
                )
            }
        }
    }
}

/// `http://<host><path and query>`, the `spin-full-url` of a request.
fn full_url(host: &str, uri: &http::Uri) -> String {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("http://{host}{pq}")
}
