//! Outbound Redis (`fermyon:spin/redis@2.0.0`, `spin:redis/redis@3.0.0`):
//! one backend trait, two implementations.
//!
//! - [`RealRedis`]: a connection manager per address (it reconnects after the
//!   server restarts). Every address is a real Redis server, as under Spin.
//! - [`EmbeddedRedis`]: strings and sets in a SQLite file under the state
//!   dir, and `publish` hands the message to the embedded broker
//!   ([`crate::messaging`]), so an app that publishes and subscribes runs with
//!   nothing installed. It stands in only for the addresses the app's own
//!   Redis triggers listen on, and only in embedded messaging mode (the
//!   start-up banner says which); a command it does not implement fails
//!   naming embedded mode and how to leave it.
//!
//! Every call to a real Redis server is bounded in time
//! ([`client`]): a stopped Redis fails the guest's call
//! promptly with an error starting with `unavailable:`.
//!
//! Either way, a component may only open addresses its
//! `allowed_outbound_hosts` allows (`redis://host:port`), as in Spin.

pub mod client;
pub mod guest;

use crate::messaging::Broker;
use async_trait::async_trait;
use redis::AsyncCommands;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use client::{bounded, connect, describe};

#[derive(Debug, Clone)]
pub enum RedisError {
    InvalidAddress,
    TypeError,
    Other(String),
}

pub type RResult<T> = Result<T, RedisError>;

/// A `redis-parameter`.
#[derive(Debug, Clone)]
pub enum Param {
    Int64(i64),
    Binary(Vec<u8>),
}

/// A `redis-result`.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Nil,
    Status(String),
    Int64(i64),
    Binary(Vec<u8>),
}

#[async_trait]
pub trait RedisConnection: Send + Sync {
    async fn publish(&self, channel: &str, payload: Vec<u8>) -> RResult<()>;
    async fn get(&self, key: &str) -> RResult<Option<Vec<u8>>>;
    async fn set(&self, key: &str, value: Vec<u8>) -> RResult<()>;
    async fn incr(&self, key: &str) -> RResult<i64>;
    async fn del(&self, keys: Vec<String>) -> RResult<u32>;
    async fn sadd(&self, key: &str, values: Vec<String>) -> RResult<u32>;
    async fn smembers(&self, key: &str) -> RResult<Vec<String>>;
    async fn srem(&self, key: &str, values: Vec<String>) -> RResult<u32>;
    async fn execute(&self, command: &str, args: Vec<Param>) -> RResult<Vec<Reply>>;
}

/// Opens connections by address for the whole host.
#[derive(Default)]
pub struct RedisProvider {
    /// In embedded mode: the store that answers the app's trigger addresses.
    embedded: Option<EmbeddedAddresses>,
    real: RealRedisPool,
}

struct EmbeddedAddresses {
    addresses: Vec<String>,
    store: Arc<EmbeddedRedis>,
}

impl RedisProvider {
    /// Every address is a real server.
    pub fn real() -> RedisProvider {
        RedisProvider::default()
    }

    /// `addresses` (the app's Redis trigger addresses) are answered by
    /// `store`; any other address is a real server.
    pub fn embedded(addresses: Vec<String>, store: Arc<EmbeddedRedis>) -> RedisProvider {
        RedisProvider {
            embedded: Some(EmbeddedAddresses {
                addresses: addresses.iter().map(|a| same_address(a)).collect(),
                store,
            }),
            real: RealRedisPool::default(),
        }
    }

    /// The addresses the embedded store answers (empty in Redis mode).
    pub fn embedded_addresses(&self) -> &[String] {
        self.embedded
            .as_ref()
            .map(|e| e.addresses.as_slice())
            .unwrap_or_default()
    }

    pub async fn open(&self, address: &str) -> RResult<Arc<dyn RedisConnection>> {
        if let Some(embedded) = &self.embedded {
            if embedded.addresses.contains(&same_address(address)) {
                return Ok(embedded.store.clone());
            }
        }
        self.real.open(address).await
    }
}

/// An address as compared with the trigger's: a trailing `/` (an empty
/// path) does not make it another server.
fn same_address(address: &str) -> String {
    address.trim().trim_end_matches('/').to_string()
}

/// Checks `address` against the component's `allowed_outbound_hosts`. A
/// denied address is `InvalidAddress`, as in Spin; the log says why.
pub fn check_allowed(component: &crate::state::ComponentContext, address: &str) -> RResult<()> {
    let (scheme, host, port) = crate::http::outbound::address_parts(address, &["redis", "rediss"])
        .ok_or(RedisError::InvalidAddress)?;
    if component.outbound.allows(&scheme, &host, port) {
        return Ok(());
    }
    tracing::warn!(
        component = %component.id,
        address = %client::redacted(address),
        "outbound Redis denied: add the address to the component's allowed_outbound_hosts"
    );
    Err(RedisError::InvalidAddress)
}

// ---- embedded ----------------------------------------------------------------

pub struct EmbeddedRedis {
    conn: Mutex<Connection>,
    broker: Arc<Broker>,
}

impl EmbeddedRedis {
    pub fn open(path: &Path, broker: Arc<Broker>) -> anyhow::Result<Arc<Self>> {
        use anyhow::Context as _;
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open embedded Redis store {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS strings (key TEXT PRIMARY KEY, value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS sets (key TEXT NOT NULL, member TEXT NOT NULL,
                                              PRIMARY KEY (key, member));",
        )?;
        Ok(Arc::new(Self {
            conn: Mutex::new(conn),
            broker,
        }))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> RResult<T> {
        let mut c = self
            .conn
            .lock()
            .map_err(|_| RedisError::Other("embedded store lock poisoned".into()))?;
        f(&mut c).map_err(|e| RedisError::Other(e.to_string()))
    }

    fn incr_by(&self, key: &str, delta: i64) -> RResult<i64> {
        let current = self.get_sync(key)?;
        let n = match current {
            None => 0,
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or(RedisError::TypeError)?,
        };
        let next = n.checked_add(delta).ok_or(RedisError::TypeError)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO strings (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, next.to_string().into_bytes()],
            )
        })?;
        Ok(next)
    }

    /// Queues the message; how many components subscribe to `channel` (what
    /// Redis `PUBLISH` answers).
    fn publish_counted(&self, channel: &str, payload: &[u8]) -> RResult<usize> {
        self.broker
            .publish(channel, payload)
            .map_err(|e| RedisError::Other(format!("{e:#}")))
    }

    fn get_sync(&self, key: &str) -> RResult<Option<Vec<u8>>> {
        self.with(|c| {
            c.prepare_cached("SELECT value FROM strings WHERE key = ?1")?
                .query_row(params![key], |r| r.get(0))
                .optional()
        })
    }
}

fn text(p: &Param) -> String {
    match p {
        Param::Int64(i) => i.to_string(),
        Param::Binary(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

#[async_trait]
impl RedisConnection for EmbeddedRedis {
    async fn publish(&self, channel: &str, payload: Vec<u8>) -> RResult<()> {
        self.publish_counted(channel, &payload).map(drop)
    }

    async fn get(&self, key: &str) -> RResult<Option<Vec<u8>>> {
        self.get_sync(key)
    }

    async fn set(&self, key: &str, value: Vec<u8>) -> RResult<()> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO strings (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])
        })
        .map(drop)
    }

    async fn incr(&self, key: &str) -> RResult<i64> {
        // One lock for read-modify-write keeps INCR atomic within the host.
        let _guard = INCR_LOCK.lock();
        self.incr_by(key, 1)
    }

    async fn del(&self, keys: Vec<String>) -> RResult<u32> {
        self.with(|c| {
            let mut n = 0;
            for k in &keys {
                n += c.execute("DELETE FROM strings WHERE key = ?1", params![k])?;
                n += c
                    .execute("DELETE FROM sets WHERE key = ?1", params![k])?
                    .min(1);
            }
            Ok(n as u32)
        })
    }

    async fn sadd(&self, key: &str, values: Vec<String>) -> RResult<u32> {
        self.with(|c| {
            let mut n = 0;
            for v in &values {
                n += c.execute(
                    "INSERT OR IGNORE INTO sets (key, member) VALUES (?1, ?2)",
                    params![key, v],
                )?;
            }
            Ok(n as u32)
        })
    }

    async fn smembers(&self, key: &str) -> RResult<Vec<String>> {
        self.with(|c| {
            let mut s =
                c.prepare_cached("SELECT member FROM sets WHERE key = ?1 ORDER BY member")?;
            let rows = s.query_map(params![key], |r| r.get(0))?;
            rows.collect()
        })
    }

    async fn srem(&self, key: &str, values: Vec<String>) -> RResult<u32> {
        self.with(|c| {
            let mut n = 0;
            for v in &values {
                n += c.execute(
                    "DELETE FROM sets WHERE key = ?1 AND member = ?2",
                    params![key, v],
                )?;
            }
            Ok(n as u32)
        })
    }

    /// The commands the typed functions cover, plus INCRBY, EXISTS and
    /// `PUBSUB NUMSUB`; anything else is an error naming the command.
    /// `PUBLISH` and `PUBSUB NUMSUB` count subscribing components, as Redis
    /// counts subscribed clients (the embedded broker's subscriptions are
    /// live whenever the host runs).
    async fn execute(&self, command: &str, args: Vec<Param>) -> RResult<Vec<Reply>> {
        let arg = |i: usize| args.get(i).map(text).ok_or(RedisError::TypeError);
        let reply = match command.to_ascii_uppercase().as_str() {
            // Readiness probes: the embedded store is up whenever the host is.
            "PING" => Reply::Status("PONG".into()),
            "GET" => match self.get(&arg(0)?).await? {
                Some(v) => Reply::Binary(v),
                None => Reply::Nil,
            },
            "SET" => {
                let value = match args.get(1) {
                    Some(Param::Binary(b)) => b.clone(),
                    Some(Param::Int64(i)) => i.to_string().into_bytes(),
                    None => return Err(RedisError::TypeError),
                };
                self.set(&arg(0)?, value).await?;
                Reply::Status("OK".into())
            }
            "INCR" => Reply::Int64(self.incr(&arg(0)?).await?),
            "INCRBY" => {
                let delta = match args.get(1) {
                    Some(Param::Int64(i)) => *i,
                    Some(p) => text(p).parse().map_err(|_| RedisError::TypeError)?,
                    None => return Err(RedisError::TypeError),
                };
                let _guard = INCR_LOCK.lock();
                Reply::Int64(self.incr_by(&arg(0)?, delta)?)
            }
            "DEL" => Reply::Int64(self.del(args.iter().map(text).collect()).await? as i64),
            "EXISTS" => Reply::Int64(self.get(&arg(0)?).await?.is_some() as i64),
            "PUBLISH" => {
                let payload = match args.get(1) {
                    Some(Param::Binary(b)) => b.clone(),
                    Some(p) => text(p).into_bytes(),
                    None => return Err(RedisError::TypeError),
                };
                Reply::Int64(self.publish_counted(&arg(0)?, &payload)? as i64)
            }
            "PUBSUB" if arg(0)?.eq_ignore_ascii_case("NUMSUB") => {
                let counts = args[1..].iter().map(text).flat_map(|channel| {
                    let n = self.broker.subscriber_count(&channel) as i64;
                    [Reply::Binary(channel.into_bytes()), Reply::Int64(n)]
                });
                return Ok(counts.collect());
            }
            other => {
                return Err(RedisError::Other(format!(
                    "`{other}` is not supported by the embedded Redis store, which answers the app's trigger address in embedded mode (it has PING, GET, SET, INCR, INCRBY, DEL, EXISTS, PUBLISH, PUBSUB NUMSUB); for other commands run a real Redis and start the host with --message-backend redis"
                )))
            }
        };
        Ok(vec![reply])
    }
}

static INCR_LOCK: Mutex<()> = Mutex::new(());

// ---- real Redis ----------------------------------------------------------------

/// Connection managers by address; each reconnects on its own.
#[derive(Default)]
pub struct RealRedisPool {
    conns: tokio::sync::Mutex<HashMap<String, Arc<RealRedis>>>,
}

impl RealRedisPool {
    async fn open(&self, address: &str) -> RResult<Arc<dyn RedisConnection>> {
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
