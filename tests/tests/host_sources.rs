//! `source = { url, digest }`: the host downloads a component from a real
//! HTTP server on loopback at start, verifies its digest before compiling
//! it, caches it by digest under the state directory, and starts offline
//! from that cache; every failure stops the start and names the url.

use app_tests::releases::FileServer;
use app_tests::{Host, TempDir, get, host_binary, wasm};
use std::io::Read as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

/// A release server (see [`FileServer`]) holding the fixture component as
/// `app.wasm`, with the directory it serves from.
fn release_server() -> (FileServer, TempDir) {
    let dir = TempDir::new("releases");
    std::fs::write(dir.path().join("app.wasm"), fixture().0).expect("write the release");
    (FileServer::serve(dir.path()), dir)
}

fn fixture() -> (Vec<u8>, String) {
    let bytes = std::fs::read(wasm("fixture-p2-app")).expect("read the fixture");
    let hex: String = hmac_sha256::Hash::hash(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (bytes, format!("sha256:{hex}"))
}

fn manifest(url: &str, digest: &str) -> String {
    format!(
        r#"spin_manifest_version = 2
[application]
name = "released"
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = {{ url = "{url}", digest = "{digest}" }}
"#
    )
}

/// The files of the host's download cache.
fn cached(state_dir: &Path) -> Vec<String> {
    std::fs::read_dir(state_dir.join("components"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `runtime-host up` on `manifest` with the state directory
/// `<dir>/.spin`, expecting it to exit with an error; returns stderr.
fn start_failure_in(dir: &Path, manifest: &str, args: &[&str]) -> String {
    std::fs::write(dir.join("spin.toml"), manifest).unwrap();
    let out = Command::new(host_binary())
        .arg("up")
        .arg("-f")
        .arg(dir.join("spin.toml"))
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.join(".spin"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run runtime-host");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "expected a start-up failure");
    assert!(
        !stdout.contains("Serving http://"),
        "it listened before failing: {stdout}"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_url_source_is_downloaded_once_cached_and_then_runs_offline() {
    let (_, digest) = fixture();
    let (server, _files) = release_server();
    let mut host = Host::start(&manifest(&server.url("app.wasm"), &digest), &[]);
    assert_eq!(get(host.url("/headers")).await.status, 200);
    assert_eq!(server.requests(), 1, "one download");
    let hex = digest.trim_start_matches("sha256:");
    assert_eq!(
        cached(&host.state_dir()),
        vec![format!("sha256-{hex}.wasm")]
    );
    assert!(host.stderr().contains("Downloading component `web`"));

    // Offline: the server is gone, the cache serves the restart.
    drop(server);
    host.restart();
    assert_eq!(get(host.url("/headers")).await.status, 200);
    let stderr = host.stderr();
    assert_eq!(
        stderr.matches("Downloading component").count(),
        1,
        "no second download: {stderr}"
    );
}

#[test]
fn a_digest_mismatch_names_both_digests_and_caches_nothing() {
    let (_, actual) = fixture();
    let (server, _files) = release_server();
    let expected = format!("sha256:{}", "0".repeat(64));
    let dir = TempDir::new("sources");
    let url = server.url("app.wasm");
    let err = start_failure_in(dir.path(), &manifest(&url, &expected), &[]);
    assert!(
        err.contains("component `web`") && err.contains(&url),
        "{err}"
    );
    assert!(
        err.contains(&expected) && err.contains(&actual),
        "names both digests: {err}"
    );
    assert_eq!(server.requests(), 1);
    assert_eq!(cached(&dir.path().join(".spin")), Vec::<String>::new());
}

#[test]
fn a_server_that_never_answers_times_out_naming_the_url() {
    let (_, digest) = fixture();
    // Accepts one connection, reads the request, never answers; it lets
    // go when the host closes the connection.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://{}/slow.wasm", silent.local_addr().unwrap());
    let holder = std::thread::spawn(move || {
        let (mut conn, _) = silent.accept().expect("the host connects");
        let mut buf = [0u8; 4096];
        while conn.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    let dir = TempDir::new("sources");
    let err = start_failure_in(
        dir.path(),
        &manifest(&url, &digest),
        &["--download-timeout", "2"],
    );
    assert!(
        err.contains("timed out") && err.contains(&url) && err.contains("--download-timeout"),
        "{err}"
    );
    holder.join().expect("the host connected, then gave up");
    assert_eq!(cached(&dir.path().join(".spin")), Vec::<String>::new());
}

#[test]
fn a_missing_release_names_the_status_and_the_url() {
    let (_, digest) = fixture();
    let (server, _files) = release_server();
    let dir = TempDir::new("sources");
    let url = server.url("app-9.9.9.wasm");
    let err = start_failure_in(dir.path(), &manifest(&url, &digest), &[]);
    assert!(
        err.contains("404 Not Found") && err.contains(&url) && err.contains("component `web`"),
        "{err}"
    );
}

#[test]
fn an_unreachable_server_names_the_url_and_what_to_check() {
    let (_, digest) = fixture();
    // A port that was free a moment ago: nothing listens on it.
    let url = format!("http://127.0.0.1:{}/app.wasm", app_tests::free_port());
    let dir = TempDir::new("sources");
    let err = start_failure_in(dir.path(), &manifest(&url, &digest), &[]);
    assert!(
        err.contains(&url) && err.contains("cannot connect"),
        "{err}"
    );
}

#[test]
fn a_malformed_digest_is_a_manifest_error_with_its_line() {
    let dir = TempDir::new("sources");
    let err = start_failure_in(
        dir.path(),
        &manifest("http://127.0.0.1:9/app.wasm", "sha256:abc"),
        &[],
    );
    assert!(
        err.contains("spin.toml:8") && err.contains("invalid `digest`"),
        "{err}"
    );
}
