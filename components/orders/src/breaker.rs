//! A circuit breaker for calls to the users component, its state in the
//! key-value store so every instance (and every host sharing the store)
//! sees the same circuit.
//!
//! - **Closed**: calls go through; each failure counts, a success resets
//!   the count.
//! - **Open**: after `failure_threshold` consecutive failures no call is
//!   made for `open_millis`.
//! - **Half-open**: when the open period is over, exactly one caller (the
//!   one whose compare-and-swap wins) makes a trial call, holding the
//!   circuit open for everyone else meanwhile; its success closes the
//!   circuit, its failure opens it again for a full period.
//!
//! State updates use compare-and-swap, so parallel failures are counted
//! exactly. A broken key-value store never blocks calls (the circuit then
//! behaves as closed).

use anyhow::Result;
use app_common::storage::kv::{self, Update};
use serde::{Deserialize, Serialize};

/// The key holding the circuit of the users component.
pub const USERS_KEY: &str = "orders:breaker:users";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub failure_threshold: u32,
    pub open_millis: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerState {
    pub consecutive_failures: u32,
    /// Unix ms until which no call is made (while failures ≥ threshold).
    pub open_until: u64,
}

/// May a call be made now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed circuit: call.
    Call,
    /// Half-open: this caller makes the one trial call.
    Trial,
    /// Open: do not call.
    Reject,
}

impl BreakerState {
    pub fn is_open(&self, policy: &BreakerPolicy) -> bool {
        policy.failure_threshold > 0 && self.consecutive_failures >= policy.failure_threshold
    }

    /// The admission at `now`, and the state to store when it changes
    /// (only when this caller takes the trial).
    pub fn admit(&self, policy: &BreakerPolicy, now: u64) -> (Option<BreakerState>, Admission) {
        if !self.is_open(policy) {
            return (None, Admission::Call);
        }
        if now < self.open_until {
            return (None, Admission::Reject);
        }
        let held = BreakerState {
            open_until: now.saturating_add(policy.open_millis),
            ..*self
        };
        (Some(held), Admission::Trial)
    }

    /// The state after a call that succeeded or failed at `now`.
    pub fn record(&self, success: bool, policy: &BreakerPolicy, now: u64) -> BreakerState {
        if success {
            return BreakerState::default();
        }
        let consecutive_failures = self.consecutive_failures.saturating_add(1);
        let mut next = BreakerState {
            consecutive_failures,
            open_until: self.open_until,
        };
        if next.is_open(policy) {
            next.open_until = now.saturating_add(policy.open_millis);
        }
        next
    }
}

/// Asks the stored circuit whether to call.
pub fn admit(key: &str, policy: &BreakerPolicy) -> Result<Admission> {
    let now = app_common::util::time::now_millis();
    kv::update_atomically(key, |current: Option<BreakerState>| {
        let (update, admission) = current.unwrap_or_default().admit(policy, now);
        Ok((update.map_or(Update::Keep, Update::Write), admission))
    })
}

/// Records a call's outcome in the stored circuit; returns the new state.
pub fn record(key: &str, policy: &BreakerPolicy, success: bool) -> Result<BreakerState> {
    let now = app_common::util::time::now_millis();
    kv::update_atomically(key, |current: Option<BreakerState>| {
        let current = current.unwrap_or_default();
        let next = current.record(success, policy, now);
        let update = if next == current {
            Update::Keep
        } else {
            Update::Write(next)
        };
        Ok((update, next))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BreakerPolicy = BreakerPolicy {
        failure_threshold: 5,
        open_millis: 30_000,
    };

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let mut s = BreakerState::default();
        for i in 0..4 {
            s = s.record(false, &POLICY, 1000 + i);
            assert_eq!(s.admit(&POLICY, 1000 + i).1, Admission::Call);
        }
        s = s.record(false, &POLICY, 2000);
        assert!(s.is_open(&POLICY));
        assert_eq!(s.open_until, 32_000);
        assert_eq!(s.admit(&POLICY, 2001), (None, Admission::Reject));
        assert_eq!(s.admit(&POLICY, 31_999).1, Admission::Reject);
    }

    #[test]
    fn a_success_resets_the_count() {
        let mut s = BreakerState::default();
        for _ in 0..4 {
            s = s.record(false, &POLICY, 0);
        }
        s = s.record(true, &POLICY, 0);
        assert_eq!(s, BreakerState::default());
        s = s.record(false, &POLICY, 0);
        assert_eq!(s.admit(&POLICY, 0).1, Admission::Call);
    }

    #[test]
    fn half_open_lets_one_trial_through() {
        let mut s = BreakerState::default();
        for _ in 0..5 {
            s = s.record(false, &POLICY, 0);
        }
        let (held, admission) = s.admit(&POLICY, 30_000);
        assert_eq!(admission, Admission::Trial);
        let held = held.unwrap();
        // Everyone else is kept out while the trial runs.
        assert_eq!(held.admit(&POLICY, 30_001).1, Admission::Reject);
        // A failed trial opens the circuit for a whole period again.
        let failed = held.record(false, &POLICY, 30_500);
        assert_eq!(failed.open_until, 60_500);
        assert_eq!(failed.admit(&POLICY, 60_000).1, Admission::Reject);
        // A successful one closes it.
        let ok = held.record(true, &POLICY, 30_500);
        assert_eq!(ok.admit(&POLICY, 30_501).1, Admission::Call);
    }

    #[test]
    fn a_zero_threshold_never_opens() {
        let p = BreakerPolicy {
            failure_threshold: 0,
            open_millis: 1,
        };
        let mut s = BreakerState::default();
        for _ in 0..10 {
            s = s.record(false, &p, 0);
        }
        assert_eq!(s.admit(&p, 0).1, Admission::Call);
    }
}
