//! Per-instance store data, and the application context every store shares.

use crate::capabilities::key_value::KeyValueStores;
use crate::capabilities::sqlite::Databases;
use crate::http::outbound::{OutboundHooks, OutboundRules};
use crate::variables::Variables;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Limits applied to every instance.
#[derive(Debug, Clone)]
pub struct InstanceLimits {
    pub request_timeout: Duration,
    pub max_memory_bytes: usize,
}

/// What one component may reach, resolved from its manifest entry.
pub struct ComponentContext {
    pub id: String,
    pub key_value_stores: Vec<String>,
    pub sqlite_databases: Vec<String>,
    pub outbound: OutboundRules,
    pub environment: Vec<(String, String)>,
    /// Directories it sees, read-only (its manifest `files`).
    pub mounts: Vec<crate::files::Mount>,
}

/// The running application: stores, databases and variables, shared by every
/// instance of every component.
pub struct AppContext {
    pub variables: Variables,
    pub key_value: KeyValueStores,
    pub databases: Databases,
    pub redis: crate::capabilities::redis::RedisProvider,
    /// Outbound PostgreSQL connection pools, one per connection string.
    pub postgres: crate::capabilities::postgres::PgPools,
    pub limits: InstanceLimits,
    /// Faults to inject into capability calls (`--faults`); empty by default.
    pub faults: Arc<crate::faults::Faults>,
    /// Dispatches `*.spin.internal` requests; set once the HTTP trigger exists.
    pub chaining: std::sync::OnceLock<Arc<crate::http::trigger::HttpTrigger>>,
    /// Where the listener is bound, for requests a component makes to its own app.
    pub listen_addr: std::sync::OnceLock<std::net::SocketAddr>,
}

pub struct HostState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub hooks: OutboundHooks,
    pub limits: StoreLimits,
    pub app: Arc<AppContext>,
    pub component: Arc<ComponentContext>,
    /// When the current request must be finished; checked on every epoch tick.
    pub deadline: Instant,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl HostState {
    /// Restarts the deadline clock for a new request on this instance.
    pub fn start_request(&mut self) {
        self.deadline = Instant::now() + self.app.limits.request_timeout;
    }
}

/// A fresh store for one instance of `component`.
pub fn new_store(
    engine: &Engine,
    app: &Arc<AppContext>,
    component: &Arc<ComponentContext>,
) -> Store<HostState> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdout().inherit_stderr();
    crate::capabilities::sockets::configure(&mut wasi, component);
    for m in &component.mounts {
        // Checked at start-up; a directory removed since is simply absent.
        if let Err(e) = wasi.preopened_dir(&m.host, &m.guest, wasmtime_wasi::FsPerms::ReadOnly) {
            tracing::warn!(component = %component.id, dir = %m.host.display(), "files mount unavailable: {e:#}");
        }
    }
    for (k, v) in &component.environment {
        wasi.env(k, v);
    }
    let state = HostState {
        table: ResourceTable::new(),
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        hooks: OutboundHooks::new(app.clone(), component.clone()),
        limits: StoreLimitsBuilder::new()
            .memory_size(app.limits.max_memory_bytes)
            .trap_on_grow_failure(false)
            .build(),
        app: app.clone(),
        component: component.clone(),
        deadline: Instant::now() + app.limits.request_timeout,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    // Every epoch tick: trap if the request ran past its deadline, otherwise
    // yield to the async executor so one busy guest cannot starve the others.
    store.epoch_deadline_callback(|ctx| {
        if Instant::now() >= ctx.data().deadline {
            Err(wasmtime::Trap::Interrupt.into())
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store.set_epoch_deadline(1);
    store
}
