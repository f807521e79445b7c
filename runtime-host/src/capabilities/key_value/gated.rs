//! The decorator pattern of key-value, written once: a [`Gated`] store asks
//! its [`Gate`] about every call before forwarding it to the store inside.
//! `--faults` ([`super::FaultyStore`]) and the edge platform's limits
//! (`crate::platform::edge_store`) are gates.

use super::{KeyValueStore, KvResult};
use async_trait::async_trait;
use std::sync::Arc;

/// A call about to reach the store, with what a gate may check.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    Get(&'a str),
    Set(&'a str, &'a [u8]),
    Delete(&'a str),
    Exists(&'a str),
    GetKeys,
    GetMany(&'a [String]),
    SetMany(&'a [(String, Vec<u8>)]),
    DeleteMany(&'a [String]),
    Increment(&'a str),
    /// The key and the new value.
    CompareAndSwap(&'a str, &'a [u8]),
}

/// Decides whether a call goes ahead.
#[async_trait]
pub trait Gate: Send + Sync {
    /// `Err` fails the call without reaching the store.
    async fn before(&self, call: Call<'_>) -> KvResult<()>;
}

/// A store whose every call passes its gate first.
pub struct Gated<G> {
    inner: Arc<dyn KeyValueStore>,
    gate: G,
}

impl<G: Gate + 'static> Gated<G> {
    pub fn wrap(inner: Arc<dyn KeyValueStore>, gate: G) -> Arc<dyn KeyValueStore> {
        Arc::new(Gated { inner, gate })
    }
}

#[async_trait]
impl<G: Gate> KeyValueStore for Gated<G> {
    async fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.gate.before(Call::Get(key)).await?;
        self.inner.get(key).await
    }
    async fn set(&self, key: &str, value: &[u8]) -> KvResult<()> {
        self.gate.before(Call::Set(key, value)).await?;
        self.inner.set(key, value).await
    }
    async fn delete(&self, key: &str) -> KvResult<()> {
        self.gate.before(Call::Delete(key)).await?;
        self.inner.delete(key).await
    }
    async fn exists(&self, key: &str) -> KvResult<bool> {
        self.gate.before(Call::Exists(key)).await?;
        self.inner.exists(key).await
    }
    async fn get_keys(&self) -> KvResult<Vec<String>> {
        self.gate.before(Call::GetKeys).await?;
        self.inner.get_keys().await
    }
    async fn get_many(&self, keys: Vec<String>) -> KvResult<Vec<(String, Option<Vec<u8>>)>> {
        self.gate.before(Call::GetMany(&keys)).await?;
        self.inner.get_many(keys).await
    }
    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> KvResult<()> {
        self.gate.before(Call::SetMany(&entries)).await?;
        self.inner.set_many(entries).await
    }
    async fn delete_many(&self, keys: Vec<String>) -> KvResult<()> {
        self.gate.before(Call::DeleteMany(&keys)).await?;
        self.inner.delete_many(keys).await
    }
    async fn increment(&self, key: &str, delta: i64) -> KvResult<i64> {
        self.gate.before(Call::Increment(key)).await?;
        self.inner.increment(key, delta).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> KvResult<bool> {
        self.gate.before(Call::CompareAndSwap(key, new)).await?;
        self.inner.compare_and_swap(key, expected, new).await
    }
    fn flush(&self) {
        self.inner.flush();
    }
}
