//! The HTTP listener: hyper accept loop, connection limits and graceful
//! shutdown.
//!
//! Connections are bounded three ways, so clients that connect and then
//! say nothing (or say it one byte a second) cannot exhaust the host's file
//! descriptors or starve other clients:
//! - at most [`ConnectionLimits::max_connections`] are open at once; beyond
//!   that a new connection gets a canned `503` with `Retry-After` and is
//!   closed at once, without reading it or spawning a task for it;
//! - a request's headers must arrive in full within
//!   [`ConnectionLimits::header_read_timeout`] of the connection becoming
//!   ready for them;
//! - the same timer is the keep-alive idle timeout: after a response, hyper
//!   waits for the next request's headers under it, so an idle keep-alive
//!   connection is closed when it runs out.
//!
//! On SIGINT or SIGTERM the listener closes at once (new connections are
//! refused), idle keep-alive connections are closed, and requests already
//! running get up to `drain` to finish before the host exits.

use super::trigger::HttpTrigger;
use anyhow::{Context as _, Result};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Pending connections the kernel queues before `accept`.
const LISTEN_BACKLOG: u32 = 1024;
/// File descriptors kept free for stores, databases, outbound connections
/// and compiled-code files when the connection limit is derived from the
/// process's descriptor limit.
const RESERVED_DESCRIPTORS: u64 = 256;
/// Default bound on open client connections (lowered to fit the process's
/// descriptor limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Sent to a connection over the limit: complete, so a client sees why; in
/// the shape of every host-made response (see [`super::host_response`]).
const OVER_LIMIT_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
x-content-type-options: nosniff\r\n\
cache-control: no-store\r\n\
runtime-host-error: overloaded\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 41\r\n\r\n\
too many open connections; retry shortly\n";

/// How many connections the listener keeps, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

impl ConnectionLimits {
    /// `requested`, lowered so that open connections plus
    /// [`RESERVED_DESCRIPTORS`] fit in `descriptor_limit`.
    pub fn fit_descriptors(requested: usize, descriptor_limit: Option<u64>) -> usize {
        match descriptor_limit {
            Some(limit) => {
                let room = limit.saturating_sub(RESERVED_DESCRIPTORS).max(16);
                requested.min(usize::try_from(room).unwrap_or(usize::MAX))
            }
            None => requested,
        }
    }
}

/// The process's soft limit on open file descriptors, where the platform says.
pub fn descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own and reads nothing else.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("cannot listen on {addr} (is another server using it? pass --listen to choose another address)"))?;
    Ok(socket.listen(LISTEN_BACKLOG)?)
}

/// Serves until `shutdown` resolves, then drains for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    trigger: Arc<HttpTrigger>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let trigger = trigger.clone();
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let trigger = trigger.clone();
            async move {
                let req = req.map(|body| body.map_err(Into::into).boxed_unsync());
                Ok::<_, Infallible>(trigger.handle(req, client).await)
            }
        });
        let conn = http1.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection from {client} ended with an error: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    eprintln!(
        "Shutting down: waiting up to {}s for in-flight requests",
        drain.as_secs()
    );
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(drain) => {
            eprintln!("Drain timeout reached; abandoning remaining requests");
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Answers a connection over the limit without a task or a read: one
/// non-blocking write of a complete 503 (if the socket takes it), then close.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(OVER_LIMIT_RESPONSE);
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canned_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(OVER_LIMIT_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(declared, body.len());
        assert!(head.contains("runtime-host-error: overloaded"));
    }

    #[test]
    fn the_connection_limit_fits_the_descriptor_limit() {
        assert_eq!(ConnectionLimits::fit_descriptors(10_000, None), 10_000);
        assert_eq!(ConnectionLimits::fit_descriptors(10_000, Some(1024)), 768);
        assert_eq!(ConnectionLimits::fit_descriptors(100, Some(20_000)), 100);
        assert_eq!(ConnectionLimits::fit_descriptors(10_000, Some(10)), 16);
    }
}
