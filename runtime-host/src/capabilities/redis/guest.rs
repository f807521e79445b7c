//! Outbound Redis as guests see it: `fermyon:spin/redis@2.0.0` and
//! `spin:redis/redis@3.0.0`, adapters onto [`super::RedisConnection`].
//!
//! The two versions have the same functions and types under other names;
//! the p2 one takes the instance state, the p3 one the store's accessor (so
//! a call waiting on Redis does not hold the store). One macro writes the
//! adapters of both.

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

/// `From<RedisError>` for a version's error type.
macro_rules! error_from_redis {
    ($($error:ty),*) => {$(
        impl From<RedisError> for $error {
            fn from(e: RedisError) -> Self {
                match e {
                    RedisError::InvalidAddress => Self::InvalidAddress,
                    RedisError::TypeError => Self::TypeError,
                    RedisError::Other(m) => Self::Other(m),
                }
            }
        }
    )*};
}

error_from_redis!(spin_redis::Error, redis3::Error);

/// The connection functions of version `$v` (its bindings module): each
/// takes the connection `$conn` (an expression of the handle `$this`, with
/// the receiver `$recv`) and converts the result and error.
macro_rules! redis_functions {
    ($v:ident, ($($recv:tt)*), |$this:ident| $conn:expr) => {
        async fn publish(
            $($recv)*,
            $this: Resource<RedisHandle>,
            channel: String,
            payload: Vec<u8>,
        ) -> WResult<Result<(), $v::Error>> {
            Ok($conn.publish(&channel, payload).await.map_err(Into::into))
        }

        async fn get(
            $($recv)*,
            $this: Resource<RedisHandle>,
            key: String,
        ) -> WResult<Result<Option<Vec<u8>>, $v::Error>> {
            Ok($conn.get(&key).await.map_err(Into::into))
        }

        async fn set(
            $($recv)*,
            $this: Resource<RedisHandle>,
            key: String,
            value: Vec<u8>,
        ) -> WResult<Result<(), $v::Error>> {
            Ok($conn.set(&key, value).await.map_err(Into::into))
        }

        async fn incr(
            $($recv)*,
            $this: Resource<RedisHandle>,
            key: String,
        ) -> WResult<Result<i64, $v::Error>> {
            Ok($conn.incr(&key).await.map_err(Into::into))
        }

        async fn del(
            $($recv)*,
            $this: Resource<RedisHandle>,
            keys: Vec<String>,
        ) -> WResult<Result<u32, $v::Error>> {
            Ok($conn.del(keys).await.map_err(Into::into))
        }

        async fn sadd(
            $($recv)*,
            $this: Resource<RedisHandle>,
            key: String,
            values: Vec<String>,
        ) -> WResult<Result<u32, $v::Error>> {
            Ok($conn.sadd(&key, values).await.map_err(Into::into))
        }

        async fn smembers(
            $($recv)*,
            $this: Resource<RedisHandle>,
            key: String,
        ) -> WResult<Result<Vec<String>, $v::Error>> {
            Ok($conn.smembers(&key).await.map_err(Into::into))
        }

        async fn srem(
            $($recv)*,
            $this: Resource<RedisHandle>,
            key: String,
            values: Vec<String>,
        ) -> WResult<Result<u32, $v::Error>> {
            Ok($conn.srem(&key, values).await.map_err(Into::into))
        }

        async fn execute(
            $($recv)*,
            $this: Resource<RedisHandle>,
            command: String,
            arguments: Vec<$v::RedisParameter>,
        ) -> WResult<Result<Vec<$v::RedisResult>, $v::Error>> {
            let args = arguments
                .into_iter()
                .map(|a| match a {
                    $v::RedisParameter::Int64(i) => Param::Int64(i),
                    $v::RedisParameter::Binary(b) => Param::Binary(b),
                })
                .collect();
            let replies = match $conn.execute(&command, args).await {
                Ok(r) => r,
                Err(e) => return Ok(Err(e.into())),
            };
            Ok(Ok(replies
                .into_iter()
                .map(|r| match r {
                    Reply::Nil => $v::RedisResult::Nil,
                    Reply::Status(s) => $v::RedisResult::Status(s),
                    Reply::Int64(i) => $v::RedisResult::Int64(i),
                    Reply::Binary(b) => $v::RedisResult::Binary(b),
                })
                .collect()))
        }
    };
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

// ---- fermyon:spin/redis@2.0.0 -----------------------------------------------

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

    redis_functions!(spin_redis, (&mut self), |this| self.redis(&this)?);

    async fn drop(&mut self, this: Resource<RedisHandle>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

// ---- spin:redis@3.0.0 ---------------------------------------------------------

fn redis_of(acc: &Acc, h: &Resource<RedisHandle>) -> WResult<Arc<dyn RedisConnection>> {
    acc.with(|mut a| Ok(a.get().table.get(h)?.0.clone()))
}

impl redis3::HostConnectionWithStore<HostState> for P3Capabilities {
    async fn open(
        acc: &Acc,
        address: String,
    ) -> WResult<Result<Resource<RedisHandle>, redis3::Error>> {
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

    redis_functions!(redis3, (acc: &Acc), |this| redis_of(acc, &this)?);
}

impl redis3::HostConnection for HostState {
    fn drop(&mut self, this: Resource<RedisHandle>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl redis3::Host for HostState {}
