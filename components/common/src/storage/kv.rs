//! The key-value store every component shares (`default`) and values with
//! a stored expiry: Spin's key-value API has no TTL, so an expiring value
//! is kept as `{"expiresAt": <unix ms>, "value": ...}` and treated as absent
//! once read after that time; the sweeper of [`crate::storage::expiry`] deletes it.
//!
//! Key prefixes keep components apart: `auth:`, `users:`, and the shared
//! `denylist:`, `tokens:verified:`, `ratelimit:`, `metrics:`, `sweep:`.

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
/// index first (see [`crate::storage::expiry`]) so the key is removed even if it is
/// never read again.
pub fn put_expiring<T: Serialize>(
    store: &Store,
    key: &str,
    value: &T,
    expires_at_millis: u64,
) -> Result<()> {
    crate::storage::expiry::schedule(key, expires_at_millis)?;
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
/// entries read as absent and are left to the sweeper (every expiring key
/// is in the expiry index), so a read never writes: the edge platform
/// allows 50 key-value writes/s per app.
pub fn get_unexpired<T: DeserializeOwned>(store: &Store, key: &str) -> Result<Option<T>> {
    let Some(bytes) = store
        .get(key)
        .with_context(|| format!("key-value get `{key}`"))?
    else {
        return Ok(None);
    };
    Ok(serde_json::from_slice::<Expiring<T>>(&bytes)
        .ok()
        .filter(|entry| entry.is_live(crate::util::time::now_millis()))
        .map(|entry| entry.value))
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
                return Err(anyhow::Error::new(e)).with_context(|| format!("swap `{key}`"));
            }
        }
    }
    anyhow::bail!("`{key}` changed {MAX_CAS_ATTEMPTS} times during one update")
}

/// Whether `error` is the key-value store failing as a dependency (down,
/// not answering, full) rather than a bug here: any `other` error of either
/// key-value interface, wherever it sits in the context chain. runtime-host
/// starts such messages with `unavailable:`; Spin words them its own way,
/// so the text is not relied on. `access-denied` and `no-such-store` are
/// configuration bugs (500).
pub fn is_unavailable(error: &anyhow::Error) -> bool {
    use spin_sdk::key_value::Error as SpinError;
    use spin_sdk::wit::wasi::keyvalue::store::Error as WasiError;
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<SpinError>(),
            Some(SpinError::Other(_) | SpinError::StoreTableFull)
        ) || matches!(cause.downcast_ref::<WasiError>(), Some(WasiError::Other(_)))
    })
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
    fn store_outages_are_told_from_bugs() {
        use spin_sdk::key_value::Error as SpinError;
        use spin_sdk::wit::wasi::keyvalue::store::Error as WasiError;
        let down = anyhow::Error::new(SpinError::Other("unavailable: no answer".into()))
            .context("key-value get `k`");
        assert!(is_unavailable(&down));
        let spin_words = anyhow::Error::new(WasiError::Other("connection refused".into()));
        assert!(is_unavailable(&spin_words.context("count a request")));
        assert!(!is_unavailable(&anyhow::Error::new(
            SpinError::AccessDenied
        )));
        assert!(!is_unavailable(&anyhow::anyhow!("bad JSON")));
    }

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
