//! Waiting for events, not time: poll a condition until it holds, with a
//! deadline far above normal latency.

use std::time::{Duration, Instant};

/// How long a test waits for something that should happen promptly before
/// it calls it a failure: far above any normal latency, so only a real hang
/// (not a loaded machine) reaches it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `check` (every 50 ms) until it gives `Some`, and returns that; panics
/// naming `what` if `timeout` passes first. The helper for "wait for an
/// event": readiness, a log line, an expiry.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() <= deadline,
            "gave up after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
