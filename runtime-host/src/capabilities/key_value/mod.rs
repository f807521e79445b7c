//! Key-value stores: one backend trait, served to guests through
//! `fermyon:spin/key-value@2.0.0`, `spin:key-value@3.0.0` and
//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2`.
//!
//! Semantics follow Spin's `factor-key-value`:
//! - a component opens only labels listed in its `key_value_stores`
//!   (anything else is `access-denied`); a listed label the host has no
//!   backend for is `no-such-store`;
//! - `get` of a missing key is `none`, `delete` of a missing key succeeds;
//! - `increment` treats a missing key as 0 and stores the counter as an
//!   8-byte little-endian `i64` (so values written by Spin read back here);
//!   a value of any other length is an error, not a panic;
//! - compare-and-swap remembers the value read by `cas.current` (or by
//!   `cas.new`) and `swap` writes only if the stored value is still that one.
//!   Unlike Spin's SQLite store, a CAS that saw "absent" fails if another
//!   writer created the key meanwhile.
//!
//! Backends: [`SqliteKeyValue`] (embedded, the default: one SQLite file in
//! WAL mode under the state dir, same table layout as Spin's
//! `sqlite_key_value.db`) and [`RedisKeyValue`] (selected by runtime
//! config). Decorators: [`FaultyStore`] (`--faults`) around a backend, and
//! an [`OpenHook`] around every store a component opens (the edge
//! platform's budget, [`crate::platform`]).

mod faulty;
mod gated;
pub mod guest;
mod redis_store;
mod sqlite_store;

pub use faulty::FaultyStore;
pub use gated::{Call, Gate, Gated};
pub use redis_store::RedisKeyValue;
pub use sqlite_store::{SqliteKeyValue, open_database};

use crate::state::ComponentContext;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;

/// What can go wrong in a store operation; maps onto every WIT `error`.
#[derive(Debug, Clone)]
pub enum KvError {
    NoSuchStore,
    AccessDenied,
    Other(String),
}

pub type KvResult<T> = std::result::Result<T, KvError>;

fn other(e: impl std::fmt::Display) -> KvError {
    KvError::Other(e.to_string())
}

/// One opened store (a label bound to a backend).
#[async_trait]
pub trait KeyValueStore: Send + Sync {
    async fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>>;
    async fn set(&self, key: &str, value: &[u8]) -> KvResult<()>;
    async fn delete(&self, key: &str) -> KvResult<()>;
    async fn exists(&self, key: &str) -> KvResult<bool>;
    async fn get_keys(&self) -> KvResult<Vec<String>>;
    async fn get_many(&self, keys: Vec<String>) -> KvResult<Vec<(String, Option<Vec<u8>>)>>;
    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> KvResult<()>;
    async fn delete_many(&self, keys: Vec<String>) -> KvResult<()>;
    /// Adds `delta` to the `i64` counter at `key` (missing = 0), atomically.
    async fn increment(&self, key: &str, delta: i64) -> KvResult<i64>;
    /// Writes `new` only if the stored value equals `expected` (`None`: absent).
    /// Returns `Ok(false)` when the value changed meanwhile.
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> KvResult<bool>;
    /// Makes completed writes durable (called at shutdown).
    fn flush(&self) {}
}

/// Wraps every store a guest opens, knowing which component opened it.
pub trait OpenHook: Send + Sync {
    fn wrap(&self, component: &str, store: Arc<dyn KeyValueStore>) -> Arc<dyn KeyValueStore>;
}

/// Resolves store labels to backends for one application.
#[derive(Clone, Default)]
pub struct KeyValueStores {
    stores: HashMap<String, Arc<dyn KeyValueStore>>,
    hook: Option<Arc<dyn OpenHook>>,
}

impl KeyValueStores {
    pub fn insert(&mut self, label: &str, store: Arc<dyn KeyValueStore>) {
        self.stores.insert(label.to_string(), store);
    }

    /// Sets the decorator of every store a guest opens from now on.
    pub fn set_open_hook(&mut self, hook: Arc<dyn OpenHook>) {
        self.hook = Some(hook);
    }

    /// Makes everything written so far durable before the host exits.
    pub fn flush(&self) {
        for store in self.stores.values() {
            store.flush();
        }
    }

    /// Opens `label` for a component allowed to use `allowed`.
    pub fn open(&self, allowed: &[String], label: &str) -> KvResult<Arc<dyn KeyValueStore>> {
        if !allowed.iter().any(|a| a == label) {
            return Err(KvError::AccessDenied);
        }
        self.stores.get(label).cloned().ok_or(KvError::NoSuchStore)
    }

    /// Opens `label` for a guest of `component`, through the open hook.
    pub fn open_for(
        &self,
        component: &ComponentContext,
        label: &str,
    ) -> KvResult<Arc<dyn KeyValueStore>> {
        let store = self.open(&component.key_value_stores, label)?;
        Ok(match &self.hook {
            Some(hook) => hook.wrap(&component.id, store),
            None => store,
        })
    }
}

/// Decodes a counter value as Spin stores it.
pub fn decode_counter(key: &str, bytes: &[u8]) -> KvResult<i64> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| {
        KvError::Other(format!(
            "value at `{key}` is not a counter (expected 8 bytes, found {})",
            bytes.len()
        ))
    })?;
    Ok(i64::from_le_bytes(array))
}
