//! The components' contracts (`components/<c>/contract.json`) are true:
//! what users answers on its chained profile route, and every event the
//! app publishes, match the schemas its publisher declares and the parts
//! each consumer declares it reads. `cargo xtask compat` trusts these
//! files; this suite is what keeps them honest.

mod orders_support;

use app_tests::app::{self, register_ok};
use app_tests::{Host, Reply};
use orders_support::*;
use serde_json::{Value, json};
use std::path::Path;

fn contract(component: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../components")
        .join(component)
        .join("contract.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Fails naming every way `instance` breaks `schema`.
fn assert_matches(schema: &Value, instance: &Value, what: &str) {
    let validator = jsonschema::validator_for(schema)
        .unwrap_or_else(|e| panic!("{what}: the contract's schema is invalid: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its contract:\n{}\n{instance:#}",
        errors.join("\n")
    );
}

/// The app plus the probe, which may call users by service chaining.
fn start() -> Host {
    let manifest = app::manifest_with_probe();
    let probe_hosts = r#"allowed_outbound_hosts = ["{{ redis_address }}", "{{ events_url }}"]"#;
    let at = manifest
        .rfind(probe_hosts)
        .expect("the probe's allowed_outbound_hosts");
    let manifest = format!(
        "{}{}{}",
        &manifest[..at],
        r#"allowed_outbound_hosts = ["{{ redis_address }}", "http://users.spin.internal"]"#,
        &manifest[at + probe_hosts.len()..]
    );
    start_with(&manifest, &[], &[])
}

/// `GET http://users.spin.internal<path>` from inside the app, as `token`.
async fn chained_get(host: &Host, path: &str, token: &str) -> (u16, Value) {
    let url = format!("/probe/fetch?url=http://users.spin.internal{path}");
    let r: Reply = app::call(
        host,
        "GET",
        &url,
        &[("authorization", &format!("Bearer {token}"))],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "the probe's call failed: {}", r.text());
    let reply = r.json();
    let status = reply["status"].as_u64().expect("status") as u16;
    let body = serde_json::from_str(reply["body"].as_str().expect("body"))
        .unwrap_or_else(|e| panic!("users answered {status} without JSON: {e}: {reply}"));
    (status, body)
}

/// The schema `contract` gives a route's response `status`, from the
/// provider's `serves` or a caller's `calls`.
fn route_schema(contract: &Value, list: &str, path: &str, status: u16) -> Value {
    contract[list]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["path"] == path)
        .and_then(|r| r["responses"].get(status.to_string()))
        .unwrap_or_else(|| panic!("the contract's `{list}` has no {path} answering {status}"))
        .clone()
}

#[tokio::test]
async fn the_chained_profile_route_answers_what_users_promises_and_orders_reads() {
    let host = start();
    let (ada_id, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let (_, admin) = register_ok(&host, "Admin", ADMIN_EMAIL).await;
    let (users, orders) = (contract("users"), contract("orders"));
    const ROUTE: &str = "/internal/users/{id}";

    let missing = "01890000-0000-7000-8000-000000000000";
    // (whose profile, as whom, the status users answers; orders handles
    // 200 and 404 and reads their bodies, anything else is a failure to it)
    let cases = [
        (ada_id.as_str(), ada.as_str(), 200, true),
        (missing, admin.as_str(), 404, true),
        (ada_id.as_str(), "not-a-token", 401, false),
    ];
    for (id, token, expected, orders_reads) in cases {
        let (status, body) = chained_get(&host, &format!("/internal/users/{id}"), token).await;
        assert_eq!(status, expected, "{body}");
        let schema = route_schema(&users, "serves", ROUTE, status);
        assert_matches(&schema, &body, &format!("users' {status}"));
        if orders_reads {
            let schema = route_schema(&orders, "calls", ROUTE, status);
            assert_matches(&schema, &body, &format!("what orders reads of a {status}"));
        }
    }
}

#[tokio::test]
async fn every_published_event_matches_its_publisher_and_its_consumers() {
    if app::on_postgres() {
        return; // the outbox is read from the probe's SQLite database
    }
    let host = start();
    let (ada_id, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let (_, admin) = register_ok(&host, "Admin", ADMIN_EMAIL).await;
    let order = create_ok(&host, &ada).await;
    let order_id = order["id"].as_str().unwrap();
    assert_eq!(
        set_status(&host, &admin, order_id, "paid").await.status,
        200
    );
    let r = app::json(
        &host,
        "DELETE",
        &format!("/api/users/{ada_id}"),
        Some(&ada),
        &json!({}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());

    // Each event was written to the outbox in its change's transaction, so
    // all three are there once the requests have answered.
    let r = app::call(
        &host,
        "POST",
        "/probe/sql/default",
        &[],
        "SELECT payload FROM event_outbox ORDER BY seq",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let events: Vec<Value> = r.json()["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| serde_json::from_str(row[0].as_str().expect("payload")).expect("JSON"))
        .collect();

    let publishers = [("orders", contract("orders")), ("users", contract("users"))];
    let consumers = [("order-events", contract("order-events"))];
    let mut seen = Vec::new();
    for event in &events {
        let kind = event["type"].as_str().expect("type");
        seen.push(kind.to_string());
        let (publisher, declared) = publishers
            .iter()
            .find_map(|(name, c)| {
                c["publishes"]
                    .as_array()?
                    .iter()
                    .find(|e| e["type"] == kind)
                    .map(|e| (*name, e))
            })
            .unwrap_or_else(|| panic!("`{kind}` is published, but no contract declares it"));
        assert_eq!(
            event["version"], declared["version"],
            "{publisher}'s `{kind}` version"
        );
        assert_matches(
            &declared["data"],
            &event["data"],
            &format!("{publisher}'s `{kind}`"),
        );
        for (consumer, c) in &consumers {
            let Some(read) = c["consumes"]
                .as_array()
                .and_then(|l| l.iter().find(|e| e["type"] == kind))
            else {
                continue;
            };
            assert!(
                read["versions"]
                    .as_array()
                    .unwrap()
                    .contains(&event["version"]),
                "{consumer} does not read `{kind}` version {}",
                event["version"]
            );
            assert_matches(
                &read["data"],
                &event["data"],
                &format!("what {consumer} reads of `{kind}`"),
            );
        }
    }
    for kind in ["order.created", "order.status_changed", "user.deleted"] {
        assert!(seen.iter().any(|s| s == kind), "no `{kind}` among {seen:?}");
    }
}
