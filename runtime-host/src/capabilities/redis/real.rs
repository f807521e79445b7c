//! Real Redis servers: one connection manager per address (it reconnects
//! after the server restarts), every call bounded in time ([`super::client`]).

use super::client::{bounded, connect, describe};
use super::{Param, RResult, RedisConnection, RedisError, Reply};
use async_trait::async_trait;
use redis::AsyncCommands;
use std::collections::HashMap;
use std::sync::Arc;

/// Connection managers by address; each reconnects on its own.
#[derive(Default)]
pub struct RealRedisPool {
    conns: tokio::sync::Mutex<HashMap<String, Arc<RealRedis>>>,
}

impl RealRedisPool {
    pub(super) async fn open(&self, address: &str) -> RResult<Arc<dyn RedisConnection>> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(address) {
            return Ok(c.clone());
        }
        redis::Client::open(address).map_err(|_| RedisError::InvalidAddress)?;
        let manager = connect(address)
            .await
            .map_err(|e| RedisError::Other(format!("cannot connect: {}", describe(&e))))?;
        let c = Arc::new(RealRedis { manager });
        conns.insert(address.to_string(), c.clone());
        Ok(c)
    }
}

pub struct RealRedis {
    manager: redis::aio::ConnectionManager,
}

fn other(e: redis::RedisError) -> RedisError {
    if e.kind() == redis::ErrorKind::UnexpectedReturnType {
        RedisError::TypeError
    } else {
        RedisError::Other(describe(&e))
    }
}

#[async_trait]
impl RedisConnection for RealRedis {
    async fn publish(&self, channel: &str, payload: Vec<u8>) -> RResult<()> {
        let mut c = self.manager.clone();
        bounded(c.publish::<_, _, i64>(channel, payload))
            .await
            .map(drop)
            .map_err(other)
    }
    async fn get(&self, key: &str) -> RResult<Option<Vec<u8>>> {
        let mut c = self.manager.clone();
        bounded(c.get(key)).await.map_err(other)
    }
    async fn set(&self, key: &str, value: Vec<u8>) -> RResult<()> {
        let mut c = self.manager.clone();
        bounded(c.set::<_, _, ()>(key, value)).await.map_err(other)
    }
    async fn incr(&self, key: &str) -> RResult<i64> {
        let mut c = self.manager.clone();
        bounded(c.incr(key, 1)).await.map_err(other)
    }
    async fn del(&self, keys: Vec<String>) -> RResult<u32> {
        let mut c = self.manager.clone();
        bounded(c.del(keys)).await.map_err(other)
    }
    async fn sadd(&self, key: &str, values: Vec<String>) -> RResult<u32> {
        let mut c = self.manager.clone();
        bounded(c.sadd(key, values)).await.map_err(other)
    }
    async fn smembers(&self, key: &str) -> RResult<Vec<String>> {
        let mut c = self.manager.clone();
        bounded(c.smembers(key)).await.map_err(other)
    }
    async fn srem(&self, key: &str, values: Vec<String>) -> RResult<u32> {
        let mut c = self.manager.clone();
        bounded(c.srem(key, values)).await.map_err(other)
    }
    async fn execute(&self, command: &str, args: Vec<Param>) -> RResult<Vec<Reply>> {
        let mut cmd = redis::cmd(command);
        for a in &args {
            match a {
                Param::Int64(i) => cmd.arg(*i),
                Param::Binary(b) => cmd.arg(b.as_slice()),
            };
        }
        let mut c = self.manager.clone();
        let value: redis::Value = bounded(cmd.query_async(&mut c)).await.map_err(other)?;
        Ok(flatten(value))
    }
}

fn flatten(v: redis::Value) -> Vec<Reply> {
    match v {
        redis::Value::Nil => vec![Reply::Nil],
        redis::Value::Int(i) => vec![Reply::Int64(i)],
        redis::Value::BulkString(b) => vec![Reply::Binary(b)],
        redis::Value::SimpleString(s) => vec![Reply::Status(s)],
        redis::Value::Okay => vec![Reply::Status("OK".into())],
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.into_iter().flat_map(flatten).collect()
        }
        other => vec![Reply::Binary(format!("{other:?}").into_bytes())],
    }
}
