//! Isolation and limits: a component that traps, panics, loops or exhausts
//! memory fails only its own request; deadlines, overload and graceful
//! shutdown.

use app_tests::{get, wasm, Host};
use std::time::{Duration, Instant};

fn manifest() -> String {
    format!(
        r#"spin_manifest_version = 2
[application]
name = "faulty"
[[trigger.http]]
route = "/faulty/..."
component = "faulty"
[[trigger.http]]
route = "/..."
component = "app"
[component.faulty]
source = "{}"
[component.app]
source = "{}"
"#,
        wasm("fixture-faulty").display(),
        wasm("fixture-p2-app").display()
    )
}

#[tokio::test]
async fn traps_and_panics_fail_only_their_request() {
    for flags in [&[][..], &["--reuse-p2-instances"][..]] {
        let host = Host::start(&manifest(), flags);
        for what in ["trap", "panic"] {
            let r = get(host.url(&format!("/faulty/{what}"))).await;
            assert_eq!(r.status, 500, "{what}");
            assert_eq!(r.header("runtime-host-error"), Some("internal_error"));
            assert!(r.header("x-correlation-id").is_some());
            assert_eq!(
                get(host.url("/faulty/ok")).await.text(),
                "ok",
                "after {what} {flags:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_looping_request_is_cut_at_the_deadline_and_others_are_served() {
    let host = Host::start(&manifest(), &["--request-timeout", "2"]);
    let looping = tokio::spawn(get(host.url("/faulty/loop")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // While one instance spins, others answer promptly.
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(get(host.url("/faulty/ok")).await.text(), "ok");
        assert!(started.elapsed() < Duration::from_millis(1500));
    }
    let started = Instant::now();
    let r = looping.await.unwrap();
    assert_eq!(r.status, 500);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut near the 2 s deadline"
    );
    assert_eq!(get(host.url("/faulty/ok")).await.text(), "ok");
}

#[tokio::test]
async fn a_memory_bomb_fails_only_its_request() {
    let host = Host::start(&manifest(), &["--max-memory", "64"]);
    let r = get(host.url("/faulty/oom")).await;
    assert_eq!(r.status, 500);
    assert_eq!(get(host.url("/faulty/ok")).await.text(), "ok");
    assert_eq!(get(host.url("/kv-free?headers")).await.status, 200);
}

#[tokio::test]
async fn beyond_the_concurrency_limit_requests_get_503() {
    let host = Host::start(&manifest(), &["--max-concurrent-requests", "2"]);
    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(get(host.url("/faulty/sleep?ms=1500"))))
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = get(host.url("/faulty/ok")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    for s in slow {
        assert_eq!(s.await.unwrap().status, 200);
    }
    assert_eq!(get(host.url("/faulty/ok")).await.status, 200);
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let mut host = Host::start(&manifest(), &[]);
    let slow = tokio::spawn(get(host.url("/faulty/sleep?ms=1500")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    host.signal_term();
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slept 1500ms");
    let status = host.wait();
    assert!(status.success(), "exit status {status}");
    // The listener is closed.
    assert!(std::net::TcpStream::connect(("127.0.0.1", host.port)).is_err());
}

#[tokio::test]
async fn compiled_code_is_cached_across_restarts() {
    let mut host = Host::start(&manifest(), &[]);
    let cache = host.state_dir().join("cache");
    let entries = || std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    assert_eq!(entries(), 2, "one compiled artefact per component");
    let before: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().modified().unwrap())
        .collect();
    host.restart();
    let after: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().modified().unwrap())
        .collect();
    assert_eq!(
        before, after,
        "a restart reuses compiled code instead of recompiling"
    );
    assert_eq!(get(host.url("/faulty/ok")).await.text(), "ok");
}
