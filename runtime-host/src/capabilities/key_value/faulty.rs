//! `--faults` for key-value: a [`Gate`] around any backend.

use super::gated::{Call, Gate, Gated};
use super::{KeyValueStore, KvError, KvResult};
use async_trait::async_trait;
use std::sync::Arc;

/// Stores whose calls go through `--faults` first (see [`crate::faults`]):
/// a chosen share of them is delayed or fails as an unreachable backend
/// would. Wrapped around a backend only when faults are configured.
pub struct FaultyStore {
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
        Gated::wrap(
            inner,
            FaultyStore {
                faults: faults.clone(),
            },
        )
    }
}

#[async_trait]
impl Gate for FaultyStore {
    async fn before(&self, _: Call<'_>) -> KvResult<()> {
        self.faults
            .on_call(crate::faults::Capability::KeyValue)
            .await
            .map_err(|fault| KvError::Other(fault.to_string()))
    }
}
