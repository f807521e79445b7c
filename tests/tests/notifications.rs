//! Order events and notifications, black-box: every order change reaches
//! its owner as a notification (embedded broker and a real redis-server),
//! a redelivered event has one effect, failing messages are retried and
//! dead-lettered, committed events survive a SIGKILL before publication
//! (outbox), and deleting a user anonymises their orders.

mod orders_support;

use app_tests::app::{self, assert_api_contract, assert_error, authed, register_ok};
use app_tests::{RedisServer, eventually, wait_until};
use orders_support::*;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn order_changes_notify_their_owner() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let (_, bob) = register_ok(&host, "Bob", "bob@example.com").await;
    let (_, admin) = register_ok(&host, "Admin", ADMIN_EMAIL).await;
    let order = create_ok(&host, &ada).await;
    let id = order["id"].as_str().unwrap().to_string();

    let got = wait_for_notifications(&host, &ada, 1).await;
    let n = &got[0];
    assert_eq!(n["type"], "order.created");
    assert_eq!(n["orderId"], id.as_str());
    assert_eq!(n["read"], false);
    assert_eq!(n["readAt"], Value::Null);
    let message = n["message"].as_str().unwrap();
    assert!(
        message.contains("USD 0.40") && message.contains("3 items"),
        "{message}"
    );

    assert_eq!(set_status(&host, &admin, &id, "paid").await.status, 200);
    let got = wait_for_notifications(&host, &ada, 2).await;
    assert_eq!(got[0]["type"], "order.status_changed", "newest first");
    assert!(
        got[0]["message"]
            .as_str()
            .unwrap()
            .contains("Payment received")
    );

    // Marking read; only the owner can.
    let nid = got[1]["id"].as_str().unwrap().to_string();
    let path = format!("/api/notifications/{nid}/read");
    assert_error(&authed(&host, "POST", &path, &bob).await, 404, "not_found");
    let r = authed(&host, "POST", &path, &ada).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_api_contract(&r);
    assert_eq!(r.json()["read"], true);
    let read_at = r.json()["readAt"].clone();
    assert!(read_at.is_string());
    let again = authed(&host, "POST", &path, &ada).await;
    assert_eq!(again.json()["readAt"], read_at, "the first read time stays");
    let unread = authed(&host, "GET", "/api/notifications?unread=true", &ada)
        .await
        .json();
    assert_eq!(unread["items"].as_array().unwrap().len(), 1);
    assert_eq!(unread["items"][0]["type"], "order.status_changed");

    // Pagination, and nobody else sees them.
    let page = authed(&host, "GET", "/api/notifications?limit=1", &ada)
        .await
        .json();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cursor = page["nextCursor"].as_str().unwrap();
    let next = authed(
        &host,
        "GET",
        &format!("/api/notifications?limit=1&cursor={cursor}"),
        &ada,
    )
    .await
    .json();
    assert_eq!(next["items"][0]["id"], nid.as_str());
    assert_eq!(next["nextCursor"], Value::Null);
    assert!(notifications(&host, &bob).await.is_empty());
    assert_error(
        &authed(&host, "GET", "/api/notifications?unread=maybe", &ada).await,
        400,
        "validation_failed",
    );
    assert_error(
        &app::call(&host, "GET", "/api/notifications", &[], "").await,
        401,
        "unauthenticated",
    );
    assert_error(
        &authed(&host, "POST", "/api/notifications/42/read", &ada).await,
        400,
        "validation_failed",
    );

    // The events are versioned envelopes with the request's correlation id.
    let rows = sql(
        &host,
        &format!(
            "SELECT payload, sent_at FROM event_outbox WHERE payload LIKE '%{id}%' ORDER BY seq"
        ),
    )
    .await;
    assert_eq!(rows.len(), 2);
    let created: Value = serde_json::from_str(rows[0][0].as_str().unwrap()).unwrap();
    assert_eq!(created["type"], "order.created");
    assert_eq!(created["version"], 1);
    assert!(created["eventId"].is_string() && created["occurredAt"].is_string());
    assert!(created["correlationId"].is_string());
    assert_eq!(created["data"]["orderId"], id.as_str());
    assert_eq!(created["data"]["total"], 40);
    assert!(rows.iter().all(|r| r[1].is_i64()), "marked sent: {rows:?}");
}

#[tokio::test]
async fn a_redelivered_event_has_one_effect() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let id = create_ok(&host, &ada).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for_notifications(&host, &ada, 1).await;

    // The outbox row of order.created, delivered twice more.
    let rows = sql(
        &host,
        "SELECT payload, event_id FROM event_outbox WHERE type = 'order.created'",
    )
    .await;
    let payload = rows[0][0].as_str().unwrap().to_string();
    let event_id = rows[0][1].as_str().unwrap().to_string();
    publish(&host, &payload).await;
    publish(&host, &payload).await;
    // A new event, published twice.
    let changed = json!({
        "type": "order.status_changed", "version": 1,
        "eventId": "0190aaaa-bbbb-7ccc-8ddd-000000000001", "correlationId": "dup-test",
        "occurredAt": "2024-05-01T12:00:00.000Z",
        "data": {"orderId": id, "from": "created", "to": "cancelled"}
    })
    .to_string();
    publish(&host, &changed).await;
    publish(&host, &changed).await;
    let processed = || async {
        sql(
            &host,
            "SELECT count(*) FROM processed_events WHERE event_id = '0190aaaa-bbbb-7ccc-8ddd-000000000001'",
        )
        .await[0][0]
            == 1
    };
    assert!(eventually(DELIVERY, processed).await);
    // Let the duplicates drain, then count.
    let duplicates = || async {
        let metrics = app::call(&host, "GET", "/metrics", &[], "").await.text();
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("business_operations_total")
                    && l.contains("event_processing")
                    && l.contains("\"duplicate\"")
            })
            .any(|l| l.trim_end().ends_with(" 3"))
    };
    assert!(
        eventually(DELIVERY, duplicates).await,
        "three duplicate deliveries counted:\n{}",
        app::call(&host, "GET", "/metrics", &[], "").await.text()
    );
    let got = notifications(&host, &ada).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got.iter()
            .filter(|n| n["eventId"] == event_id.as_str())
            .count(),
        1
    );
    assert_eq!(got[0]["type"], "order.status_changed");
}

#[tokio::test]
async fn failing_messages_are_retried_then_dead_lettered() {
    if app::on_edge() {
        // No broker at the edge: the outbox retries and dead-letters (see
        // the test below).
        return;
    }
    let host = start_with(
        &app::manifest_with_probe(),
        &[],
        &["--message-retry-delay", "20", "--message-max-attempts", "3"],
    );
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    // Not an envelope; and an order event naming no order.
    publish(&host, "not json").await;
    let ghost = json!({
        "type": "order.created", "version": 1,
        "eventId": "0190aaaa-bbbb-7ccc-8ddd-000000000002", "correlationId": "c",
        "occurredAt": "2024-05-01T12:00:00.000Z",
        "data": {"orderId": "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee", "currency": "USD",
                 "total": 1, "itemCount": 1}
    });
    publish(&host, &ghost.to_string()).await;
    assert!(
        eventually(DELIVERY, || async {
            counter(&host, "metrics:dead_letters_total").await == 2
        })
        .await,
        "{}",
        host.stderr()
    );
    let out = std::process::Command::new(app_tests::host_binary())
        .args(["dead-letters", "--state-dir"])
        .arg(host.state_dir())
        .output()
        .unwrap();
    let letters: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(
        letters
            .iter()
            .all(|l| l["component"] == "order-events" && l["attempts"] == 3)
    );
    assert!(
        letters.iter().any(|l| l["payload"] == "not json"),
        "{letters:?}"
    );
    // The WIT error of a spin-sdk 5.2 Redis component carries no text; the
    // cause is in the component's log line for each attempt.
    let failures: Vec<Value> = host
        .stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["component"] == "order-events" && l["outcome"] == "failure")
        .collect();
    assert_eq!(failures.len(), 6, "3 attempts each: {failures:?}");
    let errors: Vec<&str> = failures
        .iter()
        .map(|l| l["error"].as_str().unwrap())
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("not an event envelope")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("does not exist")),
        "{errors:?}"
    );
    // A failed event claimed nothing: nothing half-done.
    let rows = sql(&host, "SELECT count(*) FROM processed_events").await;
    assert_eq!(rows[0][0], 0);
    // The app still works.
    create_ok(&host, &ada).await;
    wait_for_notifications(&host, &ada, 1).await;
}

/// The app (with the probe) where orders may not reach the message
/// backend: its events stay unsent in the outbox.
fn manifest_where_orders_cannot_publish() -> String {
    let manifest = app::manifest_with_probe();
    let line = r#"allowed_outbound_hosts = ["{{ users_base_url }}", "{{ redis_address }}", "{{ database_host }}", "{{ events_url }}"]"#;
    assert_eq!(manifest.matches(line).count(), 1, "orders' allow-list");
    // The transport the outbox uses: HTTP to order-events at the edge
    // (where Redis holds orders' counters), Redis pub/sub elsewhere.
    let transport = if app::on_edge() {
        r#", "{{ events_url }}""#
    } else {
        r#""{{ redis_address }}", "#
    };
    manifest.replace(line, &line.replacen(transport, "", 1))
}

#[tokio::test]
async fn committed_events_survive_a_sigkill_before_publication() {
    // Orders may not reach the message backend: its events stay unsent in
    // the outbox although the orders are committed.
    let cut_off = manifest_where_orders_cannot_publish();
    let mut host = start_with(&cut_off, &[], &[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let id = create_ok(&host, &ada).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Wait for the outbox's publication attempt to have failed (recorded
    // with its error): then nothing was published, and nothing notified.
    let outbox = || async {
        sql(
            &host,
            "SELECT sent_at, attempts, last_error FROM event_outbox WHERE type = 'order.created'",
        )
        .await
    };
    let rows = wait_until("a failed publication attempt", DELIVERY, || async {
        let rows = outbox().await;
        (rows[0][1].as_i64().unwrap_or(0) >= 1).then_some(rows)
    })
    .await;
    assert!(notifications(&host, &ada).await.is_empty());
    assert_eq!(rows[0][0], Value::Null, "not sent: {rows:?}");
    assert!(rows[0][1].as_i64().unwrap() >= 1, "{rows:?}");
    assert!(rows[0][2].is_string(), "{rows:?}");

    // SIGKILL, fix the manifest, start again on the same state.
    std::fs::write(
        host.dir.path().join("spin.toml"),
        app::manifest_with_probe(),
    )
    .unwrap();
    host.restart();
    // The next request to orders publishes what the outbox holds.
    let got = wait_for_notifications(&host, &ada, 1).await;
    assert_eq!(got[0]["orderId"], id.as_str());
    let rows = sql(
        &host,
        "SELECT sent_at FROM event_outbox WHERE type = 'order.created'",
    )
    .await;
    assert!(rows[0][0].is_i64(), "{rows:?}");
}

/// Waits until the Redis trigger's subscription is live: Redis pub/sub
/// drops messages nobody listens to. A `user.deleted` for nobody, published
/// through the probe, is handled and recorded once it is.
async fn wait_until_subscribed(host: &app_tests::Host, round: &str) {
    let mut n = 0;
    let live = eventually(DELIVERY, || {
        n += 1;
        let probe = format!("0190aaaa-bbbb-7ccc-{round}-{n:012}");
        async move {
            let ping = json!({"type": "user.deleted", "version": 1, "eventId": probe,
                "correlationId": "probe", "occurredAt": "2024-05-01T12:00:00.000Z",
                "data": {"userId": "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee"}});
            // Fails while the probe's Redis connection recovers; just retry.
            let _ = app::call(
                host,
                "POST",
                "/probe/publish/app.events",
                &[],
                ping.to_string(),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let query = format!("SELECT count(*) FROM processed_events WHERE event_id = '{probe}'");
            sql(host, &query).await[0][0] == 1
        }
    })
    .await;
    assert!(
        live,
        "the Redis trigger never subscribed:\n{}",
        host.stderr()
    );
}

/// At the edge the outbox delivers over HTTP and owns the retries: a
/// consumer's 503 is retried with back-off and dead-lettered at the last
/// attempt, an unreadable event (422) at once; dead letters stay in the
/// outbox, marked, and are counted.
#[tokio::test]
async fn at_the_edge_the_outbox_retries_then_dead_letters_what_the_consumer_fails_on() {
    if !app::on_edge() {
        // The Redis transport has no dead letters of its own; the broker's
        // are tested above.
        return;
    }
    const TOKEN: &str = "maintenance-test-token";
    let host = start(&[("maintenance_token", TOKEN)]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    create_ok(&host, &ada).await;
    wait_for_notifications(&host, &ada, 1).await;
    // Unreadable; an order event naming no order, at its last attempt; the
    // same at its first.
    let ghost = |id: &str| {
        json!({
            "type": "order.created", "version": 1, "eventId": id, "correlationId": "c",
            "occurredAt": "2024-05-01T12:00:00.000Z",
            "data": {"orderId": "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee", "currency": "USD",
                     "total": 1, "itemCount": 1}
        })
        .to_string()
    };
    for (id, kind, payload, attempts) in [
        ("bad-envelope", "unknown", "not json".to_string(), 0),
        ("ghost-last", "order.created", ghost("ghost-last"), 7),
        ("ghost-first", "order.created", ghost("ghost-first"), 0),
    ] {
        sql(
            &host,
            &format!(
                "INSERT INTO event_outbox (event_id, channel, type, payload, created_at, attempts)
                 VALUES ('{id}', 'app.events', '{kind}', '{payload}', 0, {attempts})"
            ),
        )
        .await;
    }
    let auth = format!("Bearer {TOKEN}");
    let r = app::call(
        &host,
        "POST",
        "/maintenance/run",
        &[("authorization", &auth)],
        "",
    )
    .await;
    // A delivery failed: the run says so, and the rest stays queued.
    assert_error(&r, 503, "service_unavailable");
    let rows = sql(
        &host,
        "SELECT event_id, dead_at IS NOT NULL, sent_at IS NOT NULL, attempts, last_error
         FROM event_outbox WHERE event_id IN ('bad-envelope', 'ghost-last', 'ghost-first')
         ORDER BY event_id",
    )
    .await;
    let row = |id: &str| rows.iter().find(|r| r[0] == id).unwrap().clone();
    let error = |id: &str| row(id)[4].as_str().unwrap_or_default().to_string();
    // psql shows booleans as t/f.
    assert_eq!(row("bad-envelope")[1], "t", "{rows:?}");
    assert!(error("bad-envelope").contains("422"), "{rows:?}");
    assert!(
        error("bad-envelope").contains("not an event envelope"),
        "{rows:?}"
    );
    assert_eq!(
        (row("ghost-last")[1].clone(), row("ghost-last")[3].clone()),
        ("t".into(), 8.into()),
        "{rows:?}"
    );
    assert!(error("ghost-last").contains("does not exist"), "{rows:?}");
    // Not dead, not sent: retried after its back-off.
    assert_eq!(row("ghost-first")[1], "f", "{rows:?}");
    assert_eq!(row("ghost-first")[2], "f", "{rows:?}");
    let metrics = app::call(&host, "GET", "/metrics", &[], "").await.text();
    for series in [
        r#"events_dead_lettered_total{type="unknown"} 1"#,
        r#"events_dead_lettered_total{type="order.created"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
    // The real events were delivered meanwhile, once.
    assert_eq!(notifications(&host, &ada).await.len(), 1);
}

#[tokio::test]
async fn real_redis_delivers_order_events_and_the_outbox_outlives_a_redis_outage() {
    if app::on_edge() {
        // Redis pub/sub is not how events travel at the edge; an outbox
        // that cannot reach its consumer is tested there by
        // `committed_events_survive_a_sigkill_before_publication`.
        return;
    }
    let mut redis = RedisServer::start();
    let url = redis.url();
    let host = start_with(
        &app::manifest_with_probe(),
        &[("redis_address", &url)],
        &["--message-backend", "redis"],
    );
    wait_until_subscribed(&host, "8001").await;
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let (_, admin) = register_ok(&host, "Admin", ADMIN_EMAIL).await;
    let id = create_ok(&host, &ada).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = wait_for_notifications(&host, &ada, 1).await;
    assert_eq!(got[0]["orderId"], id.as_str());
    assert_eq!(set_status(&host, &admin, &id, "paid").await.status, 200);
    let got = wait_for_notifications(&host, &ada, 2).await;
    assert_eq!(got[0]["type"], "order.status_changed");

    // Redis goes down: the change still commits, its event waits.
    redis.stop();
    let r = set_status(&host, &admin, &id, "shipped").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rows = sql(
        &host,
        "SELECT sent_at, last_error FROM event_outbox WHERE payload LIKE '%\"to\":\"shipped\"%'",
    )
    .await;
    assert_eq!(rows[0][0], Value::Null, "{rows:?}");
    assert!(rows[0][1].is_string(), "{rows:?}");
    // Redis is back: once the trigger has resubscribed, the next orders
    // request publishes the event.
    redis.restart();
    wait_until_subscribed(&host, "8002").await;
    let got = wait_for_notifications(&host, &ada, 3).await;
    assert!(
        got[0]["message"].as_str().unwrap().contains("shipped"),
        "{got:?}"
    );
}

#[tokio::test]
async fn deleting_a_user_anonymises_their_orders_and_removes_their_notifications() {
    let host = start(&[]);
    let (ada_id, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let (_, admin) = register_ok(&host, "Admin", ADMIN_EMAIL).await;
    let order = create_ok(&host, &ada).await;
    let id = order["id"].as_str().unwrap().to_string();
    wait_for_notifications(&host, &ada, 1).await;
    // Warm orders' profile cache.
    let r = authed(&host, "GET", &format!("/api/orders/{id}"), &admin).await;
    assert_eq!(r.json()["user"]["email"], "ada@example.com");

    let r = authed(&host, "DELETE", &format!("/api/users/{ada_id}"), &ada).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let rows = sql(
        &host,
        "SELECT payload FROM event_outbox WHERE type = 'user.deleted'",
    )
    .await;
    let event: Value = serde_json::from_str(rows[0][0].as_str().unwrap()).unwrap();
    assert_eq!(event["data"]["userId"], ada_id.as_str());
    assert_eq!(event["version"], 1);

    assert!(
        eventually(DELIVERY, || async {
            sql(
                &host,
                &format!("SELECT count(*) FROM orders WHERE user_id = '{ada_id}'"),
            )
            .await[0][0]
                == 0
        })
        .await
    );
    let r = authed(&host, "GET", &format!("/api/orders/{id}"), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let anonymised = r.json();
    assert_eq!(anonymised["userId"], Value::Null);
    assert_eq!(anonymised["shippingAddress"], Value::Null);
    assert_eq!(anonymised["user"], Value::Null);
    assert_eq!(anonymised["total"], order["total"]);
    assert_eq!(anonymised["items"], order["items"]);
    assert_eq!(anonymised["status"], "created");
    assert!(!r.text().contains("Springfield") && !r.text().contains("ada@"));
    let left = sql(
        &host,
        &format!("SELECT count(*) FROM notifications WHERE user_id = '{ada_id}'"),
    )
    .await;
    assert_eq!(left[0][0], 0);
    let stored = sql(
        &host,
        &format!("SELECT first_response, request_hash FROM orders WHERE id = '{id}'"),
    )
    .await;
    assert_eq!(stored[0], vec![Value::Null, Value::Null]);
    let r = app::probe_kv(&host, &format!("orders:cache:user:{ada_id}")).await;
    assert_eq!(r.status, 404, "cached profile removed: {}", r.text());
}

#[tokio::test]
async fn a_scheduled_maintenance_run_delivers_an_event_with_no_other_request() {
    // Orders cannot reach the message backend, so its event stays in the
    // outbox; nothing but the host's own schedule calls the app afterwards.
    let cut_off = manifest_where_orders_cannot_publish();
    let host = start_with(
        &cut_off,
        &[("maintenance_token", "scheduled-secret")],
        &[
            "--schedule",
            "1s=/maintenance/run",
            "--schedule-header",
            "authorization: Bearer {{ maintenance_token }}",
        ],
    );
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let id = create_ok(&host, &ada).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // From here on only the schedule reaches the app (the checks read the
    // database directly).
    let delivered = eventually(DELIVERY, || async {
        sql(&host, "SELECT count(*) FROM notifications").await[0][0] == 1
    })
    .await;
    assert!(delivered, "{}", host.stderr());
    let rows = sql(
        &host,
        &format!("SELECT order_id FROM notifications WHERE order_id = '{id}'"),
    )
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let rows = sql(
        &host,
        "SELECT sent_at FROM event_outbox WHERE type = 'order.created'",
    )
    .await;
    assert!(rows[0][0].is_i64(), "{rows:?}");
    let runs = host
        .stdout()
        .lines()
        .filter(|l| l.contains("\"route\":\"/maintenance/run\"") && l.contains("\"status\":200"))
        .count();
    assert!(runs >= 1, "{}", host.stdout());
    assert!(!host.stdout().contains("scheduled-secret"));
    assert!(!host.stderr().contains("scheduled-secret"));
}
