//! `/metrics`, `/health` and `/health/ready` of the real app: the exposition
//! is checked with the Prometheus reference parser (Python's
//! `prometheus_client`), counters are exact under parallel load, and
//! readiness follows the stores.

use app_tests::app;
use app_tests::{Host, RedisServer, ensure_python_package, get};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Every sample of an exposition, parsed by `prometheus_client`:
/// `"name{k=v,...}" → value`, plus the metric types it declared.
fn parse(text: &str) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    ensure_python_package("prometheus_client", "prometheus_client");
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples, types = {}, {}
for family in text_string_to_metric_families(sys.stdin.read()):
    types[family.name] = family.type
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        samples[f"{s.name}{{{labels}}}"] = s.value
json.dump({"samples": samples, "types": types}, sys.stdout)
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser rejected the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let samples = v["samples"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .collect();
    let types = v["types"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    (samples, types)
}

async fn scrape(host: &Host) -> (String, BTreeMap<String, f64>, BTreeMap<String, String>) {
    let r = get(host.url("/metrics")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text();
    let (samples, types) = parse(&text);
    (text, samples, types)
}

fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn the_exposition_is_valid_and_counts_exactly_under_parallel_load() {
    let kp = jwt_simple::prelude::Ed25519KeyPair::generate();
    let keys = app::Keys::from_bytes("metrics-test", &kp.to_bytes(), &kp.public_key().to_bytes());
    let host = app::start(Some(&keys), &[]);
    let (text, before, types) = scrape(&host).await;
    for family in [
        "http_requests_total",
        "http_request_duration_seconds",
        "business_operations_total",
        "dead_letters_total",
    ] {
        assert!(text.contains(&format!("# HELP {family} ")), "{text}");
        assert!(text.contains(&format!("# TYPE {family} ")), "{text}");
    }
    // The reference parser names counter families without `_total`.
    assert_eq!(types["http_requests"], "counter", "{types:?}");
    assert_eq!(types["http_request_duration_seconds"], "histogram");
    assert_eq!(types["business_operations"], "counter");
    assert_eq!(types["dead_letters"], "counter");

    // N requests of known routes and statuses, in parallel.
    const READY: usize = 300;
    const UNAUTHENTICATED: usize = 200;
    let client = app_tests::client();
    let mut tasks = Vec::new();
    for i in 0..READY + UNAUTHENTICATED {
        let client = client.clone();
        let url = if i < READY {
            host.url("/health/ready")
        } else {
            host.url("/api/users/me")
        };
        tasks.push(tokio::spawn(async move {
            app_tests::send(&client, "GET", &url, &[], "")
                .await
                .unwrap()
                .status
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), if i < READY { 200 } else { 401 });
    }
    // Liveness touches no store, so it is not counted.
    for _ in 0..5 {
        assert_eq!(get(host.url("/health")).await.status, 200);
    }

    let (_, after, _) = scrape(&host).await;
    let ready = "http_requests_total{component=metrics,method=GET,route=/health/ready,status=200}";
    let me = "http_requests_total{component=users,method=GET,route=/api/users/me,status=401}";
    assert_eq!(value(&after, ready) - value(&before, ready), READY as f64);
    let live = "http_requests_total{component=metrics,method=GET,route=/health,status=200}";
    assert_eq!(value(&after, live), 0.0, "liveness recorded");
    assert_eq!(
        value(&after, me) - value(&before, me),
        UNAUTHENTICATED as f64
    );

    // The histogram saw the same requests; its buckets are cumulative.
    let count = "http_request_duration_seconds_count{component=metrics,route=/health/ready}";
    assert_eq!(value(&after, count) - value(&before, count), READY as f64);
    let buckets: Vec<f64> = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ]
    .iter()
    .map(|le| {
        value(
            &after,
            &format!(
                "http_request_duration_seconds_bucket{{component=metrics,le={le},route=/health/ready}}"
            ),
        )
    })
    .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(*buckets.last().unwrap(), value(&after, count));
    assert_eq!(value(&after, "dead_letters_total{}"), 0.0);
}

#[tokio::test]
async fn a_metrics_token_guards_the_scrape() {
    let host = app::start(None, &[("metrics_token", "scrape-secret")]);
    let r = get(host.url("/metrics")).await;
    app::assert_error(&r, 401, "unauthenticated");
    let r = app_tests::send(
        &app_tests::client(),
        "GET",
        &host.url("/metrics"),
        &[("authorization", "Bearer scrape-secret")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(!host.stdout().contains("scrape-secret"), "token logged");
}

#[tokio::test]
async fn maintenance_runs_only_for_its_token_and_reports_what_it_did() {
    let off = app::start(None, &[]);
    let r = app::call(&off, "POST", "/maintenance/run", &[], "").await;
    app::assert_error(&r, 403, "forbidden");
    assert!(r.text().contains("maintenance_token"), "{}", r.text());

    let host = app::start(None, &[("maintenance_token", "maint-secret")]);
    for auth in [None, Some("Bearer wrong"), Some("Bearer maint-secre")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let r = app::call(&host, "POST", "/maintenance/run", &headers, "").await;
        app::assert_error(&r, 401, "unauthenticated");
    }
    let r = app::call(
        &host,
        "POST",
        "/maintenance/run",
        &[("authorization", "Bearer maint-secret")],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    assert_eq!(report["published"], 0, "{report}");
    assert_eq!(report["outboxBacklog"], false, "{report}");
    assert!(report["expiredKeysRemoved"].is_u64(), "{report}");
    assert_eq!(report["sweepBacklog"], false, "{report}");
    // A platform cron that can send no header (Akamai's sends a GET to a
    // path and query) gives the token in the query instead.
    for query in ["", "?token=wrong", "?token=maint-secre"] {
        let r = app::call(&host, "GET", &format!("/maintenance/run{query}"), &[], "").await;
        app::assert_error(&r, 401, "unauthenticated");
    }
    let r = app::call(&host, "GET", "/maintenance/run?token=maint-secret", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!host.stdout().contains("maint-secret"), "token logged");
    let r = app::call(&host, "PUT", "/maintenance/run", &[], "").await;
    assert_eq!(r.status, 405, "{}", r.text());
}

#[tokio::test]
async fn health_is_live_and_ready_follows_redis() {
    let mut redis = RedisServer::start();
    let rc = redis.key_value_config();
    let host = app::start_with_args(None, &[("redis_address", &redis.url())], &rc.args());
    let r = get(host.url("/health")).await;
    assert_eq!((r.status, r.json()["status"].clone()), (200, "ok".into()));
    let r = get(host.url("/health/ready")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "ready");

    redis.stop();
    let r = get(host.url("/health/ready")).await;
    app::assert_error(&r, 503, "service_unavailable");
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("key-value store `default`"), "{message}");
    // At the edge, events travel over HTTP and Redis holds the counters.
    let redis_role = if app::on_edge() {
        "counter store (Redis)"
    } else {
        "message backend"
    };
    assert!(message.contains(redis_role), "{message}");
    assert_eq!(
        get(host.url("/health")).await.status,
        200,
        "liveness needs no store"
    );

    redis.restart();
    assert!(
        app_tests::eventually(Duration::from_secs(20), || async {
            get(host.url("/health/ready")).await.status == 200
        })
        .await,
        "readiness did not recover after Redis came back"
    );
}

#[tokio::test]
async fn ready_is_200_on_the_embedded_backends() {
    let host = app::start(None, &[]);
    let r = get(host.url("/health/ready")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let checks = r.json()["checks"].as_array().unwrap().len();
    assert_eq!(checks, 3);
}

/// The Grafana dashboard under `deploy/` queries only series `/metrics`
/// exposes.
#[test]
fn the_grafana_dashboard_queries_exported_series() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exported = [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "business_operations_total",
        "dead_letters_total",
        "upload_bytes_total",
    ];
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 5);
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.ends_with("_total") || w.ends_with("_bucket"))
                .collect();
            assert!(!names.is_empty(), "{expr}");
            for name in names {
                assert!(
                    exported.contains(&name),
                    "{} queries unknown series {name}",
                    panel["title"]
                );
            }
        }
    }
}
