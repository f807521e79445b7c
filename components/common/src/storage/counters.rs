//! Shared counters (rate-limit windows, metrics) and where they live,
//! chosen by the `counters_store` variable:
//!
//! - `key-value` (the default): `wasi:keyvalue` atomic increments in the
//!   `default` store. A counter that expires is registered in the expiry
//!   index ([`crate::storage::expiry`]) when it is created, and the sweeper removes it.
//! - `redis`: outbound Redis at `redis_address`. An increment is one
//!   `INCRBY`, or for an expiring counter one script doing `INCRBY` and, on
//!   creation, `PEXPIREAT` (atomic: no counter without its expiry). Redis
//!   expires keys itself; nothing is written to key-value.
//!
//! Why Redis for the edge profile: every request counts itself at least
//! twice (its rate-limit window, its metrics), and the edge platform's
//! key-value allows 50 writes/s per app; Redis counts tens of thousands per
//! second, is shared by every instance, and has native expiry. PostgreSQL
//! could count too, but a hot-row update per request would serialise
//! requests on row locks and fill the write-ahead log with throwaway
//! numbers.

use anyhow::{Context as _, Result, bail};
use spin_sdk::redis::{RedisParameter, RedisResult};
use spin_sdk::wit::wasi::keyvalue::atomics;
use spin_sdk::wit::wasi::keyvalue::store::Bucket;

/// The variable choosing the backend.
pub const VARIABLE: &str = "counters_store";

/// Where counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    KeyValue,
    Redis,
}

impl Backend {
    pub fn parse(raw: Option<&str>) -> Result<Backend> {
        match raw.map(str::trim) {
            None | Some("key-value") => Ok(Backend::KeyValue),
            Some("redis") => Ok(Backend::Redis),
            Some(other) => bail!(
                "variable `{VARIABLE}` must be `key-value` or `redis` (outbound Redis at `redis_address`), got `{other}`"
            ),
        }
    }

    /// The backend the variables choose.
    pub fn configured() -> Result<Backend> {
        Backend::parse(crate::config::var(VARIABLE)?.as_deref())
    }
}

/// An open counter store.
pub enum Counters {
    KeyValue(Bucket),
    Redis(spin_sdk::redis::Connection),
}

/// `INCRBY` and, when that created the key, `PEXPIREAT`; returns the count.
const INCREMENT_EXPIRING: &str = "local n = redis.call('INCRBY', KEYS[1], ARGV[1]) \
     if n == tonumber(ARGV[1]) then redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end \
     return n";

impl Counters {
    pub fn open() -> Result<Counters> {
        match Backend::configured()? {
            Backend::KeyValue => Ok(Counters::KeyValue(crate::storage::kv::open_bucket()?)),
            Backend::Redis => {
                let address = crate::config::var("redis_address")?.with_context(|| {
                    format!("`{VARIABLE}` is `redis` but the `redis_address` variable is empty")
                })?;
                let conn = spin_sdk::redis::Connection::open(&address)
                    .map_err(RedisFailure)
                    .context("open the counter store (Redis at `redis_address`)")?;
                Ok(Counters::Redis(conn))
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Counters::KeyValue(_) => Backend::KeyValue,
            Counters::Redis(_) => Backend::Redis,
        }
    }

    /// Adds `delta` to the counter at `key` (missing = 0) and returns the
    /// new count. With `expires_at_millis`, a counter this call creates is
    /// removed at that time (Unix ms).
    pub fn add(&self, key: &str, delta: i64, expires_at_millis: Option<u64>) -> Result<i64> {
        match self {
            Counters::KeyValue(bucket) => {
                let count = atomics::increment(bucket, key, delta)
                    .with_context(|| format!("increment `{key}`"))?;
                if let (Some(at), true) = (expires_at_millis, count == delta)
                    && let Err(e) = crate::storage::expiry::schedule(key, at)
                {
                    // An unregistered counter would never be removed:
                    // drop it (its count restarts) rather than keep it.
                    let _ = bucket.delete(key);
                    return Err(e.context(format!("register `{key}` for expiry")));
                }
                Ok(count)
            }
            Counters::Redis(conn) => {
                let reply = match expires_at_millis {
                    None => conn.execute("INCRBY", &[binary(key), int(delta)]),
                    Some(at) => conn.execute(
                        "EVAL",
                        &[
                            binary(INCREMENT_EXPIRING),
                            int(1),
                            binary(key),
                            int(delta),
                            int(at as i64),
                        ],
                    ),
                }
                .map_err(RedisFailure)
                .with_context(|| format!("increment `{key}` in Redis"))?;
                match reply.first() {
                    Some(RedisResult::Int64(n)) => Ok(*n),
                    other => bail!("INCRBY `{key}` answered {other:?}, not a count"),
                }
            }
        }
    }

    /// The counts at `keys` (absent: `None`), in order.
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<i64>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Counters::KeyValue(bucket) => {
                let values = spin_sdk::wit::wasi::keyvalue::batch::get_many(bucket, keys)
                    .context("read counters")?;
                Ok(values
                    .into_iter()
                    .map(|(_, v)| v.and_then(|bytes| decode(&bytes)))
                    .collect())
            }
            Counters::Redis(conn) => {
                let args: Vec<RedisParameter> = keys.iter().map(|k| binary(k)).collect();
                let reply = conn
                    .execute("MGET", &args)
                    .map_err(RedisFailure)
                    .context("read counters from Redis")?;
                if reply.len() != keys.len() {
                    bail!(
                        "MGET of {} keys answered {} values",
                        keys.len(),
                        reply.len()
                    );
                }
                Ok(reply
                    .into_iter()
                    .map(|r| match r {
                        RedisResult::Binary(bytes) => decode(&bytes),
                        RedisResult::Int64(n) => Some(n),
                        _ => None,
                    })
                    .collect())
            }
        }
    }

    /// Claims the lease at `key` for `interval_millis` if it is due (absent
    /// or past); `false` when another request holds it. Key-value: one read
    /// in the common case, compare-and-swap to claim. Redis: one `SET NX PX`.
    pub fn claim_lease(&self, key: &str, interval_millis: u64) -> Result<bool> {
        let now = crate::util::time::now_millis();
        match self {
            Counters::KeyValue(bucket) => {
                use atomics::Cas;
                if !lease_due(bucket.get(key).context("read a lease")?.as_deref(), now) {
                    return Ok(false);
                }
                let cas = Cas::new(bucket, key).context("begin claiming a lease")?;
                if !lease_due(cas.current().context("read a lease")?.as_deref(), now) {
                    return Ok(false);
                }
                let next = (now + interval_millis).to_string();
                // A failed swap: another request claimed it first.
                Ok(atomics::swap(cas, next.as_bytes()).is_ok())
            }
            Counters::Redis(conn) => {
                let reply = conn
                    .execute(
                        "SET",
                        &[
                            binary(key),
                            binary(&now.to_string()),
                            binary("NX"),
                            binary("PX"),
                            int(interval_millis as i64),
                        ],
                    )
                    .map_err(RedisFailure)
                    .with_context(|| format!("claim lease `{key}` in Redis"))?;
                Ok(matches!(reply.first(), Some(RedisResult::Status(_))))
            }
        }
    }

    /// Makes the lease at `key` due again (more work is waiting).
    pub fn release_lease(&self, key: &str) -> Result<()> {
        match self {
            Counters::KeyValue(bucket) => bucket
                .delete(key)
                .with_context(|| format!("release lease `{key}`")),
            Counters::Redis(conn) => conn
                .execute("DEL", &[binary(key)])
                .map(|_| ())
                .map_err(RedisFailure)
                .with_context(|| format!("release lease `{key}` in Redis")),
        }
    }

    /// Adds `members` to the set `key` (Redis only; the key-value backend
    /// keeps its sets as JSON lists, see [`crate::telemetry::metrics`]).
    pub fn redis_set_add(&self, key: &str, members: &[&str]) -> Result<()> {
        let Counters::Redis(conn) = self else {
            bail!("sets of counters live in Redis only");
        };
        let mut args = vec![binary(key)];
        args.extend(members.iter().map(|m| binary(m)));
        conn.execute("SADD", &args)
            .map_err(RedisFailure)
            .with_context(|| format!("add to `{key}` in Redis"))?;
        Ok(())
    }

    /// The members of the set `key` (Redis only).
    pub fn redis_set_members(&self, key: &str) -> Result<Vec<String>> {
        let Counters::Redis(conn) = self else {
            bail!("sets of counters live in Redis only");
        };
        let reply = conn
            .execute("SMEMBERS", &[binary(key)])
            .map_err(RedisFailure)
            .with_context(|| format!("read `{key}` from Redis"))?;
        Ok(reply
            .into_iter()
            .filter_map(|r| match r {
                RedisResult::Binary(bytes) => String::from_utf8(bytes).ok(),
                RedisResult::Status(s) => Some(s),
                _ => None,
            })
            .collect())
    }
}

/// Whether a key-value lease holding `stored` (the next due time, Unix ms,
/// as decimal text) is due at `now`; an absent or unreadable lease is due.
pub fn lease_due(stored: Option<&[u8]>, now: u64) -> bool {
    stored
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_none_or(|next| next <= now)
}

/// A counter's stored bytes: Spin's 8-byte little-endian `i64`, or the
/// decimal text Redis keeps.
pub fn decode(bytes: &[u8]) -> Option<i64> {
    if let Ok(array) = <[u8; 8]>::try_from(bytes) {
        return Some(i64::from_le_bytes(array));
    }
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

fn binary(text: &str) -> RedisParameter {
    RedisParameter::Binary(text.as_bytes().to_vec())
}

fn int(n: i64) -> RedisParameter {
    RedisParameter::Int64(n)
}

/// A Redis error, kept as a type so [`is_unavailable`] can tell an outage
/// from a bug.
#[derive(Debug)]
pub struct RedisFailure(pub spin_sdk::redis::Error);

impl std::fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            spin_sdk::redis::Error::InvalidAddress => {
                f.write_str("the Redis address is invalid or not allowed")
            }
            spin_sdk::redis::Error::TooManyConnections => f.write_str("too many Redis connections"),
            spin_sdk::redis::Error::TypeError => f.write_str("a Redis value has the wrong type"),
            spin_sdk::redis::Error::Other(e) => write!(f, "Redis: {e}"),
        }
    }
}

impl std::error::Error for RedisFailure {}

/// Whether `error` is the counter store's Redis being down or saturated
/// (503), rather than a configuration bug.
pub fn is_unavailable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<RedisFailure>(),
            Some(RedisFailure(
                spin_sdk::redis::Error::Other(_) | spin_sdk::redis::Error::TooManyConnections
            ))
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_is_key_value_unless_redis_is_asked_for() {
        assert_eq!(Backend::parse(None).unwrap(), Backend::KeyValue);
        assert_eq!(
            Backend::parse(Some("key-value")).unwrap(),
            Backend::KeyValue
        );
        assert_eq!(Backend::parse(Some(" redis ")).unwrap(), Backend::Redis);
        let e = Backend::parse(Some("postgres")).unwrap_err().to_string();
        assert!(
            e.contains("counters_store") && e.contains("postgres"),
            "{e}"
        );
    }

    #[test]
    fn leases_are_due_when_absent_unreadable_or_past() {
        assert!(lease_due(None, 5));
        assert!(lease_due(Some(b"garbage"), 5));
        assert!(lease_due(Some(b"5"), 5));
        assert!(!lease_due(Some(b"6"), 5));
    }

    #[test]
    fn counters_decode_from_either_store() {
        assert_eq!(decode(&42i64.to_le_bytes()), Some(42));
        assert_eq!(decode(b"42"), Some(42));
        assert_eq!(decode(b"x"), None);
    }

    #[test]
    fn redis_outages_are_told_from_bugs() {
        let down = anyhow::Error::new(RedisFailure(spin_sdk::redis::Error::Other(
            "connection refused".into(),
        )))
        .context("count a request");
        assert!(is_unavailable(&down));
        let denied = anyhow::Error::new(RedisFailure(spin_sdk::redis::Error::InvalidAddress));
        assert!(!is_unavailable(&denied));
    }
}
