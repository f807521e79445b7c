//! Composing the app from component releases, as a team that ships one
//! component at a time does: some `[component.*]` entries point at a
//! released file by `source = { url, digest }`, served by a real HTTP
//! server on loopback, and the host downloads and verifies it.
//!
//! `cargo xtask test` rebuilds the releases recorded in `releases/` into a
//! directory (`APP_TEST_RELEASES`) and runs suites with
//! `APP_TEST_FROM_RELEASE=users` (the previous `users` among the current
//! others) and with every other component from its release (the reverse).

use serde_json::Value;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// A static file server on a free loopback port: `GET /<name>` answers
/// the file `<dir>/<name>`, anything else 404. It counts the requests it
/// answered. It stops when dropped.
pub struct FileServer {
    url: String,
    requests: Arc<AtomicUsize>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FileServer {
    pub fn serve(dir: impl Into<PathBuf>) -> FileServer {
        let dir: Arc<PathBuf> = Arc::new(dir.into());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let requests = Arc::new(AtomicUsize::new(0));
        let (shutdown, mut stop) = tokio::sync::oneshot::channel::<()>();
        let counted = requests.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the file server");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let stream = tokio::select! {
                        _ = &mut stop => return,
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => continue,
                        },
                    };
                    let (dir, counted) = (dir.clone(), counted.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            counted.fetch_add(1, Ordering::SeqCst);
                            let dir = dir.clone();
                            async move { Ok::<_, Infallible>(answer(&dir, &request)) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        FileServer {
            url,
            requests,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    /// How many requests it has answered.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(
    dir: &Path,
    request: &hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let name = request.uri().path().trim_start_matches('/');
    let file = (request.method() == hyper::Method::GET
        && !name.is_empty()
        && !name.contains('/')
        && !name.starts_with('.'))
    .then(|| std::fs::read(dir.join(name)).ok())
    .flatten();
    let (status, body) = match file {
        Some(bytes) => (200, bytes),
        None => (404, b"no such file".to_vec()),
    };
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/wasm")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("a response")
}

/// The components this run takes from their releases
/// (`APP_TEST_FROM_RELEASE`, comma-separated), if any.
pub fn from_release() -> Vec<String> {
    std::env::var("APP_TEST_FROM_RELEASE")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The newest release manifest of each component in `dir`.
pub fn newest_releases(dir: &Path) -> BTreeMap<String, Value> {
    let mut newest: BTreeMap<String, Value> = BTreeMap::new();
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read the release directory {}: {e}", dir.display()));
    for path in entries.flatten().map(|e| e.path()) {
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a release manifest");
        let manifest: Value = serde_json::from_str(&text).expect("a release manifest is JSON");
        let name = manifest["name"]
            .as_str()
            .expect("a release has a name")
            .to_string();
        let key = |m: &Value| version_key(m["version"].as_str().unwrap_or("0"));
        if newest.get(&name).is_none_or(|m| key(&manifest) > key(m)) {
            newest.insert(name, manifest);
        }
    }
    newest
}

/// The server of this test process for `APP_TEST_RELEASES`.
fn shared_server(dir: &Path) -> &'static FileServer {
    static SERVER: OnceLock<FileServer> = OnceLock::new();
    SERVER.get_or_init(|| FileServer::serve(dir))
}

/// `manifest` with the `source` of each component in
/// [`from_release`] pointing at its newest release in `APP_TEST_RELEASES`,
/// served over HTTP, pinned by digest.
pub fn pin_releases(manifest: String) -> String {
    let components = from_release();
    if components.is_empty() {
        return manifest;
    }
    let dir = PathBuf::from(
        std::env::var("APP_TEST_RELEASES")
            .expect("APP_TEST_FROM_RELEASE needs APP_TEST_RELEASES, the directory of the releases"),
    );
    let releases = newest_releases(&dir);
    let server = shared_server(&dir);
    let mut current: Option<String> = None;
    let mut pinned = Vec::new();
    let lines: Vec<String> = manifest
        .lines()
        .map(|line| {
            let trimmed = line.trim();
            if trimmed.starts_with('[') {
                current = trimmed
                    .strip_prefix("[component.")
                    .and_then(|r| r.strip_suffix(']'))
                    .map(str::to_string);
            }
            match &current {
                Some(name) if trimmed.starts_with("source = ") && components.contains(name) => {
                    let release = releases
                        .get(name)
                        .unwrap_or_else(|| panic!("no release of `{name}` in {}", dir.display()));
                    pinned.push(name.clone());
                    format!(
                        "source = {{ url = \"{}\", digest = \"{}\" }}",
                        server.url(release["file"].as_str().expect("file")),
                        release["digest"].as_str().expect("digest")
                    )
                }
                _ => line.to_string(),
            }
        })
        .collect();
    for name in &components {
        assert!(
            pinned.contains(name),
            "the manifest has no component `{name}`"
        );
    }
    lines.join("\n")
}

/// Whether the `component` under test is at least `version`: false when
/// this run takes it from an older release ([`from_release`]), so a test
/// of behaviour newer than that release can step aside (and says so).
pub fn at_least(component: &str, version: &str) -> bool {
    if !from_release().iter().any(|c| c == component) {
        return true; // the current build
    }
    let dir = PathBuf::from(std::env::var("APP_TEST_RELEASES").unwrap_or_default());
    let released = newest_releases(&dir)
        .get(component)
        .and_then(|m| m["version"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no release of `{component}` in {}", dir.display()));
    let newer = version_key(&released) >= version_key(version);
    if !newer {
        eprintln!(
            "skipped: this test needs {component} {version} or later; this run serves {component} {released} from its release"
        );
    }
    newer
}

/// `1.10.0` sorts after `1.9.0`.
fn version_key(version: &str) -> Vec<u64> {
    version.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}
