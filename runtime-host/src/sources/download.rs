//! Downloading one component over HTTP or HTTPS: redirects, the size
//! bound, hashing while the body streams to disk.

use super::{Digest, MAX_DOWNLOAD_BYTES, MAX_REDIRECTS, parse_url};
use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncWriteExt as _;

/// GETs `url` (following redirects) into `dest`, returning the body's
/// digest and size.
pub(super) async fn download(url: &Uri, dest: &Path) -> Result<(Digest, u64)> {
    let mut url = url.clone();
    let mut redirects = 0;
    let response = loop {
        let response = get(&url).await?;
        let status = response.status();
        if status.is_redirection()
            && let Some(location) = response.headers().get(header::LOCATION)
        {
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                bail!("more than {MAX_REDIRECTS} redirects");
            }
            url = redirect_target(&url, location.to_str().unwrap_or_default())?;
            continue;
        }
        if !status.is_success() {
            bail!("the server answered {}", describe(status));
        }
        break response;
    };
    if let Some(len) = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && len > MAX_DOWNLOAD_BYTES
    {
        bail!("the component is {len} bytes; the limit is {MAX_DOWNLOAD_BYTES}");
    }
    let mut body = response.into_body();
    let mut file = tokio::fs::File::create_new(dest)
        .await
        .with_context(|| format!("cannot create {}", dest.display()))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("the connection failed during the download")?;
        if let Ok(data) = frame.into_data() {
            size += data.len() as u64;
            if size > MAX_DOWNLOAD_BYTES {
                bail!("the component is larger than the limit of {MAX_DOWNLOAD_BYTES} bytes");
            }
            hasher.update(&data);
            file.write_all(&data)
                .await
                .with_context(|| format!("cannot write {}", dest.display()))?;
        }
    }
    file.sync_all()
        .await
        .with_context(|| format!("cannot write {}", dest.display()))?;
    Ok((Digest::of(hasher), size))
}

fn describe(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Where a `Location` header points: an absolute URL, or a path on the
/// same server.
pub(super) fn redirect_target(from: &Uri, location: &str) -> Result<Uri> {
    if location.starts_with('/') && !location.starts_with("//") {
        let authority = from.authority().map(|a| a.as_str()).unwrap_or_default();
        let scheme = from.scheme_str().unwrap_or("http");
        return parse_url(&format!("{scheme}://{authority}{location}"));
    }
    parse_url(location).with_context(|| format!("redirected to {location:?}"))
}

/// One GET on a fresh connection; the response's body streams from it.
async fn get(url: &Uri) -> Result<Response<Incoming>> {
    let host = url.host().context("the URL has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let https = url.scheme_str() == Some("https");
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
    let path = url.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let request = Request::get(path)
        .header(
            header::HOST,
            url.authority().context("the URL has no host")?.as_str(),
        )
        .header(
            header::USER_AGENT,
            concat!("runtime-host/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())?;
    if https {
        let name = rustls_pki_types::ServerName::try_from(host.to_string())
            .with_context(|| format!("`{host}` is not a valid TLS server name"))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS handshake with {host}:{port} failed"))?;
        send(TokioIo::new(tls), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
}

async fn send<I>(io: I, request: Request<Empty<Bytes>>) -> Result<Response<Incoming>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .context("HTTP handshake failed")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .context("the server did not answer the request")
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}
