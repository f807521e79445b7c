//! `wasi:sockets` from a component: TCP connections and name lookup exactly
//! as `allowed_outbound_hosts` says, CIDR ranges and templated entries
//! included (Spin's `tcp-sockets*` conformance cases).

use app_tests::{Host, get, request, wasm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A host whose one component may reach `entries`; the variables `net`
/// and `port` are there for templated entries.
fn start(entries: &str, net: &str, port: u16) -> Host {
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "sockets"
[variables]
net = {{ default = "{net}" }}
port = {{ default = "{port}" }}
[[trigger.http]]
route = "/..."
component = "app"
[component.app]
source = "{app}"
allowed_outbound_hosts = {entries}
"#,
        app = wasm("fixture-p2-app").display()
    );
    Host::start(&manifest, &[])
}

/// A TCP server on a free loopback port that answers `echo:` and what it
/// read once the client stops sending.
async fn echo_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                if conn.read_to_end(&mut got).await.is_ok() {
                    let _ = conn.write_all(&[b"echo:".as_slice(), &got].concat()).await;
                }
            });
        }
    });
    port
}

async fn exchange(host: &Host, address: &str, body: &str) -> app_tests::Reply {
    request(
        "POST",
        host.url(&format!("/tcp/{address}")),
        body.to_string(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_follow_templated_ip_ranges() {
    let allowed = echo_server().await;
    let other = echo_server().await;
    let host = start(r#"["*://{{ net }}:{{ port }}"]"#, "127.0.0.0/24", allowed);

    let r = exchange(&host, &format!("127.0.0.1:{allowed}"), "ping").await;
    assert_eq!(
        (r.status, r.json()),
        (200, serde_json::json!("echo:ping")),
        "{}",
        r.text()
    );
    // Another address in the range is checked the same way (nothing listens).
    let r = exchange(&host, &format!("127.0.0.2:{allowed}"), "ping").await;
    assert!(!r.text().contains("access-denied"), "{}", r.text());

    // A port outside the entry, or an address outside the range: denied.
    let r = exchange(&host, &format!("127.0.0.1:{other}"), "ping").await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("access-denied"), "{}", r.text());
    let r = exchange(&host, &format!("127.0.1.1:{allowed}"), "ping").await;
    assert!(r.text().contains("access-denied"), "{}", r.text());

    // Addresses only: looking names up leads nowhere allowed, so it is off.
    let r = get(host.url("/lookup/localhost")).await;
    assert_eq!(r.status, 403, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_address_allows_that_address_and_a_named_host_allows_lookup() {
    let port = echo_server().await;
    let host = start(
        &format!(r#"["tcp://127.0.0.1:{port}", "https://localhost"]"#),
        "unused",
        0,
    );
    let r = exchange(&host, &format!("127.0.0.1:{port}"), "hi").await;
    assert_eq!(r.json(), serde_json::json!("echo:hi"), "{}", r.text());
    // `tcp://` does not allow UDP or other schemes' entries TCP: `https://localhost`
    // names a host, so lookup works, but its port 443 is not this one.
    let r = get(host.url("/lookup/localhost")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("127.0.0.1"), "{}", r.text());
}

#[test]
fn ip_range_entries_start_and_bad_ones_are_refused_with_the_reason() {
    let err = app_tests::start_failure(
        &format!(
            r#"spin_manifest_version = 2
[application]
name = "bad"
[[trigger.http]]
route = "/..."
component = "app"
[component.app]
source = "{}"
allowed_outbound_hosts = ["tcp://10.0.0.0/8/extra:80"]
"#,
            wasm("fixture-p2-app").display()
        ),
        &[],
    );
    assert!(err.contains("path"), "{err}");
}
