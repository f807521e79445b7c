//! The listener's own defences: clients that connect and say nothing, send
//! their headers a byte at a time, or idle on a keep-alive connection are
//! cut off by the header-read timeout, and connections beyond
//! `--max-connections` are refused with a complete 503 instead of piling up
//! until the host runs out of file descriptors.

use app_tests::{Host, eventually, get, wasm};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough that only a host that never closes the connection misses it.
const HANG: Duration = Duration::from_secs(60);

fn manifest() -> String {
    format!(
        r#"spin_manifest_version = 2
[application]
name = "connections"
[[trigger.http]]
route = "/..."
component = "app"
[component.app]
source = "{}"
"#,
        wasm("fixture-p2-app").display()
    )
}

async fn connect(host: &Host) -> TcpStream {
    TcpStream::connect(("127.0.0.1", host.port))
        .await
        .expect("connect")
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(HANG, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the host kept the connection open; it sent {:?}",
        String::from_utf8_lossy(&seen)
    );
    seen
}

#[tokio::test]
async fn silent_slow_and_idle_clients_are_cut_off() {
    let host = Host::start(&manifest(), &["--header-read-timeout", "1"]);

    // Connects and sends nothing.
    let mut silent = connect(&host).await;
    read_until_closed(&mut silent).await;

    // Sends its headers one byte at a time, never finishing them in time.
    let mut slow = connect(&host).await;
    let dribble = async {
        for byte in b"GET / HTTP/1.1\r\nhost: x\r\nx-padding: ".iter().cycle() {
            if slow.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    let cut_off = tokio::time::timeout(HANG, dribble).await;
    assert_eq!(cut_off, Ok(true), "a slow header was never cut off");

    // One complete request, then idle on the kept-alive connection.
    let mut idle = connect(&host).await;
    idle.write_all(b"GET /x/headers HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answered = read_until_closed(&mut idle).await;
    assert!(
        answered.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answered)
    );

    // Meanwhile ordinary clients are served.
    assert_eq!(get(host.url("/x/headers")).await.status, 200);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_with_a_complete_503() {
    let host = Host::start(
        &manifest(),
        &["--max-connections", "4", "--header-read-timeout", "600"],
    );
    // Four clients hold every slot without sending anything.
    let mut holders = Vec::new();
    for _ in 0..4 {
        holders.push(connect(&host).await);
    }
    // The kernel hands connections to `accept` in order, so the fifth is
    // seen after the four holders.
    let mut extra = connect(&host).await;
    let refusal = String::from_utf8(read_until_closed(&mut extra).await).unwrap();
    assert!(
        refusal.starts_with("HTTP/1.1 503"),
        "expected a 503, got {refusal:?}"
    );
    assert!(refusal.contains("retry-after: 1"), "{refusal}");
    assert!(
        refusal.contains("runtime-host-error: overloaded"),
        "{refusal}"
    );

    // A holder leaves: its slot is free again for an ordinary request.
    drop(holders.pop());
    let served = eventually(HANG, || async {
        let mut s = connect(&host).await;
        s.write_all(b"GET /x/headers HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        read_until_closed(&mut s).await.starts_with(b"HTTP/1.1 200")
    })
    .await;
    assert!(served, "a freed slot was never reused");
}
