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

pub mod guest;
pub mod types;

use crate::capabilities::bindings::p3::spin::postgres4_2_0::postgres as v4;
use crate::state::ComponentContext;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::ToSql;

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

/// What a connection is reset with before another guest gets it: a
/// transaction left open is rolled back, then session state is cleared
/// (deadpool's "clean" recycling).
const RESET_SQL: &str = "ROLLBACK; CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
                         UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES;";

type PgResult<T> = Result<T, v4::Error>;

// ---- addresses ----------------------------------------------------------------------

/// A parsed connection string, and how errors may name it.
pub struct Address {
    config: tokio_postgres::Config,
    /// `postgres://host:port[,host:port]`: no credentials, no options.
    shown: String,
}

impl Address {
    /// Parses `address`; an error says why without repeating it.
    pub fn parse(address: &str) -> PgResult<Address> {
        let mut config: tokio_postgres::Config = address.parse().map_err(|e| {
            v4::Error::ConnectionFailed(format!(
                "invalid PostgreSQL connection string: {}",
                describe(&e)
            ))
        })?;
        if config
            .get_connect_timeout()
            .is_none_or(|t| *t > CONNECT_TIMEOUT)
        {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let shown = targets(&config)
            .map(|t| {
                t.iter()
                    .map(|(h, p)| format!("{h}:{}", p.unwrap_or(5432)))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        Ok(Address {
            config,
            shown: format!("postgres://{shown}"),
        })
    }

    /// `postgres://host:port`, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Whether `component` may connect here: every host (and `hostaddr`)
    /// the string names must be allowed as `postgres://host[:port]`.
    pub fn check_allowed(&self, component: &ComponentContext) -> PgResult<()> {
        let targets = targets(&self.config).map_err(v4::Error::ConnectionFailed)?;
        if targets.is_empty() {
            return Err(v4::Error::ConnectionFailed(
                "the connection string names no host".into(),
            ));
        }
        for (host, port) in targets {
            if !component.outbound.allows("postgres", &host, port) {
                // Spin's words; the port appears only when the string has one.
                let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                tracing::warn!(component = %component.id, address = %format!("postgres://{host}{port}"), "outbound PostgreSQL denied: add the address to the component's allowed_outbound_hosts");
                return Err(v4::Error::ConnectionFailed(format!(
                    "address postgres://{host}{port} is not permitted"
                )));
            }
        }
        Ok(())
    }
}

/// The `(host, port)` pairs a connection goes to, as the allow-list sees
/// them: each host with the port at its index (or the only port given), an
/// IPv6 address in brackets; `hostaddr`s likewise. A Unix socket is an error.
pub fn targets(config: &tokio_postgres::Config) -> Result<Vec<(String, Option<u16>)>, String> {
    let ports = config.get_ports();
    let port_of = |i: usize| match ports {
        [only] => Some(*only),
        _ => ports.get(i).copied(),
    };
    let bracket = |h: &str| {
        if h.contains(':') && !h.starts_with('[') {
            format!("[{h}]")
        } else {
            h.to_string()
        }
    };
    let mut out = Vec::new();
    for (i, host) in config.get_hosts().iter().enumerate() {
        match host {
            Host::Tcp(h) => out.push((bracket(h), port_of(i))),
            #[cfg(unix)]
            Host::Unix(_) => return Err("Unix sockets are not supported".into()),
        }
    }
    for (i, ip) in config.get_hostaddrs().iter().enumerate() {
        out.push((bracket(&ip.to_string()), port_of(i)));
    }
    Ok(out)
}

// ---- pools ---------------------------------------------------------------------------------

/// A root certificate a guest added (4.1 `connection-builder.set-ca-root`).
#[derive(Clone)]
pub struct RootCa {
    pem: String,
    certs: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl RootCa {
    pub fn from_pem(pem: &str) -> PgResult<RootCa> {
        use rustls_pki_types::pem::PemObject as _;
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| v4::Error::Other(format!("invalid root certificate: {e}")))?;
        if certs.is_empty() {
            return Err(v4::Error::Other(
                "invalid root certificate: no PEM certificate found".into(),
            ));
        }
        Ok(RootCa {
            pem: pem.to_string(),
            certs,
        })
    }
}

struct PoolEntry {
    pool: deadpool_postgres::Pool,
    last_used: u64,
}

/// The host's connection pools, one per connection string (and root CA).
#[derive(Default)]
pub struct PgPools {
    pools: Mutex<HashMap<(String, Option<String>), PoolEntry>>,
    clock: AtomicU64,
}

impl PgPools {
    fn pool(
        &self,
        connection_string: &str,
        address: &Address,
        root_ca: Option<&RootCa>,
    ) -> PgResult<deadpool_postgres::Pool> {
        let key = (
            connection_string.to_string(),
            root_ca.map(|ca| ca.pem.clone()),
        );
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = pools.get_mut(&key) {
            entry.last_used = now;
            return Ok(entry.pool.clone());
        }
        let pool = new_pool(address, root_ca)?;
        if pools.len() >= MAX_POOLS {
            let oldest = pools
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                if let Some(evicted) = pools.remove(&k) {
                    evicted.pool.close();
                }
            }
        }
        pools.insert(
            key,
            PoolEntry {
                pool: pool.clone(),
                last_used: now,
            },
        );
        Ok(pool)
    }
}

fn new_pool(address: &Address, root_ca: Option<&RootCa>) -> PgResult<deadpool_postgres::Pool> {
    let manager_config = deadpool_postgres::ManagerConfig {
        recycling_method: deadpool_postgres::RecyclingMethod::Custom(RESET_SQL.into()),
    };
    let config = address.config.clone();
    let manager = if config.get_ssl_mode() == SslMode::Disable {
        deadpool_postgres::Manager::from_config(config, tokio_postgres::NoTls, manager_config)
    } else {
        let tls =
            tls_connector(root_ca).map_err(|e| v4::Error::Other(format!("TLS setup: {e}")))?;
        deadpool_postgres::Manager::from_config(config, tls, manager_config)
    };
    deadpool_postgres::Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .build()
        .map_err(|e| v4::Error::Other(format!("cannot build a connection pool: {e}")))
}

fn tls_connector(
    root_ca: Option<&RootCa>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, rustls::Error> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(ca) = root_ca {
        for cert in &ca.certs {
            roots.add(cert.clone())?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

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

// ---- connections ------------------------------------------------------------------------

/// A pooled connection as a guest handle holds it. Clones share it (so a
/// statement can run while the handle stays in the instance's table); it
/// goes back to the pool when the last clone is dropped.
#[derive(Clone)]
pub struct PgConnection(Arc<Session>);

struct Session {
    client: Option<deadpool_postgres::Object>,
    /// Whether the guest's last transaction statement was `BEGIN`/`START`,
    /// so dropping the handle rolls back at once rather than holding locks
    /// until the connection is next used.
    in_transaction: AtomicBool,
}

impl Drop for Session {
    fn drop(&mut self) {
        if !*self.in_transaction.get_mut() {
            return;
        }
        let (Some(client), Ok(rt)) = (self.client.take(), tokio::runtime::Handle::try_current())
        else {
            return; // reset anyway before its next use
        };
        rt.spawn(async move {
            let _ = client.batch_execute("ROLLBACK").await;
        });
    }
}

/// A placeholder error for a parameter that cannot be sent.
fn bad_parameter(e: anyhow::Error) -> String {
    format!("{e:#}")
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

fn query_failed(e: tokio_postgres::Error) -> v4::Error {
    let text = describe(&e);
    v4::Error::QueryFailed(match e.as_db_error() {
        None => v4::QueryError::Text(text),
        Some(db) => {
            let mut extras = Vec::new();
            let mut extra = |name: &str, value: Option<String>| {
                if let Some(v) = value {
                    extras.push((name.to_string(), v));
                }
            };
            extra("column", db.column().map(Into::into));
            extra("constraint", db.constraint().map(Into::into));
            extra("routine", db.routine().map(Into::into));
            extra("hint", db.hint().map(Into::into));
            extra("table", db.table().map(Into::into));
            extra("datatype", db.datatype().map(Into::into));
            extra("schema", db.schema().map(Into::into));
            extra("file", db.file().map(Into::into));
            extra("line", db.line().map(|l| l.to_string()));
            extra("where_", db.where_().map(Into::into));
            v4::QueryError::DbError(v4::DbError {
                as_text: text,
                severity: db.severity().to_string(),
                code: db.code().code().to_string(),
                message: db.message().to_string(),
                detail: db.detail().map(Into::into),
                extras,
            })
        }
    })
}

/// How `statement` changes the transaction state, judged by its first word.
fn transaction_effect(statement: &str) -> Option<bool> {
    let mut words = statement
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty());
    let first = words.next()?.to_ascii_uppercase();
    match first.as_str() {
        "BEGIN" | "START" => Some(true),
        "COMMIT" | "END" | "ABORT" => Some(false),
        "ROLLBACK" => match words.next().map(|w| w.to_ascii_uppercase()) {
            Some(w) if w == "TO" => None, // ROLLBACK TO SAVEPOINT
            Some(w) if w == "PREPARED" => None,
            _ => Some(false),
        },
        "PREPARE" => Some(false), // PREPARE TRANSACTION ends it too
        _ => None,
    }
}

impl PgConnection {
    fn client(&self) -> &deadpool_postgres::Object {
        self.0.client.as_ref().expect("present until drop")
    }

    fn note(&self, statement: &str) {
        if let Some(open) = transaction_effect(statement) {
            self.0.in_transaction.store(open, Ordering::Relaxed);
        }
    }

    /// Runs a statement; how many rows it affected.
    pub async fn execute(&self, statement: &str, params: &[v4::ParameterValue]) -> PgResult<u64> {
        let params = params
            .iter()
            .map(types::parameter)
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| v4::Error::ValueConversionFailed(bad_parameter(e)))?;
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        self.note(statement);
        self.client()
            .execute(statement, &refs)
            .await
            .map_err(query_failed)
    }

    /// Runs a query; its columns (known even when no row comes back) and rows.
    pub async fn query(
        &self,
        statement: &str,
        params: &[v4::ParameterValue],
    ) -> PgResult<v4::RowSet> {
        use futures::TryStreamExt as _;
        let params = params
            .iter()
            .map(types::parameter)
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| v4::Error::BadParameter(bad_parameter(e)))?;
        self.note(statement);
        let client = self.client();
        let prepared = client.prepare(statement).await.map_err(query_failed)?;
        let columns = prepared
            .columns()
            .iter()
            .map(|c| v4::Column {
                name: c.name().to_string(),
                data_type: types::data_type(c.type_()),
            })
            .collect();
        let stream = client
            .query_raw(&prepared, params)
            .await
            .map_err(query_failed)?;
        let mut stream = std::pin::pin!(stream);
        let mut rows = Vec::new();
        let mut size = 0usize;
        while let Some(row) = stream.try_next().await.map_err(query_failed)? {
            let mut values = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                let v = types::value(&row, i)
                    .map_err(|e| v4::Error::QueryFailed(v4::QueryError::Text(format!("{e:#}"))))?;
                size += types::memory_size(&v);
                values.push(v);
            }
            size += std::mem::size_of::<Vec<v4::DbValue>>();
            if size > MAX_RESULT_BYTES {
                return Err(v4::Error::QueryFailed(v4::QueryError::Text(format!(
                    "query result exceeds the host's limit of {} MiB for one statement; \
                     select fewer rows or smaller values (LIMIT, paging)",
                    MAX_RESULT_BYTES >> 20
                ))));
            }
            rows.push(values);
        }
        Ok(v4::RowSet { columns, rows })
    }
}

/// A 4.1 `connection-builder`: an address and, perhaps, an extra root CA.
pub struct PgConnectionBuilder {
    pub address: String,
    pub root_ca: Option<RootCa>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(address: &str) -> Vec<(String, Option<u16>)> {
        targets(&address.parse().unwrap()).unwrap()
    }

    #[test]
    fn hosts_and_ports_come_from_urls_and_key_value_strings() {
        assert_eq!(
            hosts("postgres://u:secret@db.example.com:6543/app?sslmode=require"),
            [("db.example.com".to_string(), Some(6543))]
        );
        // tokio-postgres fills in a URL's missing port.
        assert_eq!(
            hosts("postgres://u:secret@db.example.com/app"),
            [("db.example.com".to_string(), Some(5432))]
        );
        assert_eq!(hosts("host=db"), [("db".to_string(), None)]);
        assert_eq!(
            hosts("host=localhost port=15432 user=postgres password=postgres dbname=spin_dev"),
            [("localhost".to_string(), Some(15432))]
        );
        assert_eq!(
            hosts("host=a,b port=1,2"),
            [("a".to_string(), Some(1)), ("b".to_string(), Some(2))]
        );
        assert_eq!(
            hosts("host=a,b port=7"),
            [("a".to_string(), Some(7)), ("b".to_string(), Some(7))]
        );
        assert_eq!(
            hosts("postgres://u@[::1]:5433/db"),
            [("[::1]".to_string(), Some(5433))]
        );
        // The address connected to is checked too.
        assert_eq!(
            hosts("host=ok.example hostaddr=10.1.2.3 port=5432"),
            [
                ("ok.example".to_string(), Some(5432)),
                ("10.1.2.3".to_string(), Some(5432))
            ]
        );
        assert!(targets(&"host=/var/run/postgresql".parse().unwrap()).is_err());
    }

    #[test]
    fn messages_show_no_credentials() {
        let a = Address::parse("postgres://admin:hunter2@db.example.com/app").unwrap();
        assert_eq!(a.shown(), "postgres://db.example.com:5432");
        let a = Address::parse("host=h port=1 user=admin password=hunter2").unwrap();
        assert_eq!(a.shown(), "postgres://h:1");
        let Err(v4::Error::ConnectionFailed(m)) =
            Address::parse("postgres://admin:hunter2@h:notaport/db")
        else {
            panic!("a bad port is refused")
        };
        assert!(!m.contains("hunter2"), "{m}");
        let Err(v4::Error::ConnectionFailed(m)) = Address::parse("password=hunter2 bogus=x") else {
            panic!("an unknown option is refused")
        };
        assert!(!m.contains("hunter2"), "{m}");
    }

    #[test]
    fn connecting_is_bounded() {
        let a = Address::parse("host=h").unwrap();
        assert_eq!(a.config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        let a = Address::parse("host=h connect_timeout=1").unwrap();
        assert_eq!(
            a.config.get_connect_timeout(),
            Some(&Duration::from_secs(1))
        );
    }

    #[test]
    fn transaction_statements_are_recognised() {
        assert_eq!(transaction_effect("BEGIN"), Some(true));
        assert_eq!(transaction_effect("  begin transaction;"), Some(true));
        assert_eq!(
            transaction_effect("START TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
            Some(true)
        );
        assert_eq!(transaction_effect("COMMIT"), Some(false));
        assert_eq!(transaction_effect("rollback"), Some(false));
        assert_eq!(transaction_effect("ROLLBACK TO SAVEPOINT a"), None);
        assert_eq!(transaction_effect("SELECT 1"), None);
        assert_eq!(transaction_effect(""), None);
    }

    #[test]
    fn root_certificates_must_be_pem() {
        assert!(RootCa::from_pem("not a certificate").is_err());
    }
}
