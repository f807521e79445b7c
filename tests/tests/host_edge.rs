//! `runtime-host up --platform edge`: what the edge platform lacks is
//! refused before listening (every problem, with its line), its limits are
//! enforced (flags, 10 MiB bodies, 1 MiB key-value values), and key-value
//! traffic over its per-app budget is warned about — while `local` (the
//! default) stays as it was.

use app_tests::{Host, TempDir, client, eventually, send, start_failure, wasm};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const EDGE: [&str; 2] = ["--platform", "edge"];
const MIB: usize = 1 << 20;

/// The p2 fixture serving everything, with the `default` key-value store.
fn manifest() -> String {
    format!(
        r#"spin_manifest_version = 2
[application]
name = "edge"

[[trigger.http]]
route = "/..."
component = "app"

[component.app]
source = "{}"
key_value_stores = ["default"]
"#,
        wasm("fixture-p2-app").display()
    )
}

/// 1-based line of the first line of `text` that starts with `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(needle))
        .unwrap_or_else(|| panic!("`{needle}` is not in the manifest"))
        + 1
}

#[test]
fn a_manifest_using_what_the_edge_lacks_is_refused_naming_every_field_and_line() {
    let refused = manifest()
        .replace(
            "name = \"edge\"\n",
            "name = \"edge\"\n[application.trigger.redis]\naddress = \"redis://127.0.0.1:6379\"\n",
        )
        .replace(
            "[component.app]",
            "[[trigger.redis]]\nchannel = \"events\"\ncomponent = \"app\"\n\n[component.app]",
        )
        .replace(
            "key_value_stores = [\"default\"]\n",
            "key_value_stores = [\"default\"]\nsqlite_databases = [\"default\"]\n",
        );
    let rc_dir = TempDir::new("edge-rc");
    let rc = rc_dir.path().join("runtime-config.toml");
    std::fs::write(&rc, "[sqlite_database.default]\ntype = \"spin\"\n").unwrap();
    let rc_arg = rc.display().to_string();
    let mut args = EDGE.to_vec();
    args.extend([
        "--runtime-config-file",
        &rc_arg,
        "--message-backend",
        "redis",
    ]);
    let err = start_failure(&refused, &args);

    assert!(err.contains("5 problems"), "all at once: {err}");
    for (needle, field) in [
        ("[application.trigger.redis]", "[application.trigger.redis]"),
        ("[[trigger.redis]]", "[[trigger.redis]] for component `app`"),
        ("sqlite_databases", "sqlite_databases = [\"default\"]"),
    ] {
        let at = format!("spin.toml:{}: ", line_of(&refused, needle));
        assert!(
            err.lines().any(|l| l.contains(&at) && l.contains(field)),
            "`{field}` at {at}: {err}"
        );
    }
    assert!(
        err.contains("runtime-config.toml:1: [sqlite_database.default]"),
        "{err}"
    );
    assert!(err.contains("--message-backend redis"), "{err}");
    assert!(err.contains("HTTP trigger only"), "{err}");
    assert!(
        err.contains("`deploy/edge/spin.toml` written by `cargo xtask edge-manifest`"),
        "says what to do: {err}"
    );
    assert!(err.contains("`database_url`"), "{err}");
}

#[test]
fn flags_over_the_edge_limits_are_refused_naming_the_limit() {
    let mut args = EDGE.to_vec();
    args.extend(["--max-memory", "256", "--request-timeout", "60"]);
    let err = start_failure(&manifest(), &args);
    assert!(err.contains("2 problems"), "{err}");
    assert!(
        err.contains("--max-memory 256 is over the edge platform's limit of 128 MiB"),
        "{err}"
    );
    assert!(
        err.contains("--request-timeout 60 is over the edge platform's limit of 30 s"),
        "{err}"
    );
}

#[tokio::test]
async fn bodies_over_the_edge_limits_are_refused_by_the_host() {
    let host = Host::start(&manifest(), &EDGE);
    assert!(
        host.stdout().contains(
            "platform: edge (128 MiB, 30 s, 10 MiB bodies, key-value 50 writes/s, 1000 reads/s)"
        ),
        "{}",
        host.stdout()
    );
    let c = client();

    // Declared length over 10 MiB: the host answers, the component never runs.
    let r = send(
        &c,
        "PUT",
        &host.url("/kv/default/big"),
        &[],
        vec![b'x'; 11 * MIB],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.header("runtime-host-error"), Some("payload_too_large"));
    assert!(r.text().contains("10 MiB"), "{}", r.text());
    let r = send(&c, "GET", &host.url("/kv/default/big/exists"), &[], "")
        .await
        .unwrap();
    assert_eq!(r.json(), false, "nothing was stored");

    // Streamed without a length: counted, and 413 once past the limit.
    let status = put_chunked(host.port, "/kv/default/streamed", 11 * MIB).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // Within the body limit but over key-value's 1 MiB: the store refuses.
    let r = send(
        &c,
        "PUT",
        &host.url("/kv/default/v"),
        &[],
        vec![b'x'; 2 * MIB],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.text()
            .contains("over the edge platform's key-value limit of 1 MiB"),
        "{}",
        r.text()
    );
    let r = send(&c, "PUT", &host.url("/kv/default/v"), &[], vec![b'x'; MIB])
        .await
        .unwrap();
    assert_eq!(r.status, 204, "1 MiB itself is allowed: {}", r.text());
}

/// Sends a chunked PUT of `size` bytes over a raw connection; the status
/// line of the answer.
async fn put_chunked(port: u16, path: &str, size: usize) -> String {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head =
        format!("PUT {path} HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n");
    let sending = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..size / chunk.len() {
            writer
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            writer.write_all(&chunk).await?;
            writer.write_all(b"\r\n").await?;
        }
        writer.write_all(b"0\r\n\r\n").await?;
        // Kept open: dropping it would half-close the connection, which the
        // host takes as the client going away before its answer.
        Ok::<_, std::io::Error>(writer)
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = reader.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let _ = sending.await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    text.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_response_over_10_mib_is_cut_off_and_logged_naming_the_component() {
    // Stored while local (no limits), then served at the edge.
    let mut host = Host::start(&manifest(), &[]);
    let c = client();
    let r = send(
        &c,
        "PUT",
        &host.url("/kv/default/big"),
        &[],
        vec![b'x'; 11 * MIB],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204, "local takes 11 MiB: {}", r.text());
    host.args.extend(EDGE.map(String::from));
    host.restart();

    // Streamed, the answer is cut off mid-body (the client sees an error);
    // with a declared length over the limit, the host answers 500 instead.
    if let Ok(r) = send(&c, "GET", &host.url("/kv/default/big"), &[], "").await {
        assert_eq!(r.status, 500, "{} bytes", r.body.len());
    }
    let logged = eventually(Duration::from_secs(10), || async {
        host.stderr().lines().any(|l| {
            l.contains("ERROR")
                && l.contains("component `app`")
                && l.contains("edge platform's limit of 10 MiB")
        })
    })
    .await;
    assert!(logged, "{}", host.stderr());
}

/// `n` key-value writes at once, each its own request; all must succeed.
async fn burst_of_writes(host: &Host, n: usize) {
    let c = client();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (c, url) = (c.clone(), host.url(&format!("/kv/default/k{i}")));
            tokio::spawn(async move { send(&c, "PUT", &url, &[], "v").await })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.status, 204, "{}", r.text());
    }
}

const WARNING: &str = "edge budget exceeded: key-value writes ";

#[tokio::test]
async fn key_value_writes_over_the_edge_budget_are_warned_about() {
    let mut host = Host::start(&manifest(), &EDGE);
    // 200 writes are over 50/s unless they take more than 4 s; on a very
    // slow machine, another burst.
    let mut warned = false;
    for _ in 0..5 {
        burst_of_writes(&host, 200).await;
        warned = eventually(Duration::from_secs(5), || async {
            host.stderr().contains(WARNING)
        })
        .await;
        if warned {
            break;
        }
    }
    assert!(warned, "no budget warning:\n{}", host.stderr());
    let stderr = host.stderr();
    let line = stderr.lines().find(|l| l.contains(WARNING)).unwrap();
    let count: u32 = line
        .split(WARNING)
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in `{line}`"));
    assert!(count > 50, "{line}");
    assert!(line.contains("(limit 50/s)"), "{line}");
    assert!(line.contains("top components: app "), "{line}");
    assert!(
        !stderr.contains("edge budget exceeded: key-value reads"),
        "writes only: {stderr}"
    );

    assert!(host.terminate().success());
    let stderr = host.stderr();
    let summary = stderr
        .lines()
        .find(|l| l.contains("edge budget: peak key-value writes "))
        .unwrap_or_else(|| panic!("no summary at shutdown:\n{stderr}"));
    assert!(summary.contains("(limit 50/s)"), "{summary}");
}

#[tokio::test]
async fn the_same_writes_on_local_are_not_warned_about() {
    let mut host = Host::start(&manifest(), &[]);
    assert!(!host.stdout().contains("platform:"), "{}", host.stdout());
    burst_of_writes(&host, 200).await;
    // Stopping the host settles its output: whatever it would say, it said.
    assert!(host.terminate().success());
    let stderr = host.stderr();
    assert!(!stderr.contains("edge budget"), "{stderr}");
}
