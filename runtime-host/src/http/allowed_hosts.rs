//! `allowed_outbound_hosts`, as in Spin's `outbound-networking-config`: an
//! entry is `scheme://host[:port]`; `*` for any scheme, host or port;
//! `*.example.com` for any subdomain (not the bare domain); a port may be a
//! half-open range `8000..9000`; no port means the scheme's well-known one;
//! `{{ variable }}` templates are expanded, and an entry that expands to an
//! empty string (or a bare `http://`) is skipped. Outbound HTTP, Redis,
//! MQTT, PostgreSQL and sockets all check here.

use anyhow::{Context as _, Result, bail};
use std::ops::Range;

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Any,
    Exact(String),
    Subdomain(String), // ".example.com"
    ToSelf,
    /// An IP range (`10.0.0.0/8`, `2001:db8::/32`): matches IP addresses only.
    Cidr(ipnet::IpNet),
}

#[derive(Debug, Clone, PartialEq)]
enum PortPattern {
    Any,
    Range(Range<u16>),
}

#[derive(Debug, Clone, PartialEq)]
struct AllowedHost {
    scheme: Option<String>, // None = any
    host: HostPattern,
    port: PortPattern,
}

/// The parsed `allowed_outbound_hosts` of one component.
#[derive(Debug, Clone, Default)]
pub struct OutboundRules {
    allowed: Vec<AllowedHost>,
}

/// Spin's list (`outbound-networking-config`): `rediss` has none, so a
/// `rediss://` entry needs an explicit port or `:*`, as under Spin.
fn well_known_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" => 80,
        "https" => 443,
        "redis" => 6379,
        "postgres" => 5432,
        "mysql" => 3306,
        "mqtt" => 1883,
        _ => return None,
    })
}

impl OutboundRules {
    /// Parses entries after variable expansion (`expand` resolves templates).
    pub fn parse(
        entries: &[String],
        component_ids: &[String],
        expand: impl Fn(&str) -> Result<String>,
    ) -> Result<OutboundRules> {
        let mut allowed = Vec::new();
        for raw in entries {
            let entry =
                expand(raw).with_context(|| format!("allowed_outbound_hosts entry `{raw}`"))?;
            let entry = entry.trim();
            if entry.is_empty() || entry == "http://" || entry == "https://" {
                continue; // an optional endpoint left unset
            }
            let parsed = parse_entry(entry)
                .with_context(|| format!("invalid allowed_outbound_hosts entry `{raw}`"))?;
            // `*.spin.internal` means every component of this app.
            if parsed.host == HostPattern::Subdomain(".spin.internal".into()) {
                for id in component_ids {
                    allowed.push(AllowedHost {
                        host: HostPattern::Exact(format!("{id}.spin.internal")),
                        ..parsed.clone()
                    });
                }
            } else {
                allowed.push(parsed);
            }
        }
        Ok(OutboundRules { allowed })
    }

    /// Whether `scheme://host:port` may be reached.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let host = host.to_ascii_lowercase();
        self.allowed.iter().any(|a| {
            if a.scheme.as_deref().is_some_and(|s| s != scheme) {
                return false;
            }
            let host_ok = match &a.host {
                HostPattern::Any => true,
                HostPattern::Exact(h) => *h == host,
                HostPattern::Subdomain(suffix) => host.ends_with(suffix.as_str()),
                HostPattern::ToSelf => host == "self" || host == "self.alt",
                HostPattern::Cidr(net) => host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| net.contains(&ip)),
            };
            // As Spin's `PortConfig::allows`: an address without a port uses
            // its scheme's well-known one; a scheme without one (`rediss`)
            // matches only an entry whose port is `*`.
            let port_ok = match &a.port {
                PortPattern::Any => true,
                PortPattern::Range(r) => port
                    .or_else(|| well_known_port(scheme))
                    .is_some_and(|p| r.contains(&p)),
            };
            host_ok && port_ok
        })
    }

    /// Whether some entry names a host by name (or any host), so looking
    /// names up can lead somewhere allowed. Service chaining does not count:
    /// it never leaves the host.
    pub fn names_hosts(&self) -> bool {
        self.allowed.iter().any(|a| match &a.host {
            HostPattern::Any | HostPattern::Subdomain(_) => true,
            HostPattern::Exact(h) => {
                chaining_target(h).is_none()
                    && h.trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_err()
            }
            HostPattern::ToSelf | HostPattern::Cidr(_) => false,
        })
    }

    /// Whether any entry allows plain-HTTP requests back to the app itself.
    pub fn allows_self(&self) -> bool {
        self.allowed.iter().any(|a| {
            matches!(a.host, HostPattern::ToSelf | HostPattern::Any)
                && a.scheme
                    .as_deref()
                    .is_none_or(|s| s == "http" || s == "https")
        })
    }
}

fn parse_entry(entry: &str) -> Result<AllowedHost> {
    let Some((scheme, rest)) = entry.split_once("://") else {
        if ["*", ":", "", "?"].contains(&entry) {
            bail!("no scheme: to allow every host use `*://*:*`");
        }
        bail!("no scheme: write it as `scheme://host[:port]`, e.g. `https://{entry}`");
    };
    let scheme = match scheme {
        "*" => None,
        s if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()) => Some(s.to_string()),
        s => bail!("`{s}` is not a valid scheme"),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match ip_range(rest) {
        Some(range) => range,
        None if rest.contains('/') => bail!("an allowed host cannot contain a path"),
        None => match rest.rsplit_once(':') {
            Some((h, p)) if !rest.ends_with(']') => (HostPattern::Exact(h.into()), Some(p)),
            _ => (HostPattern::Exact(rest.into()), None),
        },
    };
    let host = match host {
        HostPattern::Exact(h) => host_pattern(&h)?,
        range => range,
    };
    let port = port_pattern(scheme.as_deref(), port)?;
    Ok(AllowedHost { scheme, host, port })
}

/// A CIDR range with or without a port, as Spin accepts them:
/// `10.0.0.0/8`, `127.0.0.1/24:5000`, `2001:db8::/32:443`.
fn ip_range(rest: &str) -> Option<(HostPattern, Option<&str>)> {
    if let Ok(net) = rest.parse::<ipnet::IpNet>() {
        return Some((HostPattern::Cidr(net.trunc()), None));
    }
    let (net, port) = rest.rsplit_once(':')?;
    let net = net.parse::<ipnet::IpNet>().ok()?;
    Some((HostPattern::Cidr(net.trunc()), Some(port)))
}

fn host_pattern(host: &str) -> Result<HostPattern> {
    Ok(match host {
        "*" => HostPattern::Any,
        "self" | "self.alt" => HostPattern::ToSelf,
        h if h.starts_with("*.") => {
            let suffix = &h[1..];
            if suffix.len() < 2 || suffix.contains('*') {
                bail!("`{h}` is not a valid subdomain pattern");
            }
            HostPattern::Subdomain(suffix.to_ascii_lowercase())
        }
        h if h.contains('*') => bail!("`*` may only be a whole host or a `*.` prefix"),
        "" => bail!("missing host"),
        h => HostPattern::Exact(h.to_ascii_lowercase()),
    })
}

fn port_pattern(scheme: Option<&str>, port: Option<&str>) -> Result<PortPattern> {
    Ok(match port {
        None | Some("") => match scheme.and_then(well_known_port) {
            Some(p) => PortPattern::Range(p..p + 1),
            None => {
                bail!("no port given and the scheme has no well-known port; add `:PORT` or `:*`")
            }
        },
        Some("*") => PortPattern::Any,
        Some(p) => match p.split_once("..") {
            Some((a, b)) => {
                let a: u16 = a.parse().with_context(|| format!("bad port `{a}`"))?;
                let b: u16 = b.parse().with_context(|| format!("bad port `{b}`"))?;
                PortPattern::Range(a..b)
            }
            None => {
                let p: u16 = p.parse().with_context(|| format!("bad port `{p}`"))?;
                PortPattern::Range(p..p.saturating_add(1))
            }
        },
    })
}

/// Scheme, host and port of a `scheme://host[:port]...` address whose
/// scheme is one of `schemes`, for the allow-list check (`None`: not such
/// an address).
pub fn address_parts(address: &str, schemes: &[&str]) -> Option<(String, String, Option<u16>)> {
    let uri: http::Uri = address.parse().ok()?;
    let scheme = uri.scheme_str().filter(|s| schemes.contains(s))?;
    Some((scheme.to_string(), uri.host()?.to_string(), uri.port_u16()))
}

/// The component id a `*.spin.internal` authority names, if it is one.
pub fn chaining_target(host: &str) -> Option<&str> {
    let (id, rest) = host.split_once('.')?;
    (rest == "spin.internal").then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(entries: &[&str]) -> OutboundRules {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        OutboundRules::parse(&entries, &["users".into(), "auth".into()], |s| {
            Ok(s.to_string())
        })
        .unwrap()
    }

    #[test]
    fn exact_hosts_default_ports_and_wildcards() {
        let r = rules(&[
            "https://api.example.com",
            "http://*.spin.internal",
            "redis://*:*",
        ]);
        assert!(r.allows("https", "api.example.com", None));
        assert!(r.allows("https", "API.example.com", Some(443)));
        assert!(!r.allows("https", "api.example.com", Some(8443)));
        assert!(!r.allows("http", "api.example.com", None));
        assert!(r.allows("http", "users.spin.internal", None));
        assert!(!r.allows("http", "orders.spin.internal", None));
        assert!(r.allows("redis", "10.0.0.1", Some(7000)));
    }

    #[test]
    fn portless_addresses_still_check_the_host() {
        // `rediss` has no well-known port in Spin: `:*` is the way to allow it.
        let r = rules(&["rediss://cache.example.com:*"]);
        assert!(r.allows("rediss", "cache.example.com", None));
        assert!(r.allows("rediss", "cache.example.com", Some(6380)));
        assert!(!r.allows("rediss", "evil.example.com", None));
        assert!(!r.allows("rediss", "evil.example.com", Some(6380)));
        assert!(!r.allows("redis", "cache.example.com", None));
        // An explicit port allows only addresses naming it.
        let r = rules(&["rediss://cache.example.com:6379"]);
        assert!(r.allows("rediss", "cache.example.com", Some(6379)));
        assert!(!r.allows("rediss", "cache.example.com", None));
        // Wildcard schemes: a scheme without a default port still needs the host.
        let r = rules(&["*://api.example.com:*"]);
        assert!(r.allows("custom", "api.example.com", None));
        assert!(!r.allows("custom", "other.example.com", None));
        let r = rules(&["*://*.example.com:*"]);
        assert!(r.allows("rediss", "a.example.com", None));
        assert!(!r.allows("rediss", "example.org", None));
    }

    #[test]
    fn rediss_entries_need_a_port_as_in_spin() {
        let e = OutboundRules::parse(&["rediss://cache.example.com".into()], &[], |s| {
            Ok(s.to_string())
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("well-known port"), "{e:#}");
        assert!(rules(&["redis://cache.example.com"]).allows("redis", "cache.example.com", None));
    }

    #[test]
    fn ip_ranges_as_in_spin() {
        let r = rules(&[
            "*://127.0.0.1/24:5000",
            "http://10.0.0.0/8",
            "tcp://2001:db8::/32:443",
        ]);
        assert!(r.allows("tcp", "127.0.0.9", Some(5000)));
        assert!(!r.allows("tcp", "127.0.1.9", Some(5000)));
        assert!(!r.allows("tcp", "127.0.0.9", Some(5001)));
        assert!(
            !r.allows("tcp", "localhost", Some(5000)),
            "a range matches addresses only"
        );
        assert!(r.allows("http", "10.20.30.40", None));
        assert!(!r.allows("http", "10.20.30.40", Some(8080)));
        assert!(r.allows("tcp", "[2001:db8::1]", Some(443)));
        assert!(!r.allows("tcp", "[2001:db9::1]", Some(443)));
        assert!(!r.allows("udp", "[2001:db8::1]", Some(443)));
        let bad = OutboundRules::parse(&["http://10.0.0.0/8/x".into()], &[], |s| Ok(s.to_string()));
        assert!(format!("{:#}", bad.unwrap_err()).contains("path"));
    }

    #[test]
    fn port_ranges_are_half_open() {
        let r = rules(&["http://localhost:8000..8002"]);
        assert!(r.allows("http", "localhost", Some(8001)));
        assert!(!r.allows("http", "localhost", Some(8002)));
    }

    #[test]
    fn bad_entries_explain_themselves() {
        let e = OutboundRules::parse(&["*".into()], &[], |s| Ok(s.to_string())).unwrap_err();
        assert!(format!("{e:#}").contains("*://*:*"));
        assert!(OutboundRules::parse(&["ftp://x".into()], &[], |s| Ok(s.to_string())).is_err());
        assert!(rules(&[""]).allowed.is_empty());
    }
}
