//! docs/openapi.yaml is the contract a client generator sees: schemathesis
//! (PyPI, pinned) generates requests from it against the real app, with
//! every check (server errors, status codes, headers, response schemas,
//! schema-valid requests accepted and invalid ones refused, undeclared
//! methods, `Allow`, auth, ...). Any disagreement between the document and
//! the app fails this test with schemathesis' report.
//!
//! What JSON Schema cannot say (a stale `If-Match` is 412, a file's type is
//! decided by its bytes, cursors are opaque) is in tests/schemathesis.toml.

use app_tests::app::{self, Keys, register_ok};
use app_tests::{PATIENCE, TempDir, schemathesis, wait_until};
use jwt_simple::prelude::*;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Fixed, so a failure is reproducible with the same command.
const SEED: &str = "20261202";
/// Test cases per operation and phase: enough to reach every rule the
/// document states, bounded so the run takes a few minutes on a loaded
/// 2-core machine.
const MAX_EXAMPLES: &str = "50";
/// A run that has not finished by then is stuck.
const DEADLINE: Duration = Duration::from_secs(600);

const MAINTENANCE_TOKEN: &str = "openapi-conformance-maintenance";

/// The smallest PNG header the uploads component recognises.
const PNG: &[u8] = b"\x89PNG\r\n\x1A\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";

fn order_body() -> serde_json::Value {
    serde_json::json!({
        "items": [{"productId": "sku-1", "quantity": 2, "unitPrice": 150}],
        "shippingAddress": {"street": "1 Main St", "city": "Springfield",
                            "state": "IL", "zipCode": "62701", "country": "US"},
        "currency": "USD"
    })
}

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_app_behaves_as_docs_openapi_yaml_says() {
    let st = schemathesis::ensure_installed();
    let kp = Ed25519KeyPair::generate();
    let keys = Keys::from_bytes("openapi-test", &kp.to_bytes(), &kp.public_key().to_bytes());
    let host = app::start(
        Some(&keys),
        &[
            ("admin_email", "admin@example.com"),
            ("maintenance_token", MAINTENANCE_TOKEN),
        ],
    );
    let (_, admin) = register_ok(&host, "Admin", "admin@example.com").await;
    let (leaving_id, leaving) = register_ok(&host, "Leaving", "leaving@example.com").await;
    // Records for the operations on one record, so their requests reach
    // the app's logic instead of stopping at 404.
    let order = app::json(&host, "POST", "/api/orders", Some(&admin), &order_body()).await;
    assert_eq!(order.status, 201, "create an order: {}", order.text());
    let order_id = order.json()["id"].as_str().unwrap().to_string();
    let notification_id = wait_until("the order's notification", PATIENCE, || async {
        let r = app::authed(&host, "GET", "/api/notifications", &admin).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["items"][0]["id"].as_str().map(str::to_string)
    })
    .await;
    let auth = format!("Bearer {admin}");
    let upload = app::call(
        &host,
        "POST",
        "/api/uploads",
        &[
            ("authorization", &auth),
            ("content-type", "image/png"),
            ("x-file-name", "dot.png"),
        ],
        PNG,
    )
    .await;
    assert_eq!(upload.status, 201, "upload a PNG: {}", upload.text());
    let upload_id = upload.json()["id"].as_str().unwrap().to_string();

    // Schemathesis keeps state (its example database) in its working
    // directory: a scratch one, not the repository.
    let scratch = TempDir::new("schemathesis");
    let report = scratch.path().join("report.txt");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&st)
        .current_dir(scratch.path())
        .env("APP_ST_TOKEN", &admin)
        .env("APP_ST_LOGOUT_TOKEN", &leaving)
        .env("APP_ST_MAINTENANCE_TOKEN", MAINTENANCE_TOKEN)
        .env("APP_ST_USER_ID", &leaving_id)
        .env("APP_ST_ORDER_ID", &order_id)
        .env("APP_ST_NOTIFICATION_ID", &notification_id)
        .env("APP_ST_UPLOAD_ID", &upload_id)
        .arg("--config-file")
        .arg(repo_root().join("tests/schemathesis.toml"))
        .arg("run")
        .arg(repo_root().join("docs/openapi.yaml"))
        .args(["--url", &host.url("")])
        .args(["--checks", "all"])
        .args(["--seed", SEED, "--max-examples", MAX_EXAMPLES])
        .args([
            // One worker: with two, hypothesis (under schemathesis) once
            // crashed with an internal error.
            "--workers",
            "1",
            "--no-color",
            "--generation-database",
            "none",
        ])
        .stdout(std::fs::File::create(&report).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", st.display()));
    let status = match tokio::time::timeout(DEADLINE, child.wait()).await {
        Ok(status) => status.expect("wait for schemathesis"),
        Err(_) => {
            let _ = child.kill().await;
            panic!(
                "schemathesis did not finish within {DEADLINE:?}; its output so far:\n{}",
                std::fs::read_to_string(&report).unwrap_or_default()
            );
        }
    };
    let output = std::fs::read_to_string(&report).unwrap();
    let summary = output.find("= SUMMARY =").map_or("", |at| &output[at..]);
    eprintln!(
        "schemathesis {} finished in {:.0?}\n{summary}",
        schemathesis::VERSION,
        started.elapsed()
    );
    assert!(
        status.success(),
        "docs/openapi.yaml and the app disagree (schemathesis exited with {status}). \
         Fix whichever is wrong: the document where the app's rule is right, the app \
         where the document is. Its report:\n{output}\n\
         Reproduce against a running app with `st --config-file tests/schemathesis.toml \
         run docs/openapi.yaml --url <app> --checks all --seed {SEED} --max-examples \
         {MAX_EXAMPLES}` and the APP_ST_* variables tests/schemathesis.toml names."
    );
    // The run reached the app's logic, not only its authentication.
    assert!(
        !output.contains("Authentication failed"),
        "schemathesis' requests were not authenticated:\n{output}"
    );
}
