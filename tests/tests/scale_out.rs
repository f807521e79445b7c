//! Scale-out: three `runtime-host` processes with separate state
//! directories, one PostgreSQL (records), one Redis (key-value and the
//! events channel), configured exactly as the README's scale-out section
//! says (`deploy/runtime-config.shared.toml`, `database_url`,
//! `database_host`, `redis_address`). Any request works on any instance,
//! and killing one mid-run loses nothing it acknowledged.

mod orders_support;

use app_tests::app::{self, Keys};
use app_tests::{Host, PostgresServer, RedisServer, TempDir, eventually};
use orders_support::order_body;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ORDERS: usize = 300;
/// Requests in flight at once, spread over the three hosts.
const CLIENTS: usize = 12;
/// After this many acknowledged orders, host A is SIGKILLed.
const KILL_AFTER: usize = 100;

/// The shared runtime config of `deploy/`, pointed at this test's Redis.
fn runtime_config(dir: &TempDir, redis: &RedisServer) -> String {
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/runtime-config.shared.toml"),
    )
    .expect("deploy/runtime-config.shared.toml");
    assert!(shipped.contains("redis://127.0.0.1:6379"));
    let path = dir.path().join("runtime-config.toml");
    std::fs::write(
        &path,
        shipped.replace("redis://127.0.0.1:6379", &redis.url()),
    )
    .unwrap();
    path.display().to_string()
}

fn start_hosts(
    keys: &Keys,
    database_url: &str,
    pg: &PostgresServer,
    redis: &RedisServer,
    rc: &str,
) -> Vec<Host> {
    let variables = [
        ("database_url", database_url),
        ("database_host", &pg.host_entry()),
        ("redis_address", &redis.url()),
    ];
    (0..3)
        .map(|_| {
            app::start_manifest(
                &app_tests::app_manifest(),
                Some(keys),
                &variables,
                &["--runtime-config-file", rc],
            )
        })
        .collect()
}

/// Creates order `i` (idempotency key `scale-{i}`) on its host, moving on
/// to the next host whenever one cannot be reached; the created order.
async fn create_until_acknowledged(urls: &[String], token: &str, i: usize) -> Value {
    let client = app_tests::client();
    let key = format!("scale-{i}");
    let auth = format!("Bearer {token}");
    let body = order_body(&[("widget", (i % 5 + 1) as i64, 100 + i as i64)]).to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    for attempt in 0.. {
        assert!(
            Instant::now() < deadline,
            "order {i} was never acknowledged"
        );
        let url = format!("{}/api/orders", urls[(i + attempt) % urls.len()]);
        let sent = app_tests::send(
            &client,
            "POST",
            &url,
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
                ("idempotency-key", &key),
            ],
            body.clone(),
        )
        .await;
        match sent {
            Ok(r) if r.status == 201 => return r.json(),
            // The host died under the request, or answered while going down.
            Err(_) => continue,
            Ok(r) if r.status >= 500 => continue,
            Ok(r) => panic!("order {i}: {} {}", r.status, r.text()),
        }
    }
    unreachable!()
}

#[tokio::test]
async fn three_hosts_share_every_record_and_a_killed_host_loses_nothing_acknowledged() {
    let started = Instant::now();
    let redis = RedisServer::start();
    let pg = PostgresServer::shared();
    let database_url = pg.fresh_database();
    let database = database_url.rsplit('/').next().unwrap().to_string();
    let dir = TempDir::new("scale-out");
    let rc = runtime_config(&dir, &redis);
    let kp = jwt_simple::prelude::Ed25519KeyPair::generate();
    let keys = Keys::from_bytes("scale", &kp.to_bytes(), &kp.public_key().to_bytes());
    let mut hosts = start_hosts(&keys, &database_url, pg, &redis, &rc);
    let (a, b, c) = (&hosts[0], &hosts[1], &hosts[2]);

    // Register on A, log in on B, read the profile on C.
    let (id, _) = app::register_ok(a, "Ada", "ada@example.com").await;
    let login = app::login(b, "ada@example.com", app::PASSWORD).await;
    assert_eq!(login.status, 200, "login on B: {}", login.text());
    let token = login.json()["accessToken"].as_str().unwrap().to_string();
    let me = app::authed(c, "GET", "/api/users/me", &token).await;
    assert_eq!(me.status, 200, "profile on C: {}", me.text());
    assert_eq!(me.json()["id"], id.as_str());

    // 300 orders over the three hosts; A is SIGKILLed after 100.
    let orders_started = Instant::now();
    let urls: Vec<String> = hosts.iter().map(|h| h.url("")).collect();
    let a_pid = a.pid().unwrap() as i32;
    let next = Arc::new(AtomicUsize::new(0));
    let acknowledged: Arc<Mutex<BTreeMap<usize, Value>>> = Arc::default();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, acknowledged, urls, token) = (
                next.clone(),
                acknowledged.clone(),
                urls.clone(),
                token.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= ORDERS {
                        return;
                    }
                    let order = create_until_acknowledged(&urls, &token, i).await;
                    let mut acked = acknowledged.lock().unwrap();
                    acked.insert(i, order);
                    if acked.len() == KILL_AFTER {
                        // SAFETY: signalling our own child process by pid.
                        unsafe { libc::kill(a_pid, libc::SIGKILL) };
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let orders_took = orders_started.elapsed();
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), ORDERS);
    let ids: BTreeSet<String> = acknowledged
        .values()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), ORDERS, "every key made its own order");

    // Exactly 300 orders, whatever the kill interrupted.
    let count = |sql: &str| -> i64 { pg.query(&database, sql).parse().unwrap() };
    assert_eq!(count("SELECT count(*) FROM orders"), ORDERS as i64);

    // A comes back on its state directory; every order is readable everywhere.
    hosts[0].restart();
    for host in &hosts {
        let client = app_tests::client();
        let auth = format!("Bearer {token}");
        for id in &ids {
            let r = app_tests::send(
                &client,
                "GET",
                &host.url(&format!("/api/orders/{id}")),
                &[("authorization", &auth)],
                "",
            )
            .await
            .unwrap();
            assert_eq!(
                r.status,
                200,
                "order {id} on {}: {}",
                host.url(""),
                r.text()
            );
        }
    }

    // One notification per order: each host's Redis trigger receives every
    // event, the shared `processed_events` lets exactly one act on it. An
    // event whose publisher was killed is published by a later request.
    let b = &hosts[1];
    // A host killed between delivering an event and marking its row sent
    // leaves the row claimed; once the claim expires a later request
    // delivers it again (a duplicate the consumer ignores) and marks it.
    let delivered = eventually(Duration::from_secs(60), || async {
        // Reading notifications also drains the shared outbox.
        let _ = app::authed(b, "GET", "/api/notifications?limit=1", &token).await;
        count("SELECT count(*) FROM notifications") >= ORDERS as i64
            && count("SELECT count(*) FROM event_outbox WHERE sent_at IS NULL") == 0
    })
    .await;
    assert!(
        delivered,
        "{} notifications",
        count("SELECT count(*) FROM notifications")
    );
    assert_eq!(count("SELECT count(*) FROM notifications"), ORDERS as i64);
    assert_eq!(
        count("SELECT count(DISTINCT order_id) FROM notifications"),
        ORDERS as i64
    );
    assert_eq!(
        count("SELECT count(*) FROM processed_events"),
        ORDERS as i64
    );
    assert_eq!(
        count("SELECT count(*) FROM event_outbox WHERE sent_at IS NOT NULL"),
        ORDERS as i64
    );

    // The API agrees: the unread notifications, page by page, on C.
    let c = &hosts[2];
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cur) => format!("/api/notifications?limit=100&unread=true&cursor={cur}"),
            None => "/api/notifications?limit=100&unread=true".to_string(),
        };
        let page = app::authed(c, "GET", &path, &token).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        for n in page["items"].as_array().unwrap() {
            seen.insert(n["orderId"].as_str().unwrap().to_string());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    eprintln!(
        "scale-out: {ORDERS} orders over 3 hosts (A killed after {KILL_AFTER}) in {:.1} s; \
         {} notifications; whole test {:.1} s",
        orders_took.as_secs_f64(),
        count("SELECT count(*) FROM notifications"),
        started.elapsed().as_secs_f64()
    );
}
