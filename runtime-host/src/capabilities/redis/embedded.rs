//! The embedded Redis: strings and sets in a SQLite file under the state
//! dir; `publish` hands the message to the embedded broker. It answers only
//! the commands listed at [`EmbeddedRedis`]'s `execute`.

use super::{Param, RResult, RedisConnection, RedisError, Reply};
use crate::messaging::Broker;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Sets a string key.
const UPSERT: &str = "INSERT INTO strings (key, value) VALUES (?1, ?2)
                      ON CONFLICT(key) DO UPDATE SET value = excluded.value";

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
            c.prepare_cached(UPSERT)?
                .execute(params![key, next.to_string().into_bytes()])
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

    /// Runs `sql` (`?1` the key, `?2` a member) once per member; how many
    /// rows it changed in all (what SADD and SREM answer).
    fn each_member(&self, sql: &str, key: &str, members: &[String]) -> RResult<u32> {
        self.with(|c| {
            let mut statement = c.prepare_cached(sql)?;
            let mut n = 0;
            for m in members {
                n += statement.execute(params![key, m])?;
            }
            Ok(n as u32)
        })
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
        self.with(|c| c.prepare_cached(UPSERT)?.execute(params![key, value]))
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
        self.each_member(
            "INSERT OR IGNORE INTO sets (key, member) VALUES (?1, ?2)",
            key,
            &values,
        )
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
        self.each_member(
            "DELETE FROM sets WHERE key = ?1 AND member = ?2",
            key,
            &values,
        )
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
                )));
            }
        };
        Ok(vec![reply])
    }
}

static INCR_LOCK: Mutex<()> = Mutex::new(());
