//! Fixed-window rate limits per client address, counted with atomic
//! increments in the counter store ([`crate::storage::counters`]: key-value, or
//! Redis in the edge profile) so parallel requests (and several host
//! instances) are counted exactly.
//!
//! Window `n` of a limit is `[n * window, (n + 1) * window)` in Unix
//! seconds; its counter is `ratelimit:<scope>:<client>:<n>`, created with
//! an expiry at the window's end, so every counter is removed once its
//! window is over, whether or not the client comes back; later hits write
//! nothing but the increment.
//!
//! When the store cannot count (down), [`hit`] fails and the request is
//! refused with 503 and `Retry-After` (fail closed, see
//! [`crate::http::pipeline`]), never let through uncounted.

use crate::http::error::ApiError;
use crate::storage::counters::Counters;
use anyhow::{Context as _, Result};

/// At most `max` requests per `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u64,
    pub window_secs: u64,
}

/// The state after counting one request; becomes the `RateLimit-*`
/// headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window resets.
    pub reset_secs: u64,
    pub allowed: bool,
}

impl Decision {
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("ratelimit-limit", self.limit.to_string()),
            ("ratelimit-remaining", self.remaining.to_string()),
            ("ratelimit-reset", self.reset_secs.to_string()),
        ]
    }

    /// The 429 for a refused request.
    pub fn refusal(&self, what: &str) -> ApiError {
        ApiError::too_many_requests(
            "rate_limited",
            format!(
                "too many {what}: at most {} per window; retry in {} s",
                self.limit, self.reset_secs
            ),
            self.reset_secs,
        )
    }
}

/// The window index containing `now` and the seconds until it ends.
pub fn window_at(limit: Limit, now_secs: u64) -> (u64, u64) {
    let window = limit.window_secs.max(1);
    let index = now_secs / window;
    (index, (index + 1) * window - now_secs)
}

/// The decision for the `count`-th request of a window.
pub fn decide(limit: Limit, count: u64, reset_secs: u64) -> Decision {
    Decision {
        limit: limit.max,
        remaining: limit.max.saturating_sub(count),
        reset_secs,
        allowed: count <= limit.max,
    }
}

pub fn counter_key(scope: &str, client: &str, window_index: u64) -> String {
    format!("ratelimit:{scope}:{client}:{window_index}")
}

/// Counts one request of `client` against `limit` in `scope`.
pub fn hit(scope: &str, client: &str, limit: Limit) -> Result<Decision> {
    let (index, reset_secs) = window_at(limit, crate::util::time::now_secs());
    let key = counter_key(scope, client, index);
    let count = Counters::open()?
        .add(&key, 1, Some(window_end_millis(limit, index)))
        .with_context(|| format!("count a `{scope}` request"))?;
    Ok(decide(limit, count.max(0) as u64, reset_secs))
}

/// When window `index` of `limit` ends (Unix ms): its counter's expiry.
pub fn window_end_millis(limit: Limit, index: u64) -> u64 {
    (index + 1) * limit.window_secs.max(1) * 1000
}

/// The more restrictive of two decisions (what the headers should show).
pub fn tighter(a: Decision, b: Decision) -> Decision {
    match (a.allowed, b.allowed) {
        (true, false) => b,
        (false, true) => a,
        _ if b.remaining < a.remaining => b,
        _ => a,
    }
}

impl crate::http::request::ApiRequest {
    /// Counts this request against a further per-client limit; 429 when
    /// exceeded. The `RateLimit-*` headers show the tightest limit.
    pub fn limit(&self, scope: &str, limit: Limit, what: &str) -> Result<(), ApiError> {
        let decision = hit(scope, self.client(), limit)?;
        let shown = match self.rate_limit.get() {
            Some(previous) => tighter(previous, decision),
            None => decision,
        };
        self.rate_limit.set(Some(shown));
        if decision.allowed {
            Ok(())
        } else {
            Err(decision.refusal(what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_PER_HOUR: Limit = Limit {
        max: 10,
        window_secs: 3600,
    };

    #[test]
    fn windows_are_aligned() {
        assert_eq!(window_at(TEN_PER_HOUR, 7200), (2, 3600));
        assert_eq!(window_at(TEN_PER_HOUR, 7201), (2, 3599));
        assert_eq!(window_at(TEN_PER_HOUR, 10_799), (2, 1));
        assert_eq!(window_end_millis(TEN_PER_HOUR, 2), 10_800_000);
    }

    #[test]
    fn the_eleventh_request_is_refused() {
        let d = decide(TEN_PER_HOUR, 10, 5);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        let d = decide(TEN_PER_HOUR, 11, 5);
        assert!(!d.allowed);
        let e = d.refusal("attempts");
        assert_eq!((e.status, e.retry_after), (429, Some(5)));
    }

    #[test]
    fn headers_and_tighter() {
        let a = decide(TEN_PER_HOUR, 3, 9);
        let b = decide(
            Limit {
                max: 100,
                window_secs: 900,
            },
            50,
            9,
        );
        assert_eq!(tighter(a, b), a);
        assert_eq!(tighter(b, a), a);
        assert_eq!(a.headers()[1], ("ratelimit-remaining", "7".to_string()));
        let refused = decide(TEN_PER_HOUR, 12, 1);
        assert_eq!(tighter(b, refused), refused);
    }
}
