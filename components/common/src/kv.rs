//! The key-value store every component shares (`default`) and values with
//! a stored expiry: Spin's key-value API has no TTL, so an expiring value
//! is kept as `{"expiresAt": <unix ms>, "value": ...}` and treated as absent
//! (and deleted) once read after that time; the sweeper of
//! [`crate::expiry`] deletes it when nobody reads it again.
//!
//! Key prefixes keep components apart: `auth:`, `users:`, and the shared
//! `denylist:`, `ratelimit:`, `metrics:`, `sweep:`.

use anyhow::{Context as _, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use spin_sdk::key_value::Store;

/// The one store the app declares (works under plain `spin up`).
pub const STORE: &str = "default";

pub fn open() -> Result<Store> {
    Store::open(STORE).with_context(|| format!("open key-value store `{STORE}`"))
}

/// The same store through `wasi:keyvalue`, for atomic increments and
/// compare-and-swap.
pub fn open_bucket() -> Result<spin_sdk::wit::wasi::keyvalue::store::Bucket> {
    spin_sdk::wit::wasi::keyvalue::store::open(STORE)
        .with_context(|| format!("open key-value bucket `{STORE}`"))
}

/// A value and the time (Unix milliseconds) it stops being valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expiring<T> {
    pub expires_at: u64,
    pub value: T,
}

impl<T> Expiring<T> {
    pub fn is_live(&self, now_millis: u64) -> bool {
        now_millis < self.expires_at
    }
}

/// Stores `value` until `expires_at_millis`, registered in the expiry
/// index first (see [`crate::expiry`]) so the key is removed even if it is
/// never read again.
pub fn put_expiring<T: Serialize>(
    store: &Store,
    key: &str,
    value: &T,
    expires_at_millis: u64,
) -> Result<()> {
    crate::expiry::schedule(key, expires_at_millis)?;
    let entry = Expiring {
        expires_at: expires_at_millis,
        value,
    };
    let bytes = serde_json::to_vec(&entry).context("serialise expiring value")?;
    store
        .set(key, &bytes)
        .with_context(|| format!("key-value set `{key}`"))
}

/// The value at `key` if present and not expired. Expired and unreadable
/// entries are deleted and read as absent.
pub fn get_unexpired<T: DeserializeOwned>(store: &Store, key: &str) -> Result<Option<T>> {
    let Some(bytes) = store
        .get(key)
        .with_context(|| format!("key-value get `{key}`"))?
    else {
        return Ok(None);
    };
    match serde_json::from_slice::<Expiring<T>>(&bytes) {
        Ok(entry) if entry.is_live(crate::time::now_millis()) => Ok(Some(entry.value)),
        _ => {
            delete(store, key)?;
            Ok(None)
        }
    }
}

/// What a read-modify-write decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update<T> {
    Write(T),
    Keep,
}

/// Most compare-and-swap rounds before giving up on a contended key.
const MAX_CAS_ATTEMPTS: usize = 64;

/// Read-modify-write of the JSON value at `key` with `wasi:keyvalue`
/// compare-and-swap: `decide` sees the current value and returns what to
/// write (if anything) and a result; a concurrent change makes it run
/// again on the newer value, so no update is lost.
pub fn update_atomically<T, R>(
    key: &str,
    mut decide: impl FnMut(Option<T>) -> Result<(Update<T>, R)>,
) -> Result<R>
where
    T: Serialize + DeserializeOwned,
{
    use spin_sdk::wit::wasi::keyvalue::atomics::{self, Cas, CasError};
    let bucket = open_bucket()?;
    for _ in 0..MAX_CAS_ATTEMPTS {
        let cas = Cas::new(&bucket, key).with_context(|| format!("begin CAS on `{key}`"))?;
        let current = match cas.current().with_context(|| format!("read `{key}`"))? {
            Some(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("`{key}` holds bad JSON"))?,
            ),
            None => None,
        };
        let (update, result) = decide(current)?;
        let Update::Write(value) = update else {
            return Ok(result);
        };
        let bytes = serde_json::to_vec(&value).context("serialise value")?;
        match atomics::swap(cas, &bytes) {
            Ok(()) => return Ok(result),
            Err(CasError::CasFailed(_)) => continue,
            Err(CasError::StoreError(e)) => {
                return Err(anyhow::anyhow!("{e:?}")).with_context(|| format!("swap `{key}`"))
            }
        }
    }
    anyhow::bail!("`{key}` changed {MAX_CAS_ATTEMPTS} times during one update")
}

pub fn delete(store: &Store, key: &str) -> Result<()> {
    store
        .delete(key)
        .with_context(|| format!("key-value delete `{key}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_exclusive() {
        let e = Expiring {
            expires_at: 1000,
            value: 1,
        };
        assert!(e.is_live(999));
        assert!(!e.is_live(1000));
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"expiresAt":1000,"value":1}"#
        );
    }
}
