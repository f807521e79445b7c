//! Reading the counters, and probing each dependency the app declares: the
//! `default` key-value store, the database (SQLite `default`, or PostgreSQL
//! when `database_url` is set), and the message
//! backend (outbound Redis at the `redis_address` variable — the embedded
//! broker under runtime-host, a real server under Spin or with Redis
//! runtime config).

use crate::exposition::decode_counter;
use anyhow::{Context as _, Result};
use app_common::metrics::PREFIX;

/// `(key, value)` of every metrics counter in the `default` store, found
/// through the series index (`app_common::metrics::index_keys`), never by
/// listing the store: a scrape reads the index shards, then the keys they
/// name and the host's dead-letter counter, in `get-many` batches.
pub fn read_counters() -> Result<Vec<(String, i64)>> {
    let bucket = app_common::kv::open_bucket()?;
    let mut keys = vec![crate::DEAD_LETTERS_KEY.to_string()];
    for (shard, value) in get_many(&bucket, &app_common::metrics::index_keys())? {
        let Some(bytes) = value else { continue };
        let listed: Vec<String> = serde_json::from_slice(&bytes)
            .with_context(|| format!("`{shard}` is not a JSON list of keys"))?;
        keys.extend(listed.into_iter().filter(|k| k.starts_with(PREFIX)));
    }
    let mut counters = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(GET_MANY_BATCH) {
        counters.extend(
            get_many(&bucket, chunk)?
                .into_iter()
                .filter_map(|(k, v)| Some((k, decode_counter(&v?)?))),
        );
    }
    Ok(counters)
}

/// Keys per `get-many` call.
const GET_MANY_BATCH: usize = 500;

type Bucket = spin_sdk::wit::wasi::keyvalue::store::Bucket;

fn get_many(bucket: &Bucket, keys: &[String]) -> Result<Vec<(String, Option<Vec<u8>>)>> {
    spin_sdk::wit::wasi::keyvalue::batch::get_many(bucket, keys).context("read metric values")
}

pub struct Check {
    pub name: String,
    pub error: Option<String>,
}

pub fn check_all() -> Vec<Check> {
    let probe = |name: &str, result: Result<()>| Check {
        name: name.to_string(),
        error: result.err().map(|e| format!("{e:#}")),
    };
    vec![
        probe("key-value store `default`", check_key_value()),
        probe("database", check_database()),
        probe("message backend", check_messages()),
    ]
}

fn check_key_value() -> Result<()> {
    app_common::kv::open()?
        .exists("health:probe")
        .context("read from the store")?;
    Ok(())
}

/// The configured database (SQLite `default`, or PostgreSQL at
/// `database_url`) opens and answers.
fn check_database() -> Result<()> {
    let conn = app_common::db::open()?;
    app_common::db::exec(&conn, "SELECT 1", &[])?;
    Ok(())
}

/// The message backend answers, and the events channel has a subscriber.
/// Redis pub/sub hands a message only to the subscribers connected at that
/// instant, so after a Redis restart the app is not ready until the Redis
/// trigger has subscribed again. `PUBSUB NUMSUB` is a plain Redis command:
/// under Spin it counts Spin's trigger, under runtime-host's embedded
/// broker the subscribing components.
fn check_messages() -> Result<()> {
    use spin_sdk::redis::{RedisParameter, RedisResult};
    let address = app_common::config::var("redis_address")?
        .context("the `redis_address` variable is not set")?;
    let channel = app_common::config::var("events_channel")?
        .unwrap_or_else(|| app_common::events::DEFAULT_CHANNEL.into());
    let conn = spin_sdk::redis::Connection::open(&address)
        .map_err(|e| anyhow::anyhow!("connect to {address}: {e:?}"))?;
    conn.execute("PING", &[])
        .map_err(|e| anyhow::anyhow!("PING {address}: {e:?}"))?;
    let reply = conn
        .execute(
            "PUBSUB",
            &[
                RedisParameter::Binary(b"NUMSUB".to_vec()),
                RedisParameter::Binary(channel.clone().into_bytes()),
            ],
        )
        .map_err(|e| anyhow::anyhow!("PUBSUB NUMSUB {channel}: {e:?}"))?;
    // The reply is the channel, then its count.
    let subscribers = reply
        .iter()
        .rev()
        .find_map(|r| match r {
            RedisResult::Int64(n) => Some(*n),
            _ => None,
        })
        .context("PUBSUB NUMSUB gave no count")?;
    if subscribers < 1 {
        anyhow::bail!(
            "no subscriber on channel `{channel}` yet (the Redis trigger is reconnecting); events published now would reach nobody"
        );
    }
    Ok(())
}
