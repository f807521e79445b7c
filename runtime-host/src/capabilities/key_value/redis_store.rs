//! The Redis key-value backend (runtime config `type = "redis"`).

use super::{KeyValueStore, KvError, KvResult};
use crate::capabilities::redis::client::{self as redis_client, bounded};
use anyhow::{Context as _, Result};
use async_trait::async_trait;

/// A store on a Redis server (runtime config `type = "redis"`), with Spin's
/// Redis-store semantics: keys are stored as given (one server or database
/// per label), counters are Redis integers (`INCRBY`, decimal text), and
/// compare-and-swap is one Lua script, so it is atomic across hosts.
///
/// Every operation is bounded in time ([`redis_client`]): while Redis is
/// down, operations fail within [`redis_client::CALL_TIMEOUT`] with
/// `other("unavailable: ...")`, and work again once it is back.
pub struct RedisKeyValue {
    manager: redis::aio::ConnectionManager,
}

impl RedisKeyValue {
    pub async fn connect(url: &str) -> Result<RedisKeyValue> {
        redis::Client::open(url).with_context(|| format!("invalid Redis URL `{url}`"))?;
        let manager = redis_client::connect(url).await.map_err(|e| {
            anyhow::anyhow!("cannot connect to Redis: {}", redis_client::describe(&e))
        })?;
        Ok(RedisKeyValue { manager })
    }
}

/// A Redis failure as a store error (outages recognisable by their prefix).
fn redis_other(e: redis::RedisError) -> KvError {
    KvError::Other(redis_client::describe(&e))
}

const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
local matches
if ARGV[1] == '1' then matches = (current == ARGV[2]) else matches = (current == false) end
if matches then redis.call('SET', KEYS[1], ARGV[3]) return 1 end
return 0";

#[async_trait]
impl KeyValueStore for RedisKeyValue {
    async fn get(&self, key: &str) -> KvResult<Option<Vec<u8>>> {
        use redis::AsyncCommands;
        bounded(self.manager.clone().get(key))
            .await
            .map_err(redis_other)
    }
    async fn set(&self, key: &str, value: &[u8]) -> KvResult<()> {
        use redis::AsyncCommands;
        bounded(self.manager.clone().set(key, value))
            .await
            .map_err(redis_other)
    }
    async fn delete(&self, key: &str) -> KvResult<()> {
        use redis::AsyncCommands;
        bounded(self.manager.clone().del::<_, ()>(key))
            .await
            .map_err(redis_other)
    }
    async fn exists(&self, key: &str) -> KvResult<bool> {
        use redis::AsyncCommands;
        bounded(self.manager.clone().exists(key))
            .await
            .map_err(redis_other)
    }
    async fn get_keys(&self) -> KvResult<Vec<String>> {
        use redis::AsyncCommands;
        let mut keys: Vec<String> = bounded(self.manager.clone().keys("*"))
            .await
            .map_err(redis_other)?;
        keys.sort();
        Ok(keys)
    }
    async fn get_many(&self, keys: Vec<String>) -> KvResult<Vec<(String, Option<Vec<u8>>)>> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let v = self.get(&k).await?;
            out.push((k, v));
        }
        Ok(out)
    }
    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> KvResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (k, v) in &entries {
            pipe.set(k, v.as_slice()).ignore();
        }
        bounded(pipe.query_async::<()>(&mut self.manager.clone()))
            .await
            .map_err(redis_other)
    }
    async fn delete_many(&self, keys: Vec<String>) -> KvResult<()> {
        use redis::AsyncCommands;
        if keys.is_empty() {
            return Ok(());
        }
        bounded(self.manager.clone().del::<_, ()>(keys))
            .await
            .map_err(redis_other)
    }
    async fn increment(&self, key: &str, delta: i64) -> KvResult<i64> {
        use redis::AsyncCommands;
        bounded(self.manager.clone().incr(key, delta))
            .await
            .map_err(redis_other)
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> KvResult<bool> {
        let script = redis::Script::new(CAS_SCRIPT);
        let mut invocation = script.key(key);
        invocation
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(new);
        let swapped: i64 = bounded(invocation.invoke_async(&mut self.manager.clone()))
            .await
            .map_err(redis_other)?;
        Ok(swapped == 1)
    }
}
