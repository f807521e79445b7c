//! Fault injection: `runtime-host up --faults key-value=0.05,sqlite=busy:0.01,
//! outbound-http=latency:200ms` makes a chosen share of one capability's
//! calls fail or slow down, so an app's developer can watch it degrade
//! (503 with `Retry-After`, nothing half-written, nothing lost) on a laptop
//! instead of in production.
//!
//! Grammar: entries separated by commas, each `CAPABILITY=EFFECT`, where
//! - `CAPABILITY` is one of [`Capability::NAMES`];
//! - `EFFECT` is `SHARE` or `fail:SHARE` (the call fails as if the backend
//!   were unreachable), `busy:SHARE` (SQLite only: "database is locked"),
//!   or `latency:DURATION` / `latency:DURATION@SHARE` (the call is delayed
//!   first, then runs);
//! - `SHARE` is a fraction `0.05` or a percentage `5%`; `DURATION` is
//!   humantime (`200ms`, `2s`).
//!
//! A capability may be named several times (`sqlite=latency:5ms,sqlite=busy:0.01`):
//! delays add up, then the first failure that fires wins.

use anyhow::{Context as _, Result, bail};
use std::fmt;
use std::time::Duration;

/// A host capability whose calls can be disturbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    KeyValue,
    Sqlite,
    OutboundHttp,
    /// Deliveries of messages to triggered components.
    Messages,
}

impl Capability {
    pub const NAMES: [&'static str; 4] = ["key-value", "sqlite", "outbound-http", "messages"];

    fn parse(name: &str) -> Result<Capability> {
        Ok(match name {
            "key-value" => Capability::KeyValue,
            "sqlite" => Capability::Sqlite,
            "outbound-http" => Capability::OutboundHttp,
            "messages" => Capability::Messages,
            other => bail!(
                "unknown capability `{other}`; expected one of: {}",
                Capability::NAMES.join(", ")
            ),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Capability::KeyValue => "key-value",
            Capability::Sqlite => "sqlite",
            Capability::OutboundHttp => "outbound-http",
            Capability::Messages => "messages",
        }
    }
}

/// How an injected failure presents itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The backend is unreachable.
    Unavailable,
    /// SQLite's lock could not be taken within the busy timeout.
    Busy,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Effect {
    Fail { kind: FailureKind, share: f64 },
    Latency { delay: Duration, share: f64 },
}

/// An injected failure, for the capability to turn into its own error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectedFault {
    pub capability: Capability,
    pub kind: FailureKind,
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FailureKind::Busy => write!(f, "database is locked (fault injected by --faults)"),
            FailureKind::Unavailable => write!(
                f,
                "{} backend unavailable (fault injected by --faults)",
                self.capability.name()
            ),
        }
    }
}

/// The parsed `--faults` setting; empty (no effect, no cost) by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    rules: Vec<(Capability, Effect)>,
}

/// What to do to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    pub delay: Duration,
    pub failure: Option<FailureKind>,
}

impl Faults {
    pub fn parse(spec: &str) -> Result<Faults> {
        let mut rules = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (capability, effect) = entry
                .split_once('=')
                .with_context(|| format!("`{entry}`: expected CAPABILITY=EFFECT"))?;
            let capability =
                Capability::parse(capability.trim()).with_context(|| format!("`{entry}`"))?;
            let effect =
                parse_effect(capability, effect.trim()).with_context(|| format!("`{entry}`"))?;
            rules.push((capability, effect));
        }
        Ok(Faults { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Decides the fate of one call of `capability`; `draw` yields uniform
    /// numbers in `[0, 1)`, one per rule that applies.
    pub fn decide(&self, capability: Capability, mut draw: impl FnMut() -> f64) -> Decision {
        let mut decision = Decision::default();
        for (c, effect) in &self.rules {
            if *c != capability {
                continue;
            }
            match *effect {
                Effect::Latency { delay, share } => {
                    if draw() < share {
                        decision.delay += delay;
                    }
                }
                Effect::Fail { kind, share } => {
                    if decision.failure.is_none() && draw() < share {
                        decision.failure = Some(kind);
                    }
                }
            }
        }
        decision
    }

    /// Applies the decision for one call: waits out any delay, then says
    /// whether the call must fail.
    pub async fn on_call(&self, capability: Capability) -> Result<(), InjectedFault> {
        if self.rules.is_empty() {
            return Ok(());
        }
        let decision = self.decide(capability, fastrand::f64);
        if !decision.delay.is_zero() {
            tokio::time::sleep(decision.delay).await;
        }
        match decision.failure {
            Some(kind) => Err(InjectedFault { capability, kind }),
            None => Ok(()),
        }
    }

    /// As [`Faults::on_call`], for synchronous call sites (the delay blocks
    /// the calling thread, like a slow backend would).
    pub fn on_blocking_call(&self, capability: Capability) -> Result<(), InjectedFault> {
        if self.rules.is_empty() {
            return Ok(());
        }
        let decision = self.decide(capability, fastrand::f64);
        if !decision.delay.is_zero() {
            std::thread::sleep(decision.delay);
        }
        match decision.failure {
            Some(kind) => Err(InjectedFault { capability, kind }),
            None => Ok(()),
        }
    }

    /// One line for the start-up banner.
    pub fn describe(&self) -> String {
        self.rules
            .iter()
            .map(|(c, e)| match e {
                Effect::Fail { kind, share } => format!(
                    "{}: {:.2}% of calls fail ({})",
                    c.name(),
                    share * 100.0,
                    match kind {
                        FailureKind::Busy => "database is locked",
                        FailureKind::Unavailable => "unavailable",
                    }
                ),
                Effect::Latency { delay, share } => format!(
                    "{}: {:.2}% of calls delayed {delay:?}",
                    c.name(),
                    share * 100.0
                ),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn parse_effect(capability: Capability, effect: &str) -> Result<Effect> {
    let (kind, rest) = effect.split_once(':').unwrap_or(("fail", effect));
    match kind {
        "fail" => Ok(Effect::Fail {
            kind: FailureKind::Unavailable,
            share: parse_share(rest)?,
        }),
        "busy" => {
            if capability != Capability::Sqlite {
                bail!("`busy` applies to sqlite only");
            }
            Ok(Effect::Fail {
                kind: FailureKind::Busy,
                share: parse_share(rest)?,
            })
        }
        "latency" => {
            let (delay, share) = match rest.split_once('@') {
                Some((d, s)) => (d, parse_share(s)?),
                None => (rest, 1.0),
            };
            let delay = humantime::parse_duration(delay.trim())
                .with_context(|| format!("`{delay}` is not a duration (e.g. 200ms, 2s)"))?;
            Ok(Effect::Latency { delay, share })
        }
        other => bail!(
            "unknown effect `{other}`; expected fail:SHARE, busy:SHARE or latency:DURATION[@SHARE]"
        ),
    }
}

fn parse_share(text: &str) -> Result<f64> {
    let text = text.trim();
    let share = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => text.parse::<f64>(),
    }
    .with_context(|| format!("`{text}` is not a share (e.g. 0.05 or 5%)"))?;
    if !(0.0..=1.0).contains(&share) {
        bail!("share `{text}` is outside 0..=1 (0%..=100%)");
    }
    Ok(share)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn always(faults: &Faults, c: Capability) -> Decision {
        faults.decide(c, || 0.0)
    }

    fn never(faults: &Faults, c: Capability) -> Decision {
        faults.decide(c, || 0.999_999)
    }

    #[test]
    fn every_form_parses() {
        let f = Faults::parse(
            "key-value=0.05, sqlite=busy:1%,outbound-http=latency:200ms,messages=fail:1,messages=latency:1s@50%",
        )
        .unwrap();
        assert_eq!(f.rules.len(), 5);
        assert_eq!(
            always(&f, Capability::KeyValue).failure,
            Some(FailureKind::Unavailable)
        );
        assert_eq!(
            always(&f, Capability::Sqlite).failure,
            Some(FailureKind::Busy)
        );
        assert_eq!(
            always(&f, Capability::OutboundHttp),
            Decision {
                delay: Duration::from_millis(200),
                failure: None
            }
        );
        assert_eq!(never(&f, Capability::KeyValue), Decision::default());
        // latency without a share applies to every call
        assert_eq!(
            never(&f, Capability::OutboundHttp).delay,
            Duration::from_millis(200)
        );
        assert_eq!(never(&f, Capability::Messages).delay, Duration::ZERO);
        assert!(Faults::parse("").unwrap().is_empty());
    }

    #[test]
    fn rules_for_one_capability_combine() {
        let f =
            Faults::parse("sqlite=latency:5ms,sqlite=latency:10ms,sqlite=busy:1,sqlite=1").unwrap();
        let d = always(&f, Capability::Sqlite);
        assert_eq!(d.delay, Duration::from_millis(15));
        assert_eq!(d.failure, Some(FailureKind::Busy), "the first failure wins");
        assert_eq!(always(&f, Capability::KeyValue), Decision::default());
    }

    #[test]
    fn the_share_is_honoured() {
        let f = Faults::parse("key-value=0.25").unwrap();
        let mut n = 0u32;
        let failures = (0..1000)
            .filter(|_| {
                n += 1;
                f.decide(Capability::KeyValue, || f64::from(n % 100) / 100.0)
                    .failure
                    .is_some()
            })
            .count();
        assert_eq!(failures, 250);
    }

    #[test]
    fn mistakes_are_named() {
        for (spec, says) in [
            ("key-value", "expected CAPABILITY=EFFECT"),
            ("disk=0.1", "unknown capability `disk`"),
            ("key-value=1.5", "outside 0..=1"),
            ("key-value=lots", "not a share"),
            ("key-value=busy:0.1", "sqlite only"),
            ("sqlite=latency:fast", "not a duration"),
            ("sqlite=explode:1", "unknown effect `explode`"),
        ] {
            let e = format!("{:#}", Faults::parse(spec).unwrap_err());
            assert!(e.contains(says), "{spec}: {e}");
        }
    }

    #[test]
    fn injected_faults_say_where_they_come_from() {
        let e = InjectedFault {
            capability: Capability::KeyValue,
            kind: FailureKind::Unavailable,
        };
        assert!(e.to_string().contains("key-value backend unavailable"));
        assert!(e.to_string().contains("--faults"));
    }
}
