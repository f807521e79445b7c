//! HTTP trigger: Spin route precedence, `spin-*` headers, 404, chaining and
//! outbound allow-lists, on WASIp2 components.

use app_tests::{Host, get, wasm};

fn manifest() -> String {
    let app = wasm("fixture-p2-app");
    let app = app.display();
    format!(
        r#"spin_manifest_version = 2
[application]
name = "routes"

[[trigger.http]]
route = "/..."
component = "catchall"
[[trigger.http]]
route = "/one/..."
component = "prefix"
[[trigger.http]]
route = "/one/:p/..."
component = "param"
[[trigger.http]]
route = "/one/two/..."
component = "literal"
[[trigger.http]]
route = "/exact/headers"
component = "exact"
[[trigger.http]]
route = "/api/users/:id/..."
component = "users"
[[trigger.http]]
route = {{ private = true }}
component = "hidden"

[component.catchall]
source = "{app}"
allowed_outbound_hosts = ["http://hidden.spin.internal", "http://users.spin.internal"]
[component.prefix]
source = "{app}"
[component.param]
source = "{app}"
[component.literal]
source = "{app}"
[component.exact]
source = "{app}"
[component.users]
source = "{app}"
allowed_outbound_hosts = ["http://*.spin.internal", "http://self"]
[component.hidden]
source = "{app}"
"#
    )
}

#[tokio::test]
async fn routes_follow_spin_precedence_and_headers() {
    let host = Host::start(&manifest(), &[]);
    let h = get(&host.url("/one/two/headers")).await.json();
    assert_eq!(h["spin-matched-route"], "/one/two/...", "{h}");
    let h = get(&host.url("/one/zz/headers")).await.json();
    assert_eq!(h["spin-matched-route"], "/one/:p/...");
    assert_eq!(h["spin-path-match-p"], "zz");
    // `/one/:p/...` also matches `/one/x` (empty wildcard): a param beats the prefix.
    let h = get(&host.url("/one/headers")).await.json();
    assert_eq!(h["spin-matched-route"], "/one/:p/...");
    assert_eq!(h["spin-path-info"], "");
    let h = get(&host.url("/one?headers")).await.json();
    assert_eq!(h["spin-matched-route"], "/one/...");
    let h = get(&host.url("/oneish?headers")).await.json();
    assert_eq!(h["spin-matched-route"], "/...");
    assert_eq!(h["spin-path-info"], "/oneish");
    let h = get(&host.url("/exact/headers")).await.json();
    assert_eq!(h["spin-matched-route"], "/exact/headers");
    assert_eq!(h["spin-path-info"], "");

    // The SPEC's worked example.
    let h = get(&host.url("/api/users/42/headers?x=1")).await.json();
    assert_eq!(
        h["spin-full-url"],
        format!("http://127.0.0.1:{}/api/users/42/headers?x=1", host.port)
    );
    assert_eq!(h["spin-path-info"], "/headers");
    assert_eq!(h["spin-matched-route"], "/api/users/:id/...");
    assert_eq!(h["spin-base-path"], "/");
    assert_eq!(h["spin-raw-component-route"], "/api/users/:id/...");
    assert_eq!(h["spin-component-route"], "/api/users/:id");
    assert_eq!(h["spin-path-match-id"], "42");
    let addr = h["spin-client-addr"].as_str().unwrap();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert!(stdout_lists_routes(&host), "{}", host.stdout());
}

fn stdout_lists_routes(host: &Host) -> bool {
    let out = host.stdout();
    out.contains("catchall: http://")
        && out.contains("/api/users/:id (wildcard)")
        && out.contains("hidden: private")
}

#[tokio::test]
async fn client_cannot_forge_spin_headers() {
    let host = Host::start(&manifest(), &[]);
    let forged = [
        ("spin-client-addr", "6.6.6.6:1"),
        ("spin-path-match-id", "x"),
        ("spin-path-match-evil", "x"),
        ("spin-matched-route", "/admin/..."),
        ("spin-full-url", "http://evil.example/"),
    ];
    let send = |path: &str| {
        let url = host.url(path);
        async move {
            app_tests::send(&app_tests::client(), "GET", &url, &forged, "")
                .await
                .unwrap()
                .json()
        }
    };
    // No forged value reaches the component, under any of the names: the
    // host's own values replace them, and invented ones are dropped.
    let not_forged = |r: &serde_json::Value| {
        for (name, value) in &forged {
            let seen = r.get(*name).map(|v| v.to_string()).unwrap_or_default();
            assert!(
                !seen.contains(value),
                "forged {name}: {value} reached the component: {r}"
            );
        }
    };
    // A route without parameters: no `spin-path-match-*` at all.
    let r = send("/exact/headers").await;
    not_forged(&r);
    let addr = r["spin-client-addr"].as_str().unwrap_or_default();
    assert!(addr.starts_with("127.0.0.1:"), "{r}");
    assert_eq!(r["spin-matched-route"], "/exact/headers", "{r}");
    assert_eq!(r["spin-full-url"], host.url("/exact/headers"), "{r}");
    assert!(r.get("spin-path-match-id").is_none(), "{r}");
    assert!(r.get("spin-path-match-evil").is_none(), "{r}");
    // A route with `:id`: the host's value, and still no invented parameter.
    let r = send("/api/users/42/headers").await;
    not_forged(&r);
    assert_eq!(r["spin-path-match-id"], "42", "{r}");
    assert!(r.get("spin-path-match-evil").is_none(), "{r}");
    let addr = r["spin-client-addr"].as_str().unwrap_or_default();
    assert!(addr.starts_with("127.0.0.1:"), "{r}");
    assert_eq!(r["spin-matched-route"], "/api/users/:id/...", "{r}");
    assert_eq!(r["spin-full-url"], host.url("/api/users/42/headers"), "{r}");
}

#[tokio::test]
async fn no_route_is_404_and_private_routes_are_unreachable_from_outside() {
    let manifest = manifest().replace(
        "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"catchall\"\n",
        "[[trigger.http]]\nroute = \"/c/...\"\ncomponent = \"catchall\"\n",
    );
    let host = Host::start(&manifest, &[]);
    let r = get(host.url("/.well-known/spin/health")).await;
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    // The host's own 404: plain text, host-owned headers, nothing of the app's.
    let r = get(&host.url("/nothing/here")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("runtime-host-error"), Some("route_not_found"));
    assert_eq!(r.text(), "no route matches /nothing/here\n");
    assert!(r.header("x-correlation-id").is_some());
    assert_eq!(r.header("x-frame-options"), None);
    assert_eq!(r.header("strict-transport-security"), None);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    // Only chaining reaches `hidden`.
    let r = get(&host.url("/c/fetch?url=http://hidden.spin.internal/headers"))
        .await
        .json();
    assert_eq!(r["status"], 200, "{r}");
    let inner: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(inner["spin-matched-route"], "/...");
    assert_eq!(inner["spin-path-info"], "/headers");
    assert_eq!(inner["spin-client-addr"], "0.0.0.0:0");
}

#[tokio::test]
async fn outbound_requests_need_allowed_hosts() {
    let host = Host::start(&manifest(), &[]);
    // `exact` declares no outbound hosts at all.
    let r = get(&host.url("/one/two/fetch?url=http://hidden.spin.internal/headers")).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("HttpRequestDenied"), "{}", r.text());
    // `catchall` may reach hidden and users but not an arbitrary host.
    let r = get(&host.url(&format!(
        "/fetch?url=http://127.0.0.1:{}/exact/headers",
        host.port
    )))
    .await;
    assert!(r.text().contains("HttpRequestDenied"), "{}", r.text());
    // `users` allows *.spin.internal.
    let r = get(host.url("/api/users/1/fetch?url=http://param.spin.internal/headers"))
        .await
        .json();
    assert_eq!(r["status"], 200, "{r}");
    // A relative URL is a request to the app itself, through the router.
    let r = get(host.url("/api/users/1/fetch?url=/exact/headers"))
        .await
        .json();
    assert_eq!(r["status"], 200, "{r}");
    let inner: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(inner["spin-matched-route"], "/exact/headers");
    // ...which needs `self` among the allowed hosts.
    let r = get(host.url("/fetch?url=/exact/headers")).await;
    assert!(r.text().contains("HttpRequestDenied"), "{}", r.text());
}
