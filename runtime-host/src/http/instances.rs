//! How a component's instances are shared between requests, and the
//! `ProxyHandler` plumbing that applies it: each worker is one store and
//! instance, retired when its [`InstancePolicy`] says so.
//!
//! - WASIp2 (`wasi:http/incoming-handler@0.2.x`): a fresh instance per
//!   request by default, as Spin does; `--reuse-p2-instances` lets one
//!   instance serve requests one after another.
//! - WASIp3 (`wasi:http/handler@0.3.0`): instances are reused, up to 16
//!   requests at once and 128 in all (Spin's defaults); `--fresh-instances`
//!   forces one instance per request for both kinds.
//!
//! Components must not depend on either behaviour.

use crate::state::{AppContext, ComponentContext, HostState, new_store};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::component::GuestTaskId;
use wasmtime::{Engine, Store, StoreContextMut};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};

/// Whether a component is a WASIp2 or WASIp3 HTTP component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpKind {
    P2,
    P3,
}

/// How instances are shared between requests.
#[derive(Debug, Clone, Copy)]
pub struct InstancePolicy {
    /// Requests one instance may serve in its lifetime.
    pub max_requests: usize,
    /// Requests one instance may serve at the same time.
    pub max_concurrent: usize,
    /// How long an idle reusable instance is kept.
    pub idle_timeout: Duration,
}

impl InstancePolicy {
    pub fn fresh() -> Self {
        Self {
            max_requests: 1,
            max_concurrent: 1,
            idle_timeout: Duration::ZERO,
        }
    }
}

impl InstancePolicy {
    /// The policy for a component of `kind` under the host's flags.
    pub fn choose(kind: HttpKind, fresh_instances: bool, reuse_p2_instances: bool) -> Self {
        match (kind, fresh_instances, reuse_p2_instances) {
            (_, true, _) => InstancePolicy::fresh(),
            (HttpKind::P2, false, false) => InstancePolicy::fresh(),
            (HttpKind::P2, false, true) => InstancePolicy {
                max_requests: usize::MAX,
                max_concurrent: 1,
                idle_timeout: Duration::from_secs(10),
            },
            (HttpKind::P3, false, _) => InstancePolicy {
                max_requests: 128,
                max_concurrent: 16,
                idle_timeout: Duration::from_secs(1),
            },
        }
    }
}

// ---- ProxyHandler plumbing ----------------------------------------------------

pub struct ComponentHandlerState {
    engine: Engine,
    app: Arc<AppContext>,
    component: Arc<ComponentContext>,
    pre: ProxyPre<HostState>,
    policy: InstancePolicy,
}

impl ComponentHandlerState {
    pub fn new(
        engine: &Engine,
        app: &Arc<AppContext>,
        component: Arc<ComponentContext>,
        pre: ProxyPre<HostState>,
        policy: InstancePolicy,
    ) -> Self {
        ComponentHandlerState {
            engine: engine.clone(),
            app: app.clone(),
            component,
            pre,
            policy,
        }
    }
}

impl HandlerState for ComponentHandlerState {
    type StoreData = HostState;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<HostState, Expiration, Worker>> {
        let mut store = new_store(&self.engine, &self.app, &self.component);
        let proxy = self.pre.instantiate_async(&mut store).await?;
        let timeout = self.app.limits.request_timeout;
        Ok(Instance {
            store,
            proxy,
            view: WasiHttpView::http,
            expiration: Expiration {
                idle_timeout: self.policy.idle_timeout,
                request_timeout: timeout,
                sleep: Box::pin(tokio::time::sleep(
                    Duration::MAX.min(Duration::from_secs(86400 * 365)),
                )),
            },
            state: Worker {
                policy: self.policy,
                request_timeout: timeout,
                component: self.component.id.clone(),
            },
        })
    }
}

pub struct Worker {
    policy: InstancePolicy,
    request_timeout: Duration,
    component: String,
}

impl WorkerState for Worker {
    type StoreData = HostState;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.policy.max_requests {
            ShouldAccept::Never
        } else if concurrent >= self.policy.max_concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, HostState>,
        _data: (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + 'static + Send + Sync>> {
        store.data_mut().start_request();
        Box::pin(tokio::time::sleep(self.request_timeout))
    }

    fn drop(&self, store: Store<HostState>, result: wasmtime::Result<()>) {
        if let Err(e) = result {
            tracing::warn!(component = %self.component, "instance discarded after a failure: {e:?}");
        }
        drop(store);
    }
}

/// Retires a worker: idle too long, or busy past the request deadline (the
/// second line of defence behind the epoch deadline).
pub struct Expiration {
    idle_timeout: Duration,
    request_timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Expiration {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let timeout = match status {
            WorkerStatus::Idle => self.idle_timeout,
            WorkerStatus::Requests | WorkerStatus::PostReturn => self.request_timeout,
        };
        let Some(deadline) = start.checked_add(timeout) else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p2_is_fresh_unless_asked_and_fresh_wins() {
        let p2 = InstancePolicy::choose(HttpKind::P2, false, false);
        assert_eq!((p2.max_requests, p2.max_concurrent), (1, 1));
        let reused = InstancePolicy::choose(HttpKind::P2, false, true);
        assert_eq!(
            (reused.max_requests, reused.max_concurrent),
            (usize::MAX, 1)
        );
        let p3 = InstancePolicy::choose(HttpKind::P3, false, false);
        assert_eq!((p3.max_requests, p3.max_concurrent), (128, 16));
        for kind in [HttpKind::P2, HttpKind::P3] {
            let fresh = InstancePolicy::choose(kind, true, true);
            assert_eq!((fresh.max_requests, fresh.max_concurrent), (1, 1));
        }
    }
}
