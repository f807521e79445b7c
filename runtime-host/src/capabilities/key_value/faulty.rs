//! `--faults` for key-value: a decorator around any backend.

use super::{KeyValueStore, KvError, KvResult};
use async_trait::async_trait;
use std::sync::Arc;

/// A store whose calls go through `--faults` first (see [`crate::faults`]):
/// a chosen share of them is delayed or fails as an unreachable backend
/// would. Wrapped around a backend only when faults are configured.
pub struct FaultyStore {
    inner: Arc<dyn KeyValueStore>,
    faults: Arc<crate::faults::Faults>,
}

impl FaultyStore {
    pub fn wrap(
        inner: Arc<dyn KeyValueStore>,
        faults: &Arc<crate::faults::Faults>,
    ) -> Arc<dyn KeyValueStore> {
        if faults.is_empty() {
            return inner;
        }
        Arc::new(FaultyStore {
            inner,
            faults: faults.clone(),
        })
    }

    async fn enter(&self) -> KvResult<()> {
        self.faults
            .on_call(crate::faults::Capability::KeyValue)
            .await
            .map_err(|fault| KvError::Other(fault.to_string()))
    }
}

#[async_trait]
impl KeyValueStore for FaultyStore {
    async fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.enter().await?;
        self.inner.get(key).await
    }
    async fn set(&self, key: &str, value: &[u8]) -> KvResult<()> {
        self.enter().await?;
        self.inner.set(key, value).await
    }
    async fn delete(&self, key: &str) -> KvResult<()> {
        self.enter().await?;
        self.inner.delete(key).await
    }
    async fn exists(&self, key: &str) -> KvResult<bool> {
        self.enter().await?;
        self.inner.exists(key).await
    }
    async fn get_keys(&self) -> KvResult<Vec<String>> {
        self.enter().await?;
        self.inner.get_keys().await
    }
    async fn get_many(&self, keys: Vec<String>) -> KvResult<Vec<(String, Option<Vec<u8>>)>> {
        self.enter().await?;
        self.inner.get_many(keys).await
    }
    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> KvResult<()> {
        self.enter().await?;
        self.inner.set_many(entries).await
    }
    async fn delete_many(&self, keys: Vec<String>) -> KvResult<()> {
        self.enter().await?;
        self.inner.delete_many(keys).await
    }
    async fn increment(&self, key: &str, delta: i64) -> KvResult<i64> {
        self.enter().await?;
        self.inner.increment(key, delta).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> KvResult<bool> {
        self.enter().await?;
        self.inner.compare_and_swap(key, expected, new).await
    }
    fn flush(&self) {
        self.inner.flush();
    }
}
