//! WASIp3 components (spin-sdk 7, `wasi:http/handler@0.3.0`): the same
//! capabilities through the `spin:*@3` interfaces, and concurrent reuse.

use app_tests::{Host, RedisServer, get, request, wasm};
use std::time::Duration;

/// `redis` is the address outbound Redis calls go to (a real server).
fn manifest(redis: &str) -> String {
    format!(
        r#"spin_manifest_version = 2
[application]
name = "p3"
[variables]
colour = {{ default = "teal" }}
redis_address = {{ default = "{redis}" }}
[[trigger.http]]
route = "/p3/..."
component = "p3"
[[trigger.http]]
route = "/p2/..."
component = "p2"
[component.p3]
source = "{p3}"
key_value_stores = ["default"]
sqlite_databases = ["default"]
variables = {{ colour = "{{{{ colour }}}}", redis_address = "{{{{ redis_address }}}}" }}
allowed_outbound_hosts = ["redis://127.0.0.1:*"]
[component.p2]
source = "{p2}"
key_value_stores = ["default"]
"#,
        p3 = wasm("fixture-p3-app").display(),
        p2 = wasm("fixture-p2-app").display()
    )
}

#[tokio::test]
async fn p3_components_use_every_capability() {
    let redis = RedisServer::start();
    let host = Host::start(&manifest(&redis.url()), &[]);
    assert!(host.stdout().contains("[wasip3]"), "{}", host.stdout());
    let h = get(host.url("/p3/x/headers")).await.json();
    assert_eq!(h["spin-matched-route"], "/p3/...");
    assert_eq!(h["spin-path-info"], "/x/headers");

    assert_eq!(
        request("PUT", host.url("/p3/kv/default/k1"), "v1")
            .await
            .status,
        200
    );
    assert_eq!(get(host.url("/p3/kv/default/k1")).await.json(), "v1");
    // Both generations share one store.
    assert_eq!(get(host.url("/p2/kv/default/k1")).await.text(), "v1");
    assert_eq!(
        get(host.url("/p3/kv/default")).await.json(),
        serde_json::json!(["k1"])
    );
    assert_eq!(
        request("DELETE", host.url("/p3/kv/default/k1"), "")
            .await
            .status,
        200
    );
    assert_eq!(get(host.url("/p3/kv/default/k1")).await.status, 404);
    let r = get(host.url("/p3/kv/secret/k")).await;
    assert!(r.text().contains("AccessDenied"), "{}", r.text());

    for n in 1..=3 {
        assert_eq!(
            request("POST", host.url("/p3/incr/default/n"), "")
                .await
                .json(),
            n
        );
    }
    assert_eq!(get(host.url("/p3/var/colour")).await.json(), "teal");
    assert!(
        get(host.url("/p3/var/nope"))
            .await
            .text()
            .contains("Undefined")
    );

    let sql = |s: &'static str| request("POST", host.url("/p3/sql/default"), s);
    assert_eq!(sql("CREATE TABLE t (a INTEGER, b TEXT)").await.status, 200);
    assert_eq!(
        sql("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
            .await
            .status,
        200
    );
    let r = sql("SELECT a, b FROM t ORDER BY a").await.json();
    assert_eq!(r["columns"], serde_json::json!(["a", "b"]));
    assert_eq!(r["rows"], serde_json::json!([[1, "one"], [2, "two"]]));

    // Outbound Redis through spin:redis@3.0.0, to the real server.
    assert_eq!(
        request("POST", host.url("/p3/redis/incr/n"), "")
            .await
            .json(),
        1
    );
    assert_eq!(
        request("POST", host.url("/p3/redis/incr/n"), "")
            .await
            .json(),
        2
    );
    assert_eq!(redis.cli(&["GET", "n"]).trim(), "2");
}

#[tokio::test]
async fn p3_instances_serve_requests_concurrently() {
    let host = Host::start(&manifest("redis://127.0.0.1:6399"), &[]);
    get(host.url("/p3/sleep?ms=1")).await; // warm up
    let tasks: Vec<_> = (0..16)
        .map(|_| tokio::spawn(get(host.url("/p3/sleep?ms=5000"))))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
    // 16 sleeps overlap rather than queue: the fixture logs each start and
    // end, and every one of the 16 started before the first one ended.
    let out = host.stdout();
    let events: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("p3: sleep 5000ms"))
        .collect();
    assert_eq!(events.len(), 32, "{out}");
    let (mut running, mut peak) = (0, 0);
    for e in &events {
        if e.ends_with("started") {
            running += 1;
            peak = peak.max(running);
        } else {
            running -= 1;
        }
    }
    assert_eq!(peak, 16, "at most {peak} sleeps at once:\n{out}");
}

#[tokio::test]
async fn parallel_p3_increments_are_exact() {
    let host = Host::start(&manifest("redis://127.0.0.1:6399"), &["--fresh-instances"]);
    let tasks: Vec<_> = (0..100)
        .map(|_| tokio::spawn(request("POST", host.url("/p3/incr/default/c"), "")))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
    assert_eq!(
        request("POST", host.url("/p2/incr/default/c?by=0"), "")
            .await
            .json(),
        100
    );
}

/// A statement waiting for SQLite's write lock must not hold the instance:
/// another request to the same (reused) p3 instance is answered meanwhile.
#[tokio::test]
async fn a_statement_waiting_on_a_lock_does_not_stall_the_instance() {
    let manifest = manifest("redis://127.0.0.1:6399").replace(
        "sqlite_databases = [\"default\"]",
        "sqlite_databases = [\"default\", \"marker\"]",
    );
    let dir = app_tests::TempDir::new("rc");
    let (rc, marker_db) = (dir.path().join("rc.toml"), dir.path().join("marker.db"));
    let config = format!("[sqlite_database.marker]\ntype = \"spin\"\npath = {marker_db:?}\n");
    std::fs::write(&rc, config).unwrap();
    let host = Host::start(&manifest, &["--runtime-config-file", rc.to_str().unwrap()]);
    let sql = |db: &str, s: &'static str| request("POST", host.url(&format!("/p3/sql/{db}")), s);
    assert_eq!(sql("default", "CREATE TABLE t (a)").await.status, 200);
    assert_eq!(sql("marker", "CREATE TABLE m (a)").await.status, 200);

    // Another process-level writer holds the lock of `default`.
    let holder = rusqlite::Connection::open(host.state_dir().join("sqlite_db.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();

    // Request A marks `marker`, then waits on `default` (busy timeout).
    let steps =
        r#"[["marker", "INSERT INTO m VALUES (1)"], ["default", "INSERT INTO t VALUES (1)"]]"#;
    let a = tokio::spawn(request("POST", host.url("/p3/sql-seq"), steps));
    let marker = rusqlite::Connection::open(&marker_db).unwrap();
    let marked = app_tests::eventually(Duration::from_secs(30), || {
        let n: i64 = marker
            .query_row("SELECT count(*) FROM m", [], |r| r.get(0))
            .unwrap_or(0);
        std::future::ready(n == 1)
    })
    .await;
    assert!(marked, "request A never reached its second statement");

    // Request B, same instance, is answered while A still waits...
    let b = get(host.url("/p3/x/headers")).await;
    assert_eq!(b.status, 200, "{}", b.text());
    // ...so A, whose lock is released only now, succeeds. Had B waited
    // for A, A would have outlived the busy timeout and failed.
    holder.execute_batch("COMMIT").unwrap();
    let a = a.await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    let r = sql("default", "SELECT a FROM t").await.json();
    assert_eq!(r["rows"], serde_json::json!([[1]]));
}
