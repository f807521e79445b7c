//! Outbound Redis (`fermyon:spin/redis@2.0.0`, `spin:redis/redis@3.0.0`):
//! one backend trait, two implementations.
//!
//! - [`real::RealRedis`]: a connection manager per address (it reconnects after the
//!   server restarts). Every address is a real Redis server, as under Spin.
//! - [`EmbeddedRedis`]: strings and sets in a SQLite file under the state
//!   dir, and `publish` hands the message to the embedded broker
//!   ([`crate::messaging`]), so an app that publishes and subscribes runs with
//!   nothing installed. It stands in only for the addresses the app's own
//!   Redis triggers listen on, and only in embedded messaging mode (the
//!   start-up banner says which); a command it does not implement fails
//!   naming embedded mode and how to leave it.
//!
//! Every call to a real Redis server is bounded in time
//! ([`client`]): a stopped Redis fails the guest's call
//! promptly with an error starting with `unavailable:`.
//!
//! Either way, a component may only open addresses its
//! `allowed_outbound_hosts` allows (`redis://host:port`), as in Spin.

pub mod client;
mod embedded;
pub mod guest;
mod real;

pub use embedded::EmbeddedRedis;
use real::RealRedisPool;

use async_trait::async_trait;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum RedisError {
    InvalidAddress,
    TypeError,
    Other(String),
}

pub type RResult<T> = Result<T, RedisError>;

/// A `redis-parameter`.
#[derive(Debug, Clone)]
pub enum Param {
    Int64(i64),
    Binary(Vec<u8>),
}

/// A `redis-result`.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Nil,
    Status(String),
    Int64(i64),
    Binary(Vec<u8>),
}

#[async_trait]
pub trait RedisConnection: Send + Sync {
    async fn publish(&self, channel: &str, payload: Vec<u8>) -> RResult<()>;
    async fn get(&self, key: &str) -> RResult<Option<Vec<u8>>>;
    async fn set(&self, key: &str, value: Vec<u8>) -> RResult<()>;
    async fn incr(&self, key: &str) -> RResult<i64>;
    async fn del(&self, keys: Vec<String>) -> RResult<u32>;
    async fn sadd(&self, key: &str, values: Vec<String>) -> RResult<u32>;
    async fn smembers(&self, key: &str) -> RResult<Vec<String>>;
    async fn srem(&self, key: &str, values: Vec<String>) -> RResult<u32>;
    async fn execute(&self, command: &str, args: Vec<Param>) -> RResult<Vec<Reply>>;
}

/// Opens connections by address for the whole host.
#[derive(Default)]
pub struct RedisProvider {
    /// In embedded mode: the store that answers the app's trigger addresses.
    embedded: Option<EmbeddedAddresses>,
    real: RealRedisPool,
}

struct EmbeddedAddresses {
    addresses: Vec<String>,
    store: Arc<EmbeddedRedis>,
}

impl RedisProvider {
    /// Every address is a real server.
    pub fn real() -> RedisProvider {
        RedisProvider::default()
    }

    /// `addresses` (the app's Redis trigger addresses) are answered by
    /// `store`; any other address is a real server.
    pub fn embedded(addresses: Vec<String>, store: Arc<EmbeddedRedis>) -> RedisProvider {
        RedisProvider {
            embedded: Some(EmbeddedAddresses {
                addresses: addresses.iter().map(|a| same_address(a)).collect(),
                store,
            }),
            real: RealRedisPool::default(),
        }
    }

    /// The addresses the embedded store answers (empty in Redis mode).
    pub fn embedded_addresses(&self) -> &[String] {
        self.embedded
            .as_ref()
            .map(|e| e.addresses.as_slice())
            .unwrap_or_default()
    }

    pub async fn open(&self, address: &str) -> RResult<Arc<dyn RedisConnection>> {
        if let Some(embedded) = &self.embedded
            && embedded.addresses.contains(&same_address(address))
        {
            return Ok(embedded.store.clone());
        }
        self.real.open(address).await
    }
}

/// An address as compared with the trigger's: a trailing `/` (an empty
/// path) does not make it another server.
fn same_address(address: &str) -> String {
    address.trim().trim_end_matches('/').to_string()
}

/// Checks `address` against the component's `allowed_outbound_hosts`. A
/// denied address is `InvalidAddress`, as in Spin; the log says why.
pub fn check_allowed(component: &crate::state::ComponentContext, address: &str) -> RResult<()> {
    let (scheme, host, port) = crate::http::outbound::address_parts(address, &["redis", "rediss"])
        .ok_or(RedisError::InvalidAddress)?;
    if component.outbound.allows(&scheme, &host, port) {
        return Ok(());
    }
    tracing::warn!(
        component = %component.id,
        address = %client::redacted(address),
        "outbound Redis denied: add the address to the component's allowed_outbound_hosts"
    );
    Err(RedisError::InvalidAddress)
}
