//! `runtime-host up --platform <local|edge>`: where the app is meant to run,
//! and what the host checks and enforces so that a run on a laptop shows
//! what would break there.
//!
//! - `local` (the default): this host as it always was; nothing below.
//! - `edge`: Akamai Functions (formerly Fermyon Wasm Functions), per its
//!   public "Quotas and limits" page ([`EdgeLimits`]). Before listening,
//!   the manifest, runtime config and flags are checked for what the
//!   platform lacks ([`checks`]); while serving, request and response
//!   bodies are bounded ([`bodies`]) and key-value calls are size-checked
//!   and counted against the per-app budget ([`budget`], [`edge_store`]).
//!
//! What this cannot emulate (the platform's cold starts, replication,
//! region placement, its exact throttling) is listed in
//! `docs/edge-platform.md`.

pub mod bodies;
mod budget;
mod checks;
mod edge_store;

use crate::capabilities::key_value::KeyValueStores;
use anyhow::Result;
use budget::Budget;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Where the app is meant to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Platform {
    /// This host: embedded SQLite, key-value and broker, no extra limits.
    #[default]
    Local,
    /// Akamai Functions: the HTTP trigger only, no SQLite, and its quotas.
    Edge,
}

/// The edge platform's published limits, in one place. Its page gives
/// "1 MB" and "8 KB" for key-value values and keys; they are read as binary
/// units here, like its "128 MiB" and "10 MiB".
pub struct EdgeLimits;

impl EdgeLimits {
    /// Memory per instance ("RAM allocated per function execution").
    pub const MEMORY_MIB: usize = 128;
    /// How long a request handler may run.
    pub const REQUEST_SECONDS: u64 = 30;
    /// Request and response bodies, each.
    pub const BODY_BYTES: u64 = 10 << 20;
    /// Key-value writes per second, for the whole app.
    pub const KV_WRITES_PER_SECOND: u32 = 50;
    /// Key-value reads per second, for the whole app.
    pub const KV_READS_PER_SECOND: u32 = 1_000;
    /// Largest key-value value.
    pub const KV_VALUE_BYTES: usize = 1 << 20;
    /// Largest key-value key.
    pub const KV_KEY_BYTES: usize = 8 << 10;
}

/// What `up` was asked to run, as far as a platform check needs it.
pub struct Deployment<'a> {
    pub manifest: &'a Path,
    pub runtime_config: Option<&'a Path>,
    /// `--message-backend`, as given on the command line.
    pub message_backend: Option<&'a str>,
    pub max_memory_mib: usize,
    pub request_timeout_secs: u64,
}

impl Platform {
    /// Refuses a deployment that uses what the platform lacks or asks for
    /// more than it gives, naming every problem at once (file and line for
    /// the manifest and runtime config).
    pub fn check(self, deployment: &Deployment) -> Result<()> {
        match self {
            Platform::Local => Ok(()),
            Platform::Edge => checks::edge(deployment),
        }
    }

    /// Starts what the platform enforces while the host serves: on the
    /// edge, every store a component opens is size-checked and counted.
    pub fn enforce(self, key_value: &mut KeyValueStores) -> Enforcement {
        match self {
            Platform::Local => Enforcement { budget: None },
            Platform::Edge => {
                let budget = Arc::new(Budget::new([
                    EdgeLimits::KV_READS_PER_SECOND,
                    EdgeLimits::KV_WRITES_PER_SECOND,
                ]));
                key_value.set_open_hook(Arc::new(edge_store::EdgeHook::new(budget.clone())));
                // Closes each second's window even when no call comes after
                // it, so a burst is reported within a second of ending.
                let ticking = Arc::downgrade(&budget);
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(Duration::from_millis(250));
                    while let Some(budget) = ticking.upgrade() {
                        budget::report(&budget.tick());
                        drop(budget);
                        every.tick().await;
                    }
                });
                Enforcement {
                    budget: Some(budget),
                }
            }
        }
    }
}

/// The platform's rules while the host serves (nothing for `local`).
pub struct Enforcement {
    budget: Option<Arc<Budget>>,
}

impl Enforcement {
    fn edge(&self) -> bool {
        self.budget.is_some()
    }

    /// The largest request or response body, if the platform bounds them.
    pub fn body_limit(&self) -> bodies::BodyLimit {
        bodies::BodyLimit::new(self.edge().then_some(EdgeLimits::BODY_BYTES))
    }

    /// The banner's line naming the platform and its limits.
    pub fn print_banner(&self) {
        if self.edge() {
            println!(
                "platform: edge ({} MiB, {} s, {} MiB bodies, key-value {} writes/s, {} reads/s)",
                EdgeLimits::MEMORY_MIB,
                EdgeLimits::REQUEST_SECONDS,
                EdgeLimits::BODY_BYTES >> 20,
                EdgeLimits::KV_WRITES_PER_SECOND,
                EdgeLimits::KV_READS_PER_SECOND,
            );
        }
    }

    /// At shutdown: reports the last window and the peak rates seen.
    pub fn finish(&self) {
        if let Some(budget) = &self.budget {
            let (last, summary) = budget.finish();
            budget::report(&last);
            eprintln!("{summary}");
        }
    }
}
