//! Outbound PostgreSQL (`fermyon:spin/postgres@2.0.0`,
//! `spin:postgres/postgres@3.0.0`, `spin:postgres/postgres@4.2.0`, which also
//! serves guests importing 4.0.0 and 4.1.0), on `tokio-postgres`, following
//! Spin's `factor-outbound-pg`:
//!
//! - The address is a connection string, URL (`postgres://user:pass@host:port/db?sslmode=...`)
//!   or key=value (`host=... port=... user=... dbname=...`). Each host it
//!   names (and each `hostaddr`) must be allowed by the component's
//!   `allowed_outbound_hosts` as `postgres://host:port` (5432 by default);
//!   otherwise `open` fails with `connection-failed("address postgres://host:port is not permitted")`,
//!   Spin's answer, before anything reaches the network.
//! - Connections come from a pool per connection string
//!   ([`POOL_SIZE`] each). A guest `connection` holds one pooled connection
//!   for its whole life, so `BEGIN`, statements and `COMMIT` sent as separate
//!   calls form one transaction; it goes back to the pool when the guest
//!   drops it. A transaction the guest left open is rolled back then, and
//!   every connection is reset (Spin's "clean" recycling, plus `ROLLBACK`)
//!   before the next guest gets it.
//! - Connecting is bounded by [`CONNECT_TIMEOUT`], so a database that is down
//!   fails `open` promptly with `connection-failed`.
//! - `sslmode=disable`: plain TCP. Otherwise (`prefer`, the default, or
//!   `require`) TLS with rustls, verifying the server against the webpki
//!   roots (plus the root a 4.1 `connection-builder` adds); with `prefer` a
//!   server without TLS is used in plain text, as libpq and Spin do.
//! - The connection string holds credentials: it is never logged nor put in
//!   an error; errors name `postgres://host:port` only.
//!
//! Values map as in [`types`]. Every version's adapter ([`guest`]) converts
//! to the 4.2.0 types, which this module uses throughout.

// The WIT error carries PostgreSQL's structured error; it is returned as is.
#![allow(clippy::result_large_err)]

mod address;
pub mod guest;
mod pool;
mod session;
pub mod types;

pub use address::Address;
pub use pool::{PgPools, RootCa};
pub use session::PgConnection;

use crate::capabilities::bindings::p3::spin::postgres4_2_0::postgres as v4;
use crate::state::ComponentContext;
use session::Session;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Most connections one connection string's pool opens at once; a guest
/// wanting another waits up to [`POOL_WAIT_TIMEOUT`] for one to come back.
pub const POOL_SIZE: usize = 16;
/// Longest opening a connection (TCP, TLS, authentication) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest `open` waits for a connection when the pool's are all in use.
pub const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How many connection strings keep a pool; past that the least recently
/// used pool is closed (its connections in use stay valid).
pub const MAX_POOLS: usize = 64;
/// Most memory one statement's result may take in the host (as for SQLite).
pub const MAX_RESULT_BYTES: usize = 64 << 20;

pub(crate) type PgResult<T> = Result<T, v4::Error>;

/// Opens a connection to `connection_string` for `component`: checks the
/// allow-list, then takes a connection from the string's pool.
pub async fn open(
    pools: &PgPools,
    component: &ComponentContext,
    connection_string: &str,
    root_ca: Option<&RootCa>,
) -> PgResult<PgConnection> {
    let address = Address::parse(connection_string)?;
    address.check_allowed(component)?;
    let pool = pools.pool(connection_string, &address, root_ca)?;
    let shown = address.shown();
    let client = pool.get().await.map_err(|e| {
        use deadpool_postgres::{PoolError, TimeoutType};
        let why = match e {
            PoolError::Timeout(TimeoutType::Wait) => format!(
                "all {POOL_SIZE} connections to {shown} are in use (waited {POOL_WAIT_TIMEOUT:?})"
            ),
            PoolError::Timeout(_) => {
                format!("cannot connect to {shown}: no answer within {CONNECT_TIMEOUT:?}")
            }
            PoolError::Backend(e) => format!("cannot connect to {shown}: {}", describe(&e)),
            e => format!("cannot connect to {shown}: {e}"),
        };
        tracing::debug!(component = %component.id, "{why}");
        v4::Error::ConnectionFailed(why)
    })?;
    Ok(PgConnection(Arc::new(Session {
        client: Some(client),
        in_transaction: AtomicBool::new(false),
    })))
}

/// `e` and its causes (`tokio-postgres` shows only its own part): "db
/// error: ERROR: relation \"x\" does not exist", "error connecting to
/// server: Connection refused (os error 111)".
fn describe(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// A 4.1 `connection-builder`: an address and, perhaps, an extra root CA.
pub struct PgConnectionBuilder {
    pub address: String,
    pub root_ca: Option<RootCa>,
}
