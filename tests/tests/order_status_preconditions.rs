//! Order status changes and what they were decided on, black-box: a
//! change applies only to the order as its request read it, `If-Match`
//! pins the version the client saw (412 when stale, nothing changed), and
//! a pay and a cancellation decided on one reading never both apply.

mod orders_support;

use app_tests::app::{self, assert_error, authed, register_ok};
use app_tests::{Host, Reply};
use orders_support::*;
use serde_json::{Value, json};

/// `PATCH /api/orders/{id}/status`, with `If-Match` when given.
async fn change(host: &Host, token: &str, id: &str, status: &str, if_match: Option<&str>) -> Reply {
    let path = format!("/api/orders/{id}/status");
    app::patch_json(host, &path, token, if_match, json!({ "status": status })).await
}

async fn order(host: &Host, token: &str, id: &str) -> (Value, String) {
    let r = authed(host, "GET", &format!("/api/orders/{id}"), token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let tag = r.header("etag").expect("orders carry an ETag").to_string();
    (r.json(), tag)
}

async fn status_events(host: &Host, id: &str) -> i64 {
    let rows = sql(
        host,
        &format!(
            "SELECT count(*) FROM event_outbox WHERE type = 'order.status_changed' \
             AND payload LIKE '%{id}%'"
        ),
    )
    .await;
    rows[0][0].as_i64().unwrap()
}

#[tokio::test]
async fn a_change_decided_on_a_stale_version_is_412_and_changes_nothing() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let (_, admin) = register_ok(&host, "Admin", ADMIN_EMAIL).await;
    let created = create(&host, &ada, &order_body(&[("a", 1, 10)]), None).await;
    assert_eq!(created.header("etag"), Some("\"1\""));
    let id = created.json()["id"].as_str().unwrap().to_string();
    let (_, seen) = order(&host, &ada, &id).await;
    assert_eq!(seen, "\"1\"");

    // The admin pays with the current version: 200 and the next ETag.
    let r = change(&host, &admin, &id, "paid", Some(&seen)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("etag"), Some("\"2\""));

    // The owner's cancellation was decided on version 1: refused.
    let r = change(&host, &ada, &id, "cancelled", Some(&seen)).await;
    assert_error(&r, 412, "precondition_failed");
    assert!(
        r.text().contains("\\\"2\\\""),
        "names the current ETag: {}",
        r.text()
    );
    for tag in ["W/\"2\"", "\"7\"", "\"x\""] {
        assert_error(
            &change(&host, &ada, &id, "cancelled", Some(tag)).await,
            412,
            "precondition_failed",
        );
    }
    let (now, tag) = order(&host, &ada, &id).await;
    assert_eq!(
        (now["status"].as_str(), now["version"].as_i64()),
        (Some("paid"), Some(2))
    );
    assert_eq!(tag, "\"2\"");
    assert_eq!(status_events(&host, &id).await, 1, "only the payment");

    // A current version that does not allow the change is still 409.
    assert_error(
        &change(&host, &admin, &id, "delivered", Some("\"2\"")).await,
        409,
        "conflict",
    );
    // Decided on the current version (or `*`, or a list naming it): applied.
    let r = change(&host, &ada, &id, "cancelled", Some("\"1\", \"2\"")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "cancelled");
    let other = create_ok(&host, &ada).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = change(&host, &admin, &other, "paid", Some("*")).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn pay_and_cancel_decided_on_one_reading_have_one_winner() {
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let (_, admin) = register_ok(&host, "Admin", ADMIN_EMAIL).await;
    let mut winners = Vec::new();
    for round in 0..16 {
        let id = create_ok(&host, &ada).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, seen) = order(&host, &ada, &id).await;
        // Both clients saw the order `created` and act on that reading.
        let (pay, cancel) = tokio::join!(
            change(&host, &admin, &id, "paid", Some(&seen)),
            change(&host, &ada, &id, "cancelled", Some(&seen)),
        );
        let (winner, loser) = match (pay.status, cancel.status) {
            (200, _) => ("paid", &cancel),
            (_, 200) => ("cancelled", &pay),
            _ => panic!(
                "round {round}: no winner: {} / {}",
                pay.text(),
                cancel.text()
            ),
        };
        assert_error(loser, 412, "precondition_failed");
        let (now, tag) = order(&host, &ada, &id).await;
        assert_eq!(now["status"], winner, "round {round}");
        assert_eq!(now["version"], 2, "round {round}: one change applied");
        assert_eq!(tag, "\"2\"");
        assert_eq!(status_events(&host, &id).await, 1, "round {round}");
        winners.push(winner);
    }
    eprintln!("winners: {winners:?}");
}

#[tokio::test]
async fn overlapping_changes_without_if_match_never_both_apply_to_one_reading() {
    // Without If-Match the server cannot know what the client saw: a
    // cancellation that arrives after the payment completed is a new
    // decision on `paid` (allowed). What must hold in every round: the
    // loser, if any, is a 409; every 200 is one applied change (version,
    // events); the final status is the last winner's.
    let host = start(&[]);
    let (_, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let (_, admin) = register_ok(&host, "Admin", ADMIN_EMAIL).await;
    let mut conflicts = 0;
    for round in 0..16 {
        let id = create_ok(&host, &ada).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (pay, cancel) = tokio::join!(
            change(&host, &admin, &id, "paid", None),
            change(&host, &ada, &id, "cancelled", None),
        );
        let applied = [&pay, &cancel].iter().filter(|r| r.status == 200).count() as i64;
        for r in [&pay, &cancel] {
            if r.status != 200 {
                assert_error(r, 409, "conflict");
                conflicts += 1;
            }
        }
        assert!(
            applied >= 1,
            "round {round}: {} / {}",
            pay.text(),
            cancel.text()
        );
        let (now, _) = order(&host, &ada, &id).await;
        assert_eq!(now["version"].as_i64(), Some(1 + applied), "round {round}");
        assert_eq!(status_events(&host, &id).await, applied, "round {round}");
        let expected = if cancel.status == 200 {
            "cancelled"
        } else {
            "paid"
        };
        assert_eq!(now["status"], expected, "round {round}");
    }
    eprintln!("rounds with a 409: {conflicts}");
}
