//! The soak test (`cargo xtask soak`, not part of the test command): mixed
//! traffic for `SOAK_SECONDS` (default 600) with faults injected into every
//! store, then a report of what the host holds at the start and at the end
//! (resident memory, open descriptors, every file under the state dir,
//! key-value keys, rows per table) and the checks that must hold after a
//! long run: no server error but documented 503s, no acknowledged order
//! lost or duplicated, descriptors and journal files bounded.

#[path = "orders_support/mod.rs"]
mod orders_support;

use app_tests::app::{self, PASSWORD};
use app_tests::{Host, eventually};
use orders_support::{create, order_body, start_with};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WORKERS: usize = 8;
const FAULTS: &str =
    "key-value=0.01,sqlite=busy:0.005,outbound-http=latency:20ms@0.1,messages=0.05";
/// A write-ahead log may grow between checkpoints, but not without bound.
const MAX_WAL_BYTES: u64 = 64 << 20;
/// Descriptors the host may hold beyond its warmed-up count.
const MAX_EXTRA_DESCRIPTORS: usize = 64;

#[derive(Debug)]
struct Snapshot {
    rss_kib: u64,
    descriptors: usize,
    files: BTreeMap<String, u64>,
    keys: i64,
    rows: BTreeMap<String, i64>,
}

fn snapshot(host: &Host) -> Snapshot {
    let pid = host.pid().expect("host running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let descriptors = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let mut files = BTreeMap::new();
    let mut stack = vec![host.state_dir()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(meta) = entry.metadata() {
                let name = path.strip_prefix(host.state_dir()).unwrap();
                files.insert(name.display().to_string(), meta.len());
            }
        }
    }
    let open = |file: &str| {
        let c = rusqlite::Connection::open(host.state_dir().join(file)).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    };
    let keys = open("sqlite_key_value.db")
        .query_row("SELECT count(*) FROM spin_key_value", [], |r| r.get(0))
        .unwrap_or(-1);
    let db = open("sqlite_db.db");
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let rows = tables
        .into_iter()
        .map(|t| {
            let n = db
                .query_row(&format!("SELECT count(*) FROM \"{t}\""), [], |r| r.get(0))
                .unwrap_or(-1);
            (t, n)
        })
        .collect();
    Snapshot {
        rss_kib,
        descriptors,
        files,
        keys,
        rows,
    }
}

fn report(start: &Snapshot, end: &Snapshot) {
    println!("{:<40} {:>14} {:>14}", "", "start", "end");
    println!(
        "{:<40} {:>14} {:>14}",
        "RSS (KiB)", start.rss_kib, end.rss_kib
    );
    println!(
        "{:<40} {:>14} {:>14}",
        "open descriptors", start.descriptors, end.descriptors
    );
    println!(
        "{:<40} {:>14} {:>14}",
        "key-value keys", start.keys, end.keys
    );
    for (name, size) in &end.files {
        let before = start.files.get(name).copied().unwrap_or(0);
        println!("{:<40} {:>14} {:>14}", format!("file {name}"), before, size);
    }
    for (table, n) in &end.rows {
        let before = start.rows.get(table).copied().unwrap_or(0);
        println!("{:<40} {:>14} {:>14}", format!("rows {table}"), before, n);
    }
}

/// Counts answers per (route, status).
#[derive(Default)]
struct Tally(Mutex<BTreeMap<(String, u16), u64>>);

impl Tally {
    fn add(&self, route: &str, status: u16) {
        *self
            .0
            .lock()
            .unwrap()
            .entry((route.to_string(), status))
            .or_default() += 1;
    }
}

/// Retries `attempt` while it answers 503 (the documented "retry later").
async fn until_not_503<F, Fut>(tally: &Tally, route: &str, mut attempt: F) -> app_tests::Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = app_tests::Reply>,
{
    loop {
        let r = attempt().await;
        tally.add(route, r.status);
        if r.status != 503 {
            return r;
        }
        assert!(
            r.header("retry-after").is_some(),
            "503 without Retry-After: {}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
#[ignore = "long: run with `cargo xtask soak`"]
async fn mixed_traffic_with_faults_stays_bounded() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let host = Arc::new(start_with(
        &app::manifest_with_probe(),
        &[],
        &["--faults", FAULTS],
    ));
    let tally = Arc::new(Tally::default());
    let acknowledged = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);

    // Warm up (every component instantiated once), then the first snapshot.
    let mut tokens = Vec::new();
    for w in 0..WORKERS {
        let email = format!("soak{w}@example.com");
        let r = until_not_503(&tally, "register", || {
            app::register(&host, "Soak", &email, PASSWORD)
        })
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        tokens.push(r.json()["accessToken"].as_str().unwrap().to_string());
    }
    let start = snapshot(&host);

    let mut workers = Vec::new();
    for (w, token) in tokens.into_iter().enumerate() {
        let (host, tally, acknowledged) = (host.clone(), tally.clone(), acknowledged.clone());
        workers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let r = app::call(&host, "GET", "/health", &[], "").await;
                tally.add("/health", r.status);
                assert_eq!(r.status, 200, "liveness: {}", r.text());
                until_not_503(&tally, "/api/users/me", || {
                    app::authed(&host, "GET", "/api/users/me", &token)
                })
                .await;
                let key = format!("soak-{w}-{i}");
                let body = order_body(&[("sku", 1 + (i % 5) as i64, 250)]);
                let r = until_not_503(&tally, "POST /api/orders", || {
                    create(&host, &token, &body, Some(&key))
                })
                .await;
                if r.status == 201 {
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                until_not_503(&tally, "GET /api/orders", || {
                    app::authed(&host, "GET", "/api/orders?limit=5", &token)
                })
                .await;
                if i.is_multiple_of(10) {
                    until_not_503(&tally, "/metrics", || {
                        app::call(&host, "GET", "/metrics", &[], "")
                    })
                    .await;
                    until_not_503(&tally, "/api/notifications", || {
                        app::authed(&host, "GET", "/api/notifications?limit=5", &token)
                    })
                    .await;
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }

    // Every acknowledged order exists once and its notification arrives.
    let acknowledged = acknowledged.load(Ordering::Relaxed);
    let orders_in_db = || {
        let c = rusqlite::Connection::open(host.state_dir().join("sqlite_db.db")).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        let orders: i64 = c
            .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
            .unwrap();
        let notified: i64 = c
            .query_row(
                "SELECT count(*) FROM notifications WHERE type = 'order.created'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(-1);
        (orders, notified)
    };
    let all_notified = eventually(Duration::from_secs(120), || async {
        let (orders, notified) = orders_in_db();
        orders == notified
    })
    .await;
    let end = snapshot(&host);

    println!("\nsoak: {seconds} s, {WORKERS} workers, faults `{FAULTS}`");
    for ((route, status), n) in tally.0.lock().unwrap().iter() {
        println!("  {route:<24} {status} x {n}");
    }
    println!(
        "  orders acknowledged: {acknowledged}; in the database, notified: {:?}",
        orders_in_db()
    );
    report(&start, &end);

    let server_errors: u64 = tally
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|((_, s), _)| *s >= 500 && *s != 503)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(server_errors, 0, "server errors other than 503");
    assert_eq!(
        orders_in_db().0 as u64,
        acknowledged,
        "orders lost or duplicated"
    );
    assert!(all_notified, "notifications missing: {:?}", orders_in_db());
    assert!(
        end.descriptors <= start.descriptors + MAX_EXTRA_DESCRIPTORS,
        "descriptors grew from {} to {}",
        start.descriptors,
        end.descriptors
    );
    for (name, size) in &end.files {
        if name.ends_with("-wal") {
            assert!(*size <= MAX_WAL_BYTES, "{name} grew to {size} bytes");
        }
    }
}
