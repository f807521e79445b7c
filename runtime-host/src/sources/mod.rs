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

mod download;
#[cfg(test)]
mod tests;

use anyhow::{Context as _, Result, bail};
use download::download;
use http::Uri;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
