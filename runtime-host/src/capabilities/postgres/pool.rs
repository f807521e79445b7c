//! PostgreSQL connection pools: one per connection string (and root CA),
//! at most [`MAX_POOLS`], over plain TCP or rustls.

use super::address::Address;
use super::{CONNECT_TIMEOUT, MAX_POOLS, POOL_SIZE, POOL_WAIT_TIMEOUT, PgResult};
use crate::capabilities::bindings::p3::spin::postgres4_2_0::postgres as v4;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_postgres::config::SslMode;

/// What a connection is reset with before another guest gets it: a
/// transaction left open is rolled back, then session state is cleared
/// (deadpool's "clean" recycling).
const RESET_SQL: &str = "ROLLBACK; CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
                         UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES;";

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
    pub(super) fn pool(
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
            if let Some(k) = oldest
                && let Some(evicted) = pools.remove(&k)
            {
                evicted.pool.close();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_certificates_must_be_pem() {
        assert!(RootCa::from_pem("not a certificate").is_err());
    }
}
