//! The wasmtime engine: configuration, component loading with an on-disk
//! compiled-code cache, and the request deadline clock.

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Linear memory (per instance slot) reset in place rather than returned
/// to the kernel: a spin-sdk component touches about 1-2 MiB per request
/// (its stack and a small heap).
const KEEP_RESIDENT_MEMORY_BYTES: usize = 4 << 20;
/// Table memory reset in place, likewise.
const KEEP_RESIDENT_TABLE_BYTES: usize = 64 << 10;
/// Released slots decommitted together (one `madvise` batch).
const DECOMMIT_BATCH: usize = 16;

/// How often the epoch advances; the granularity of request deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Use the pooling instance allocator (pre-reserved slots, no mmap per
    /// instance). Off only for comparison in benchmarks.
    pub pooling: bool,
    /// Largest linear memory one instance may grow to.
    pub max_memory_bytes: usize,
    /// How many component instances may be alive at once.
    pub max_instances: u32,
}

pub fn build_engine(opts: &EngineOptions) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.wasm_component_model_async(true);
    config.epoch_interruption(true);
    // Cranelift's default (speed) is what we want; parallel compilation
    // shortens cold start when the cache is empty.
    config.parallel_compilation(true);
    // `RUNTIME_HOST_PROFILE=perfmap` names guest functions in `perf report`
    // (a /tmp/perf-<pid>.map), for finding where the time of a request goes.
    if std::env::var("RUNTIME_HOST_PROFILE").is_ok_and(|v| v == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if opts.pooling {
        let mut pool = PoolingAllocationConfig::default();
        let n = opts.max_instances;
        // A spin-sdk component is one component instance made of a handful of
        // core instances (the guest, WASI adapter shims) with one or two
        // memories and tables; size the pool with headroom for that.
        pool.total_component_instances(n);
        pool.total_core_instances(n.saturating_mul(8));
        pool.total_memories(n.saturating_mul(2));
        pool.total_tables(n.saturating_mul(4));
        pool.total_stacks(n);
        pool.max_memory_size(opts.max_memory_bytes);
        pool.max_core_instances_per_component(32);
        pool.max_memories_per_component(4);
        pool.max_tables_per_component(8);
        // A fresh instance per request makes slot reuse the hot path: reset
        // the pages an instance touched with `memset` (found with
        // PAGEMAP_SCAN where the kernel has it) instead of `madvise`, which
        // costs a page fault per touched page on the next request and a TLB
        // shootdown across cores on every release; batch what is still
        // decommitted.
        pool.linear_memory_keep_resident(KEEP_RESIDENT_MEMORY_BYTES);
        pool.table_keep_resident(KEEP_RESIDENT_TABLE_BYTES);
        pool.pagemap_scan(Enabled::Auto);
        pool.decommit_batch_size(DECOMMIT_BATCH);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot configure wasmtime: {e:#}"))
}

/// Loads a component, reusing compiled code from `cache_dir` when the same
/// bytes were compiled before by a compatible engine.
pub fn load_component(engine: &Engine, wasm_path: &Path, cache_dir: &Path) -> Result<Component> {
    let bytes = std::fs::read(wasm_path)
        .with_context(|| format!("cannot read component {}", wasm_path.display()))?;
    let cached = cache_path(engine, &bytes, cache_dir);
    if cached.is_file() {
        // SAFETY: `deserialize_file` is unsafe because it maps native code
        // that wasmtime trusts without verifying it. This file is only ever
        // written by `write_cache` below (`Component::serialize` of an
        // engine with the same compatibility hash, which is part of its
        // SHA-256 name, written to a temporary name and renamed, so never
        // torn), in the host's own state directory, which nothing else
        // writes. Wasmtime also checks the header and refuses artifacts of
        // another version or configuration. Whoever can write the state dir
        // can already replace the host's inputs, so this trusts no one new.
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(path = %cached.display(), "ignoring unusable compiled-code cache entry: {e}")
            }
        }
    }
    let component = Component::new(engine, &bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid WebAssembly component: {e:#}",
            wasm_path.display()
        )
    })?;
    if let Err(e) = write_cache(&component, &cached) {
        tracing::warn!(path = %cached.display(), "could not write compiled-code cache: {e:#}");
    }
    Ok(component)
}

/// The cache file for `bytes`: named by a SHA-256 over the engine's
/// compatibility hash (wasmtime's version, target and every setting that
/// changes compiled code), this host's version and the component's bytes.
/// SHA-256 is stable across Rust releases and machines, unlike std's
/// `DefaultHasher`, so the name means the same thing to every build.
fn cache_path(engine: &Engine, bytes: &[u8], cache_dir: &Path) -> PathBuf {
    /// Feeds `Hash` output (the compatibility hash is only `impl Hash`) into SHA-256.
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            unreachable!("only the SHA-256 digest is read")
        }
    }
    let mut h = Sha(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    h.0.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.0.update((bytes.len() as u64).to_le_bytes());
    h.0.update(bytes);
    cache_dir.join(format!("{:x}.cwasm", h.0.finalize()))
}

fn write_cache(component: &Component, path: &Path) -> Result<()> {
    let dir = path.parent().context("cache path has a parent")?;
    std::fs::create_dir_all(dir)?;
    let data = component
        .serialize()
        .map_err(|e| anyhow::anyhow!("serialize: {e:#}"))?;
    // Write-then-rename so a concurrent or killed writer never leaves a torn file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Advances the engine epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                }
            })
            .expect("spawn epoch thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
