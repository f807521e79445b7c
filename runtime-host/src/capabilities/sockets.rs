//! `wasi:sockets`: outbound TCP and UDP, and name lookup, exactly as the
//! component's `allowed_outbound_hosts` says.
//!
//! As in Spin (`factor-outbound-networking`): a TCP connection is checked as
//! `tcp://ADDRESS:PORT`, a UDP datagram as `udp://ADDRESS:PORT`, so an entry
//! such as `*://127.0.0.0/24:5000` or `tcp://10.0.0.7:6000` allows it;
//! nothing may listen or accept (a component serves only through its
//! trigger). The implicit bind the OS makes before a connection or the first
//! datagram (any local address, any port) is allowed; an explicit bind to a
//! chosen address or port is not.
//!
//! Connections name IP addresses, so entries for them are IPs or ranges.
//! Name lookup is allowed when some entry names a host by name (or `*`):
//! wasmtime offers it per instance, not per name, and a component allowed
//! only addresses has nothing to look up.

use crate::http::outbound::OutboundRules;
use crate::state::ComponentContext;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

/// Gives a new instance of `component` the sockets its manifest allows.
pub fn configure(wasi: &mut WasiCtxBuilder, component: &Arc<ComponentContext>) {
    wasi.allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(component.outbound.names_hosts());
    let component = component.clone();
    wasi.socket_addr_check(move |addr, used| {
        let allowed = permits(&component.outbound, addr, used);
        if !allowed {
            tracing::info!(
                component = %component.id,
                %addr,
                ?used,
                "socket use denied: not in allowed_outbound_hosts"
            );
        }
        Box::pin(async move { allowed })
    });
}

/// Whether a socket may use `addr` for `used`.
fn permits(rules: &OutboundRules, addr: SocketAddr, used: SocketAddrUse) -> bool {
    let scheme = match used {
        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
            return addr.ip().is_unspecified() && addr.port() == 0;
        }
        SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => return false,
        SocketAddrUse::TcpConnect => "tcp",
        SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => "udp",
    };
    let host = match addr.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    rules.allows(scheme, &host, Some(addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(entries: &[&str]) -> OutboundRules {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        OutboundRules::parse(&entries, &[], |s| Ok(s.to_string())).unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn connections_follow_the_entries() {
        let r = rules(&["*://127.0.0.0/24:5000", "udp://[::1]:53"]);
        assert!(permits(
            &r,
            addr("127.0.0.8:5000"),
            SocketAddrUse::TcpConnect
        ));
        assert!(permits(&r, addr("127.0.0.8:5000"), SocketAddrUse::UdpSend));
        assert!(!permits(
            &r,
            addr("127.0.0.8:5001"),
            SocketAddrUse::TcpConnect
        ));
        assert!(!permits(
            &r,
            addr("127.0.1.8:5000"),
            SocketAddrUse::TcpConnect
        ));
        assert!(permits(&r, addr("[::1]:53"), SocketAddrUse::UdpReceive));
        assert!(!permits(&r, addr("[::1]:53"), SocketAddrUse::TcpConnect));
    }

    #[test]
    fn only_the_implicit_bind_and_never_inbound() {
        let r = rules(&["*://*:*"]);
        assert!(permits(&r, addr("0.0.0.0:0"), SocketAddrUse::TcpBind));
        assert!(permits(&r, addr("[::]:0"), SocketAddrUse::UdpBind));
        assert!(!permits(&r, addr("0.0.0.0:8080"), SocketAddrUse::TcpBind));
        assert!(!permits(&r, addr("127.0.0.1:0"), SocketAddrUse::TcpBind));
        assert!(!permits(&r, addr("0.0.0.0:0"), SocketAddrUse::TcpListen));
        assert!(!permits(&r, addr("127.0.0.1:9"), SocketAddrUse::TcpAccept));
    }
}
