//! Request and business metrics, recorded by every component into the
//! shared key-value store with atomic increments (exact under parallel
//! load and across host instances). The metrics component reads them back
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

use anyhow::{Context as _, Result};
use spin_sdk::wit::wasi::keyvalue::atomics;

pub const PREFIX: &str = "metrics:v1:";

/// Upper bounds (seconds) of the request-duration histogram.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `name{k="v",...}` with Prometheus label-value escaping.
pub fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
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

fn increment_all(increments: &[(String, i64)]) -> Result<()> {
    let bucket = crate::kv::open_bucket()?;
    for (key, delta) in increments {
        atomics::increment(&bucket, key, *delta).with_context(|| format!("increment `{key}`"))?;
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
