//! Nothing the app writes grows forever, black-box: rate-limit counters of
//! many client addresses, denylist entries, refresh families, lockout
//! counts and `processed_events` claims are removed by the sweeper once
//! they expire, and `/metrics` reads its series through an index, never by
//! listing the store. Short windows and TTLs come in as variables; the
//! state is inspected in the host's SQLite files.

mod orders_support;

use app_tests::app::{self, Keys, PASSWORD, authed, json, login, register_ok};
use app_tests::{Host, HttpClient, eventually, send};
use bytes::Bytes;
use futures::StreamExt as _;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn keys() -> Keys {
    let kp = jwt_simple::prelude::Ed25519KeyPair::generate();
    Keys::from_bytes("expiry-test", &kp.to_bytes(), &kp.public_key().to_bytes())
}

fn open(host: &Host, file: &str) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(host.state_dir().join(file)).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// Keys of the `default` store matching a `LIKE` pattern.
fn kv_count(host: &Host, like: &str) -> i64 {
    open(host, "sqlite_key_value.db")
        .query_row(
            "SELECT count(*) FROM spin_key_value WHERE store = 'default' AND key LIKE ?1",
            [like],
            |r| r.get(0),
        )
        .unwrap()
}

/// One number from the app's database (0 when the table is missing).
fn db_number(host: &Host, sql: &str) -> i64 {
    open(host, "sqlite_db.db")
        .query_row(sql, [], |r| r.get(0))
        .unwrap_or(0)
}

/// A client whose connections come from `ip` (the host reads the client
/// address from the TCP peer).
fn client_from(ip: IpAddr) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(ip));
    Client::builder(TokioExecutor::new()).build(connector)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const DEADLINE: Duration = Duration::from_secs(90);

#[tokio::test]
async fn rate_limit_counters_of_many_clients_are_swept() {
    let host = app::start(
        None,
        &[
            ("api_rate_limit", "1000"),
            ("api_rate_window_seconds", "2"),
            ("sweep_interval_seconds", "1"),
        ],
    );
    // One request from each of 2,000 loopback addresses (127.1.x.y).
    let url = host.url("/api/users/no/such/route");
    let statuses: Vec<u16> = futures::stream::iter(0..2000u32)
        .map(|i| {
            let url = url.clone();
            async move {
                let ip = IpAddr::V4(Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8));
                let r = send(&client_from(ip), "GET", &url, &[], Bytes::new())
                    .await
                    .unwrap();
                assert_eq!(r.header("ratelimit-limit"), Some("1000"));
                r.status
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 404), "{statuses:?}");

    // Once their windows are over, later requests (from one client) sweep
    // them away in bounded batches until only live windows are left.
    let swept = eventually(DEADLINE, || async {
        let r = app::call(&host, "GET", "/api/users/no/such/route", &[], "").await;
        assert_eq!(r.status, 404);
        kv_count(&host, "ratelimit:%") <= 2
            && db_number(&host, "SELECT count(*) FROM expiring_keys") <= 2
    })
    .await;
    assert!(
        swept,
        "{} rate-limit keys and {} index rows left",
        kv_count(&host, "ratelimit:%"),
        db_number(&host, "SELECT count(*) FROM expiring_keys")
    );
}

/// `exp` of a JWT, read from its payload.
fn expiry_of(token: &str) -> u64 {
    let payload = token.split('.').nth(1).unwrap();
    use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Decoder as _};
    let claims = Base64UrlSafeNoPadding::decode_to_vec(payload, None).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
    claims["exp"].as_u64().unwrap()
}

#[tokio::test]
async fn denylist_refresh_families_and_lockouts_expire() {
    let host = app::start(
        Some(&keys()),
        &[
            // Long enough that nothing expires before it is counted below
            // (Argon2 makes each login slow), short enough for one test.
            ("access_token_ttl_seconds", "2"),
            ("refresh_token_ttl_seconds", "25"),
            ("login_max_failures", "2"),
            ("login_failure_window_seconds", "15"),
            ("login_lockout_seconds", "15"),
            ("sweep_interval_seconds", "1"),
        ],
    );
    register_ok(&host, "Ada", "ada@example.com").await;
    let mut revoked = Vec::new();
    for _ in 0..5 {
        let session = login(&host, "ada@example.com", PASSWORD).await.json();
        let access = session["accessToken"].as_str().unwrap().to_string();
        let r = json(
            &host,
            "POST",
            "/api/auth/logout",
            Some(&access),
            &json!({ "refreshToken": session["refreshToken"] }),
        )
        .await;
        assert_eq!(r.status, 204, "{}", r.text());
        revoked.push(access);
    }
    for i in 0..5 {
        for _ in 0..2 {
            let r = login(&host, &format!("nobody{i}@example.com"), "wrong password!").await;
            assert!(r.status == 401 || r.status == 429, "{}", r.text());
        }
    }
    assert_eq!(kv_count(&host, "denylist:%"), 5);
    assert_eq!(
        kv_count(&host, "auth:refresh-family:%"),
        6,
        "register + 5 logins"
    );
    assert_eq!(kv_count(&host, "auth:login-failures:%"), 5);

    // Past `exp`, but within the clock skew verifiers tolerate, a revoked
    // token is still refused: its denylist entry outlives the skew.
    let exp = expiry_of(&revoked[0]);
    assert!(eventually(DEADLINE, || async { now_secs() > exp + 1 }).await);
    let r = authed(&host, "GET", "/api/auth/me", &revoked[0]).await;
    assert_eq!(r.status, 401, "{}", r.text());

    // Everything expires, and requests sweep it away.
    let gone = eventually(DEADLINE, || async {
        app::call(&host, "GET", "/.well-known/jwks.json", &[], "").await;
        kv_count(&host, "denylist:%") == 0
            && kv_count(&host, "auth:refresh-family:%") == 0
            && kv_count(&host, "auth:login-failures:%") == 0
    })
    .await;
    assert!(
        gone,
        "left: {} denylist, {} families, {} lockout counts",
        kv_count(&host, "denylist:%"),
        kv_count(&host, "auth:refresh-family:%"),
        kv_count(&host, "auth:login-failures:%")
    );
    assert_eq!(
        db_number(
            &host,
            "SELECT count(*) FROM expiring_keys WHERE key NOT LIKE 'ratelimit:%'"
        ),
        0
    );
}

#[tokio::test]
async fn processed_event_claims_are_pruned_after_retention() {
    use orders_support::*;
    let host = start(&[
        ("processed_events_retention_seconds", "1"),
        ("sweep_interval_seconds", "1"),
    ]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    for _ in 0..3 {
        create_ok(&host, &ada).await;
    }
    assert!(
        eventually(DELIVERY, || async {
            db_number(
                &host,
                "SELECT count(*) FROM processed_events WHERE type = 'order.created'",
            ) == 3
        })
        .await
    );
    let created: Vec<String> = open(&host, "sqlite_db.db")
        .prepare("SELECT event_id FROM processed_events WHERE type = 'order.created'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let first: Vec<String> = open(&host, "sqlite_db.db")
        .prepare("SELECT event_id FROM processed_events")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();

    // Later events run the sweep, which removes claims past retention.
    let placeholders = vec!["?"; first.len()].join(",");
    let left = |host: &Host| -> i64 {
        open(host, "sqlite_db.db")
            .query_row(
                &format!(
                    "SELECT count(*) FROM processed_events WHERE event_id IN ({placeholders})"
                ),
                rusqlite::params_from_iter(first.iter()),
                |r| r.get(0),
            )
            .unwrap()
    };
    let pruned = eventually(DEADLINE, || async {
        create_ok(&host, &ada).await;
        left(&host) == 0
    })
    .await;
    assert!(pruned, "{} old claims left", left(&host));
    // Notifications are kept: they belong to the user, not to retention.
    // Each of the three orders' events, whose claims were pruned, still
    // has its notification.
    let kept: i64 = open(&host, "sqlite_db.db")
        .query_row(
            "SELECT count(*) FROM notifications WHERE event_id IN (?, ?, ?)",
            rusqlite::params_from_iter(created.iter()),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 3, "notifications of the pruned claims' events");
    assert!(notifications(&host, &ada).await.len() >= 3);
}

#[tokio::test]
async fn metrics_are_read_through_the_series_index() {
    let host = app::start(None, &[]);
    for _ in 0..3 {
        let r = app::call(&host, "GET", "/api/users/no/such/route", &[], "").await;
        assert_eq!(r.status, 404);
    }
    // 2,000 unrelated keys, and one that looks like a counter but was never
    // recorded by the app: a scrape that lists the store would show it.
    {
        let mut conn = open(&host, "sqlite_key_value.db");
        let tx = conn.transaction().unwrap();
        for i in 0..2000 {
            tx.execute(
                "INSERT INTO spin_key_value (store, key, value) VALUES ('default', ?1, ?2)",
                rusqlite::params![format!("unrelated:{i}"), b"x".to_vec()],
            )
            .unwrap();
        }
        tx.execute(
            "INSERT INTO spin_key_value (store, key, value) VALUES ('default', ?1, ?2)",
            rusqlite::params![
                "metrics:v1:counter:stray_total{kind=\"planted\"}",
                7i64.to_le_bytes().to_vec()
            ],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let r = app::call(&host, "GET", "/metrics", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(
        text.contains(
            r#"http_requests_total{component="users",method="GET",route="unmatched",status="404"} 3"#
        ),
        "{text}"
    );
    assert!(!text.contains("stray_total"), "{text}");
    assert!(text.contains("dead_letters_total 0"), "{text}");
}
