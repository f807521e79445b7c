//! Outbound Redis as guests see it: `fermyon:spin/redis@2.0.0` and
//! `spin:redis/redis@3.0.0`, adapters onto [`super::RedisConnection`].

use super::{Param, RedisConnection, RedisError, Reply};
use crate::capabilities::bindings::p2::fermyon::spin2_0_0::redis as spin_redis;
use crate::capabilities::bindings::p3::spin::redis::redis as redis3;
use crate::capabilities::bindings::{Acc, P3Capabilities, WResult};
use crate::state::HostState;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker, Resource};

/// An open outbound Redis connection.
pub struct RedisHandle(pub Arc<dyn RedisConnection>);

pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let map = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    spin_redis::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s).map_err(map)?;
    redis3::add_to_linker::<HostState, P3Capabilities>(linker, |s| s).map_err(map)?;
    Ok(())
}

// ---- fermyon:spin/redis@2.0.0 -----------------------------------------------

impl From<RedisError> for spin_redis::Error {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::InvalidAddress => Self::InvalidAddress,
            RedisError::TypeError => Self::TypeError,
            RedisError::Other(m) => Self::Other(m),
        }
    }
}

impl HostState {
    /// Opens `address` if the component's `allowed_outbound_hosts` allow it.
    pub(crate) async fn open_redis(
        &mut self,
        address: &str,
    ) -> Result<Arc<dyn RedisConnection>, RedisError> {
        super::check_allowed(&self.component, address)?;
        self.app.redis.open(address).await
    }

    fn redis(&self, h: &Resource<RedisHandle>) -> WResult<Arc<dyn RedisConnection>> {
        Ok(self.table.get(h)?.0.clone())
    }
}

impl spin_redis::Host for HostState {}

impl spin_redis::HostConnection for HostState {
    async fn open(
        &mut self,
        address: String,
    ) -> WResult<Result<Resource<RedisHandle>, spin_redis::Error>> {
        match self.open_redis(&address).await {
            Ok(c) => Ok(Ok(self.table.push(RedisHandle(c))?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn publish(
        &mut self,
        this: Resource<RedisHandle>,
        channel: String,
        payload: Vec<u8>,
    ) -> WResult<Result<(), spin_redis::Error>> {
        let c = self.redis(&this)?;
        Ok(c.publish(&channel, payload).await.map_err(Into::into))
    }

    async fn get(
        &mut self,
        this: Resource<RedisHandle>,
        key: String,
    ) -> WResult<Result<Option<Vec<u8>>, spin_redis::Error>> {
        let c = self.redis(&this)?;
        Ok(c.get(&key).await.map_err(Into::into))
    }

    async fn set(
        &mut self,
        this: Resource<RedisHandle>,
        key: String,
        value: Vec<u8>,
    ) -> WResult<Result<(), spin_redis::Error>> {
        let c = self.redis(&this)?;
        Ok(c.set(&key, value).await.map_err(Into::into))
    }

    async fn incr(
        &mut self,
        this: Resource<RedisHandle>,
        key: String,
    ) -> WResult<Result<i64, spin_redis::Error>> {
        let c = self.redis(&this)?;
        Ok(c.incr(&key).await.map_err(Into::into))
    }

    async fn del(
        &mut self,
        this: Resource<RedisHandle>,
        keys: Vec<String>,
    ) -> WResult<Result<u32, spin_redis::Error>> {
        let c = self.redis(&this)?;
        Ok(c.del(keys).await.map_err(Into::into))
    }

    async fn sadd(
        &mut self,
        this: Resource<RedisHandle>,
        key: String,
        values: Vec<String>,
    ) -> WResult<Result<u32, spin_redis::Error>> {
        let c = self.redis(&this)?;
        Ok(c.sadd(&key, values).await.map_err(Into::into))
    }

    async fn smembers(
        &mut self,
        this: Resource<RedisHandle>,
        key: String,
    ) -> WResult<Result<Vec<String>, spin_redis::Error>> {
        let c = self.redis(&this)?;
        Ok(c.smembers(&key).await.map_err(Into::into))
    }

    async fn srem(
        &mut self,
        this: Resource<RedisHandle>,
        key: String,
        values: Vec<String>,
    ) -> WResult<Result<u32, spin_redis::Error>> {
        let c = self.redis(&this)?;
        Ok(c.srem(&key, values).await.map_err(Into::into))
    }

    async fn execute(
        &mut self,
        this: Resource<RedisHandle>,
        command: String,
        arguments: Vec<spin_redis::RedisParameter>,
    ) -> WResult<Result<Vec<spin_redis::RedisResult>, spin_redis::Error>> {
        let c = self.redis(&this)?;
        let args = arguments
            .into_iter()
            .map(|a| match a {
                spin_redis::RedisParameter::Int64(i) => Param::Int64(i),
                spin_redis::RedisParameter::Binary(b) => Param::Binary(b),
            })
            .collect();
        Ok(c.execute(&command, args)
            .await
            .map(|replies| {
                replies
                    .into_iter()
                    .map(|r| match r {
                        Reply::Nil => spin_redis::RedisResult::Nil,
                        Reply::Status(s) => spin_redis::RedisResult::Status(s),
                        Reply::Int64(i) => spin_redis::RedisResult::Int64(i),
                        Reply::Binary(b) => spin_redis::RedisResult::Binary(b),
                    })
                    .collect()
            })
            .map_err(Into::into))
    }

    async fn drop(&mut self, this: Resource<RedisHandle>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
// ---- spin:redis@3.0.0 ---------------------------------------------------------

impl From<RedisError> for redis3::Error {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::InvalidAddress => Self::InvalidAddress,
            RedisError::TypeError => Self::TypeError,
            RedisError::Other(m) => Self::Other(m),
        }
    }
}

fn redis_of(acc: &Acc, h: &Resource<RedisHandle>) -> WResult<Arc<dyn RedisConnection>> {
    acc.with(|mut a| Ok(a.get().table.get(h)?.0.clone()))
}

type R3<T> = WResult<Result<T, redis3::Error>>;

impl redis3::HostConnectionWithStore<HostState> for P3Capabilities {
    async fn open(acc: &Acc, address: String) -> R3<Resource<RedisHandle>> {
        // The allow-list check needs the state; the connect may wait on the network.
        let (allowed, app) = acc.with(|mut a| {
            let s = a.get();
            (super::check_allowed(&s.component, &address), s.app.clone())
        });
        if let Err(e) = allowed {
            return Ok(Err(e.into()));
        }
        match app.redis.open(&address).await {
            Ok(c) => acc.with(|mut a| Ok(Ok(a.get().table.push(RedisHandle(c))?))),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn publish(
        acc: &Acc,
        this: Resource<RedisHandle>,
        channel: String,
        payload: Vec<u8>,
    ) -> R3<()> {
        Ok(redis_of(acc, &this)?
            .publish(&channel, payload)
            .await
            .map_err(Into::into))
    }

    async fn get(acc: &Acc, this: Resource<RedisHandle>, key: String) -> R3<Option<Vec<u8>>> {
        Ok(redis_of(acc, &this)?.get(&key).await.map_err(Into::into))
    }

    async fn set(acc: &Acc, this: Resource<RedisHandle>, key: String, value: Vec<u8>) -> R3<()> {
        Ok(redis_of(acc, &this)?
            .set(&key, value)
            .await
            .map_err(Into::into))
    }

    async fn incr(acc: &Acc, this: Resource<RedisHandle>, key: String) -> R3<i64> {
        Ok(redis_of(acc, &this)?.incr(&key).await.map_err(Into::into))
    }

    async fn del(acc: &Acc, this: Resource<RedisHandle>, keys: Vec<String>) -> R3<u32> {
        Ok(redis_of(acc, &this)?.del(keys).await.map_err(Into::into))
    }

    async fn sadd(
        acc: &Acc,
        this: Resource<RedisHandle>,
        key: String,
        values: Vec<String>,
    ) -> R3<u32> {
        Ok(redis_of(acc, &this)?
            .sadd(&key, values)
            .await
            .map_err(Into::into))
    }

    async fn smembers(acc: &Acc, this: Resource<RedisHandle>, key: String) -> R3<Vec<String>> {
        Ok(redis_of(acc, &this)?
            .smembers(&key)
            .await
            .map_err(Into::into))
    }

    async fn srem(
        acc: &Acc,
        this: Resource<RedisHandle>,
        key: String,
        values: Vec<String>,
    ) -> R3<u32> {
        Ok(redis_of(acc, &this)?
            .srem(&key, values)
            .await
            .map_err(Into::into))
    }

    async fn execute(
        acc: &Acc,
        this: Resource<RedisHandle>,
        command: String,
        arguments: Vec<redis3::RedisParameter>,
    ) -> R3<Vec<redis3::RedisResult>> {
        let args = arguments
            .into_iter()
            .map(|a| match a {
                redis3::RedisParameter::Int64(i) => Param::Int64(i),
                redis3::RedisParameter::Binary(b) => Param::Binary(b),
            })
            .collect();
        Ok(redis_of(acc, &this)?
            .execute(&command, args)
            .await
            .map(|replies| {
                replies
                    .into_iter()
                    .map(|r| match r {
                        Reply::Nil => redis3::RedisResult::Nil,
                        Reply::Status(s) => redis3::RedisResult::Status(s),
                        Reply::Int64(i) => redis3::RedisResult::Int64(i),
                        Reply::Binary(b) => redis3::RedisResult::Binary(b),
                    })
                    .collect()
            })
            .map_err(Into::into))
    }
}

impl redis3::HostConnection for HostState {
    fn drop(&mut self, this: Resource<RedisHandle>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl redis3::Host for HostState {}
