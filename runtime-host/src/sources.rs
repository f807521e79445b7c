//! Component sources: where the `.wasm` the host compiles comes from.
//!
//! `source = "x.wasm"` is the file beside the manifest, as before.
//! `source = { url = "...", digest = "sha256:<hex>" }` is fetched as Spin
//! does: once, at `runtime-host up` start (before the listener opens), over
//! HTTP or HTTPS, verified against the digest before anything compiles it,
//! and kept in a content-addressed cache under the state directory:
//!
//! ```text
//! <state-dir>/components/sha256-<hex>.wasm
//! ```
//!
//! A cached file whose SHA-256 is the manifest's digest is used without any
//! network access, so an app that started once starts offline. A download
//! goes to a temporary file in the same directory and is renamed into place
//! only after its digest matched; a mismatch, a bad status, a timeout or an
//! oversized body leaves nothing in the cache.

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;

/// Longest one component's download may take, connecting, redirects and
/// the whole body included (`--download-timeout`).
pub const DEFAULT_DOWNLOAD_TIMEOUT_SECS: u64 = 30;
/// Largest component the host downloads.
pub const MAX_DOWNLOAD_BYTES: u64 = 256 << 20;
/// Redirects followed per download.
const MAX_REDIRECTS: usize = 5;

/// A SHA-256 content digest, written `sha256:<64 hex digits>` as in Spin's
/// manifests. Hex digits are accepted in either case and kept lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest> {
        let Some(hex) = s.strip_prefix("sha256:") else {
            bail!(
                "invalid `digest` {s:?}: it must start with `sha256:` (`sha256:<64 hex digits>`)"
            );
        };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "invalid `digest` {s:?}: `sha256:` must be followed by 64 hex digits (found {} characters)",
                hex.len()
            );
        }
        Ok(Digest(hex.to_ascii_lowercase()))
    }

    fn of(hasher: Sha256) -> Digest {
        Digest(format!("{:x}", hasher.finalize()))
    }

    /// The cache file name: `sha256-<hex>.wasm`.
    fn file_name(&self) -> String {
        format!("sha256-{}.wasm", self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

/// A `source = { url, digest }`, checked when the manifest loads.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: Uri,
    pub digest: Digest,
}

impl Remote {
    pub fn parse(url: &str, digest: Option<&str>) -> Result<Remote> {
        let url = parse_url(url)?;
        let Some(digest) = digest else {
            bail!(
                "a `url` source needs a `digest = \"sha256:<hex>\"` (the SHA-256 of the .wasm, e.g. from `sha256sum`)"
            );
        };
        Ok(Remote {
            url,
            digest: Digest::parse(digest)?,
        })
    }
}

fn parse_url(url: &str) -> Result<Uri> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("invalid source `url` {url:?}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        _ => bail!("invalid source `url` {url:?}: only http:// and https:// URLs are supported"),
    }
}

/// The directory of downloaded components.
pub fn cache_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("components")
}

/// Every component's `.wasm` on disk, by component id: local sources as
/// they are, remote ones from the cache, downloading what is missing.
pub async fn resolve(
    app: &crate::manifest::App,
    state_dir: &Path,
    timeout: Duration,
) -> Result<BTreeMap<String, PathBuf>> {
    let mut paths = BTreeMap::new();
    for (id, c) in &app.components {
        let path = match &c.source {
            crate::manifest::Source::Local(path) => path.clone(),
            crate::manifest::Source::Remote(remote) => {
                fetch(id, remote, &cache_dir(state_dir), timeout).await?
            }
        };
        paths.insert(id.clone(), path);
    }
    Ok(paths)
}

/// The cached file for `remote`, downloaded first if it is not cached (or
/// the cached copy no longer matches its digest).
async fn fetch(id: &str, remote: &Remote, dir: &Path, timeout: Duration) -> Result<PathBuf> {
    let Remote { url, digest } = remote;
    let path = dir.join(digest.file_name());
    if path.is_file() {
        match hash_file(&path) {
            Ok(actual) if actual == *digest => return Ok(path),
            Ok(actual) => eprintln!(
                "Cached component {} has digest {actual}, not {digest}; downloading it again",
                path.display()
            ),
            Err(e) => eprintln!("Cannot read cached component {}: {e:#}", path.display()),
        }
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create component cache {}", dir.display()))?;
    let partial = Partial::new(dir, digest);
    eprintln!("Downloading component `{id}` from {url}");
    let (actual, size) = match tokio::time::timeout(timeout, download(url, &partial.0)).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => bail!(
            "component `{id}`: cannot download {url}: {e:#}; check the `url` and the network (once downloaded, a component is cached in {} and starts offline)",
            dir.display()
        ),
        Err(_) => bail!(
            "component `{id}`: downloading {url} timed out after {} s; check the server, or allow longer with --download-timeout",
            timeout.as_secs_f64()
        ),
    };
    if actual != *digest {
        bail!(
            "component `{id}`: digest mismatch for {url}: the manifest expects {digest}, the download is {actual}; nothing was cached. If this release is the one you want, set `digest = \"{actual}\"`"
        );
    }
    partial.keep(&path)?;
    eprintln!("Downloaded component `{id}` ({size} bytes, {digest})");
    Ok(path)
}

fn hash_file(path: &Path) -> Result<Digest> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(Digest::of(hasher)),
            n => hasher.update(&buf[..n]),
        }
    }
}

/// A download in progress: removed unless [`Partial::keep`] renames it.
struct Partial(PathBuf);

impl Partial {
    fn new(dir: &Path, digest: &Digest) -> Partial {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Partial(dir.join(format!(
            ".download-{}-{}-{n}.tmp",
            digest.0,
            std::process::id()
        )))
    }

    fn keep(self, to: &Path) -> Result<()> {
        std::fs::rename(&self.0, to)
            .with_context(|| format!("cannot move the download to {}", to.display()))
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// GETs `url` (following redirects) into `dest`, returning the body's
/// digest and size.
async fn download(url: &Uri, dest: &Path) -> Result<(Digest, u64)> {
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
fn redirect_target(from: &Uri, location: &str) -> Result<Uri> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "6503a4a0bd3a3bb0bd25c1e2cfd8c1b3cfa4f2ebf5bf0d8d2d2b0a4c0e1f2375";

    #[test]
    fn a_digest_is_sha256_and_64_hex_digits() {
        let d = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        assert_eq!(d.to_string(), format!("sha256:{HEX}"));
        assert_eq!(d.file_name(), format!("sha256-{HEX}.wasm"));
    }

    #[test]
    fn upper_case_hex_is_kept_lower_case() {
        let d = Digest::parse(&format!("sha256:{}", HEX.to_uppercase())).unwrap();
        assert_eq!(d.to_string(), format!("sha256:{HEX}"));
    }

    #[test]
    fn malformed_digests_are_refused() {
        for bad in [
            HEX.to_string(),
            format!("sha512:{HEX}"),
            format!("SHA256:{HEX}"),
            format!("sha256:{}", &HEX[1..]),
            format!("sha256:{HEX}0"),
            format!("sha256:{}g", &HEX[1..]),
            "sha256:".to_string(),
            String::new(),
        ] {
            let err = Digest::parse(&bad).unwrap_err().to_string();
            assert!(err.contains("invalid `digest`"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_digest_of_bytes_matches_sha256sum() {
        let mut h = Sha256::new();
        h.update(b"abc");
        assert_eq!(
            Digest::of(h).to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_remote_source_needs_an_http_url_and_a_digest() {
        let digest = format!("sha256:{HEX}");
        assert!(Remote::parse("https://example.com/a.wasm", Some(&digest)).is_ok());
        assert!(Remote::parse("http://127.0.0.1:8080/a.wasm", Some(&digest)).is_ok());
        let err = Remote::parse("https://example.com/a.wasm", None).unwrap_err();
        assert!(err.to_string().contains("needs a `digest"), "{err}");
        for url in ["ftp://example.com/a.wasm", "/a.wasm", "example.com/a.wasm"] {
            let err = Remote::parse(url, Some(&digest)).unwrap_err();
            assert!(
                format!("{err:#}").contains("invalid source `url`"),
                "{url}: {err:#}"
            );
        }
    }

    #[test]
    fn redirects_resolve_against_the_current_url() {
        let from: Uri = "https://example.com:8443/a/b.wasm".parse().unwrap();
        assert_eq!(
            redirect_target(&from, "/c.wasm").unwrap().to_string(),
            "https://example.com:8443/c.wasm"
        );
        assert_eq!(
            redirect_target(&from, "http://cdn.example/x.wasm")
                .unwrap()
                .to_string(),
            "http://cdn.example/x.wasm"
        );
    }

    #[tokio::test]
    async fn a_cached_file_with_the_right_digest_is_used_without_network() {
        let dir = std::env::temp_dir().join(format!("sources-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut h = Sha256::new();
        h.update(b"wasm bytes");
        let digest = Digest::of(h);
        std::fs::write(dir.join(digest.file_name()), b"wasm bytes").unwrap();
        // Port 1 on loopback refuses connections: any network use would fail.
        let remote = Remote::parse("http://127.0.0.1:1/a.wasm", Some(&digest.to_string())).unwrap();
        let path = fetch("a", &remote, &dir, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(path, dir.join(digest.file_name()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A manifest whose one component has `source = <source>` (line 6).
    fn with_source(source: &str) -> Result<crate::manifest::App> {
        let text = format!(
            "spin_manifest_version = 2\n[application]\nname = \"t\"\n[component.web]\nallowed_outbound_hosts = []\nsource = {source}\n"
        );
        crate::manifest::App::parse(&text, Path::new("spin.toml"))
    }

    #[test]
    fn a_url_source_with_a_digest_is_remote() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let app = with_source(&format!(
            "{{ url = \"https://example.com/web.wasm\", digest = \"{digest}\" }}"
        ))
        .unwrap();
        let crate::manifest::Source::Remote(r) = &app.components["web"].source else {
            panic!("expected a remote source");
        };
        assert_eq!(r.url.to_string(), "https://example.com/web.wasm");
        assert_eq!(r.digest.to_string(), digest);
    }

    #[test]
    fn a_bad_or_missing_digest_names_the_line() {
        for source in [
            "{ url = \"https://example.com/web.wasm\", digest = \"md5:abc\" }",
            "{ url = \"https://example.com/web.wasm\", digest = \"sha256:abc\" }",
            "{ url = \"https://example.com/web.wasm\" }",
            "{ url = \"file:///web.wasm\", digest = \"sha256:abc\" }",
            "{ registry = \"ttl.sh\", package = \"a:b\", version = \"1.0.0\" }",
        ] {
            let err = format!("{:#}", with_source(source).unwrap_err());
            assert!(
                err.contains("spin.toml:6") && err.contains("component `web`"),
                "{source}: {err}"
            );
        }
    }
}
