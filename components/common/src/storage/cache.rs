//! A read-through cache in the key-value store with a stored expiry (see
//! [`crate::storage::kv::Expiring`]).
//!
//! Every cached id has a generation counter (an atomic increment) and the
//! entry lives under `<prefix><id>@<generation>`. A writer bumps the
//! generation after its write and deletes the old entry, so a reader that
//! loaded the old record before the write and caches it afterwards writes
//! to a key nobody reads any more (and deletes it itself when it sees the
//! generation moved). Without this a read racing a write could keep the
//! old record cached for a whole TTL.
//!
//! Cache failures never fail a read: a broken cache is a miss.
//!
//! Lifetimes: entries are in the expiry index ([`kv::put_expiring`]), so
//! the sweeper removes those nobody reads again; a generation counter lives
//! as long as its record, and [`KvCache::forget`] (the record was deleted)
//! hands it to the sweeper.

use crate::storage::kv;
use anyhow::{Context as _, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use spin_sdk::wit::wasi::keyvalue::atomics;

/// Cached values of one kind under one key prefix.
#[derive(Debug, Clone)]
pub struct KvCache {
    prefix: String,
    ttl_millis: u64,
}

impl KvCache {
    /// `prefix` names the owning component and kind (`users:cache:user:`).
    pub fn new(prefix: &str, ttl_secs: u64) -> KvCache {
        KvCache {
            prefix: prefix.to_string(),
            ttl_millis: ttl_secs.saturating_mul(1000),
        }
    }

    pub fn entry_key(&self, id: &str, generation: i64) -> String {
        format!("{}{id}@{generation}", self.prefix)
    }

    pub fn generation_key(&self, id: &str) -> String {
        format!("{}{id}#generation", self.prefix)
    }

    fn generation(&self, id: &str, delta: i64) -> Result<i64> {
        let bucket = kv::open_bucket()?;
        atomics::increment(&bucket, &self.generation_key(id), delta)
            .with_context(|| format!("cache generation of `{id}`"))
    }

    /// Returns the cached value or loads, caches and returns it.
    pub fn get_or_load<T, F>(&self, id: &str, load: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Result<Option<T>>,
    {
        if self.ttl_millis == 0 {
            return load();
        }
        let Ok(generation) = self.generation(id, 0) else {
            return load();
        };
        let key = self.entry_key(id, generation);
        if let Ok(Some(hit)) = kv::open().and_then(|s| kv::get_unexpired::<T>(&s, &key)) {
            return Ok(Some(hit));
        }
        let loaded = load()?;
        if let Some(value) = &loaded {
            let expires_at = crate::util::time::now_millis() + self.ttl_millis;
            if let Ok(store) = kv::open() {
                let _ = kv::put_expiring(&store, &key, value, expires_at);
                if self.generation(id, 0).ok() != Some(generation) {
                    let _ = kv::delete(&store, &key);
                }
            }
        }
        Ok(loaded)
    }

    /// Makes every cached copy of `id` unreachable. Writers call this after
    /// each write; its failure is an error because a stale entry would
    /// outlive the write.
    pub fn invalidate(&self, id: &str) -> Result<()> {
        let new_generation = self.generation(id, 1)?;
        kv::delete(&kv::open()?, &self.entry_key(id, new_generation - 1))
    }

    /// [`KvCache::invalidate`] for a record that was deleted, and its
    /// generation counter removed by the sweeper once no entry of it can
    /// be live or still be written by a slow reader ([`FORGET_AFTER_MILLIS`]
    /// past the TTL; the counter restarting at 0 must not revive an entry).
    pub fn forget(&self, id: &str) -> Result<()> {
        self.invalidate(id)?;
        let at = crate::util::time::now_millis() + self.ttl_millis + FORGET_AFTER_MILLIS;
        crate::storage::expiry::schedule(&self.generation_key(id), at)
    }
}

/// How long a deleted record's generation counter outlives its TTL: longer
/// than any request that may still be filling the cache.
pub const FORGET_AFTER_MILLIS: u64 = 10 * 60 * 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_prefix_id_and_generation() {
        let c = KvCache::new("users:cache:user:", 60);
        assert_eq!(c.entry_key("42", 3), "users:cache:user:42@3");
        assert_eq!(c.generation_key("42"), "users:cache:user:42#generation");
    }
}
