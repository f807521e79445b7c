//! The Redis trigger and outbound Redis: embedded broker (retries, dead
//! letters, durability) and real `redis-server` (pub/sub, reconnection,
//! key-value on Redis).

use app_tests::{Host, RedisServer, eventually, request, wasm};
use std::time::Duration;

fn manifest(address: &str) -> String {
    format!(
        r#"spin_manifest_version = 2
[application]
name = "messaging"
[application.trigger.redis]
address = "{address}"
[variables]
redis_address = {{ default = "{address}" }}
channel = {{ default = "events" }}

[[trigger.http]]
route = "/..."
component = "web"
[[trigger.redis]]
channel = "{{{{ channel }}}}"
component = "subscriber"
[[trigger.redis]]
channel = "p3-events"
component = "subscriber-p3"

[component.web]
source = "{web}"
key_value_stores = ["default"]
allowed_outbound_hosts = ["redis://127.0.0.1:*"]
variables = {{ redis_address = "{{{{ redis_address }}}}" }}
[component.subscriber]
source = "{sub}"
key_value_stores = ["default"]
[component.subscriber-p3]
source = "{sub3}"
key_value_stores = ["default"]
"#,
        web = wasm("fixture-p2-app").display(),
        sub = wasm("fixture-subscriber").display(),
        sub3 = wasm("fixture-subscriber-p3").display(),
    )
}

async fn counter(host: &Host, key: &str) -> i64 {
    request("POST", host.url(&format!("/incr/default/{key}?by=0")), "")
        .await
        .json()
        .as_i64()
        .unwrap()
}

/// The payloads still in the embedded broker's queue (not yet delivered
/// successfully nor dead-lettered), read from its database.
fn queued(host: &Host) -> Vec<String> {
    let db = rusqlite::Connection::open_with_flags(
        host.state_dir().join("messages.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the message queue");
    let mut stmt = db.prepare("SELECT payload FROM queue ORDER BY id").unwrap();

    stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|p| String::from_utf8_lossy(&p.unwrap()).into_owned())
        .collect()
}

async fn publish(host: &Host, channel: &str, body: &str) {
    let r = request(
        "POST",
        host.url(&format!("/publish/{channel}")),
        body.to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn embedded_publish_reaches_subscribers_and_retries_failures() {
    let host = Host::start(
        &manifest("redis://127.0.0.1:6399"),
        &["--message-retry-delay", "50"],
    );
    publish(&host, "events", "m1").await;
    assert!(eventually(WAIT, || async { counter(&host, "handled").await == 1 }).await);
    // Fails twice, succeeds on the third attempt.
    publish(&host, "events", "m2:fail-until:3").await;
    assert!(eventually(WAIT, || async { counter(&host, "handled").await == 2 }).await);
    assert_eq!(counter(&host, "attempts:m2").await, 3);
    // The WASIp3 subscriber. It appends with a read and a write, and the
    // broker delivers queued messages concurrently: publish the second only
    // once the first is in, or the two appends race (under load they did).
    let p3_log = || async { app_tests::get(host.url("/kv/default/p3-log")).await.text() };
    for (message, log) in [("hello", "hello"), ("again", "hello,again")] {
        publish(&host, "p3-events", message).await;
        assert!(
            eventually(WAIT, || async { p3_log().await == log }).await,
            "p3-log: {:?}, expected {log:?}",
            p3_log().await
        );
    }
    // Outbound Redis commands work on the embedded store.
    assert_eq!(
        request("POST", host.url("/redis/incr/n"), "").await.json(),
        1
    );
    assert_eq!(
        request("POST", host.url("/redis/incr/n"), "").await.json(),
        2
    );
    assert_eq!(app_tests::get(host.url("/redis/get/n")).await.json(), "2");
}

/// `execute` of `command` with `args` through the fixture, at `address`.
async fn execute(host: &Host, address: &str, command: &str, args: &[&str]) -> app_tests::Reply {
    request(
        "POST",
        host.url(&format!("/redis/execute/{command}?address={address}")),
        args.join("\n"),
    )
    .await
}

#[tokio::test]
async fn in_embedded_mode_other_redis_addresses_are_real_servers() {
    let redis = RedisServer::start();
    let host = Host::start(&manifest("redis://127.0.0.1:6399"), &[]);
    assert!(
        host.stdout()
            .contains("standing in for Redis at redis://127.0.0.1:6399"),
        "the banner says which address the embedded store answers:\n{}",
        host.stdout()
    );

    // Any other address is the real server: commands the embedded store
    // lacks work, and the data is in that server.
    let r = execute(&host, &redis.url(), "APPEND", &["greeting", "hello"]).await;
    assert_eq!(
        (r.status, r.json()),
        (200, serde_json::json!(["5"])),
        "{}",
        r.text()
    );
    let r = execute(&host, &redis.url(), "APPEND", &["greeting", " world"]).await;
    assert_eq!(r.json(), serde_json::json!(["11"]));
    assert_eq!(redis.cli(&["GET", "greeting"]).trim(), "hello world");

    // The trigger address is the embedded store, which says what it is.
    let r = execute(&host, "redis://127.0.0.1:6399", "APPEND", &["k", "v"]).await;
    assert_eq!(r.status, 500);
    assert!(
        r.text().contains("embedded") && r.text().contains("--message-backend redis"),
        "{}",
        r.text()
    );
    let r = execute(&host, "redis://127.0.0.1:6399", "SET", &["k", "v"]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        redis.cli(&["EXISTS", "k"]).trim(),
        "0",
        "the embedded store is not the real server"
    );

    // An address outside allowed_outbound_hosts is InvalidAddress, as in Spin.
    let r = execute(&host, "redis://localhost:6399", "PING", &[]).await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("InvalidAddress"), "{}", r.text());
}

#[tokio::test]
async fn always_failing_messages_are_dead_lettered() {
    let host = Host::start(
        &manifest("redis://127.0.0.1:6399"),
        &["--message-retry-delay", "20", "--message-max-attempts", "3"],
    );
    publish(&host, "events", "bad:always-fail").await;
    assert!(eventually(WAIT, || async { counter(&host, "attempts:bad").await == 3 }).await);
    let letters = || {
        let out = std::process::Command::new(app_tests::host_binary())
            .args(["dead-letters", "--state-dir"])
            .arg(host.state_dir())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(eventually(WAIT, || async { !letters().is_empty() }).await);
    let letter: serde_json::Value =
        serde_json::from_str(letters().lines().next().unwrap()).unwrap();
    assert_eq!(letter["channel"], "events");
    assert_eq!(letter["component"], "subscriber");
    assert_eq!(letter["payload"], "bad:always-fail");
    assert_eq!(letter["attempts"], 3);
    assert!(
        letter["error"].as_str().unwrap().contains("error"),
        "{letter}"
    );
    assert_eq!(counter(&host, "metrics:dead_letters_total").await, 1);
    // No attempt after dead-lettering: the message left the queue with its
    // dead letter (one transaction), so nothing can deliver it again, and
    // the attempts made stay 3.
    assert_eq!(
        queued(&host),
        Vec::<String>::new(),
        "dead-lettered but queued"
    );
    assert_eq!(
        counter(&host, "attempts:bad").await,
        3,
        "no attempt after dead-lettering"
    );
}

#[tokio::test]
async fn a_thousand_parallel_messages_are_each_handled_once() {
    let host = Host::start(&manifest("redis://127.0.0.1:6399"), &[]);
    let client = app_tests::client();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let client = client.clone();
            let url = host.url("/publish/events");
            tokio::spawn(async move {
                app_tests::send(&client, "POST", &url, &[], format!("bulk{i}")).await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status, 200);
    }
    assert!(
        eventually(Duration::from_secs(60), || async {
            counter(&host, "handled").await == 1000
        })
        .await,
        "handled: {}",
        counter(&host, "handled").await
    );
    // Once the queue is empty every delivery has been acknowledged (a
    // message leaves the queue only after its handler returned), so no
    // handler can still run: the count is final.
    assert!(
        eventually(WAIT, || async { queued(&host).is_empty() }).await,
        "still queued: {:?}",
        queued(&host)
    );
    assert_eq!(counter(&host, "handled").await, 1000);
}

#[tokio::test]
async fn queued_messages_survive_sigkill() {
    // A long retry delay keeps the message queued after its first failure.
    let mut host = Host::start(
        &manifest("redis://127.0.0.1:6399"),
        &["--message-retry-delay", "1500"],
    );
    publish(&host, "events", "durable:fail-until:2").await;
    assert!(
        eventually(WAIT, || async {
            counter(&host, "attempts:durable").await == 1
        })
        .await
    );
    host.restart(); // SIGKILL with the message still queued
    assert!(eventually(WAIT, || async { counter(&host, "handled").await == 1 }).await);
    assert_eq!(counter(&host, "attempts:durable").await, 2);
}

#[tokio::test]
async fn real_redis_pub_sub_reconnects_after_a_restart() {
    let mut redis = RedisServer::start();
    let host = Host::start(&manifest(&redis.url()), &["--message-backend", "redis"]);
    assert!(
        host.stdout().contains("Messages: Redis pub/sub"),
        "{}",
        host.stdout()
    );
    // The subscription is asynchronous: publish until the first one lands.
    assert!(
        eventually(WAIT, || async {
            publish(&host, "events", "r1").await;
            counter(&host, "handled").await == 1
        })
        .await
    );
    publish(&host, "p3-events", "p3").await;
    assert!(
        eventually(WAIT, || async {
            app_tests::get(host.url("/kv/default/p3-log"))
                .await
                .text()
                .contains("p3")
        })
        .await
    );
    // Outbound commands reach the real server.
    assert_eq!(
        request("POST", host.url("/redis/incr/n"), "").await.json(),
        1
    );

    redis.restart();
    assert!(
        eventually(Duration::from_secs(30), || async {
            let r = request("POST", host.url("/publish/events"), "r2").await;
            r.status == 200 && counter(&host, "handled").await == 2
        })
        .await,
        "a message published after the Redis restart was not handled:\n{}",
        host.stderr()
    );
}

/// In Redis mode a burst of slow messages runs at most 16 handlers at once
/// (the host stops reading the subscription while every slot is busy), and
/// every message is still handled.
#[tokio::test]
async fn redis_mode_bounds_the_handlers_running_at_once() {
    const MESSAGES: usize = 40;
    const BOUND: i64 = 16;
    let redis = RedisServer::start();
    let host = Host::start(&manifest(&redis.url()), &["--message-backend", "redis"]);
    assert!(
        eventually(WAIT, || async {
            publish(&host, "events", "warm").await;
            counter(&host, "handled").await == 1
        })
        .await
    );
    for i in 0..MESSAGES {
        publish(&host, "events", &format!("slow{i}:hold:300")).await;
    }
    assert!(
        eventually(Duration::from_secs(60), || async {
            counter(&host, "handled").await == 1 + MESSAGES as i64
        })
        .await,
        "not every message was handled:\n{}",
        host.stderr()
    );
    let mut peak = 0;
    for level in 1..=MESSAGES as i64 {
        let r = app_tests::get(host.url(&format!("/kv/default/peak:{level}"))).await;
        if r.status == 200 {
            peak = level;
        }
    }
    assert!(
        (1..=BOUND).contains(&peak),
        "{peak} handlers ran at once; the bound is {BOUND}"
    );
    assert_eq!(counter(&host, "active").await, 0);
}

fn kv_manifest() -> String {
    format!(
        r#"spin_manifest_version = 2
[application]
name = "kv-redis"
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = "{}"
key_value_stores = ["default"]
"#,
        wasm("fixture-p2-app").display()
    )
}

#[tokio::test]
async fn key_value_semantics_on_redis() {
    let redis = RedisServer::start();
    let rc = redis.key_value_config();
    let host = Host::start(&kv_manifest(), &rc.args());
    let kv = |p: &str| host.url(&format!("/kv/default/{p}"));
    assert_eq!(app_tests::get(kv("a")).await.status, 404);
    assert_eq!(request("PUT", kv("a"), "1").await.status, 204);
    assert_eq!(app_tests::get(kv("a")).await.text(), "1");
    assert_eq!(app_tests::get(kv("a/exists")).await.json(), true);
    assert_eq!(
        app_tests::get(host.url("/kv/default")).await.json(),
        serde_json::json!(["a"])
    );
    assert_eq!(request("DELETE", kv("a"), "").await.status, 204);
    assert_eq!(app_tests::get(kv("a/exists")).await.json(), false);

    let tasks: Vec<_> = (0..200)
        .map(|_| tokio::spawn(request("POST", host.url("/incr/default/c"), "")))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
    assert_eq!(
        request("POST", host.url("/incr/default/c?by=0"), "")
            .await
            .json(),
        200
    );

    let tasks: Vec<_> = (0..30)
        .map(|_| tokio::spawn(request("POST", host.url("/cas/default/log"), "x")))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
    assert_eq!(app_tests::get(kv("log")).await.text(), "x".repeat(30));
}

#[test]
fn runtime_config_errors_name_the_problem() {
    let dir = app_tests::TempDir::new("rc-bad");
    let rc = dir.path().join("rc.toml");
    std::fs::write(&rc, "[key_value_store.default]\ntype = \"mongo\"\n").unwrap();
    let err = app_tests::start_failure(
        &kv_manifest(),
        &["--runtime-config-file", rc.to_str().unwrap()],
    );
    assert!(err.contains("rc.toml") && err.contains("mongo"), "{err}");
    std::fs::write(&rc, "[key_value_stor.default]\ntype = \"spin\"\n").unwrap();
    let err = app_tests::start_failure(
        &kv_manifest(),
        &["--runtime-config-file", rc.to_str().unwrap()],
    );
    assert!(err.contains("key_value_stor"), "{err}");
}

/// Scale-out: two hosts share one Redis for key-value and messages. Requests
/// spread across them are counted exactly, and a message both hosts receive
/// has one effect (the handler claims its id with compare-and-swap).
#[tokio::test]
async fn two_hosts_on_one_redis_lose_nothing_and_count_nothing_twice() {
    let redis = RedisServer::start();
    let rc = redis.key_value_config();
    let args = rc.args();
    let a = Host::start(&manifest(&redis.url()), &args);
    let b = Host::start(&manifest(&redis.url()), &args);
    let hosts = [&a, &b];

    let tasks: Vec<_> = (0..400)
        .map(|i| {
            tokio::spawn(request(
                "POST",
                hosts[i % 2].url("/incr/default/shared"),
                "",
            ))
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
    assert_eq!(counter(&a, "shared").await, 400);
    assert_eq!(counter(&b, "shared").await, 400);

    // Wait until both hosts are subscribed.
    assert!(
        eventually(WAIT, || async {
            publish(&a, "events", "probe").await;
            counter(&a, "attempts:probe").await >= 2
        })
        .await
    );
    for i in 0..100 {
        publish(hosts[i % 2], "events", &format!("spread{i}")).await;
    }
    assert!(eventually(WAIT, || async { counter(&b, "handled").await == 101 }).await);
    // Both hosts receive every message: wait until both have taken each one
    // (two attempts each), so the deliveries that must have no effect have
    // happened, then the count is still one per message.
    for i in 0..100 {
        let key = format!("attempts:spread{i}");
        assert!(
            eventually(WAIT, || async { counter(&a, &key).await >= 2 }).await,
            "{key}: {}",
            counter(&a, &key).await
        );
    }
    assert_eq!(
        counter(&a, "handled").await,
        101,
        "each message had one effect"
    );
}
