//! The orders component, black-box: creating (exact integer totals,
//! validation, idempotency keys), reading and listing (who sees what,
//! pagination, filters), the status lifecycle with its concurrency rule,
//! and the owner profile fetched from users through service chaining
//! (cache, circuit breaker, the private route).

mod orders_support;

use app_tests::app::{self, assert_api_contract, assert_error, authed, register_ok};
use app_tests::{PATIENCE, Reply, wait_until};
use orders_support::*;
use serde_json::{Value, json};
use std::time::Duration;

const UNKNOWN_ID: &str = "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee";

#[tokio::test]
async fn orders_are_created_read_and_listed() {
    let host = start(&[]);
    let (ada_id, ada) = register_ok(&host, "Ada", "ada@example.com").await;

    // 0.10 + 0.20 in cents: exactly 30, no floating point anywhere.
    let body = json!({
        "items": [
            {"productId": "sku-1", "quantity": 1, "unitPrice": 10},
            {"productId": "sku-2", "quantity": 1, "unitPrice": 20}
        ],
        "shippingAddress": address(),
        "currency": "usd"
    });
    let r = create(&host, &ada, &body, None).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_api_contract(&r);
    let order = r.json();
    let id = order["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/orders/{id}").as_str())
    );
    assert_eq!(order["total"], 30);
    assert_eq!(order["currency"], "USD");
    assert_eq!(order["status"], "created");
    assert_eq!(order["userId"], ada_id.as_str());
    assert_eq!(order["itemCount"], 2);
    assert_eq!(order["items"][1]["lineTotal"], 20);
    assert_eq!(order["shippingAddress"]["zipCode"], "62701");
    assert_eq!(order["version"], 1);

    let r = create(
        &host,
        &ada,
        &order_body(&[("x", 3, 333), ("y", 1000, 1)]),
        None,
    )
    .await;
    assert_eq!(r.json()["total"], 3 * 333 + 1000);
    let second = r.json()["id"].as_str().unwrap().to_string();

    // Read back, with the owner's profile from users.
    let r = authed(&host, "GET", &format!("/api/orders/{id}"), &ada).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_api_contract(&r);
    let got = r.json();
    assert_eq!(got["total"], 30);
    assert_eq!(got["items"], order["items"]);
    assert_eq!(got["user"]["id"], ada_id.as_str());
    assert_eq!(got["user"]["email"], "ada@example.com");
    assert_eq!(got["user"]["name"], "Ada");
    assert!(!r.text().contains("argon2"), "{}", r.text());

    // Listed newest first, paginated.
    let r = authed(&host, "GET", "/api/orders?limit=1", &ada).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let page = r.json();
    assert_eq!(page["items"][0]["id"], second.as_str());
    let cursor = page["nextCursor"].as_str().unwrap().to_string();
    let page = authed(
        &host,
        "GET",
        &format!("/api/orders?limit=1&cursor={cursor}"),
        &ada,
    )
    .await
    .json();
    assert_eq!(page["items"][0]["id"], id.as_str());
    assert_eq!(page["nextCursor"], Value::Null);

    // Others see only their own; admins see all and filter.
    let (bob_id, bob) = register_ok(&host, "Bob", "bob@example.com").await;
    let (_, admin) = register_ok(&host, "Admin", ADMIN_EMAIL).await;
    create_ok(&host, &bob).await;
    let mine = authed(&host, "GET", "/api/orders", &bob).await.json();
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    assert_eq!(mine["items"][0]["userId"], bob_id.as_str());
    assert_error(
        &authed(&host, "GET", &format!("/api/orders?userId={ada_id}"), &bob).await,
        403,
        "forbidden",
    );
    let all = authed(&host, "GET", "/api/orders", &admin).await.json();
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    let adas = authed(
        &host,
        "GET",
        &format!("/api/orders?userId={ada_id}"),
        &admin,
    )
    .await
    .json();
    assert_eq!(adas["items"].as_array().unwrap().len(), 2);
    assert_eq!(set_status(&host, &admin, &id, "paid").await.status, 200);
    let paid = authed(&host, "GET", "/api/orders?status=paid", &admin)
        .await
        .json();
    assert_eq!(paid["items"].as_array().unwrap().len(), 1);
    assert_eq!(paid["items"][0]["id"], id.as_str());
    for bad in [
        "status=lost",
        "userId=42",
        "limit=0",
        "cursor=zzz",
        "sort=asc",
    ] {
        assert_error(
            &authed(&host, "GET", &format!("/api/orders?{bad}"), &admin).await,
            400,
            "validation_failed",
        );
    }
    // The admin reads Ada's order, with Ada's profile.
    let r = authed(&host, "GET", &format!("/api/orders/{id}"), &admin).await;
    assert_eq!(r.json()["user"]["email"], "ada@example.com");
}

#[tokio::test]
async fn orders_are_validated() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let item = ("p", 1, 1);
    let r = create(&host, &ada, &order_body(&vec![item; 101]), None).await;
    assert_error(&r, 400, "validation_failed");
    assert_eq!(r.json()["error"]["details"][0]["field"], "items");
    assert_eq!(
        create(&host, &ada, &order_body(&vec![item; 100]), None)
            .await
            .status,
        201
    );

    let r = create(
        &host,
        &ada,
        &json!({
            "items": [
                {"productId": "a", "quantity": 0, "unitPrice": 0.1},
                {"productId": "b", "quantity": 1001, "unitPrice": 10}
            ],
            "shippingAddress": {"street": "", "city": "c", "state": "s",
                                "zipCode": "z", "country": "US"},
            "currency": "DOLLARS"
        }),
        None,
    )
    .await;
    assert_error(&r, 400, "validation_failed");
    let fields: Vec<String> = r.json()["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        fields,
        [
            "items[0].quantity",
            "items[0].unitPrice",
            "items[1].quantity",
            "currency",
            "shippingAddress.street"
        ]
    );

    let mut body = order_body(&[item]);
    body["discount"] = json!(5);
    assert_error(
        &create(&host, &ada, &body, None).await,
        400,
        "validation_failed",
    );
    let r = app::call(
        &host,
        "POST",
        "/api/orders",
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {ada}")),
        ],
        "{\"items\": [",
    )
    .await;
    assert_error(&r, 400, "malformed_json");
    let r = app::json(&host, "POST", "/api/orders", None, &order_body(&[item])).await;
    assert_error(&r, 401, "unauthenticated");
    let r = create(&host, &ada, &order_body(&[item]), Some("has space")).await;
    assert_error(&r, 400, "validation_failed");
    // Nothing invalid was stored.
    let list = authed(&host, "GET", "/api/orders", &ada).await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn idempotency_keys_return_the_first_result_and_create_nothing_new() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let (_, bob) = register_ok(&host, "Bob", "bob@example.com").await;
    let body = order_body(&[("a", 1, 10), ("b", 1, 20)]);
    let first = create(&host, &ada, &body, Some("key-1")).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let again = create(&host, &ada, &body, Some("key-1")).await;
    assert_eq!(again.status, 201, "{}", again.text());
    assert_api_contract(&again);
    assert_eq!(again.body, first.body, "the same body");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("location"), first.header("location"));
    let id = first.json()["id"].as_str().unwrap().to_string();

    // Still the first result after the order changed.
    assert_eq!(set_status(&host, &ada, &id, "cancelled").await.status, 200);
    assert_eq!(
        create(&host, &ada, &body, Some("key-1")).await.body,
        first.body
    );

    // The same key for another order is refused.
    let other = order_body(&[("a", 2, 10)]);
    assert_error(
        &create(&host, &ada, &other, Some("key-1")).await,
        409,
        "idempotency_key_reused",
    );
    // Keys belong to their user: Bob's key-1 is his own.
    let bobs = create(&host, &bob, &body, Some("key-1")).await;
    assert_eq!(bobs.status, 201);
    assert_ne!(bobs.json()["id"], id.as_str());
    assert!(bobs.header("idempotent-replayed").is_none());

    // Parallel requests with one key: one order, one body.
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (url, token, body) = (host.url("/api/orders"), ada.clone(), body.to_string());
            tokio::spawn(async move {
                let auth = format!("Bearer {token}");
                app_tests::send(
                    &app_tests::client(),
                    "POST",
                    &url,
                    &[
                        ("content-type", "application/json"),
                        ("authorization", &auth),
                        ("idempotency-key", "parallel"),
                    ],
                    body,
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        let r: Reply = t.await.unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        bodies.push(r.body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "one body");
    let list = authed(&host, "GET", "/api/orders", &ada).await.json();
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        2,
        "key-1 and parallel"
    );
    let rows = sql(
        &host,
        "SELECT count(*) FROM event_outbox WHERE type = 'order.created'",
    )
    .await;
    assert_eq!(rows[0][0], 3, "one order.created per order");
}

#[tokio::test]
async fn other_users_orders_do_not_exist_for_them() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let (_, bob) = register_ok(&host, "Bob", "bob@example.com").await;
    let id = create_ok(&host, &ada).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let theirs = authed(&host, "GET", &format!("/api/orders/{id}"), &bob).await;
    let missing = authed(&host, "GET", &format!("/api/orders/{UNKNOWN_ID}"), &bob).await;
    assert_error(&theirs, 404, "not_found");
    assert_error(&missing, 404, "not_found");
    assert_eq!(
        theirs.json()["error"]["message"],
        missing.json()["error"]["message"]
    );
    assert_error(
        &set_status(&host, &bob, &id, "cancelled").await,
        404,
        "not_found",
    );
    assert_error(
        &authed(&host, "GET", "/api/orders/42", &ada).await,
        400,
        "validation_failed",
    );
    // Bob's attempt changed nothing.
    let r = authed(&host, "GET", &format!("/api/orders/{id}"), &ada).await;
    assert_eq!(r.json()["status"], "created");
}

#[tokio::test]
async fn every_transition_is_allowed_or_refused_as_the_lifecycle_says() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let (_, admin) = register_ok(&host, "Admin", ADMIN_EMAIL).await;
    let all = ["created", "paid", "shipped", "delivered", "cancelled"];
    let allowed = [
        ("created", "paid"),
        ("created", "cancelled"),
        ("paid", "shipped"),
        ("paid", "cancelled"),
        ("shipped", "delivered"),
    ];
    // Paths from `created` to each status.
    let path_to = |status: &str| -> Vec<&str> {
        match status {
            "created" => vec![],
            "paid" => vec!["paid"],
            "shipped" => vec!["paid", "shipped"],
            "delivered" => vec!["paid", "shipped", "delivered"],
            _ => vec!["cancelled"],
        }
    };
    for from in all {
        for to in all {
            let id = create_ok(&host, &ada).await["id"]
                .as_str()
                .unwrap()
                .to_string();
            for step in path_to(from) {
                assert_eq!(set_status(&host, &admin, &id, step).await.status, 200);
            }
            let before = authed(&host, "GET", &format!("/api/orders/{id}"), &ada)
                .await
                .json();
            let r = set_status(&host, &admin, &id, to).await;
            let after = authed(&host, "GET", &format!("/api/orders/{id}"), &ada)
                .await
                .json();
            if allowed.contains(&(from, to)) {
                assert_eq!(r.status, 200, "{from} -> {to}: {}", r.text());
                assert_eq!(r.json()["status"], to);
                assert_eq!(after["status"], to);
                assert_eq!(after["version"], before["version"].as_i64().unwrap() + 1);
            } else {
                assert_error(&r, 409, "conflict");
                assert_eq!(after["status"], from, "{from} -> {to} changed nothing");
                assert_eq!(after["version"], before["version"]);
                assert_eq!(after["updatedAt"], before["updatedAt"]);
            }
        }
    }

    // Owners may only cancel.
    let id = create_ok(&host, &ada).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for to in ["paid", "shipped", "delivered", "created"] {
        assert_error(&set_status(&host, &ada, &id, to).await, 403, "forbidden");
    }
    assert_eq!(set_status(&host, &admin, &id, "paid").await.status, 200);
    let r = set_status(&host, &ada, &id, "cancelled").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_error(
        &set_status(&host, &ada, &id, "cancelled").await,
        409,
        "conflict",
    );
    let id = create_ok(&host, &ada).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for step in ["paid", "shipped"] {
        set_status(&host, &admin, &id, step).await;
    }
    assert_error(
        &set_status(&host, &ada, &id, "cancelled").await,
        409,
        "conflict",
    );

    // Bad bodies.
    assert_error(
        &set_status(&host, &admin, &id, "lost").await,
        400,
        "validation_failed",
    );
    let r = app::json(
        &host,
        "PATCH",
        &format!("/api/orders/{id}/status"),
        Some(&admin),
        &json!({"status": "delivered", "note": "x"}),
    )
    .await;
    assert_error(&r, 400, "validation_failed");
    // Every accepted change (each one a version step) produced exactly one
    // event, and refused ones none.
    let changes = sql(
        &host,
        "SELECT count(*) FROM event_outbox WHERE type = 'order.status_changed'",
    )
    .await;
    let versions = sql(&host, "SELECT coalesce(sum(version - 1), 0) FROM orders").await;
    assert_eq!(changes[0][0], versions[0][0]);
}

#[tokio::test]
async fn concurrent_transitions_have_exactly_one_winner() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let (_, admin) = register_ok(&host, "Admin", ADMIN_EMAIL).await;
    let id = create_ok(&host, &ada).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(set_status(&host, &admin, &id, "paid").await.status, 200);

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let status = if i % 2 == 0 { "shipped" } else { "cancelled" };
            // Cancellations come from the owner and the admin alike.
            let token = if i % 4 == 1 {
                ada.clone()
            } else {
                admin.clone()
            };
            let url = host.url(&format!("/api/orders/{id}/status"));
            tokio::spawn(async move {
                let auth = format!("Bearer {token}");
                let r = app_tests::send(
                    &app_tests::client(),
                    "PATCH",
                    &url,
                    &[
                        ("content-type", "application/json"),
                        ("authorization", &auth),
                    ],
                    json!({ "status": status }).to_string(),
                )
                .await
                .unwrap();
                (status, r)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (status, r) = t.await.unwrap();
        match r.status {
            200 => winners.push(status),
            409 => assert_error(&r, 409, "conflict"),
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner: {winners:?}");
    let order = authed(&host, "GET", &format!("/api/orders/{id}"), &ada)
        .await
        .json();
    assert_eq!(order["status"], winners[0]);
    assert_eq!(order["version"], 3);
    let events = sql(
        &host,
        &format!(
            "SELECT count(*) FROM event_outbox WHERE type = 'order.status_changed' \
             AND payload LIKE '%{id}%'"
        ),
    )
    .await;
    assert_eq!(events[0][0], 2, "paid and the one winner");
}

#[tokio::test]
async fn owner_profiles_come_through_chaining_and_are_cached() {
    let host = start(&[("user_cache_ttl_seconds", "60")]);
    let (ada_id, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let id = create_ok(&host, &ada).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/orders/{id}");
    let get = || authed(&host, "GET", &path, &ada);
    assert_eq!(get().await.json()["user"]["name"], "Ada");
    let r = app::json(
        &host,
        "PATCH",
        &format!("/api/users/{ada_id}"),
        Some(&ada),
        &json!({"name": "Ada L."}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Served from orders' cache for up to 60 s.
    assert_eq!(get().await.json()["user"]["name"], "Ada");
    let r = app::probe_kv(&host, &format!("orders:cache:user:{ada_id}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["value"]["name"], "Ada");

    // The internal route users serves for chaining is not reachable from
    // outside, with or without a token.
    let r = authed(&host, "GET", &format!("/internal/users/{ada_id}"), &ada).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "route_not_found");
}

#[tokio::test]
async fn a_failing_users_component_opens_the_circuit_and_orders_are_still_served() {
    const OPEN: Duration = Duration::from_secs(10);
    let users = FailingServer::start().await;
    let host = start(&[
        ("users_base_url", &users.url()),
        // Long enough that the calls below certainly fall within it.
        ("users_breaker_open_seconds", "10"),
    ]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let id = create_ok(&host, &ada).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let get = || async {
        let r = authed(&host, "GET", &format!("/api/orders/{id}"), &ada).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_api_contract(&r);
        let body = r.json();
        assert_eq!(body["id"], id.as_str());
        assert_eq!(body["total"], 40);
        assert_eq!(body["user"], Value::Null, "{body}");
        assert!(body.as_object().unwrap().contains_key("user"));
    };
    // Five failures reach users...
    let mut opened = std::time::Instant::now();
    for n in 1..=5 {
        opened = std::time::Instant::now();
        get().await;
        assert_eq!(users.hits(), n);
    }
    // ...then the circuit is open: no more calls, orders still served.
    for _ in 0..5 {
        get().await;
    }
    assert_eq!(users.hits(), 5, "no call while the circuit is open");
    let r = app::probe_kv(&host, "orders:breaker:users").await;
    let state = r.json();
    assert_eq!(state["consecutiveFailures"], 5, "{state}");
    // After the open period one trial call goes through (poll until it
    // does; never before the period is over); it fails, and the circuit
    // opens again.
    wait_until("the trial call", OPEN + PATIENCE, || async {
        get().await;
        (users.hits() > 5).then_some(())
    })
    .await;
    assert!(
        opened.elapsed() >= OPEN,
        "trial after {:?}",
        opened.elapsed()
    );
    assert_eq!(users.hits(), 6, "one trial call");
    get().await;
    get().await;
    assert_eq!(users.hits(), 6, "open again after the failed trial");
}

/// Many orders created at once: every transaction commits. (Each create
/// holds SQLite's write lock across several host calls; the host must keep
/// serving the lock holder while other instances wait for it.)
#[tokio::test]
async fn parallel_creates_all_commit() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let host_url = host.url("/api/orders");
            let token = ada.clone();
            tokio::spawn(async move {
                app_tests::send(
                    &app_tests::client(),
                    "POST",
                    &host_url,
                    &[
                        ("authorization", &format!("Bearer {token}")),
                        ("content-type", "application/json"),
                    ],
                    order_body(&[("sku-1", 1, 100)]).to_string(),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let listed = sql(&host, "SELECT COUNT(*) FROM orders").await;
    assert_eq!(listed[0][0], json!(64));
}

/// JSON does not tell `3` from `3.0` or `1e3`, nor does the `integer` type
/// of docs/openapi.yaml: whole numbers count however they are spelled;
/// fractions are still refused.
#[tokio::test]
async fn whole_numbers_spelled_with_a_fraction_or_exponent_are_whole() {
    if !app_tests::releases::at_least("orders", "0.2.0") {
        return;
    }
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let body = json!({
        "items": [{"productId": "sku-1", "quantity": 2.0, "unitPrice": 1e3}],
        "shippingAddress": address(),
        "currency": "EUR"
    });
    let r = create(&host, &ada, &body, None).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["total"], 2000);
    assert_eq!(r.json()["items"][0]["quantity"], 2);

    let body = json!({
        "items": [{"productId": "sku-1", "quantity": 2.5, "unitPrice": 10.5}],
        "shippingAddress": address(),
        "currency": "EUR"
    });
    let r = create(&host, &ada, &body, None).await;
    assert_error(&r, 400, "validation_failed");
}
