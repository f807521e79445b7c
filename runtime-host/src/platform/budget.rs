//! The edge platform's key-value budget: reads and writes per second for
//! the whole app, counted in whole-second windows.
//!
//! A window is reported when it closes (a call in a later second, or the
//! host's 250 ms tick), so a warning carries the second's full count and
//! the components that made it, and there is at most one warning per kind
//! per second. Windows are fixed seconds from the start of the host: a
//! burst split across a boundary is counted as two smaller ones. The clock
//! is injected so the windowing is tested without sleeping.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Which half of the budget a call spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read = 0,
    Write = 1,
}

impl Access {
    fn plural(self) -> &'static str {
        match self {
            Access::Read => "reads",
            Access::Write => "writes",
        }
    }
}

/// How many components a warning names.
const TOP_COMPONENTS: usize = 3;

/// Where "now" comes from: the system clock, or a test's.
pub type Clock = Box<dyn Fn() -> Instant + Send + Sync>;

/// Counts key-value calls per second against `limits` (`[reads, writes]`).
pub struct Budget {
    limits: [u32; 2],
    clock: Clock,
    origin: Instant,
    windows: Mutex<Windows>,
}

#[derive(Default)]
struct Windows {
    /// The second (since `origin`) the counts below belong to.
    second: u64,
    counts: [u32; 2],
    by_component: HashMap<Arc<str>, [u32; 2]>,
    peak: [u32; 2],
    seconds_over: [u32; 2],
}

/// One second in which one kind of call went over its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub access: Access,
    pub count: u32,
    pub limit: u32,
    /// The components with the most calls of that kind, most first.
    pub top: Vec<(Arc<str>, u32)>,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let top: Vec<String> = self.top.iter().map(|(c, n)| format!("{c} {n}")).collect();
        write!(
            f,
            "edge budget exceeded: key-value {} {}/s (limit {}/s); top components: {}",
            self.access.plural(),
            self.count,
            self.limit,
            top.join(", ")
        )
    }
}

/// The peak rates of a whole run, for the shutdown line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub peak: [u32; 2],
    pub seconds_over: [u32; 2],
    pub limits: [u32; 2],
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (r, w) = (Access::Read as usize, Access::Write as usize);
        write!(
            f,
            "edge budget: peak key-value writes {}/s (limit {}/s), reads {}/s (limit {}/s); seconds over budget: {} for writes, {} for reads",
            self.peak[w],
            self.limits[w],
            self.peak[r],
            self.limits[r],
            self.seconds_over[w],
            self.seconds_over[r]
        )
    }
}

/// Prints warnings where a developer sees them whatever the log filter.
pub fn report(exceeded: &[Exceeded]) {
    for e in exceeded {
        eprintln!("WARNING: {e}");
    }
}

impl Budget {
    pub fn new(limits: [u32; 2]) -> Budget {
        Budget::with_clock(limits, Box::new(Instant::now))
    }

    pub fn with_clock(limits: [u32; 2], clock: Clock) -> Budget {
        let origin = clock();
        Budget {
            limits,
            clock,
            origin,
            windows: Mutex::new(Windows::default()),
        }
    }

    fn now_second(&self) -> u64 {
        (self.clock)()
            .saturating_duration_since(self.origin)
            .as_secs()
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, Windows> {
        // Counting never panics while holding the lock; recover anyway.
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `n` calls of one kind by `component`; returns the warnings
    /// of a window this call closed.
    pub fn record(&self, component: &Arc<str>, access: Access, n: u32) -> Vec<Exceeded> {
        let now = self.now_second();
        let mut w = self.windows();
        let closed = w.roll(now, self.limits);
        let i = access as usize;
        w.counts[i] = w.counts[i].saturating_add(n);
        let mine = w.by_component.entry(component.clone()).or_default();
        mine[i] = mine[i].saturating_add(n);
        closed
    }

    /// Closes the current window if its second is over.
    pub fn tick(&self) -> Vec<Exceeded> {
        let now = self.now_second();
        self.windows().roll(now, self.limits)
    }

    /// Closes the current window, however young, and sums up the run.
    pub fn finish(&self) -> (Vec<Exceeded>, Summary) {
        let mut w = self.windows();
        let last = w.close(self.limits);
        let summary = Summary {
            peak: w.peak,
            seconds_over: w.seconds_over,
            limits: self.limits,
        };
        (last, summary)
    }
}

impl Windows {
    fn roll(&mut self, now: u64, limits: [u32; 2]) -> Vec<Exceeded> {
        if now <= self.second {
            return Vec::new();
        }
        let closed = self.close(limits);
        self.second = now;
        closed
    }

    fn close(&mut self, limits: [u32; 2]) -> Vec<Exceeded> {
        let mut exceeded = Vec::new();
        for access in [Access::Write, Access::Read] {
            let i = access as usize;
            let count = self.counts[i];
            self.peak[i] = self.peak[i].max(count);
            if count > limits[i] {
                self.seconds_over[i] += 1;
                let mut top: Vec<(Arc<str>, u32)> = self
                    .by_component
                    .iter()
                    .filter(|(_, c)| c[i] > 0)
                    .map(|(name, c)| (name.clone(), c[i]))
                    .collect();
                top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                top.truncate(TOP_COMPONENTS);
                exceeded.push(Exceeded {
                    access,
                    count,
                    limit: limits[i],
                    top,
                });
            }
        }
        self.counts = [0, 0];
        self.by_component.clear();
        exceeded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// A budget of 1,000 reads and 50 writes a second, and a hand on its
    /// clock (milliseconds since it started).
    fn budget() -> (Budget, Arc<AtomicU64>) {
        let millis = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let hand = millis.clone();
        let clock: Clock =
            Box::new(move || start + Duration::from_millis(hand.load(Ordering::SeqCst)));
        (Budget::with_clock([1_000, 50], clock), millis)
    }

    fn name(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn a_second_over_the_limit_is_reported_when_it_closes_with_its_full_count() {
        let (b, clock) = budget();
        for i in 0..73 {
            let who = if i < 60 { "orders" } else { "users" };
            assert!(b.record(&name(who), Access::Write, 1).is_empty());
        }
        clock.store(999, Ordering::SeqCst);
        assert!(b.tick().is_empty(), "the second is not over yet");
        clock.store(1_000, Ordering::SeqCst);
        let warnings = b.tick();
        assert_eq!(warnings.len(), 1);
        assert_eq!(
            warnings[0].to_string(),
            "edge budget exceeded: key-value writes 73/s (limit 50/s); top components: orders 60, users 13"
        );
        assert!(b.tick().is_empty(), "one warning per kind per second");
    }

    #[test]
    fn at_the_limit_is_within_budget() {
        let (b, clock) = budget();
        b.record(&name("a"), Access::Write, 50);
        b.record(&name("a"), Access::Read, 1_000);
        clock.store(1_500, Ordering::SeqCst);
        assert!(b.tick().is_empty());
    }

    #[test]
    fn a_call_in_a_later_second_closes_the_window_and_starts_the_next() {
        let (b, clock) = budget();
        b.record(&name("a"), Access::Write, 51);
        clock.store(1_200, Ordering::SeqCst);
        let warnings = b.record(&name("a"), Access::Write, 1);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].count, 51);
        // The new window holds only the call that closed the old one.
        clock.store(2_000, Ordering::SeqCst);
        assert!(b.tick().is_empty());
    }

    #[test]
    fn batch_calls_count_per_key_and_kinds_are_separate() {
        let (b, clock) = budget();
        b.record(&name("a"), Access::Read, 999);
        b.record(&name("b"), Access::Read, 2);
        b.record(&name("b"), Access::Write, 10);
        clock.store(1_000, Ordering::SeqCst);
        let warnings = b.tick();
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].access, Access::Read);
        assert_eq!(warnings[0].count, 1_001);
        assert_eq!(warnings[0].top, vec![(name("a"), 999), (name("b"), 2)]);
    }

    #[test]
    fn a_warning_names_at_most_three_components() {
        let (b, clock) = budget();
        for (who, n) in [("a", 10), ("b", 40), ("c", 5), ("d", 20)] {
            b.record(&name(who), Access::Write, n);
        }
        clock.store(1_000, Ordering::SeqCst);
        let top: Vec<String> = b.tick()[0].top.iter().map(|(c, _)| c.to_string()).collect();
        assert_eq!(top, ["b", "d", "a"]);
    }

    #[test]
    fn quiet_seconds_report_nothing() {
        let (b, clock) = budget();
        b.record(&name("a"), Access::Write, 10);
        clock.store(60_000, Ordering::SeqCst);
        assert!(b.tick().is_empty());
        assert!(b.record(&name("a"), Access::Write, 1).is_empty());
    }

    #[test]
    fn the_summary_has_the_peaks_including_the_last_unfinished_second() {
        let (b, clock) = budget();
        b.record(&name("a"), Access::Write, 70);
        b.record(&name("a"), Access::Read, 30);
        clock.store(1_000, Ordering::SeqCst);
        assert_eq!(b.tick().len(), 1);
        b.record(&name("a"), Access::Write, 20);
        b.record(&name("a"), Access::Read, 1_200);
        clock.store(1_300, Ordering::SeqCst);
        let (last, summary) = b.finish();
        assert_eq!(last.len(), 1, "the unfinished second is reported too");
        assert_eq!(last[0].access, Access::Read);
        assert_eq!(summary.peak, [1_200, 70]);
        assert_eq!(summary.seconds_over, [1, 1]);
        assert_eq!(
            summary.to_string(),
            "edge budget: peak key-value writes 70/s (limit 50/s), reads 1200/s (limit 1000/s); seconds over budget: 1 for writes, 1 for reads"
        );
    }
}
