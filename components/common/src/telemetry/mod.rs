//! What the components tell operators: structured log lines ([`logging`])
//! and the metrics the `metrics` component exposes ([`metrics`]).

pub mod logging;
pub mod metrics;
