//! Request and business metrics, recorded by every component into the
//! shared counter store ([`crate::storage::counters`]: key-value, or Redis in the
//! edge profile) with atomic increments (exact under parallel load and
//! across host instances). The metrics component reads them back
//! and renders the Prometheus exposition.
//!
//! Key scheme (one counter per key, values are Spin's 8-byte little-endian
//! counters), all under [`PREFIX`]:
//!
//! - `bucket:http_request_duration_seconds{component,method,route,status,le=".."}`:
//!   observations that fell into that bucket only (not cumulative; the
//!   exporter sums them up), `le="+Inf"` for those above the last bound.
//!   `http_requests_total{component,method,route,status}` is the sum of a
//!   series' buckets, so a request costs two increments, not three.
//! - `sum_micros:http_request_duration_seconds{component,method,route,status}`:
//!   total observed duration in microseconds
//! - `counter:business_operations_total{operation="..",outcome=".."}`
//! - `counter:<name>{..}` for other counter families ([`add_to_counter`]):
//!   `upload_bytes_total{type=".."}` (bytes of stored uploads, by stored
//!   media type)
//!
//! Recording is best-effort: a failure is logged to stderr and never fails
//! the request.
//!
//! The series index: a scrape must not list the whole store, so every key
//! above is also named in one of [`INDEX_SHARDS`] index keys
//! (`index:<n>`, a JSON array, shard by FNV-1a of the key), added with
//! compare-and-swap when a counter is new (its increment returned the
//! delta) and re-checked, read-only, whenever a count reaches a power of
//! two (so a registration lost to a crash heals). The index is as bounded
//! as the series: component × method × route × status × bucket.

use crate::storage::counters::{Backend, Counters};
use anyhow::{Context as _, Result};

pub const PREFIX: &str = "metrics:v1:";

/// Upper bounds (seconds) of the request-duration histogram.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A label value escaped for the Prometheus text format: backslash,
/// double quote and line feed.
pub fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `name{k="v",...}` with Prometheus label-value escaping.
pub fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// The `le` label of the bucket an observation of `seconds` falls into.
pub fn bucket_label(seconds: f64) -> String {
    DURATION_BUCKETS
        .iter()
        .find(|bound| seconds <= **bound)
        .map_or_else(|| "+Inf".to_string(), |bound| bound.to_string())
}

/// The counters one request increments, with their deltas.
pub fn request_increments(
    component: &str,
    method: &str,
    route: &str,
    status: u16,
    duration_secs: f64,
) -> Vec<(String, i64)> {
    let status = status.to_string();
    let labels = [
        ("component", component),
        ("method", method),
        ("route", route),
        ("status", status.as_str()),
    ];
    let le = bucket_label(duration_secs);
    let mut bucket_labels = labels.to_vec();
    bucket_labels.push(("le", &le));
    vec![
        (
            format!(
                "{PREFIX}bucket:{}",
                series("http_request_duration_seconds", &bucket_labels)
            ),
            1,
        ),
        (
            format!(
                "{PREFIX}sum_micros:{}",
                series("http_request_duration_seconds", &labels)
            ),
            (duration_secs * 1e6).round() as i64,
        ),
    ]
}

/// Shards of the series index.
pub const INDEX_SHARDS: u64 = 16;

/// The key of index shard `shard`.
pub fn index_key(shard: u64) -> String {
    format!("{PREFIX}index:{shard}")
}

/// Every index shard key, what a scrape reads first.
pub fn index_keys() -> Vec<String> {
    (0..INDEX_SHARDS).map(index_key).collect()
}

/// The shard naming `key` (FNV-1a: stable across builds and hosts).
pub fn shard_of(key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % INDEX_SHARDS
}

/// Whether an increment by `delta` that returned `value` should check the
/// index: the counter is new, or a power-of-two count (rare) re-checks.
pub fn needs_index_check(delta: i64, value: i64) -> bool {
    value == delta || (value > 0 && (value as u64).is_power_of_two())
}

/// `index` with `keys` added (sorted, no duplicates), or `None` when it
/// names them all already (nothing to write).
pub fn with_keys(index: Option<Vec<String>>, keys: &[&str]) -> Option<Vec<String>> {
    let mut index = index.unwrap_or_default();
    let missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !index.iter().any(|i| i == k))
        .collect();
    if missing.is_empty() {
        return None;
    }
    index.extend(missing.into_iter().map(str::to_string));
    index.sort();
    index.dedup();
    Some(index)
}

/// Makes sure the index names `keys` (one read per shard; a write only
/// for a shard that lacks one). With counters in Redis the index is one
/// set, [`REDIS_SERIES_KEY`], and adding is idempotent.
pub fn ensure_indexed(counters: &Counters, keys: &[&str]) -> Result<()> {
    if counters.backend() == Backend::Redis {
        return counters.redis_set_add(REDIS_SERIES_KEY, keys);
    }
    for shard in 0..INDEX_SHARDS {
        let mine: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| shard_of(k) == shard)
            .collect();
        if mine.is_empty() {
            continue;
        }
        crate::storage::kv::update_atomically(&index_key(shard), |index: Option<Vec<String>>| {
            Ok((
                with_keys(index, &mine).map_or(
                    crate::storage::kv::Update::Keep,
                    crate::storage::kv::Update::Write,
                ),
                (),
            ))
        })?;
    }
    Ok(())
}

/// The series index when counters are in Redis: one set of keys.
pub const REDIS_SERIES_KEY: &str = "metrics:v1:series";

/// Every series key the index names, what a scrape reads first: the
/// shards' JSON lists in key-value (read with `get-many`), or the Redis set.
pub fn indexed_series(counters: &Counters) -> Result<Vec<String>> {
    let mut keys = match counters {
        Counters::Redis(_) => counters.redis_set_members(REDIS_SERIES_KEY)?,
        Counters::KeyValue(bucket) => {
            let mut keys = Vec::new();
            let shards = spin_sdk::wit::wasi::keyvalue::batch::get_many(bucket, &index_keys())
                .context("read the metrics index")?;
            for (shard, value) in shards {
                let Some(bytes) = value else { continue };
                let listed: Vec<String> = serde_json::from_slice(&bytes)
                    .with_context(|| format!("`{shard}` is not a JSON list of keys"))?;
                keys.extend(listed);
            }
            keys
        }
    };
    keys.retain(|k| k.starts_with(PREFIX));
    keys.sort();
    keys.dedup();
    Ok(keys)
}

fn increment_all(increments: &[(String, i64)]) -> Result<()> {
    let counters = Counters::open()?;
    let mut check = false;
    for (key, delta) in increments {
        let value = counters.add(key, *delta, None)?;
        check |= needs_index_check(*delta, value);
    }
    if check {
        let keys: Vec<&str> = increments.iter().map(|(k, _)| k.as_str()).collect();
        ensure_indexed(&counters, &keys).context("index new series")?;
    }
    Ok(())
}

/// Records one served request, unless the `metrics_recording` variable is
/// `off` (benchmarks measure the cost of recording with it).
pub fn record_request(component: &str, method: &str, route: &str, status: u16, duration_secs: f64) {
    if matches!(crate::config::var("metrics_recording"), Ok(Some(v)) if v == "off") {
        return;
    }
    let increments = request_increments(component, method, route, status, duration_secs);
    if let Err(e) = increment_all(&increments) {
        eprintln!("metrics: recording a request failed: {e:#}");
    }
}

/// Records one business operation (`register`/`login`/... with outcome
/// `success`/`failure`/...).
pub fn record_business(operation: &str, outcome: &str) {
    let key = format!(
        "{PREFIX}counter:{}",
        series(
            "business_operations_total",
            &[("operation", operation), ("outcome", outcome)]
        )
    );
    if let Err(e) = increment_all(&[(key, 1)]) {
        eprintln!("metrics: recording `{operation}` failed: {e:#}");
    }
}

/// The key of counter `name{labels}`.
pub fn counter_key(name: &str, labels: &[(&str, &str)]) -> String {
    format!("{PREFIX}counter:{}", series(name, labels))
}

/// Adds `delta` to the counter `name{labels}`.
pub fn add_to_counter(name: &str, labels: &[(&str, &str)], delta: i64) {
    if let Err(e) = increment_all(&[(counter_key(name, labels), delta)]) {
        eprintln!("metrics: adding to `{name}` failed: {e:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_names_follow_the_exposition_format() {
        assert_eq!(
            series("x_total", &[("a", "1"), ("b", "q\"uote")]),
            r#"x_total{a="1",b="q\"uote"}"#
        );
    }

    #[test]
    fn counters_live_under_the_prefix() {
        assert_eq!(
            counter_key("upload_bytes_total", &[("type", "image/png")]),
            r#"metrics:v1:counter:upload_bytes_total{type="image/png"}"#
        );
    }

    #[test]
    fn the_index_adds_only_what_it_lacks() {
        assert_eq!(
            with_keys(None, &["b", "a"]),
            Some(vec!["a".into(), "b".into()])
        );
        let index = Some(vec!["a".to_string(), "c".to_string()]);
        assert_eq!(with_keys(index.clone(), &["a", "c"]), None);
        assert_eq!(
            with_keys(index, &["b", "a", "b"]),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
    }

    #[test]
    fn shards_are_stable_and_spread() {
        // FNV-1a of the empty string, modulo the shard count.
        assert_eq!(shard_of(""), 0xcbf2_9ce4_8422_2325 % INDEX_SHARDS);
        let keys: Vec<String> = (0..400)
            .map(|i| format!("{PREFIX}counter:x{{i=\"{i}\"}}"))
            .collect();
        let mut used = std::collections::BTreeSet::new();
        for k in &keys {
            assert_eq!(shard_of(k), shard_of(k));
            used.insert(shard_of(k));
        }
        assert_eq!(used.len() as u64, INDEX_SHARDS);
        assert_eq!(index_keys()[3], "metrics:v1:index:3");
    }

    #[test]
    fn new_counters_and_power_of_two_counts_check_the_index() {
        assert!(needs_index_check(1, 1));
        assert!(needs_index_check(12_300, 12_300), "a new duration sum");
        assert!(needs_index_check(1, 64));
        assert!(!needs_index_check(1, 3));
        assert!(!needs_index_check(12_300, 24_601));
    }

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        assert_eq!(bucket_label(0.001), "0.005");
        assert_eq!(bucket_label(0.005), "0.005");
        assert_eq!(bucket_label(0.3), "0.5");
        assert_eq!(bucket_label(10.0), "10");
        assert_eq!(bucket_label(11.0), "+Inf");
    }

    #[test]
    fn a_request_increments_its_bucket_and_the_duration_sum() {
        let inc = request_increments("auth", "POST", "/api/auth/login", 200, 0.0123);
        assert_eq!(
            inc[0],
            (
                r#"metrics:v1:bucket:http_request_duration_seconds{component="auth",method="POST",route="/api/auth/login",status="200",le="0.025"}"#.to_string(),
                1
            )
        );
        assert_eq!(inc[1].1, 12_300);
        assert_eq!(inc.len(), 2);
    }
}
