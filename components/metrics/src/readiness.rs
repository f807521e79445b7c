//! Reading the counters, and probing each dependency the app declares: the
//! `default` key-value store, the database (SQLite `default`, or PostgreSQL
//! when `database_url` is set), the message backend (outbound Redis at the
//! `redis_address` variable — the embedded broker under runtime-host, a
//! real server under Spin or with Redis runtime config; none when events
//! go over HTTP, `events_url`), and the counter store when it is Redis.

use anyhow::{Context as _, Result};
use app_common::storage::counters::Counters;

/// `(key, value)` of every metrics counter, found through the series
/// index (`app_common::telemetry::metrics::indexed_series`), never by listing a
/// store, read in batches; plus the host's dead-letter counter, which
/// runtime-host keeps in the `default` key-value store.
pub fn read_counters() -> Result<Vec<(String, i64)>> {
    let counters = Counters::open()?;
    let keys = app_common::telemetry::metrics::indexed_series(&counters)?;
    let mut entries = Vec::with_capacity(keys.len() + 1);
    for chunk in keys.chunks(GET_MANY_BATCH) {
        let values = counters.get_many(chunk)?;
        entries.extend(
            chunk
                .iter()
                .zip(values)
                .filter_map(|(k, v)| Some((k.clone(), v?))),
        );
    }
    let bucket = app_common::storage::kv::open_bucket()?;
    let dead = spin_sdk::wit::wasi::keyvalue::batch::get_many(
        &bucket,
        &[crate::DEAD_LETTERS_KEY.to_string()],
    )
    .context("read the dead-letter count")?;
    if let Some(n) = dead
        .into_iter()
        .find_map(|(_, v)| v.and_then(|b| app_common::storage::counters::decode(&b)))
    {
        entries.push((crate::DEAD_LETTERS_KEY.to_string(), n));
    }
    Ok(entries)
}

/// Keys per batch read.
const GET_MANY_BATCH: usize = 500;

pub struct Check {
    pub name: String,
    pub error: Option<String>,
}

pub fn check_all() -> Vec<Check> {
    let probe = |name: &str, result: Result<()>| Check {
        name: name.to_string(),
        error: result.err().map(|e| format!("{e:#}")),
    };
    let mut checks = vec![
        probe("key-value store `default`", check_key_value()),
        probe("database", check_database()),
    ];
    // With `events_url` set, events travel over HTTP inside the app (service
    // chaining to order-events): no message backend to probe.
    match app_common::config::var("events_url") {
        Ok(Some(_)) => {}
        _ => checks.push(probe("message backend", check_messages())),
    }
    if app_common::storage::counters::Backend::configured().ok()
        != Some(app_common::storage::counters::Backend::KeyValue)
    {
        checks.push(probe("counter store (Redis)", check_counters()));
    }
    checks
}

/// The counter store (Redis at `redis_address` when `counters_store` is
/// `redis`) answers a read.
fn check_counters() -> Result<()> {
    Counters::open()?.get_many(&["health:probe".to_string()])?;
    Ok(())
}

fn check_key_value() -> Result<()> {
    app_common::storage::kv::open()?
        .exists("health:probe")
        .context("read from the store")?;
    Ok(())
}

/// The configured database (SQLite `default`, or PostgreSQL at
/// `database_url`) opens and answers.
fn check_database() -> Result<()> {
    let conn = app_common::storage::db::open()?;
    app_common::storage::db::exec(&conn, "SELECT 1", &[])?;
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
