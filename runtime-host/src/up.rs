//! `runtime-host up`: load the manifest, prepare every component, serve.
//!
//! The order is the request path's, bottom up: manifest and variables →
//! component sources (downloads) → stores and databases → engine, linker and pre-instantiated components →
//! HTTP trigger → listener. Anything that can be wrong is found before the
//! listener opens, and reported with the file, line or name involved.

use crate::capabilities::redis::{EmbeddedRedis, RedisProvider};
use crate::engine::{self, EngineOptions, EpochTicker};
use crate::faults::Faults;
use crate::http::banner::print_banner;
use crate::http::outbound::OutboundRules;
use crate::http::router::{RouteDecl, Router};
use crate::http::server;
use crate::http::trigger::{HttpTrigger, PreparedComponent, TriggerOptions};
use crate::manifest::{App, RouteSpec};
use crate::messaging::setup::{open_broker, redis_subscriptions, start_message_trigger};
use crate::messaging::trigger::MessageHandler;
use crate::messaging::{MessageBackend, broker::RetryPolicy};
use crate::platform::{Deployment, Platform};
use crate::state::{AppContext, ComponentContext, HostState, InstanceLimits};
use crate::variables::Variables;
use anyhow::{Context as _, Result, bail};
use clap::Args;
use http::{HeaderName, HeaderValue};
use std::collections::{BTreeSet, HashMap};
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
    /// Longest a `source = { url, digest }` download may take (connecting and
    /// the whole body); downloads happen at start and are cached.
    #[arg(long, default_value_t = crate::sources::DEFAULT_DOWNLOAD_TIMEOUT_SECS, value_name = "SECONDS")]
    download_timeout: u64,
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
    /// Where the app is meant to run: `edge` refuses what Akamai Functions
    /// lacks and enforces its limits (see docs/edge-platform.md).
    #[arg(long, value_enum, default_value_t = Platform::Local)]
    platform: Platform,
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
        let timeout = Duration::from_secs(self.download_timeout.max(1));
        let wasm = crate::sources::resolve(&app, &state_dir, timeout).await?;

        let runtime_config = match &self.runtime_config_file {
            Some(p) => crate::runtime_config::RuntimeConfig::load(p)?,
            None => Default::default(),
        };
        let faults = Arc::new(self.faults.clone().unwrap_or_default());
        if !faults.is_empty() {
            eprintln!("Fault injection is ON: {}", faults.describe());
        }
        let (mut key_value, databases) =
            crate::stores::open(&app, &state_dir, &runtime_config, &faults).await?;
        let enforcement = self.platform.enforce(&mut key_value);
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
        let linker = crate::capabilities::build_linker(&engine)?;

        let subscriptions = redis_subscriptions(&app, &variables, &manifest_path)?;
        let broker = open_broker(
            &state_dir,
            &subscriptions,
            RetryPolicy {
                max_attempts: self.message_max_attempts.max(1),
                first_delay: Duration::from_millis(self.message_retry_delay),
                max_delay: Duration::from_secs(30),
            },
        )?;
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
            self.prepare_components(&app, &wasm, (&engine, &linker), &app_ctx, &state_dir)?;

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
                body_limit: enforcement.body_limit(),
            },
        )?;
        let _ = app_ctx.chaining.set(trigger.clone());

        let listener = server::bind(self.listen).await?;
        let local = listener.local_addr()?;
        let _ = app_ctx.listen_addr.set(local);
        print_banner(&app, &trigger, &app_ctx, local, &state_dir);
        enforcement.print_banner();

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
            server::shutdown_signal(),
            Duration::from_secs(self.drain_timeout),
        )
        .await?;
        app_ctx.key_value.flush();
        enforcement.finish();
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
    /// for what this host, or the `--platform`, cannot run.
    fn load_app(&self) -> Result<(App, PathBuf)> {
        let manifest_path = if self.from.is_dir() {
            self.from.join("spin.toml")
        } else {
            self.from.clone()
        };
        self.platform.check(&Deployment {
            manifest: &manifest_path,
            runtime_config: self.runtime_config_file.as_deref(),
            message_backend: self.message_backend.map(|b| b.name()),
            max_memory_mib: self.max_memory,
            request_timeout_secs: self.request_timeout,
        })?;
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

    /// Every component a trigger names, compiled (or read from the cache),
    /// linked and pre-instantiated, with its own context: HTTP components
    /// for the HTTP trigger, message handlers for the Redis trigger.
    fn prepare_components(
        &self,
        app: &App,
        wasm: &std::collections::BTreeMap<String, PathBuf>,
        (engine, linker): (&wasmtime::Engine, &Linker<HostState>),
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
            let component = engine::load_component(engine, &wasm[*id], &cache_dir)
                .with_context(|| format!("component `{id}`"))?;
            let pre = linker.instantiate_pre(&component).map_err(|e| {
                anyhow::anyhow!(
                    "component `{id}` ({}) imports something runtime-host does not provide: {e:#}",
                    c.source
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
