//! Key-value as the edge platform serves it: a decorator around every store
//! a component opens (whatever the interface version: they all reach
//! [`KeyValueStore`]) that refuses keys and values over the platform's
//! sizes and counts each call against the app's [`Budget`].
//!
//! Reads: `get`, `exists`, `get_keys`, `get_many` (one per key); a
//! compare-and-swap's reads of the current value are `get`s. Writes: `set`,
//! `delete`, `increment`, the swap, `set_many` and `delete_many` (one per
//! key). A refused call reaches neither the store nor the budget.

use super::EdgeLimits;
use super::budget::{Access, Budget, report};
use crate::capabilities::key_value::{
    Call, Gate, Gated, KeyValueStore, KvError, KvResult, OpenHook,
};
use async_trait::async_trait;
use std::sync::Arc;

/// Wraps each store a component opens in an [`EdgeStore`] gate.
pub struct EdgeHook {
    budget: Arc<Budget>,
}

impl EdgeHook {
    pub fn new(budget: Arc<Budget>) -> EdgeHook {
        EdgeHook { budget }
    }
}

impl OpenHook for EdgeHook {
    fn wrap(&self, component: &str, store: Arc<dyn KeyValueStore>) -> Arc<dyn KeyValueStore> {
        Gated::wrap(
            store,
            EdgeStore {
                component: Arc::from(component),
                budget: self.budget.clone(),
            },
        )
    }
}

struct EdgeStore {
    component: Arc<str>,
    budget: Arc<Budget>,
}

fn check_key(key: &str) -> KvResult<()> {
    if key.len() > EdgeLimits::KV_KEY_BYTES {
        return Err(KvError::Other(format!(
            "key of {} bytes is over the edge platform's key-value limit of {} KiB ({} bytes); use a shorter key (a hash of it, say)",
            key.len(),
            EdgeLimits::KV_KEY_BYTES >> 10,
            EdgeLimits::KV_KEY_BYTES
        )));
    }
    Ok(())
}

fn check_value(key: &str, value: &[u8]) -> KvResult<()> {
    check_key(key)?;
    if value.len() > EdgeLimits::KV_VALUE_BYTES {
        return Err(KvError::Other(format!(
            "value of {} bytes for `{key}` is over the edge platform's key-value limit of {} MiB ({} bytes); split it across keys or keep it elsewhere",
            value.len(),
            EdgeLimits::KV_VALUE_BYTES >> 20,
            EdgeLimits::KV_VALUE_BYTES
        )));
    }
    Ok(())
}

impl EdgeStore {
    fn count(&self, access: Access, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        report(&self.budget.record(&self.component, access, n));
    }
}

#[async_trait]
impl Gate for EdgeStore {
    async fn before(&self, call: Call<'_>) -> KvResult<()> {
        let check_keys = |keys: &[String]| keys.iter().try_for_each(|k| check_key(k));
        let (access, n) = match call {
            Call::Get(key) | Call::Exists(key) => (Access::Read, check_key(key).map(|()| 1)),
            Call::Delete(key) | Call::Increment(key) => (Access::Write, check_key(key).map(|()| 1)),
            Call::Set(key, value) | Call::CompareAndSwap(key, value) => {
                (Access::Write, check_value(key, value).map(|()| 1))
            }
            Call::GetKeys => (Access::Read, Ok(1)),
            Call::GetMany(keys) => (Access::Read, check_keys(keys).map(|()| keys.len())),
            Call::DeleteMany(keys) => (Access::Write, check_keys(keys).map(|()| keys.len())),
            Call::SetMany(entries) => (
                Access::Write,
                entries
                    .iter()
                    .try_for_each(|(k, v)| check_value(k, v))
                    .map(|()| entries.len()),
            ),
        };
        self.count(access, n?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A store that remembers nothing but how it was called.
    #[derive(Default)]
    struct Calls(Mutex<Vec<String>>);

    #[async_trait]
    impl KeyValueStore for Calls {
        async fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>> {
            self.0.lock().unwrap().push(format!("get {key}"));
            Ok(None)
        }
        async fn set(&self, key: &str, _: &[u8]) -> KvResult<()> {
            self.0.lock().unwrap().push(format!("set {key}"));
            Ok(())
        }
        async fn delete(&self, _: &str) -> KvResult<()> {
            Ok(())
        }
        async fn exists(&self, _: &str) -> KvResult<bool> {
            Ok(false)
        }
        async fn get_keys(&self) -> KvResult<Vec<String>> {
            Ok(Vec::new())
        }
        async fn get_many(&self, _: Vec<String>) -> KvResult<Vec<(String, Option<Vec<u8>>)>> {
            Ok(Vec::new())
        }
        async fn set_many(&self, _: Vec<(String, Vec<u8>)>) -> KvResult<()> {
            Ok(())
        }
        async fn delete_many(&self, _: Vec<String>) -> KvResult<()> {
            Ok(())
        }
        async fn increment(&self, _: &str, _: i64) -> KvResult<i64> {
            Ok(0)
        }
        async fn compare_and_swap(&self, _: &str, _: Option<&[u8]>, _: &[u8]) -> KvResult<bool> {
            Ok(true)
        }
    }

    fn wrapped() -> (Arc<Calls>, Arc<Budget>, Arc<dyn KeyValueStore>) {
        let calls = Arc::new(Calls::default());
        let budget = Arc::new(Budget::new([1_000, 50]));
        let store = EdgeHook::new(budget.clone()).wrap("app", calls.clone());
        (calls, budget, store)
    }

    #[tokio::test]
    async fn oversized_values_and_keys_are_refused_before_the_store() {
        let (calls, budget, store) = wrapped();
        let big = vec![0u8; EdgeLimits::KV_VALUE_BYTES + 1];
        let err = store.set("k", &big).await.unwrap_err();
        assert!(
            matches!(&err, KvError::Other(m) if m.contains("limit of 1 MiB")),
            "{err:?}"
        );
        assert!(store.compare_and_swap("k", None, &big).await.is_err());
        assert!(store.set_many(vec![("k".into(), big)]).await.is_err());
        let long = "k".repeat(EdgeLimits::KV_KEY_BYTES + 1);
        let err = store.get(&long).await.unwrap_err();
        assert!(
            matches!(&err, KvError::Other(m) if m.contains("limit of 8 KiB")),
            "{err:?}"
        );
        store
            .set("k", &vec![0u8; EdgeLimits::KV_VALUE_BYTES])
            .await
            .unwrap();
        assert_eq!(*calls.0.lock().unwrap(), ["set k"]);
        let (_, summary) = budget.finish();
        assert_eq!(summary.peak, [0, 1], "refused calls are not counted");
    }

    #[tokio::test]
    async fn batches_count_per_key() {
        let (_, budget, store) = wrapped();
        let keys: Vec<String> = (0..7).map(|i| i.to_string()).collect();
        store.get_many(keys.clone()).await.unwrap();
        store.delete_many(keys).await.unwrap();
        store.increment("n", 1).await.unwrap();
        store.exists("n").await.unwrap();
        let (_, summary) = budget.finish();
        assert_eq!(summary.peak, [8, 8]);
    }
}
