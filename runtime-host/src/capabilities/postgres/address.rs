//! PostgreSQL addresses: parsing a connection string, naming it without
//! credentials, and checking it against `allowed_outbound_hosts`.

use super::{CONNECT_TIMEOUT, PgResult, describe};
use crate::capabilities::bindings::p3::spin::postgres4_2_0::postgres as v4;
use crate::state::ComponentContext;
use tokio_postgres::config::Host;

/// A parsed connection string, and how errors may name it.
pub struct Address {
    pub(super) config: tokio_postgres::Config,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
}
