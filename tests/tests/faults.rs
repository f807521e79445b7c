//! `runtime-host up --faults`: the app degrades as documented when its
//! stores fail or slow down (docs/faults.md): 503 with `Retry-After`,
//! liveness unaffected, nothing half-written, nothing lost.

mod orders_support;

use app_tests::app::{self, PASSWORD};
use app_tests::{Host, eventually};
use orders_support::{DELIVERY, create, order_body, start_with};
use std::time::Duration;

fn start_faulty(spec: &str) -> Host {
    start_with(&app::manifest_with_probe(), &[], &["--faults", spec])
}

/// Starts the same state directory again without faults.
fn heal(host: &mut Host) {
    let at = host.args.iter().position(|a| a == "--faults").unwrap();
    host.args.drain(at..at + 2);
    host.restart();
}

/// A refused registration left nothing behind: healed, the address has no
/// account and is free to register.
async fn assert_no_account_was_left(host: &mut Host) {
    heal(host);
    let r = app::login(host, "ada@example.com", PASSWORD).await;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = app::register(host, "Ada", "ada@example.com", PASSWORD).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

fn assert_unavailable(r: &app_tests::Reply, what: &str) {
    assert_eq!(r.status, 503, "{what}: {}", r.text());
    assert!(
        r.header("retry-after").is_some(),
        "{what}: a 503 without Retry-After"
    );
    app::assert_api_contract(r);
}

#[tokio::test]
async fn a_failing_key_value_store_is_a_503_and_liveness_stays_up() {
    let mut host = start_faulty("key-value=1");
    assert!(
        host.stderr().contains("Fault injection is ON"),
        "{}",
        host.stderr()
    );
    let r = app::call(&host, "GET", "/health", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = app::register(&host, "Ada", "ada@example.com", PASSWORD).await;
    assert_unavailable(&r, "register");
    let r = app::call(&host, "GET", "/health/ready", &[], "").await;
    assert_eq!(r.status, 503, "{}", r.text());

    assert_no_account_was_left(&mut host).await;
}

#[tokio::test]
async fn a_locked_database_is_a_503_and_nothing_is_half_written() {
    let mut host = start_faulty("sqlite=busy:1");
    let r = app::register(&host, "Ada", "ada@example.com", PASSWORD).await;
    assert_unavailable(&r, "register");
    assert_no_account_was_left(&mut host).await;
}

#[tokio::test]
async fn a_registration_refused_with_503_can_always_be_retried() {
    // Half of all key-value calls fail. Before the fix, the account was
    // inserted and then its first session failed to start: a 503 whose
    // retry met 409 (about half the registrations here did).
    let host = start_with(
        &app::manifest_with_probe(),
        &[
            ("api_rate_limit", "100000"),
            ("credentials_rate_limit", "100000"),
        ],
        &["--faults", "key-value=0.5"],
    );
    for n in 0..20 {
        let email = format!("retry-{n}@example.com");
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(attempts < 200, "{email} never registered");
            let r = app::register(&host, "Ada", &email, PASSWORD).await;
            match r.status {
                201 => break,
                503 => assert_unavailable(&r, "register"),
                _ => panic!("{email}, attempt {attempts}: {}", r.text()),
            }
        }
    }
}

#[tokio::test]
async fn under_random_faults_every_acknowledged_order_exists_once_and_is_notified() {
    const ORDERS: usize = 30;
    // Deliveries are retried quickly and often enough that the faults
    // cannot exhaust them: every event must arrive, none dead-lettered.
    let host = start_with(
        &app::manifest_with_probe(),
        &[],
        &[
            "--faults",
            "key-value=0.05,sqlite=busy:0.02,messages=0.2",
            "--message-retry-delay",
            "20",
            "--message-max-attempts",
            "60",
        ],
    );
    let token = loop {
        let r = app::register(&host, "Ada", "ada@example.com", PASSWORD).await;
        match r.status {
            201 => break r.json()["accessToken"].as_str().unwrap().to_string(),
            503 => assert_unavailable(&r, "register"),
            _ => panic!("register: {}", r.text()),
        }
    };
    let mut ids = std::collections::BTreeSet::new();
    for n in 0..ORDERS {
        let key = format!("fault-order-{n}");
        let body = order_body(&[("sku", 1 + n as i64, 100)]);
        // A client retries with the same key until it gets an answer.
        let mut first_id = None;
        for attempt in 0.. {
            assert!(attempt < 200, "order {n} never went through");
            let r = create(&host, &token, &body, Some(&key)).await;
            match r.status {
                201 | 200 => {
                    let id = r.json()["id"].as_str().unwrap().to_string();
                    // A retry after success returns the first result.
                    if let Some(first) = &first_id {
                        assert_eq!(first, &id);
                        break;
                    }
                    first_id = Some(id);
                }
                503 => assert_unavailable(&r, "create order"),
                _ => panic!("order {n}: {}", r.text()),
            }
        }
        ids.insert(first_id.unwrap());
    }
    assert_eq!(ids.len(), ORDERS);

    // Exactly one order per key, and every one notified despite failing deliveries.
    let db = host.state_dir().join("sqlite_db.db");
    let count = |sql: &str| -> i64 {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    assert_eq!(count("SELECT count(*) FROM orders"), ORDERS as i64);
    let notified = eventually(DELIVERY * 3, || async {
        count("SELECT count(*) FROM notifications WHERE type = 'order.created'") == ORDERS as i64
    })
    .await;
    assert!(
        notified,
        "{} of {ORDERS} orders notified; host log:\n{}",
        count("SELECT count(*) FROM notifications WHERE type = 'order.created'"),
        host.stderr()
    );
    assert!(
        !host.stderr().contains("message dead-lettered"),
        "{}",
        host.stderr()
    );
}

#[tokio::test]
async fn a_failing_downstream_service_leaves_orders_readable() {
    // Orders enrich a read with the owner's profile over service chaining;
    // with every outbound call failing, the order is still served.
    let host = start_faulty("outbound-http=1");
    let (_, token) = app::register_ok(&host, "Ada", "ada@example.com").await;
    let r = create(&host, &token, &order_body(&[("a", 1, 10)]), None).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let r = app::authed(&host, "GET", &format!("/api/orders/{id}"), &token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["user"].is_null(), "{}", r.text());
}
