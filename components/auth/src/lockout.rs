//! Login lockout: after `max_failures` failed logins for one (client
//! address, e-mail) pair within the counting window, the pair is locked for
//! the lockout period (429 with `Retry-After`), even for the right
//! password. A successful login clears the count.
//!
//! State per pair, key `auth:login-failures:<client>:<sha256(email)>`,
//! updated with compare-and-swap so parallel failures all count. The
//! failure that starts a count registers the key in the expiry index for
//! when the count and any lock it leads to are over ([`expires_at`]), so
//! the sweeper removes pairs that never log in successfully.

use anyhow::Result;
use app_common::storage::kv::{self, Update};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub max_failures: u64,
    /// How long failures count, from the first one.
    pub window_millis: u64,
    /// How long the pair stays locked.
    pub lockout_millis: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureState {
    pub failures: u64,
    pub window_started_at: u64,
    pub locked_until: Option<u64>,
}

/// Milliseconds the pair stays locked, if it is locked at `now`.
pub fn locked_for(state: Option<&FailureState>, now: u64) -> Option<u64> {
    state
        .and_then(|s| s.locked_until)
        .filter(|until| *until > now)
        .map(|until| until - now)
}

/// The state after one more failure at `now`.
pub fn after_failure(state: Option<FailureState>, policy: LockoutPolicy, now: u64) -> FailureState {
    let fresh = FailureState {
        failures: 0,
        window_started_at: now,
        locked_until: None,
    };
    let mut next = match state {
        Some(s)
            if now < s.window_started_at + policy.window_millis
                && s.locked_until.is_none_or(|until| until > now) =>
        {
            s
        }
        _ => fresh,
    };
    next.failures += 1;
    if next.failures >= policy.max_failures && next.locked_until.is_none() {
        next.locked_until = Some(now + policy.lockout_millis);
    }
    next
}

pub fn key(client: &str, email: &str) -> String {
    format!(
        "auth:login-failures:{client}:{}",
        app_common::util::ids::sha256_hex(email.as_bytes())
    )
}

/// Milliseconds left on a lock of this pair, if locked.
pub fn check(client: &str, email: &str) -> Result<Option<u64>> {
    let store = kv::open()?;
    let state = match store.get(&key(client, email))? {
        Some(bytes) => serde_json::from_slice::<FailureState>(&bytes).ok(),
        None => None,
    };
    Ok(locked_for(
        state.as_ref(),
        app_common::util::time::now_millis(),
    ))
}

/// When a state whose count started at `window_started_at` means nothing
/// any more: the window is over and so is any lock set within it.
pub fn expires_at(state: &FailureState, policy: LockoutPolicy) -> u64 {
    state.window_started_at + policy.window_millis + policy.lockout_millis
}

/// Counts a failed login.
pub fn record_failure(client: &str, email: &str, policy: LockoutPolicy) -> Result<FailureState> {
    let key = key(client, email);
    let next = kv::update_atomically(&key, |state: Option<FailureState>| {
        let next = after_failure(state, policy, app_common::util::time::now_millis());
        Ok((Update::Write(next.clone()), next))
    })?;
    if next.failures == 1 {
        app_common::storage::expiry::schedule(&key, expires_at(&next, policy))?;
    }
    Ok(next)
}

/// Clears the count after a successful login.
pub fn reset(client: &str, email: &str) -> Result<()> {
    kv::delete(&kv::open()?, &key(client, email))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LockoutPolicy = LockoutPolicy {
        max_failures: 5,
        window_millis: 900_000,
        lockout_millis: 900_000,
    };

    #[test]
    fn the_fifth_failure_locks_for_the_period() {
        let mut state = None;
        for i in 1..=4 {
            let s = after_failure(state, POLICY, 1000 + i);
            assert_eq!(locked_for(Some(&s), 1000 + i), None, "failure {i}");
            state = Some(s);
        }
        let locked = after_failure(state, POLICY, 2000);
        assert_eq!(locked.failures, 5);
        let until = locked.locked_until.unwrap();
        assert!(expires_at(&locked, POLICY) >= until, "kept while locked");
        assert_eq!(locked_for(Some(&locked), 2000), Some(900_000));
        assert_eq!(locked_for(Some(&locked), 901_999), Some(1));
        assert_eq!(locked_for(Some(&locked), 902_000), None, "lock over");
        let after = after_failure(Some(locked), POLICY, 902_000);
        assert_eq!(after.failures, 1, "a new count starts after the lock");
    }

    #[test]
    fn failures_outside_the_window_start_a_new_count() {
        let s = after_failure(None, POLICY, 0);
        let s = after_failure(Some(s), POLICY, 899_999);
        assert_eq!(s.failures, 2);
        let s = after_failure(Some(s), POLICY, 900_000);
        assert_eq!(s.failures, 1);
        assert_eq!(s.window_started_at, 900_000);
    }

    #[test]
    fn window_and_lock_lengths_are_independent() {
        let policy = LockoutPolicy {
            max_failures: 2,
            window_millis: 10_000,
            lockout_millis: 1_000,
        };
        let s = after_failure(None, policy, 0);
        let s = after_failure(Some(s), policy, 9_000);
        assert_eq!(locked_for(Some(&s), 9_000), Some(1_000));
        assert_eq!(locked_for(Some(&s), 10_000), None);
    }

    #[test]
    fn keys_do_not_contain_the_address_in_clear() {
        let k = key("127.0.0.1", "ada@example.com");
        assert!(k.starts_with("auth:login-failures:127.0.0.1:"));
        assert!(!k.contains("ada"));
    }
}
