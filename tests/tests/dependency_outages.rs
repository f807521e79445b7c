//! The app when Redis fails, black-box with real redis-server processes:
//! a stopped key-value store is a prompt 503 with `Retry-After` naming it
//! (liveness stays 200), and after a Redis restart readiness waits for the
//! Redis trigger's subscription and no acknowledged event is lost. The same
//! for PostgreSQL when it holds the records.

mod orders_support;

use app_tests::app::{self, PASSWORD, register, register_ok};
use app_tests::{Host, PostgresServer, RedisServer, Reply, eventually};
use orders_support::*;
use std::future::Future;
use std::time::Duration;

/// Only a hang detector: every answer must arrive well within it.
const HANG: Duration = Duration::from_secs(10);

async fn bounded(what: &str, reply: impl Future<Output = Reply>) -> Reply {
    tokio::time::timeout(HANG, reply)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {HANG:?}"))
}

fn assert_store_unavailable(r: &Reply) {
    app::assert_error(r, 503, "service_unavailable");
    let retry_after: u64 = r
        .header("retry-after")
        .expect("Retry-After on a 503")
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1, "{retry_after}");
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("key-value store"), "{message}");
}

#[tokio::test]
async fn a_stopped_key_value_store_is_a_prompt_503_and_liveness_stays_up() {
    let mut redis = RedisServer::start();
    let rc = redis.key_value_config();
    let host = app::start_with_args(
        Some(&keys()),
        &[("redis_address", &redis.url())],
        &rc.args(),
    );
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;

    redis.stop();
    let r = bounded("GET /health", app_tests::get(host.url("/health"))).await;
    assert_eq!(r.status, 200, "liveness touches no store: {}", r.text());
    let r = bounded(
        "register",
        register(&host, "Bob", "bob@example.com", PASSWORD),
    )
    .await;
    assert_store_unavailable(&r);
    let r = bounded(
        "GET /api/users/me",
        app::authed(&host, "GET", "/api/users/me", &ada),
    )
    .await;
    assert_store_unavailable(&r);
    let r = bounded("GET /health", app_tests::get(host.url("/health"))).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Back on the same port: the routes work again.
    redis.restart();
    let mut attempt = 0;
    assert!(
        eventually(DELIVERY, || {
            // A new address each time: an attempt cut short must not make
            // the next one a conflict.
            attempt += 1;
            let email = format!("carol{attempt}@example.com");
            let host = &host;
            async move {
                let r = bounded("register", register(host, "Carol", &email, PASSWORD)).await;
                r.status == 201
            }
        })
        .await,
        "registration did not recover after Redis came back:\n{}",
        host.stderr()
    );
    let r = app::authed(&host, "GET", "/api/users/me", &ada).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn ready(host: &Host) -> Reply {
    bounded(
        "GET /health/ready",
        app_tests::get(host.url("/health/ready")),
    )
    .await
}

/// Redis comes back refusing SUBSCRIBE (an ACL), which holds the Redis
/// trigger in the state every restart passes through: Redis answers, the
/// subscription is not live yet. Readiness must say so, and an order
/// created meanwhile must still reach its owner once the trigger is back.
#[tokio::test]
async fn after_a_redis_restart_ready_waits_for_the_subscription_and_no_event_is_lost() {
    let mut redis = RedisServer::start();
    let host = start_with(
        &app::manifest_with_probe(),
        &[("redis_address", &redis.url())],
        &["--message-backend", "redis"],
    );
    assert!(
        eventually(DELIVERY, || async { ready(&host).await.status == 200 }).await,
        "never ready: {}",
        ready(&host).await.text()
    );
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    create_ok(&host, &ada).await;
    wait_for_notifications(&host, &ada, 1).await;

    redis.restart_with_config("user default on nopass ~* &* +@all -subscribe -psubscribe");
    let unsubscribed = |r: &Reply| {
        r.status == 503
            && r.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("message backend"))
            && r.text().contains("no subscriber")
    };
    assert!(
        eventually(DELIVERY, || async { unsubscribed(&ready(&host).await) }).await,
        "readiness does not report the missing subscription: {}",
        ready(&host).await.text()
    );

    // Acknowledged while nobody listens: it must not count as delivered.
    let order = create_ok(&host, &ada).await;
    let id = order["id"].as_str().unwrap().to_string();
    let rows = sql(
        &host,
        &format!(
            "SELECT sent_at FROM event_outbox WHERE type = 'order.created' AND payload LIKE '%{id}%'"
        ),
    )
    .await;
    assert_eq!(
        rows[0][0],
        serde_json::Value::Null,
        "published to nobody but marked sent"
    );
    assert!(
        unsubscribed(&ready(&host).await),
        "{}",
        ready(&host).await.text()
    );

    redis.cli(&["ACL", "SETUSER", "default", "+subscribe", "+psubscribe"]);
    assert!(
        eventually(DELIVERY, || async { ready(&host).await.status == 200 }).await,
        "not ready after the trigger could subscribe: {}\n{}",
        ready(&host).await.text(),
        host.stderr()
    );
    let got = wait_for_notifications(&host, &ada, 2).await;
    assert_eq!(got[0]["orderId"], id.as_str(), "{got:?}");
}

#[tokio::test]
async fn a_stopped_postgresql_is_a_prompt_503_that_names_the_database_and_nothing_is_lost() {
    let mut pg = PostgresServer::start();
    let host = app::start(
        Some(&keys()),
        &[
            ("database_url", &pg.create_database("app")),
            ("database_host", &pg.host_entry()),
        ],
    );
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let order = create_ok(&host, &ada).await;

    pg.stop();
    let r = bounded(
        "register",
        register(&host, "Bob", "bob@example.com", PASSWORD),
    )
    .await;
    app::assert_error(&r, 503, "service_unavailable");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("database"), "{message}");
    let r = bounded("GET /health", app_tests::get(host.url("/health"))).await;
    assert_eq!(r.status, 200, "liveness touches no database: {}", r.text());
    let r = bounded(
        "GET /health/ready",
        app_tests::get(host.url("/health/ready")),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("database"), "{}", r.text());
    // The password is a secret: not in any answer or log line.
    let logs = host.stdout() + &host.stderr();
    assert!(!logs.contains(PostgresServer::PASSWORD), "{logs}");

    // Back up: the same pool reconnects, and what was acknowledged is there.
    pg.restart();
    let back = eventually(Duration::from_secs(30), || async {
        register(&host, "Bob", "bob@example.com", PASSWORD)
            .await
            .status
            == 201
    })
    .await;
    assert!(back, "{}", host.stderr());
    let id = order["id"].as_str().unwrap();
    let r = app::authed(&host, "GET", &format!("/api/orders/{id}"), &ada).await;
    assert_eq!(r.status, 200, "{}", r.text());
}
