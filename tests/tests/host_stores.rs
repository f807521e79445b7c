//! Key-value, `wasi:keyvalue` atomics, SQLite and variables on the embedded
//! backends, through a WASIp2 component.

use app_tests::{Host, get, request, wasm};

fn manifest() -> String {
    let app = wasm("fixture-p2-app");
    format!(
        r#"spin_manifest_version = 2
[application]
name = "stores"

[variables]
greeting = {{ default = "hello" }}
from_env = {{ default = "unset" }}
from_flag = {{ default = "unset" }}
api_token = {{ required = true, secret = true }}

[[trigger.http]]
route = "/..."
component = "app"
[[trigger.http]]
route = "/limited/..."
component = "limited"

[component.app]
source = "{app}"
key_value_stores = ["default"]
sqlite_databases = ["default"]
[component.app.variables]
greeting = "{{{{ greeting }}}}, world"
from_env = "{{{{ from_env }}}}"
from_flag = "{{{{ from_flag }}}}"
token = "{{{{ api_token }}}}"

[component.limited]
source = "{app}"
"#,
        app = app.display()
    )
}

fn start() -> Host {
    Host::start_with_env(
        &manifest(),
        &[
            "--variable",
            "from_flag=flag",
            "--variable",
            "api_token=s3cr3t-value",
        ],
        &[("SPIN_VARIABLE_FROM_ENV", "env")],
    )
}

#[tokio::test]
async fn key_value_semantics() {
    let host = start();
    let kv = |p: &str| host.url(&format!("/kv/default/{p}"));
    assert_eq!(get(&kv("a")).await.status, 404, "missing key reads as none");
    assert_eq!(request("PUT", &kv("a"), "1").await.status, 204);
    assert_eq!(
        request("PUT", &kv("b"), vec![0u8, 255, 7]).await.status,
        204
    );
    assert_eq!(get(&kv("a")).await.text(), "1");
    assert_eq!(
        &get(&kv("b")).await.body[..],
        &[0u8, 255, 7],
        "binary values round-trip"
    );
    assert_eq!(request("PUT", &kv("a"), "2").await.status, 204);
    assert_eq!(get(&kv("a")).await.text(), "2", "set overwrites");
    assert_eq!(get(&kv("a/exists")).await.json(), true);
    assert_eq!(get(&kv("zz/exists")).await.json(), false);
    assert_eq!(
        get(&host.url("/kv/default")).await.json(),
        serde_json::json!(["a", "b"])
    );
    assert_eq!(request("DELETE", &kv("a"), "").await.status, 204);
    assert_eq!(
        request("DELETE", &kv("a"), "").await.status,
        204,
        "deleting a missing key succeeds"
    );
    assert_eq!(get(&kv("a/exists")).await.json(), false);
    assert_eq!(
        get(&host.url("/kv/default")).await.json(),
        serde_json::json!(["b"])
    );
}

#[tokio::test]
async fn undeclared_stores_are_access_denied() {
    let host = start();
    let r = get(&host.url("/kv/other/a")).await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("AccessDenied"), "{}", r.text());
    // `limited` declares no stores at all.
    let r = get(&host.url("/limited/kv/default/a")).await;
    assert!(r.text().contains("AccessDenied"), "{}", r.text());
    let r = request("POST", &host.url("/limited/sql/default"), "SELECT 1").await;
    assert!(r.text().contains("AccessDenied"), "{}", r.text());
    let r = request("POST", &host.url("/limited/incr/default/n"), "").await;
    assert!(r.text().contains("AccessDenied"), "{}", r.text());
}

#[tokio::test]
async fn parallel_atomic_increments_are_exact() {
    let host = start();
    let client = app_tests::client();
    let url = host.url("/incr/default/counter");
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move { app_tests::send(&client, "POST", &url, &[], "").await })
        })
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        seen.push(r.json().as_i64().unwrap());
    }
    seen.sort();
    assert_eq!(
        seen,
        (1..=200).collect::<Vec<i64>>(),
        "every increment saw a distinct value"
    );
    let r = request("POST", &host.url("/incr/default/counter?by=0"), "").await;
    assert_eq!(r.json(), 200);
    // Stored as Spin stores counters: 8 bytes, little-endian.
    assert_eq!(
        &get(&host.url("/kv/default/counter")).await.body[..],
        &200i64.to_le_bytes()
    );
    // A non-counter value is an error, not a crash.
    request("PUT", &host.url("/kv/default/text"), "abc").await;
    let r = request("POST", &host.url("/incr/default/text"), "").await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("not a counter"), "{}", r.text());
}

/// A stream of counter updates (what rate limits and metrics do on every
/// request) keeps the key-value file's write-ahead log bounded: before the
/// host stepped counter statements to completion, SQLite never ran its
/// automatic checkpoint and the log grew ~8 KB an update, without bound.
#[tokio::test]
async fn counter_updates_keep_the_write_ahead_log_bounded() {
    const UPDATES: usize = 4_000;
    /// SQLite checkpoints every 1,000 pages (4 MiB), so the log stays near
    /// that; without checkpoints these updates write a page (4 KiB) each,
    /// about twice this bound.
    const BOUND: u64 = 8 << 20;
    let host = start();
    let client = app_tests::client();
    for i in 0..UPDATES {
        let url = host.url(&format!("/incr/default/counter-{}", i % 4));
        let r = app_tests::send(&client, "POST", &url, &[], "")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let wal =
        std::fs::metadata(host.state_dir().join("sqlite_key_value.db-wal")).map_or(0, |m| m.len());
    assert!(wal <= BOUND, "the write-ahead log grew to {wal} bytes");
    let r = request("POST", &host.url("/incr/default/counter-0?by=0"), "").await;
    assert_eq!(r.json(), (UPDATES / 4) as i64);
}

#[tokio::test]
async fn compare_and_swap_loses_no_update() {
    let host = start();
    let client = app_tests::client();
    let url = host.url("/cas/default/log");
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move { app_tests::send(&client, "POST", &url, &[], "x").await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status, 200);
    }
    assert_eq!(
        get(&host.url("/kv/default/log")).await.text(),
        "x".repeat(40)
    );
}

#[tokio::test]
async fn data_survives_restart_and_sigkill() {
    let mut host = start();
    request("PUT", &host.url("/kv/default/persist"), "kept").await;
    let r = request(
        "POST",
        &host.url("/sql/default"),
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        "POST",
        &host.url("/sql/default"),
        "INSERT INTO t (name) VALUES ('ada')",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    host.restart(); // SIGKILL, then start again on the same state dir
    assert_eq!(get(&host.url("/kv/default/persist")).await.text(), "kept");
    let r = request("POST", &host.url("/sql/default"), "SELECT id, name FROM t")
        .await
        .json();
    assert_eq!(r["rows"], serde_json::json!([[1, "ada"]]));
    assert!(host.state_dir().join("sqlite_key_value.db").is_file());
    assert!(host.state_dir().join("sqlite_db.db").is_file());
}

#[tokio::test]
async fn sqlite_reports_errors_and_types() {
    let host = start();
    let sql = |s: &'static str| request("POST", host.url("/sql/default"), s);
    assert_eq!(
        sql("CREATE TABLE v (i INTEGER, r REAL, t TEXT, b BLOB, n)")
            .await
            .status,
        200
    );
    assert_eq!(
        sql("INSERT INTO v VALUES (7, 1.5, 'x', x'00ff', NULL)")
            .await
            .status,
        200
    );
    let r = sql("SELECT i, r, t, b, n FROM v").await.json();
    assert_eq!(r["columns"], serde_json::json!(["i", "r", "t", "b", "n"]));
    assert_eq!(
        r["rows"],
        serde_json::json!([[7, 1.5, "x", [0, 255], null]])
    );
    let r = sql("SELEC nonsense").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("syntax error"), "{}", r.text());
}

#[tokio::test]
async fn variables_come_from_each_source_and_secrets_stay_hidden() {
    let host = start();
    assert_eq!(
        get(&host.url("/var/greeting")).await.json(),
        "hello, world",
        "default + template"
    );
    assert_eq!(
        get(&host.url("/var/from_env")).await.json(),
        "env",
        "SPIN_VARIABLE_*"
    );
    assert_eq!(
        get(&host.url("/var/from_flag")).await.json(),
        "flag",
        "--variable"
    );
    assert_eq!(get(&host.url("/var/token")).await.json(), "s3cr3t-value");
    let r = get(&host.url("/var/not_declared")).await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("Undefined"), "{}", r.text());
    let r = get(&host.url("/var/Bad-Name")).await;
    assert!(r.text().contains("InvalidName"), "{}", r.text());
    let logs = host.stdout() + &host.stderr();
    assert!(!logs.contains("s3cr3t-value"), "secret printed:\n{logs}");
    assert!(logs.contains("api_token = <secret>"), "{logs}");
}

#[test]
fn a_missing_required_variable_stops_the_host() {
    let err = app_tests::start_failure(&manifest(), &[]);
    assert!(err.contains("api_token"), "{err}");
    assert!(err.contains("SPIN_VARIABLE_API_TOKEN"), "{err}");
}
