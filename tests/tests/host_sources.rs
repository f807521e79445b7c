//! `source = { url, digest }`: the host downloads a component from a real
//! HTTP server on loopback at start, verifies its digest before compiling
//! it, caches it by digest under the state directory, and starts offline
//! from that cache; every failure stops the start and names the url.

use app_tests::{Host, TempDir, get, host_binary, wasm};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// What the test server does with each request.
#[derive(Clone)]
enum Behaviour {
    /// `200 OK` with these bytes.
    File(Arc<Vec<u8>>),
    /// `404 Not Found`.
    NotFound,
    /// Reads the request, never answers (until the client goes away).
    Silent,
}

/// A one-file HTTP/1.1 server on a free loopback port, counting the
/// requests it read. Dropping it closes the port.
struct ReleaseServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ReleaseServer {
    fn start(reply: Behaviour) -> ReleaseServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counted, stopping) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (reply, counted) = (reply.clone(), counted.clone());
                std::thread::spawn(move || answer(conn, &reply, &counted));
            }
        });
        ReleaseServer {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for ReleaseServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so that the thread sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(mut conn: TcpStream, reply: &Behaviour, requests: &AtomicUsize) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let _ = match reply {
        Behaviour::File(bytes) => conn
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/wasm\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    bytes.len()
                )
                .as_bytes(),
            )
            .and_then(|()| conn.write_all(bytes)),
        Behaviour::NotFound => conn.write_all(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        ),
        Behaviour::Silent => conn.read(&mut byte).map(|_| ()),
    };
}

fn fixture() -> (Arc<Vec<u8>>, String) {
    let bytes = std::fs::read(wasm("fixture-p2-app")).expect("read the fixture");
    let hex: String = hmac_sha256::Hash::hash(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (Arc::new(bytes), format!("sha256:{hex}"))
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
    let (bytes, digest) = fixture();
    let server = ReleaseServer::start(Behaviour::File(bytes));
    let mut host = Host::start(&manifest(&server.url("/v1/app.wasm"), &digest), &[]);
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
    let (bytes, actual) = fixture();
    let server = ReleaseServer::start(Behaviour::File(bytes));
    let expected = format!("sha256:{}", "0".repeat(64));
    let dir = TempDir::new("sources");
    let url = server.url("/app.wasm");
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
    let server = ReleaseServer::start(Behaviour::Silent);
    let dir = TempDir::new("sources");
    let url = server.url("/slow.wasm");
    let err = start_failure_in(
        dir.path(),
        &manifest(&url, &digest),
        &["--download-timeout", "2"],
    );
    assert!(
        err.contains("timed out") && err.contains(&url) && err.contains("--download-timeout"),
        "{err}"
    );
    assert_eq!(server.requests(), 1);
    assert_eq!(cached(&dir.path().join(".spin")), Vec::<String>::new());
}

#[test]
fn a_missing_release_names_the_status_and_the_url() {
    let (_, digest) = fixture();
    let server = ReleaseServer::start(Behaviour::NotFound);
    let dir = TempDir::new("sources");
    let url = server.url("/v9/app.wasm");
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
