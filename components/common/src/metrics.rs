//! Request and business metrics, recorded by every component into the
//! shared key-value store with atomic increments (exact under parallel
//! load and across host instances). The metrics component reads them back
//! and renders the Prometheus exposition.
//!
//! Key scheme (one counter per key, values are Spin's 8-byte little-endian
//! counters), all under [`PREFIX`]:
//!
//! - `counter:http_requests_total{component="..",method="..",route="..",status=".."}`
//! - `bucket:http_request_duration_seconds{component,method,route,status,le=".."}`:
//!   observations that fell into that bucket only (not cumulative; the
//!   exporter sums them up), `le="+Inf"` for those above the last bound
//! - `sum_micros:http_request_duration_seconds{component,method,route,status}`:
//!   total observed duration in microseconds
//! - `counter:business_operations_total{operation="..",outcome=".."}`
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
            format!("{PREFIX}counter:{}", series("http_requests_total", &labels)),
            1,
        ),
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
    fn observations_land_in_the_first_bucket_that_holds_them() {
        assert_eq!(bucket_label(0.001), "0.005");
        assert_eq!(bucket_label(0.005), "0.005");
        assert_eq!(bucket_label(0.3), "0.5");
        assert_eq!(bucket_label(10.0), "10");
        assert_eq!(bucket_label(11.0), "+Inf");
    }

    #[test]
    fn a_request_increments_count_bucket_and_sum() {
        let inc = request_increments("auth", "POST", "/api/auth/login", 200, 0.0123);
        assert_eq!(
            inc[0],
            (
                r#"metrics:v1:counter:http_requests_total{component="auth",method="POST",route="/api/auth/login",status="200"}"#.to_string(),
                1
            )
        );
        assert!(
            inc[1].0.ends_with(r#"status="200",le="0.025"}"#),
            "{}",
            inc[1].0
        );
        assert_eq!(inc[2].1, 12_300);
    }
}
