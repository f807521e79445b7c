//! The API rules every component follows, checked on the real app: the
//! response contract (security headers, correlation ids, error shape),
//! 404/405, CORS, JSON body rules and limits, the `/api/*` rate limit,
//! structured and redacted request logs, and the OpenAPI document (valid,
//! and describing exactly the routes the components serve).

use app_tests::app::{self, Keys, assert_api_contract, assert_error, authed, json, register_ok};
use app_tests::{Host, PATIENCE};
use jwt_simple::prelude::*;
use serde_json::{Value, json};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;

fn keys() -> Keys {
    let kp = Ed25519KeyPair::generate();
    Keys::from_bytes("common-test", &kp.to_bytes(), &kp.public_key().to_bytes())
}

fn start(variables: &[(&str, &str)]) -> Host {
    app::start(Some(&keys()), variables)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

const UNKNOWN_ID: &str = "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee";

#[tokio::test]
async fn every_response_carries_the_contract_errors_included() {
    let host = start(&[("admin_email", "admin@example.com")]);
    let (_, admin) = register_ok(&host, "Admin", "admin@example.com").await;
    let (ada_id, ada) = register_ok(&host, "Ada", "ada@example.com").await;
    let big = "x".repeat(200 * 1024);
    let replies = vec![
        app::call(&host, "GET", "/.well-known/jwks.json", &[], "").await,
        authed(&host, "GET", "/api/auth/me", &ada).await,
        authed(&host, "GET", "/api/users/me", &ada).await,
        authed(&host, "GET", "/api/users", &admin).await,
        authed(&host, "GET", "/api/users", &ada).await,
        authed(&host, "GET", "/api/users/nope", &ada).await,
        authed(&host, "GET", &format!("/api/users/{UNKNOWN_ID}"), &admin).await,
        app::call(&host, "GET", "/api/users/me", &[], "").await,
        app::call(&host, "GET", "/api/auth/nothing-here", &[], "").await,
        app::call(&host, "PUT", "/api/auth/login", &[], "").await,
        app::call(&host, "OPTIONS", "/api/users/me", &[], "").await,
        app::call(
            &host,
            "POST",
            "/api/auth/login",
            &[("content-type", "text/plain")],
            "x",
        )
        .await,
        app::call(
            &host,
            "POST",
            "/api/auth/login",
            &[("content-type", "application/json")],
            big,
        )
        .await,
        app::register(&host, "Ada", "ada@example.com", app::PASSWORD).await,
        authed(&host, "DELETE", &format!("/api/users/{ada_id}"), &ada).await,
    ];
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            200, 200, 200, 200, 403, 400, 404, 401, 404, 405, 204, 415, 413, 409, 204
        ]
    );
    for r in &replies {
        assert_api_contract(r);
        if r.status != 200 || r.header("etag").is_some() {
            assert_eq!(r.header("cache-control"), Some("no-store"), "{}", r.text());
        }
    }
    // Authenticated answers are never cacheable.
    for r in &replies[1..4] {
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }

    // Sane correlation ids are echoed, others replaced.
    let r = app::call(
        &host,
        "GET",
        "/api/auth/x",
        &[("x-correlation-id", "trace-1.a_B")],
        "",
    )
    .await;
    assert_eq!(r.header("x-correlation-id"), Some("trace-1.a_B"));
    assert_eq!(r.json()["correlationId"], "trace-1.a_B");
    for insane in ["has space", "<script>", &"x".repeat(65)] {
        let r = app::call(
            &host,
            "GET",
            "/api/auth/x",
            &[("x-correlation-id", insane)],
            "",
        )
        .await;
        assert_api_contract(&r);
        assert_ne!(r.header("x-correlation-id"), Some(insane));
    }
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let host = start(&[]);
    for path in [
        "/api/auth",
        "/api/auth/nope",
        "/api/users/a/b",
        "/api/auth/me/x",
    ] {
        let r = app::call(&host, "GET", path, &[], "").await;
        assert_error(&r, 404, "route_not_found");
    }
    let cases = [
        ("GET", "/api/auth/login", "POST, OPTIONS"),
        ("DELETE", "/api/auth/me", "GET, OPTIONS"),
        ("POST", "/.well-known/jwks.json", "GET, OPTIONS"),
        ("DELETE", "/api/users", "GET, OPTIONS"),
        (
            "PUT",
            &format!("/api/users/{UNKNOWN_ID}"),
            "GET, PATCH, DELETE, OPTIONS",
        ),
        // A literal path is not also the parameter route beside it:
        // `/api/users/me` is GET only, not `/api/users/{id}` with id "me".
        ("PATCH", "/api/users/me", "GET, OPTIONS"),
        ("DELETE", "/api/users/me", "GET, OPTIONS"),
    ];
    for (method, path, allow) in cases {
        let r = app::call(&host, method, path, &[], "").await;
        assert_error(&r, 405, "method_not_allowed");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
    let r = app::call(&host, "OPTIONS", "/api/users/me", &[], "").await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("allow"), Some("GET, OPTIONS"));
}

#[tokio::test]
async fn cors_answers_allowed_origins_only() {
    let host = start(&[(
        "cors_allowed_origins",
        "https://app.example.com, http://localhost:5173",
    )]);
    let preflight = |origin: &'static str, path: &'static str| {
        let host = &host;
        async move {
            let headers = [
                ("origin", origin),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "content-type, authorization",
                ),
            ];
            app::call(host, "OPTIONS", path, &headers, "").await
        }
    };
    let r = preflight("https://app.example.com", "/api/auth/login").await;
    assert_eq!(r.status, 204);
    assert_api_contract(&r);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
    let headers = r.header("access-control-allow-headers").unwrap();
    assert!(headers.contains("authorization") && headers.contains("content-type"));
    assert!(r.header("access-control-max-age").is_some());

    let r = preflight("https://evil.example", "/api/users/me").await;
    assert_eq!(r.status, 204);
    assert_api_contract(&r);
    assert!(
        r.headers
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{:?}",
        r.headers
    );

    let r = app::call(
        &host,
        "GET",
        "/.well-known/jwks.json",
        &[("origin", "http://localhost:5173")],
        "",
    )
    .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    assert!(
        r.header("access-control-expose-headers")
            .unwrap()
            .contains("x-correlation-id")
    );
    let r = app::call(
        &host,
        "GET",
        "/.well-known/jwks.json",
        &[("origin", "https://evil.example")],
        "",
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = app::call(
        &host,
        "OPTIONS",
        "/api/users/x/y/z",
        &[("origin", "https://app.example.com")],
        "",
    )
    .await;
    assert_error(&r, 404, "route_not_found");
}

/// Sends a chunked body (no Content-Length) of `total` bytes over a raw
/// connection; returns the status line.
fn chunked_post(port: u16, path: &str, total: usize) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(head.as_bytes());
    let chunk = vec![b' '; 16 * 1024];
    let mut sent = 0;
    while sent < total {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&frame).is_err() {
            break; // the server answered and closed early
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn json_bodies_are_strict_and_limited() {
    let host = start(&[]);
    let post = |body: String| {
        app::call(
            &host,
            "POST",
            "/api/auth/register",
            &[("content-type", "application/json")],
            body,
        )
    };
    let r = post("{\"name\": \"Ada\",\n \"email\": }".into()).await;
    assert_error(&r, 400, "malformed_json");
    let detail = &r.json()["error"]["details"][0];
    assert_eq!(
        (detail["line"].as_u64(), detail["column"].as_u64()),
        (Some(2), Some(11))
    );
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2 column 11")
    );

    let r = post(
        json!({"name": "Ada", "email": "a@b.io", "password": app::PASSWORD, "admin": true})
            .to_string(),
    )
    .await;
    assert_error(&r, 400, "validation_failed");
    assert_eq!(r.json()["error"]["details"][0]["field"], "admin");
    assert_eq!(r.json()["error"]["details"][0]["code"], "unknown_field");

    let r = post(json!({"name": "Ada"}).to_string()).await;
    assert_error(&r, 400, "validation_failed");
    assert_eq!(r.json()["error"]["details"][0]["code"], "missing_field");

    let r = app::call(
        &host,
        "POST",
        "/api/auth/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        "email=a",
    )
    .await;
    assert_error(&r, 415, "unsupported_media_type");

    // 200 KiB: refused by Content-Length, and while streaming without one.
    let r = post(format!("{{\"name\": \"{}\"}}", "x".repeat(200 * 1024))).await;
    assert_error(&r, 413, "payload_too_large");
    let port = host.port;
    let status =
        tokio::task::spawn_blocking(move || chunked_post(port, "/api/auth/login", 200 * 1024))
            .await
            .unwrap();
    assert!(status.contains(" 413 "), "chunked: `{status}`");
    // Just under the limit is read and judged on its content.
    let r = post(format!("{{\"name\": \"{}\"}}", "x".repeat(100 * 1024 - 20))).await;
    assert_error(&r, 400, "validation_failed");
}

#[tokio::test]
async fn the_body_limit_is_a_variable() {
    let host = start(&[("json_body_limit_bytes", "1000")]);
    let r = json(
        &host,
        "POST",
        "/api/auth/login",
        None,
        &json!({"email": "x".repeat(2000), "password": "p"}),
    )
    .await;
    assert_error(&r, 413, "payload_too_large");
    let r = json(
        &host,
        "POST",
        "/api/auth/login",
        None,
        &json!({"email": "x@y.io", "password": "p"}),
    )
    .await;
    assert_error(&r, 401, "unauthenticated");
}

#[tokio::test]
async fn the_api_rate_limit_counts_every_api_request_across_components() {
    // A window far longer than the test, so it cannot roll over midway.
    let host = start(&[
        ("api_rate_limit", "6"),
        ("api_rate_window_seconds", "1000000000"),
    ]);
    let paths = [
        "/api/auth/me",
        "/api/users/me",
        "/api/auth/nope",
        "/api/users",
        "/api/auth/me",
        "/api/users/me",
    ];
    for (i, path) in paths.iter().enumerate() {
        let sent = app::unix_secs();
        let r = app::call(&host, "GET", path, &[], "").await;
        assert_ne!(r.status, 429, "{path}");
        assert_eq!(r.header("ratelimit-limit"), Some("6"), "{path}");
        assert_eq!(
            r.header("ratelimit-remaining"),
            Some((5 - i).to_string().as_str()),
            "{path}"
        );
        let reset: u64 = r.header("ratelimit-reset").unwrap().parse().unwrap();
        app::assert_window_reset(reset, 1_000_000_000, sent);
    }
    for path in ["/api/users/me", "/api/auth/login"] {
        let sent = app::unix_secs();
        let r = app::call(&host, "GET", path, &[], "").await;
        assert_error(&r, 429, "rate_limited");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        app::assert_window_reset(retry, 1_000_000_000, sent);
        assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    }
    // Not under /api: not limited.
    let r = app::call(&host, "GET", "/.well-known/jwks.json", &[], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-limit"), None);
}

#[tokio::test]
async fn request_logs_are_structured_json_with_secrets_redacted() {
    let host = start(&[]);
    let password = "my very secret passphrase";
    let r = app::register(&host, "Ada", "ada@example.com", password).await;
    assert_eq!(r.status, 201);
    let session = r.json();
    let id = session["user"]["id"].as_str().unwrap().to_string();
    let access = session["accessToken"].as_str().unwrap().to_string();
    let refresh = session["refreshToken"].as_str().unwrap().to_string();
    let r = app::call(
        &host,
        "GET",
        "/api/users/me",
        &[
            ("authorization", &format!("Bearer {access}")),
            ("x-correlation-id", "log-check-1"),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = app::login(&host, "ada@example.com", "4111 1111 1111 1111 wrong").await;
    assert_eq!(r.status, 401);

    // Read the log until the three request lines are in it.
    let lines: Vec<Value> = host
        .wait_for_json_logs("the register, me and login lines", PATIENCE, |lines| {
            let requests = || lines.iter().filter(|l| l["msg"] == "request");
            requests().any(|l| l["route"] == "/api/auth/register")
                && requests().any(|l| l["correlation_id"] == "log-check-1")
                && requests().any(|l| l["route"] == "/api/auth/login")
        })
        .await
        .into_iter()
        .filter(|v| v["msg"] == "request")
        .collect();
    let stdout = host.stdout();
    let register = lines
        .iter()
        .find(|l| l["route"] == "/api/auth/register")
        .expect("a register line");
    assert_eq!(register["component"], "auth");
    assert_eq!(register["method"], "POST");
    assert_eq!(register["status"], 201);
    assert_eq!(register["user_id"], id.as_str());
    assert!(register["duration_ms"].as_f64().is_some());
    let me = lines
        .iter()
        .find(|l| l["correlation_id"] == "log-check-1")
        .expect("the /api/users/me line");
    assert_eq!(me["component"], "users");
    assert_eq!(me["route"], "/api/users/me");
    assert_eq!(me["status"], 200);
    assert_eq!(me["user_id"], id.as_str());
    let failed = lines
        .iter()
        .find(|l| l["route"] == "/api/auth/login")
        .expect("a login line");
    assert_eq!(failed["status"], 401);
    assert_eq!(failed["error_code"], "unauthenticated");

    let everything = stdout + &host.stderr();
    for secret in [
        password,
        &access,
        &refresh,
        "$argon2",
        "4111 1111 1111 1111",
    ] {
        assert!(!everything.contains(secret), "`{secret}` is in the logs");
    }
}

/// Runs the OpenAPI validator from PyPI (installing it when missing) and
/// returns the document as JSON.
fn validated_openapi(path: &Path) -> Value {
    let python = |args: &[&str]| {
        Command::new("python3")
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("this test needs python3 (to validate docs/openapi.yaml): {e}")
            })
    };
    let validate = || python(&["-m", "openapi_spec_validator", path.to_str().unwrap()]);
    let mut out = validate();
    if String::from_utf8_lossy(&out.stderr).contains("No module named") {
        let install = python(&["-m", "pip", "install", "--quiet", "openapi-spec-validator"]);
        assert!(
            install.status.success(),
            "could not install openapi-spec-validator from PyPI: {}",
            String::from_utf8_lossy(&install.stderr)
        );
        out = validate();
    }
    assert!(
        out.status.success(),
        "docs/openapi.yaml is not a valid OpenAPI document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = python(&[
        "-c",
        "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `(method, OpenAPI path)` of every route in the route tables
/// (`.get("/api/users/:id", ...)` in `components/<name>/src/lib.rs`) of the
/// components the app's `spin.toml` serves.
fn served_routes() -> Vec<(String, String)> {
    let manifest = std::fs::read_to_string(repo_root().join("spin.toml")).unwrap();
    let components: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[component."))
        .filter_map(|rest| rest.strip_suffix(']'))
        .filter(|name| !name.contains('.'))
        .collect();
    assert!(
        components.len() >= 2,
        "components in spin.toml: {components:?}"
    );
    let mut routes = Vec::new();
    for component in components {
        let lib = repo_root()
            .join("components")
            .join(component)
            .join("src/lib.rs");
        let source =
            std::fs::read_to_string(&lib).unwrap_or_else(|e| panic!("{}: {e}", lib.display()));
        for line in source.lines().map(str::trim) {
            for method in ["get", "post", "put", "patch", "delete"] {
                if let Some(rest) = line.strip_prefix(&format!(".{method}(\"")) {
                    let template = rest.split('"').next().unwrap();
                    // Private routes, outside every public manifest route and
                    // reachable only through service chaining
                    // (`http://<component>.spin.internal/internal/...`),
                    // are not part of the public API.
                    if template.starts_with("/internal/") {
                        continue;
                    }
                    let path = template
                        .split('/')
                        .map(|s| match s.strip_prefix(':') {
                            Some(name) => format!("{{{name}}}"),
                            None => s.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join("/");
                    routes.push((method.to_string(), path));
                }
            }
        }
    }
    routes.sort();
    routes
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_describes_exactly_the_served_routes() {
    let doc = validated_openapi(&repo_root().join("docs/openapi.yaml"));
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "OpenAPI 3.1"
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["required"], json!(["error", "correlationId"]));

    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                let responses = operation["responses"].as_object().unwrap();
                assert!(!responses.is_empty(), "{method} {path}");
                for (status, response) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert_eq!(
                            response["$ref"]
                                .as_str()
                                .map(|r| r.starts_with("#/components/responses/")),
                            Some(true),
                            "{method} {path} {status} uses a shared error response"
                        );
                    }
                }
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    documented.sort();
    let served = served_routes();
    assert!(served.len() >= 11, "route tables found: {served:?}");
    assert_eq!(
        documented, served,
        "docs/openapi.yaml vs the components' route tables"
    );

    // Every manifest route is covered by documented paths.
    let manifest = std::fs::read_to_string(repo_root().join("spin.toml")).unwrap();
    for line in manifest
        .lines()
        .filter(|l| l.trim_start().starts_with("route = "))
    {
        let route = line.split('"').nth(1).unwrap();
        let prefix = route.trim_end_matches("...").trim_end_matches('/');
        assert!(
            documented.iter().any(|(_, p)| p.starts_with(prefix)),
            "manifest route {route} has no documented path"
        );
    }

    // And the running app serves every documented operation.
    let host = start(&[]);
    for (method, path) in &documented {
        let path = path.replace("{id}", UNKNOWN_ID);
        let r = app::call(&host, &method.to_uppercase(), &path, &[], "").await;
        assert_api_contract(&r);
        let code = serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|body| body["error"]["code"].as_str().map(str::to_string));
        assert!(
            !matches!(
                code.as_deref(),
                Some("route_not_found" | "method_not_allowed")
            ),
            "{method} {path} is documented but not served: {}",
            r.text()
        );
    }
}

#[tokio::test]
async fn paths_no_route_takes_get_the_apps_json_404_from_the_catch_all() {
    // `route = "/..."` (metrics) answers them, as under `spin up`.
    let host = start(&[]);
    for path in ["/nope", "/api/nothing/here", "/health-check"] {
        let r = app::call(&host, "GET", path, &[], "").await;
        assert_error(&r, 404, "route_not_found");
    }
}

#[tokio::test]
async fn internal_errors_are_500_with_the_detail_only_in_the_log() {
    // A misconfigured variable makes every request fail inside.
    let host = start(&[("api_rate_limit", "lots")]);
    for path in ["/api/auth/login", "/api/users/me"] {
        let r = app::call(&host, "GET", path, &[("x-correlation-id", "broken-1")], "").await;
        assert_error(&r, 500, "internal_error");
        assert_eq!(r.json()["correlationId"], "broken-1");
        assert!(
            !r.text().contains("api_rate_limit"),
            "detail leaked: {}",
            r.text()
        );
    }
    // Read the log until both requests' lines are in it; then no more.
    let broken = |lines: &[Value]| {
        lines
            .iter()
            .filter(|l| l["correlation_id"] == "broken-1")
            .cloned()
            .collect::<Vec<_>>()
    };
    host.wait_for_json_logs("both requests' lines", PATIENCE, |lines| {
        broken(lines).len() >= 2
    })
    .await;
    let lines = broken(&host.json_logs());
    assert_eq!(lines.len(), 2, "one line per request");
    for line in lines {
        assert_eq!(line["status"], 500);
        assert_eq!(line["level"], "error");
        let cause = line["error"].as_str().unwrap_or_default();
        assert!(
            cause.contains("`api_rate_limit` must be a whole number"),
            "{line}"
        );
    }
}
