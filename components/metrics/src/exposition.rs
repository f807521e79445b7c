//! Prometheus text exposition (format 0.0.4) from the raw counters the
//! components record (see `app_common::telemetry::metrics` for the key scheme).
//!
//! Pure: takes `(key, value)` pairs, returns the text. Histogram buckets are
//! stored per bucket (not cumulative) and per method and status; here they
//! are summed per `(component, route)` and made cumulative, with every bound
//! present so each series is complete. `http_requests_total` is the sum of
//! each `(component, method, route, status)` series' buckets.

use app_common::telemetry::metrics::{DURATION_BUCKETS, PREFIX, escape_label_value};
use std::collections::BTreeMap;

/// Labels as ordered `(name, value)` pairs.
type Labels = Vec<(String, String)>;

/// Splits `name{a="1",b="x\"y"}` into the name and unescaped labels.
pub fn parse_series(series: &str) -> Option<(String, Labels)> {
    let open = series.find('{')?;
    let name = series[..open].to_string();
    let body = series[open + 1..].strip_suffix('}')?;
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((key.trim().to_string(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some((name, labels))
}

fn render_labels(labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn pick(labels: &Labels, names: &[&str]) -> Labels {
    names
        .iter()
        .filter_map(|n| labels.iter().find(|(k, _)| k == n).cloned())
        .collect()
}

#[derive(Default)]
struct Histogram {
    /// Observations per bucket bound index (last = +Inf), not cumulative.
    per_bucket: Vec<i64>,
    sum_micros: i64,
}

/// Renders the exposition. `entries` are the stored keys (with [`PREFIX`])
/// and their counter values; `dead_letters` is the host's dead-letter count.
pub fn render(entries: &[(String, i64)], dead_letters: i64) -> String {
    let mut counters: BTreeMap<String, BTreeMap<Labels, i64>> = BTreeMap::new();
    let mut histograms: BTreeMap<Labels, Histogram> = BTreeMap::new();
    for (key, value) in entries {
        let Some(rest) = key.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((kind, series)) = rest.split_once(':') else {
            continue;
        };
        let Some((name, labels)) = parse_series(series) else {
            continue;
        };
        match kind {
            "counter" => *counters.entry(name).or_default().entry(labels).or_default() += value,
            "bucket" => {
                let key = pick(&labels, &["component", "route"]);
                let le = labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .map(|(_, v)| v.as_str());
                let index = match le {
                    Some("+Inf") => DURATION_BUCKETS.len(),
                    Some(bound) => {
                        match DURATION_BUCKETS.iter().position(|b| b.to_string() == bound) {
                            Some(i) => i,
                            None => continue,
                        }
                    }
                    None => continue,
                };
                let request = pick(&labels, &["component", "method", "route", "status"]);
                *counters
                    .entry("http_requests_total".into())
                    .or_default()
                    .entry(request)
                    .or_default() += value;
                let h = histograms.entry(key).or_default();
                h.per_bucket.resize(DURATION_BUCKETS.len() + 1, 0);
                h.per_bucket[index] += value;
            }
            "sum_micros" => {
                let key = pick(&labels, &["component", "route"]);
                let h = histograms.entry(key).or_default();
                h.per_bucket.resize(DURATION_BUCKETS.len() + 1, 0);
                h.sum_micros += value;
            }
            _ => {}
        }
    }

    let mut out = String::new();
    let help = |out: &mut String, name: &str, kind: &str, text: &str| {
        out.push_str(&format!("# HELP {name} {text}\n# TYPE {name} {kind}\n"));
    };
    help(
        &mut out,
        "http_requests_total",
        "counter",
        "HTTP requests served, by component, method, route template and status.",
    );
    for (labels, v) in counters.get("http_requests_total").into_iter().flatten() {
        out.push_str(&format!(
            "http_requests_total{} {v}\n",
            render_labels(labels)
        ));
    }
    help(
        &mut out,
        "http_request_duration_seconds",
        "histogram",
        "Time to serve a request, by component and route template.",
    );
    for (labels, h) in &histograms {
        let mut cumulative = 0;
        for (i, count) in h.per_bucket.iter().enumerate() {
            cumulative += count;
            let le = DURATION_BUCKETS
                .get(i)
                .map(|b| b.to_string())
                .unwrap_or_else(|| "+Inf".into());
            let mut l = labels.clone();
            l.push(("le".into(), le));
            out.push_str(&format!(
                "http_request_duration_seconds_bucket{} {cumulative}\n",
                render_labels(&l)
            ));
        }
        let l = render_labels(labels);
        out.push_str(&format!(
            "http_request_duration_seconds_sum{l} {}\n",
            h.sum_micros as f64 / 1e6
        ));
        out.push_str(&format!(
            "http_request_duration_seconds_count{l} {cumulative}\n"
        ));
    }
    help(
        &mut out,
        "business_operations_total",
        "counter",
        "Business operations (register, login, order create, status change, upload, event processing), by outcome.",
    );
    for (labels, v) in counters
        .get("business_operations_total")
        .into_iter()
        .flatten()
    {
        out.push_str(&format!(
            "business_operations_total{} {v}\n",
            render_labels(labels)
        ));
    }
    // Any other counter family a component records (e.g. `upload_bytes_total`).
    for (name, series) in &counters {
        if name == "http_requests_total" || name == "business_operations_total" {
            continue;
        }
        let text = match name.as_str() {
            "upload_bytes_total" => "Bytes of stored uploads, by stored media type.",
            "events_dead_lettered_total" => {
                "Events the outbox gave up delivering over HTTP (events_url), by type."
            }
            _ => "A counter recorded by the components.",
        };
        help(&mut out, name, "counter", text);
        for (labels, v) in series {
            out.push_str(&format!("{name}{} {v}\n", render_labels(labels)));
        }
    }
    help(
        &mut out,
        "dead_letters_total",
        "counter",
        "Messages that failed every delivery attempt and were dead-lettered.",
    );
    out.push_str(&format!("dead_letters_total {dead_letters}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use app_common::telemetry::metrics::request_increments;

    #[test]
    fn label_values_round_trip_through_escaping() {
        let (name, labels) = parse_series(r#"x_total{a="1",b="q\"u\\o\nte"}"#).unwrap();
        assert_eq!(name, "x_total");
        assert_eq!(labels[1], ("b".to_string(), "q\"u\\o\nte".to_string()));
    }

    #[test]
    fn histograms_are_cumulative_and_complete() {
        let mut entries = Vec::new();
        for (status, secs) in [(200, 0.001), (200, 0.3), (404, 20.0)] {
            for (k, v) in request_increments("users", "GET", "/api/users/:id", status, secs) {
                entries.push((k, v));
            }
        }
        let text = render(&entries, 2);
        assert!(text.contains(r#"http_requests_total{component="users",method="GET",route="/api/users/:id",status="200"} 2"#), "{text}");
        assert!(text.contains(r#"http_request_duration_seconds_bucket{component="users",route="/api/users/:id",le="0.005"} 1"#), "{text}");
        assert!(text.contains(r#"http_request_duration_seconds_bucket{component="users",route="/api/users/:id",le="0.5"} 2"#), "{text}");
        assert!(text.contains(r#"http_request_duration_seconds_bucket{component="users",route="/api/users/:id",le="+Inf"} 3"#), "{text}");
        assert!(
            text.contains(
                r#"http_request_duration_seconds_count{component="users",route="/api/users/:id"} 3"#
            ),
            "{text}"
        );
        assert!(text.contains("dead_letters_total 2"));
        let other = vec![(
            format!("{PREFIX}counter:upload_bytes_total{{type=\"image/png\"}}"),
            10,
        )];
        let other = render(&other, 0);
        assert!(
            other.contains("# TYPE upload_bytes_total counter"),
            "{other}"
        );
        assert!(
            other.contains(r#"upload_bytes_total{type="image/png"} 10"#),
            "{other}"
        );
        assert_eq!(text.matches("le=").count(), DURATION_BUCKETS.len() + 1);
    }
}
