//! Helpers shared by the orders and notifications tests.
#![allow(dead_code)]

use app_tests::app::{self, Keys};
use app_tests::{Host, Reply};
use jwt_simple::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub const ADMIN_EMAIL: &str = "admin@example.com";

/// How long an event may take from commit to notification.
pub const DELIVERY: Duration = Duration::from_secs(20);

pub fn keys() -> Keys {
    let kp = Ed25519KeyPair::generate();
    Keys::from_bytes("orders-test", &kp.to_bytes(), &kp.public_key().to_bytes())
}

/// The app plus the probe (`/probe/...`), admin bootstrap on.
pub fn start(variables: &[(&str, &str)]) -> Host {
    start_with(&app::manifest_with_probe(), variables, &[])
}

pub fn start_with(manifest: &str, variables: &[(&str, &str)], extra: &[&str]) -> Host {
    let mut all = vec![("admin_email", ADMIN_EMAIL)];
    all.extend_from_slice(variables);
    app::start_manifest(manifest, Some(&keys()), &all, extra)
}

pub fn address() -> Value {
    json!({"street": "1 Main St", "city": "Springfield", "state": "IL",
           "zipCode": "62701", "country": "US"})
}

/// An order body: `(productId, quantity, unitPrice in cents)` lines, USD.
pub fn order_body(lines: &[(&str, i64, i64)]) -> Value {
    let items: Vec<Value> = lines
        .iter()
        .map(|(p, q, u)| json!({"productId": p, "quantity": q, "unitPrice": u}))
        .collect();
    json!({"items": items, "shippingAddress": address(), "currency": "USD"})
}

pub async fn create(host: &Host, token: &str, body: &Value, key: Option<&str>) -> Reply {
    let auth = format!("Bearer {token}");
    let mut headers = vec![
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    if let Some(key) = key {
        headers.push(("idempotency-key", key));
    }
    app::call(host, "POST", "/api/orders", &headers, body.to_string()).await
}

/// Creates a one-line order (2 x 10 cents + 1 x 20 cents) and returns it.
pub async fn create_ok(host: &Host, token: &str) -> Value {
    let r = create(
        host,
        token,
        &order_body(&[("a", 2, 10), ("b", 1, 20)]),
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

pub async fn set_status(host: &Host, token: &str, id: &str, status: &str) -> Reply {
    app::json(
        host,
        "PATCH",
        &format!("/api/orders/{id}/status"),
        Some(token),
        &json!({ "status": status }),
    )
    .await
}

/// Rows of a statement run on the app's database: through the probe on
/// SQLite, with `psql` on PostgreSQL (integers as numbers, text as strings).
pub async fn sql(host: &Host, statement: &str) -> Vec<Vec<Value>> {
    if let Some(db) = app::postgres_database(host) {
        let column = |v: Option<String>| match v {
            None => Value::Null,
            Some(v) => v.parse::<i64>().map_or(Value::String(v), Value::from),
        };
        return app_tests::PostgresServer::shared()
            .rows(&db, statement)
            .into_iter()
            .map(|row| row.into_iter().map(column).collect())
            .collect();
    }
    let r = app::call(
        host,
        "POST",
        "/probe/sql/default",
        &[],
        statement.to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{statement}: {}", r.text());
    serde_json::from_value(r.json()["rows"].clone()).unwrap()
}

/// Delivers a message to order-events the way the platform does, through
/// the probe: published on the app's event channel (the Redis trigger), or
/// at the edge POSTed to its private route by service chaining, the
/// outbox's way. Returns the consumer's status at the edge (200 for Redis,
/// which only says the message was published).
pub async fn publish(host: &Host, payload: &str) -> u16 {
    if app::on_edge() {
        let r = app::call(
            host,
            "POST",
            &format!("/probe/fetch?url={}", app::EDGE_EVENTS_URL),
            &[],
            payload.to_string(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        return r.json()["status"].as_u64().unwrap() as u16;
    }
    let r = app::call(
        host,
        "POST",
        "/probe/publish/app.events",
        &[],
        payload.to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    200
}

/// A key-value counter (read without changing it).
pub async fn counter(host: &Host, key: &str) -> i64 {
    let r = app::call(
        host,
        "POST",
        &format!("/probe/incr/default/{key}?by=0"),
        &[],
        "",
    )
    .await;
    r.json().as_i64().unwrap()
}

/// The caller's notifications (first page).
pub async fn notifications(host: &Host, token: &str) -> Vec<Value> {
    let r = app::authed(host, "GET", "/api/notifications", token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["items"].as_array().unwrap().clone()
}

/// Waits until the caller has `n` notifications, and returns them.
pub async fn wait_for_notifications(host: &Host, token: &str, n: usize) -> Vec<Value> {
    let ok = app_tests::eventually(DELIVERY, || async {
        notifications(host, token).await.len() >= n
    })
    .await;
    let got = notifications(host, token).await;
    assert!(
        ok,
        "expected {n} notifications, got {got:?}\n{}",
        host.stderr()
    );
    got
}

/// A stand-in for a failing users component: answers every request 503
/// and counts them.
pub struct FailingServer {
    pub port: u16,
    pub hits: Arc<AtomicUsize>,
}

impl FailingServer {
    pub async fn start() -> FailingServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        FailingServer { port, hits }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
