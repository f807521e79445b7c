//! Isolation and limits: a component that traps, panics, loops or exhausts
//! memory fails only its own request; deadlines, overload and graceful
//! shutdown.

use app_tests::{Host, PATIENCE, get, wasm};
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

/// How many `faulty: <what> started` lines the host has logged.
fn started(host: &Host, what: &str) -> usize {
    host.stdout()
        .matches(&format!("faulty: {what} started"))
        .count()
}

async fn wait_for_started(host: &Host, what: &str, n: usize) {
    host.wait_for_stdout(
        &format!("{n} `{what}` requests in flight"),
        PATIENCE,
        |out| out.matches(&format!("faulty: {what} started")).count() >= n,
    )
    .await;
}

#[tokio::test]
async fn a_looping_request_is_cut_at_the_deadline_and_others_are_served() {
    const DEADLINE: Duration = Duration::from_secs(5);
    let host = Host::start(&manifest(), &["--request-timeout", "5"]);
    let sent = Instant::now();
    let looping = tokio::spawn(get(host.url("/faulty/loop")));
    wait_for_started(&host, "loop", 1).await;
    // While one instance spins, others are answered: each `ok` completes
    // while the looping request is still in flight.
    for i in 0..5 {
        assert_eq!(get(host.url("/faulty/ok")).await.text(), "ok");
        assert!(
            !looping.is_finished(),
            "ok request {i} was answered only after the loop was cut"
        );
    }
    // The loop is cut: an answer comes (not a hang), a 500, and never before
    // the deadline (a lower bound that load cannot break).
    let r = tokio::time::timeout(DEADLINE + PATIENCE, looping)
        .await
        .expect("the looping request was never cut")
        .unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(r.header("runtime-host-error"), Some("internal_error"));
    assert!(sent.elapsed() >= DEADLINE, "cut before the deadline");
    assert_eq!(started(&host, "loop"), 1);
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
    const SLEEP: Duration = Duration::from_millis(5000);
    let host = Host::start(&manifest(), &["--max-concurrent-requests", "2"]);
    // A round is conclusive when the extra request is answered while both
    // slow ones are certainly in flight: started (their log lines) and not
    // answered, or sent less than their sleep ago. A 200 then is a failure;
    // a 200 after the sleeps could have ended (a stalled machine) only
    // means the round proved nothing, and another one runs.
    for round in 1..=3 {
        let before = started(&host, "sleep");
        let sent = Instant::now();
        let slow: Vec<_> = (0..2)
            .map(|_| tokio::spawn(get(host.url("/faulty/sleep?ms=5000"))))
            .collect();
        wait_for_started(&host, "sleep", before + 2).await;
        let r = get(host.url("/faulty/ok")).await;
        let in_flight = sent.elapsed() < SLEEP || slow.iter().all(|s| !s.is_finished());
        if in_flight || r.status == 503 {
            assert_eq!(r.status, 503, "round {round}: {}", r.text());
            assert_eq!(r.header("retry-after"), Some("1"));
            assert_eq!(r.header("runtime-host-error"), Some("overloaded"));
            for s in slow {
                let s = s.await.unwrap();
                assert_eq!(s.status, 200);
                assert_eq!(s.text(), "slept 5000ms");
            }
            assert_eq!(get(host.url("/faulty/ok")).await.status, 200);
            return;
        }
        for s in slow {
            assert_eq!(s.await.unwrap().status, 200);
        }
    }
    panic!("in three rounds the slow requests never stayed in flight long enough to test");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let mut host = Host::start(&manifest(), &[]);
    let slow = tokio::spawn(get(host.url("/faulty/sleep?ms=1500")));
    // SIGTERM only once the request is inside the component.
    wait_for_started(&host, "sleep", 1).await;
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
