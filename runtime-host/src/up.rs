//! `runtime-host up`: load the manifest, prepare every component, serve.
//!
//! The order is the request path's, bottom up: manifest and variables →
//! stores and databases → engine, linker and pre-instantiated components →
//! HTTP trigger → listener. Anything that can be wrong is found before the
//! listener opens, and reported with the file, line or name involved.

use crate::capabilities::key_value::{self, FaultyStore, KeyValueStores, SqliteKeyValue};
use crate::capabilities::redis::{EmbeddedRedis, RedisProvider};
use crate::capabilities::sqlite::{self, Database, Databases};
use crate::engine::{self, EngineOptions, EpochTicker};
use crate::faults::Faults;
use crate::http::outbound::OutboundRules;
use crate::http::router::{RouteDecl, Router};
use crate::http::server;
use crate::http::trigger::{HttpTrigger, PreparedComponent, TriggerOptions};
use crate::manifest::{App, RouteSpec};
use crate::messaging::trigger::{MessageHandler, RedisTrigger};
use crate::messaging::{self, broker::RetryPolicy, Broker, MessageBackend};
use crate::state::{AppContext, ComponentContext, HostState, InstanceLimits};
use crate::variables::Variables;
use anyhow::{bail, Context as _, Result};
use clap::Args;
use http::{HeaderName, HeaderValue};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::Linker;

#[derive(Args, Debug)]
pub struct UpCommand {
    /// The application manifest (a file, or a directory holding spin.toml).
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    from: PathBuf,
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:3000", env = "SPIN_HTTP_LISTEN_ADDR")]
    listen: SocketAddr,
    /// Where key-value data, SQLite databases and compiled code live
    /// (default: `.spin` next to the manifest).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// A Spin runtime-config TOML file choosing store backends.
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,
    /// Environment variable for every component (repeatable).
    #[arg(short = 'e', long = "env", value_parser = parse_pair)]
    env: Vec<(String, String)>,
    /// Application variable value (repeatable); overrides SPIN_VARIABLE_* and defaults.
    #[arg(long = "variable", value_parser = parse_pair)]
    variables: Vec<(String, String)>,
    /// Longest a request may run before it is cut off.
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    request_timeout: u64,
    /// Largest linear memory an instance may use.
    #[arg(long, default_value = "128", value_name = "MIB")]
    max_memory: usize,
    /// Requests served at once across the host; more get 503.
    #[arg(long, default_value = "1000")]
    max_concurrent_requests: usize,
    /// Make a share of a capability's calls fail or slow down, e.g.
    /// `key-value=0.05,sqlite=busy:1%,outbound-http=latency:200ms`
    /// (see docs/faults.md).
    #[arg(long, value_name = "SPEC", value_parser = parse_faults)]
    faults: Option<Faults>,
    /// Client connections open at once (lowered to fit the process's file
    /// descriptor limit); more are answered 503 and closed.
    #[arg(long, default_value_t = server::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Longest a client may take to send a request's headers; also how long
    /// an idle keep-alive connection is kept waiting for its next request.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    header_read_timeout: u64,
    /// Give every request a fresh instance (WASIp3 components too).
    #[arg(long, conflicts_with = "reuse_p2_instances")]
    fresh_instances: bool,
    /// Let WASIp2 components serve several requests, one at a time, per instance.
    #[arg(long)]
    reuse_p2_instances: bool,
    /// Allocate instance memory on demand instead of from the pooling allocator.
    #[arg(long)]
    no_pooling: bool,
    /// How long to wait for in-flight requests on shutdown.
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    drain_timeout: u64,
    /// Where messages travel: the embedded broker, or Redis pub/sub at the
    /// manifest's addresses (default: redis if the runtime config puts a
    /// key-value store on Redis, embedded otherwise).
    #[arg(long, value_enum)]
    message_backend: Option<MessageBackend>,
    /// A request the host sends to the app itself on a schedule, for work
    /// no request should wait for (repeatable): `EVERY=PATH` sends
    /// `POST PATH` every EVERY (`30s=/maintenance/run`).
    #[arg(long, value_name = "EVERY=PATH", value_parser = parse_schedule)]
    schedule: Vec<crate::schedule::Schedule>,
    /// A header of every scheduled request (repeatable), `NAME: VALUE`;
    /// VALUE may use the app's variables (`authorization: Bearer {{ maintenance_token }}`)
    /// and is never printed.
    #[arg(long, value_name = "NAME: VALUE")]
    schedule_header: Vec<String>,
    /// Attempts per message before it is dead-lettered.
    #[arg(long, default_value = "5")]
    message_max_attempts: u32,
    /// Delay before the first retry of a failed message (doubles each time, up to 30 s).
    #[arg(long, default_value = "200", value_name = "MS")]
    message_retry_delay: u64,
}

fn parse_faults(s: &str) -> Result<Faults, String> {
    Faults::parse(s).map_err(|e| format!("{e:#}"))
}

fn parse_schedule(s: &str) -> Result<crate::schedule::Schedule, String> {
    crate::schedule::Schedule::parse(s).map_err(|e| format!("{e:#}"))
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got `{s}`")),
    }
}

impl UpCommand {
    pub fn run(self) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(self.run_async())
    }

    async fn run_async(self) -> Result<()> {
        let (app, manifest_path) = self.load_app()?;
        let variables = Variables::resolve(&app, &self.variables, |k| std::env::var(k).ok())?;
        let schedule_headers = self.schedule_headers(&variables)?;
        let state_dir = self.create_state_dir(&app)?;

        let runtime_config = match &self.runtime_config_file {
            Some(p) => crate::runtime_config::RuntimeConfig::load(p)?,
            None => Default::default(),
        };
        let faults = Arc::new(self.faults.clone().unwrap_or_default());
        if !faults.is_empty() {
            eprintln!("Fault injection is ON: {}", faults.describe());
        }
        let (key_value, databases) =
            open_stores(&app, &state_dir, &runtime_config, &faults).await?;
        let backend = self
            .message_backend
            .unwrap_or(if runtime_config.uses_redis() {
                MessageBackend::Redis
            } else {
                MessageBackend::Embedded
            });

        let limits = InstanceLimits {
            request_timeout: Duration::from_secs(self.request_timeout),
            max_memory_bytes: self.max_memory << 20,
        };
        let engine = engine::build_engine(&EngineOptions {
            pooling: !self.no_pooling,
            max_memory_bytes: limits.max_memory_bytes,
            max_instances: (self.max_concurrent_requests as u32).saturating_mul(2) + 64,
        })?;
        let linker = build_linker(&engine)?;

        let subscriptions = redis_subscriptions(&app, &variables, &manifest_path)?;
        let broker = self.open_broker(&state_dir, &subscriptions)?;
        let redis = match backend {
            MessageBackend::Embedded => RedisProvider::embedded(
                subscriptions.keys().cloned().collect(),
                EmbeddedRedis::open(&state_dir.join("redis.db"), broker.clone())?,
            ),
            MessageBackend::Redis => RedisProvider::real(),
        };

        let app_ctx = Arc::new(AppContext {
            variables,
            key_value,
            databases,
            redis,
            postgres: Default::default(),
            limits,
            faults,
            chaining: Default::default(),
            listen_addr: Default::default(),
        });

        let (prepared, message_handlers) =
            self.prepare_components(&app, &engine, &linker, &app_ctx, &state_dir)?;

        let router = build_router(&app, &manifest_path)?;

        let trigger = HttpTrigger::new(
            &engine,
            &app_ctx,
            router,
            prepared,
            TriggerOptions {
                fresh_instances: self.fresh_instances,
                reuse_p2_instances: self.reuse_p2_instances,
                max_concurrent_requests: self.max_concurrent_requests,
            },
        )?;
        let _ = app_ctx.chaining.set(trigger.clone());

        let listener = server::bind(self.listen).await?;
        let local = listener.local_addr()?;
        let _ = app_ctx.listen_addr.set(local);
        print_banner(&app, &trigger, &app_ctx, local, &state_dir);

        let _ticker = EpochTicker::start(engine.clone());
        start_message_trigger(
            backend,
            message_handlers,
            subscriptions,
            &broker,
            &app_ctx,
            &state_dir,
        );
        crate::schedule::start(self.schedule.clone(), schedule_headers, local);
        server::serve(
            listener,
            trigger,
            server::ConnectionLimits {
                max_connections: server::ConnectionLimits::fit_descriptors(
                    self.max_connections,
                    server::descriptor_limit(),
                ),
                header_read_timeout: Duration::from_secs(self.header_read_timeout.max(1)),
            },
            shutdown_signal(),
            Duration::from_secs(self.drain_timeout),
        )
        .await?;
        app_ctx.key_value.flush();
        eprintln!("Stopped.");
        Ok(())
    }

    /// The `--schedule-header`s with the app's variables expanded; an
    /// error names the header, never its value.
    fn schedule_headers(&self, variables: &Variables) -> Result<Vec<(HeaderName, HeaderValue)>> {
        self.schedule_header
            .iter()
            .map(|h| {
                let (name, template) = crate::schedule::parse_header(h)?;
                let value = variables
                    .expand(&template)
                    .with_context(|| format!("--schedule-header `{name}`"))?;
                let value = HeaderValue::from_str(&value).with_context(|| {
                    format!("--schedule-header `{name}`: not a valid header value")
                })?;
                Ok((name, value))
            })
            .collect()
    }

    /// The manifest (a file, or a directory holding `spin.toml`), checked
    /// for what this host cannot run.
    fn load_app(&self) -> Result<(App, PathBuf)> {
        let manifest_path = if self.from.is_dir() {
            self.from.join("spin.toml")
        } else {
            self.from.clone()
        };
        let app = App::load(&manifest_path)?;
        if app.http_base != "/" {
            bail!(
                "{}: [application.trigger.http] base = {:?} is deprecated and not supported (as in Spin 3+): prefix each route instead",
                manifest_path.display(),
                app.http_base
            );
        }
        app.check_sources()?;
        Ok((app, manifest_path))
    }

    /// `--state-dir`, or `.spin` beside the manifest; created if missing.
    fn create_state_dir(&self, app: &App) -> Result<PathBuf> {
        let state_dir = self
            .state_dir
            .clone()
            .unwrap_or_else(|| app.base_dir.join(".spin"));
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
        Ok(state_dir)
    }

    /// The durable message queue, knowing which components each channel
    /// reaches.
    fn open_broker(&self, state_dir: &Path, subscriptions: &Subscriptions) -> Result<Arc<Broker>> {
        let channels: BTreeMap<String, Vec<String>> =
            subscriptions.values().fold(BTreeMap::new(), |mut acc, m| {
                for (ch, comps) in m {
                    acc.entry(ch.clone())
                        .or_default()
                        .extend(comps.iter().cloned());
                }
                acc
            });
        Ok(Arc::new(Broker::open(
            &state_dir.join("messages.db"),
            channels,
            RetryPolicy {
                max_attempts: self.message_max_attempts.max(1),
                first_delay: Duration::from_millis(self.message_retry_delay),
                max_delay: Duration::from_secs(30),
            },
        )?))
    }

    /// Every component a trigger names, compiled (or read from the cache),
    /// linked and pre-instantiated, with its own context: HTTP components
    /// for the HTTP trigger, message handlers for the Redis trigger.
    fn prepare_components(
        &self,
        app: &App,
        engine: &wasmtime::Engine,
        linker: &Linker<HostState>,
        app_ctx: &Arc<AppContext>,
        state_dir: &Path,
    ) -> Result<(Vec<PreparedComponent>, HashMap<String, MessageHandler>)> {
        let component_ids: Vec<String> = app.components.keys().cloned().collect();
        let http_components: BTreeSet<&str> = app
            .http_triggers
            .iter()
            .map(|t| t.component.as_str())
            .collect();
        let redis_components: BTreeSet<&str> = app
            .redis_triggers
            .iter()
            .map(|t| t.component.as_str())
            .collect();
        let cache_dir = state_dir.join("cache");
        let mut prepared = Vec::new();
        let mut message_handlers = HashMap::new();
        for id in http_components.union(&redis_components) {
            let c = &app.components[*id];
            let outbound = OutboundRules::parse(&c.allowed_outbound_hosts, &component_ids, |t| {
                app_ctx.variables.expand(t)
            })
            .with_context(|| format!("component `{id}`"))?;
            let mut environment: Vec<(String, String)> = c
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            environment.extend(self.env.iter().cloned());
            let mounts = crate::files::stage(
                id,
                &c.files,
                &c.exclude_files,
                &app.base_dir,
                &state_dir.join("files").join(id),
            )?;
            let context = Arc::new(ComponentContext {
                id: c.id.clone(),
                key_value_stores: c.key_value_stores.clone(),
                sqlite_databases: c.sqlite_databases.clone(),
                outbound,
                environment,
                mounts,
            });
            let component = engine::load_component(engine, &c.source, &cache_dir)
                .with_context(|| format!("component `{id}`"))?;
            let pre = linker.instantiate_pre(&component).map_err(|e| {
                anyhow::anyhow!(
                    "component `{id}` ({}) imports something runtime-host does not provide: {e:#}",
                    c.source.display()
                )
            })?;
            if redis_components.contains(id) {
                let handler = MessageHandler::new(engine, app_ctx, context.clone(), pre.clone())?;
                message_handlers.insert(id.to_string(), handler);
            }
            if http_components.contains(id) {
                prepared.push(PreparedComponent { context, pre });
            }
        }
        Ok((prepared, message_handlers))
    }
}

/// Redis trigger subscriptions: address → channel → components, templates
/// expanded.
type Subscriptions = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn redis_subscriptions(
    app: &App,
    variables: &Variables,
    manifest_path: &Path,
) -> Result<Subscriptions> {
    let mut subscriptions = Subscriptions::new();
    for t in &app.redis_triggers {
        let address = t
                .address
                .as_deref()
                .or(app.redis_address.as_deref())
                .with_context(|| format!("{}: [[trigger.redis]] for component `{}` has no address and [application.trigger.redis] sets none", manifest_path.display(), t.component))?;
        let address = variables.expand(address).context("Redis trigger address")?;
        let channel = variables
            .expand(&t.channel)
            .context("Redis trigger channel")?;
        subscriptions
            .entry(address)
            .or_default()
            .entry(channel)
            .or_default()
            .push(t.component.clone());
    }
    Ok(subscriptions)
}

/// The HTTP routes of the manifest (private routes have none).
fn build_router(app: &App, manifest_path: &Path) -> Result<Router> {
    Router::build(app.http_triggers.iter().filter_map(|t| match &t.route {
        RouteSpec::Route(r) => Some(RouteDecl {
            component: &t.component,
            route: r,
            line: t.line,
        }),
        RouteSpec::Private => None,
    }))
    .with_context(|| format!("{}", manifest_path.display()))
}

/// Delivers queued and incoming messages to the Redis-trigger components,
/// through the embedded broker or Redis pub/sub.
fn start_message_trigger(
    backend: MessageBackend,
    message_handlers: HashMap<String, MessageHandler>,
    subscriptions: Subscriptions,
    broker: &Arc<Broker>,
    app_ctx: &AppContext,
    state_dir: &Path,
) {
    if message_handlers.is_empty() {
        return;
    }
    let trigger = Arc::new(RedisTrigger {
        handlers: message_handlers,
        subscriptions,
    });
    match backend {
        MessageBackend::Embedded => {
            let stands_in_for: Vec<String> = app_ctx
                .redis
                .embedded_addresses()
                .iter()
                .map(|a| crate::capabilities::redis::client::redacted(a))
                .collect();
            println!(
                "Messages: embedded broker ({}), standing in for Redis at {} (other Redis addresses are real servers)",
                state_dir.join("messages.db").display(),
                stands_in_for.join(", ")
            );
            tokio::spawn(messaging::trigger::run_embedded(trigger, broker.clone()));
        }
        MessageBackend::Redis => {
            println!("Messages: Redis pub/sub");
            tokio::spawn(messaging::trigger::run_redis(trigger, broker.clone()));
        }
    }
}

/// Opens every key-value store and database the manifest names, embedded by
/// default, as the runtime config says otherwise.
async fn open_stores(
    app: &App,
    state_dir: &Path,
    rc: &crate::runtime_config::RuntimeConfig,
    faults: &Arc<Faults>,
) -> Result<(KeyValueStores, Databases)> {
    let mut kv = KeyValueStores::default();
    let kv_labels: BTreeSet<&String> = app
        .components
        .values()
        .flat_map(|c| c.key_value_stores.iter())
        .collect();
    let mut default_kv_db = None;
    for label in kv_labels {
        let store = rc
            .key_value_store(label, state_dir)
            .await
            .with_context(|| format!("key-value store `{label}`"))?;
        match store {
            Some(s) => kv.insert(label, FaultyStore::wrap(s, faults)),
            None if label == "default" => {
                let conn = match &default_kv_db {
                    Some(c) => Arc::clone(c),
                    None => {
                        let c = key_value::open_database(&state_dir.join("sqlite_key_value.db"))?;
                        default_kv_db = Some(c.clone());
                        c
                    }
                };
                kv.insert(
                    label,
                    FaultyStore::wrap(Arc::new(SqliteKeyValue::new(conn, label)), faults),
                );
            }
            None => bail!(
                "a component uses key-value store `{label}`, which has no backend: only `default` exists without configuration; add `[key_value_store.{label}]` to a runtime-config file (--runtime-config-file)"
            ),
        }
    }

    let mut dbs = Databases::default();
    let db_labels: BTreeSet<&String> = app
        .components
        .values()
        .flat_map(|c| c.sqlite_databases.iter())
        .collect();
    for label in db_labels {
        let path = match rc.sqlite_path(label, state_dir)? {
            Some(p) => p,
            None if label == "default" => sqlite::default_path(state_dir, label),
            None => bail!(
                "a component uses SQLite database `{label}`, which has no backend: only `default` exists without configuration; add `[sqlite_database.{label}]` to a runtime-config file (--runtime-config-file)"
            ),
        };
        dbs.insert(label, Database::new(path, faults.clone())?);
    }
    Ok((kv, dbs))
}

fn build_linker(engine: &wasmtime::Engine) -> Result<Linker<HostState>> {
    let mut linker = Linker::<HostState>::new(engine);
    let map = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(map)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(map)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(map)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(map)?;
    crate::capabilities::add_to_linker(&mut linker)?;
    Ok(linker)
}

fn print_banner(
    app: &App,
    trigger: &HttpTrigger,
    ctx: &AppContext,
    local: SocketAddr,
    state_dir: &Path,
) {
    println!("Serving http://{local}");
    println!("Application: {}", app.name);
    println!("Available Routes:");
    for r in trigger.router().routes() {
        let shown = r.raw.strip_suffix("/...").unwrap_or(&r.raw);
        let wildcard = if r.wildcard { " (wildcard)" } else { "" };
        let kind = match trigger.kind_of(&r.component) {
            Some(crate::http::trigger::HttpKind::P3) => "wasip3",
            _ => "wasip2",
        };
        println!(
            "  {}: http://{local}{shown}{wildcard} [{kind}]",
            r.component
        );
    }
    for t in &app.http_triggers {
        if t.route == RouteSpec::Private {
            println!(
                "  {}: private (reachable as http://{}.spin.internal)",
                t.component, t.component
            );
        }
    }
    println!("State directory: {}", state_dir.display());
    for line in ctx.variables.describe() {
        println!("  variable {line}");
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
