//! Messages: the embedded broker (default) or Redis pub/sub, and the Redis
//! trigger that hands each message to subscribing components.

pub mod broker;
pub mod setup;
pub mod trigger;

pub use broker::Broker;

/// Where messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MessageBackend {
    /// A durable queue under the state dir; nothing else needed.
    Embedded,
    /// Redis pub/sub at the addresses the manifest names.
    Redis,
}

impl MessageBackend {
    /// As spelled on the command line.
    pub fn name(self) -> &'static str {
        match self {
            MessageBackend::Embedded => "embedded",
            MessageBackend::Redis => "redis",
        }
    }
}
