//! The HTTP listener: hyper accept loop and graceful shutdown.
//!
//! On SIGINT or SIGTERM the listener closes at once (new connections are
//! refused), idle keep-alive connections are closed, and requests already
//! running get up to `drain` to finish before the host exits.

use super::trigger::HttpTrigger;
use anyhow::{Context as _, Result};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

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
    Ok(socket.listen(1024)?)
}

/// Serves until `shutdown` resolves, then drains for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    trigger: Arc<HttpTrigger>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
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
        let _ = stream.set_nodelay(true);
        let trigger = trigger.clone();
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let trigger = trigger.clone();
            async move {
                let req = req.map(|body| body.map_err(Into::into).boxed_unsync());
                Ok::<_, Infallible>(trigger.handle(req, client).await)
            }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection from {client} ended with an error: {e}");
            }
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
