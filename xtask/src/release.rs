//! `cargo xtask release <component> [--commit REV] [--out DIR]`: one
//! component, built reproducibly from a commit, as a file others can pin.
//!
//! Writes `DIR/<component>-<version>.wasm` (default `dist/`) and
//! `DIR/<component>-<version>.json`, its release manifest: name, version
//! (the crate's), `sha256:` digest, commit, compiler, the WIT interfaces
//! the component imports and exports, its triggers (routes, channels) in
//! that commit's `spin.toml`, and its contract (`components/<c>/contract.json`:
//! the events it publishes and consumes, the chained routes it serves and
//! calls; see [`crate::compat`]).
//!
//! # Reproducible: same commit, same bytes
//! What is pinned, so that anyone rebuilding a release gets its digest:
//! - **the source**: the commit's tree, exported with `git archive` (never
//!   the working tree), built with `--locked` (its `Cargo.lock`);
//! - **the paths**: workspace crates are compiled with paths relative to
//!   the workspace root, and the Cargo home (registry sources) is remapped
//!   to `/cargo`, so neither the checkout's nor the builder's directory
//!   reaches the binary;
//! - **the profile**: `release` without debug info (`CARGO_PROFILE_RELEASE_DEBUG=false`,
//!   `STRIP=debuginfo`; DWARF would record absolute paths);
//! - **the component alone**: `-p <component>` and nothing else, so Cargo's
//!   feature unification cannot differ between a release and its rebuild;
//! - **the compiler**: recorded in the manifest (`rustc`); a rebuild with
//!   another `rustc` may differ, and [`reproduce`] says so.

use crate::{WASM_TARGET, cargo, run_cmd};
use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `cargo xtask release` writes by default.
pub const DIST_DIR: &str = "dist";

/// The record of the releases that are deployed (their manifests; the
/// bytes are rebuilt from their commit). `cargo xtask compat --against
/// releases` checks a new build against it; the test command composes
/// the app from it.
pub const RECORD_DIR: &str = "releases";

/// The Cargo target directory release builds share (not `target/`'s
/// normal build: other flags, other fingerprints).
fn release_target_dir(root: &Path) -> PathBuf {
    crate::target_dir(root).join("release-build")
}

/// `cargo xtask release <component> [--commit REV] [--out DIR]`.
pub fn command(root: &Path, args: &[String]) -> Result<()> {
    let component = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .context("usage: cargo xtask release <component> [--commit REV] [--out DIR]")?;
    let rev = crate::flag_value(args, "--commit").unwrap_or("HEAD");
    let out = crate::flag_value(args, "--out")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(DIST_DIR));
    let commit = git_commit(root, rev)?;
    if rev == "HEAD" && !git_clean(root)? {
        eprintln!(
            "xtask: the working tree has uncommitted changes; a release is built from commit {} only",
            &commit[..12]
        );
    }
    let release = build(root, component, &commit)?;
    let manifest = release.write(&out)?;
    println!("released {} {}", release.name, release.version);
    println!("  {}", out.join(release.file_name()).display());
    println!("  {}", manifest.display());
    println!("  digest {}", release.digest);
    println!("Pin it in spin.toml once the file is uploaded where hosts can fetch it:");
    println!(
        "  [component.{}]\n  source = {{ url = \"https://<your artifact server>/{}\", digest = \"{}\" }}",
        release.name,
        release.file_name(),
        release.digest
    );
    Ok(())
}

/// One built release: its bytes and its manifest.
pub struct Release {
    pub name: String,
    pub version: String,
    pub digest: String,
    pub wasm: Vec<u8>,
    pub manifest: Value,
}

impl Release {
    pub fn file_name(&self) -> String {
        format!("{}-{}.wasm", self.name, self.version)
    }

    /// Writes the `.wasm` and its `.json` into `dir`; refuses to replace a
    /// release of the same version with other bytes.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let wasm_path = dir.join(self.file_name());
        if let Ok(existing) = std::fs::read(&wasm_path)
            && existing != self.wasm
        {
            bail!(
                "{} already holds {} {} with digest {}, and this build is {}: a version is released once — bump `version` in components/{}/Cargo.toml",
                dir.display(),
                self.name,
                self.version,
                sha256_digest(&existing),
                self.digest,
                self.name
            );
        }
        std::fs::write(&wasm_path, &self.wasm)
            .with_context(|| format!("write {}", wasm_path.display()))?;
        let json_path = dir.join(format!("{}-{}.json", self.name, self.version));
        let text = serde_json::to_string_pretty(&self.manifest)? + "\n";
        std::fs::write(&json_path, text)
            .with_context(|| format!("write {}", json_path.display()))?;
        Ok(json_path)
    }
}

/// Builds `component` as of `commit` the reproducible way and describes it.
pub fn build(root: &Path, component: &str, commit: &str) -> Result<Release> {
    let export = tempfile::tempdir()?;
    let tree = export.path().join("src");
    export_tree(root, commit, &tree)?;
    let package = Package::find(&tree, component)?;
    eprintln!(
        "xtask: building {component} {} from commit {} (reproducible release build)",
        package.version,
        &commit[..12]
    );
    let target = release_target_dir(root);
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    run_cmd(
        cargo()
            .current_dir(&tree)
            .args(["build", "--release", "--locked", "--target", WASM_TARGET])
            .args(["-p", &package.name])
            .env("CARGO_TARGET_DIR", &target)
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
            )
            .env_remove("RUSTFLAGS"),
    )?;
    let built = target
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", package.name.replace('-', "_")));
    let wasm = std::fs::read(&built).with_context(|| format!("read {}", built.display()))?;
    let digest = sha256_digest(&wasm);
    let (imports, exports) = interfaces(&wasm)?;
    let contract_path = package.dir.join("contract.json");
    let contract: Value = serde_json::from_str(
        &std::fs::read_to_string(&contract_path).with_context(|| {
            format!(
                "components/{component}/contract.json is missing at commit {}: a release states the events it publishes and consumes and the chained routes it serves and calls",
                &commit[..12]
            )
        })?,
    )
    .with_context(|| format!("components/{component}/contract.json is not JSON"))?;
    crate::compat::Contract::from_value(&contract)
        .with_context(|| format!("components/{component}/contract.json"))?;
    let manifest = json!({
        "name": component,
        "version": package.version,
        "digest": digest,
        "file": format!("{component}-{}.wasm", package.version),
        "size": wasm.len(),
        "commit": commit,
        "rustc": rustc_version()?,
        "imports": imports,
        "exports": exports,
        "triggers": triggers(&tree.join("spin.toml"), component)?,
        "contract": contract,
    });
    Ok(Release {
        name: component.to_string(),
        version: package.version,
        digest,
        wasm,
        manifest,
    })
}

/// Rebuilds every release recorded in `record_dir` from its commit,
/// checks each digest, and writes the `.wasm` files next to copies of
/// their manifests in `out`. Proves the releases reproducible and gives
/// the test command the previous versions to compose the app from.
pub fn reproduce(root: &Path, record_dir: &Path, out: &Path) -> Result<Vec<Value>> {
    let mut rebuilt = Vec::new();
    for recorded in read_manifests(record_dir)? {
        let name = str_field(&recorded, "name")?;
        let commit = str_field(&recorded, "commit")?;
        let digest = str_field(&recorded, "digest")?;
        let release = build(root, name, commit)?;
        if release.digest != digest {
            bail!(
                "rebuilding {name} {} from commit {commit} gave {}, but {} records {digest}: the build is not reproducible here (recorded with {}, this is {})",
                release.version,
                release.digest,
                record_dir.display(),
                recorded["rustc"],
                rustc_version()?
            );
        }
        release.write(out)?;
        rebuilt.push(recorded);
    }
    Ok(rebuilt)
}

/// Every release manifest (`*.json`) in `dir`, sorted by file name.
pub fn read_manifests(dir: &Path) -> Result<Vec<Value>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("read the release directory {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))
        })
        .collect()
}

pub fn str_field<'a>(manifest: &'a Value, field: &str) -> Result<&'a str> {
    manifest[field]
        .as_str()
        .with_context(|| format!("a release manifest without `{field}`: {manifest:.80}"))
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The crate behind a component id, in an exported tree.
struct Package {
    name: String,
    version: String,
    dir: PathBuf,
}

impl Package {
    fn find(tree: &Path, component: &str) -> Result<Package> {
        let dir = tree.join("components").join(component);
        if !dir.join("Cargo.toml").is_file() {
            bail!(
                "no component `{component}`: components/{component}/Cargo.toml does not exist in that commit"
            );
        }
        let out = cargo()
            .current_dir(&dir)
            .args(["metadata", "--no-deps", "--format-version", "1", "--locked"])
            .output()
            .context("run cargo metadata")?;
        if !out.status.success() {
            bail!(
                "cargo metadata failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let meta: Value = serde_json::from_slice(&out.stdout)?;
        let suffix = Path::new("components").join(component).join("Cargo.toml");
        let package = meta["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| {
                p["manifest_path"]
                    .as_str()
                    .is_some_and(|m| Path::new(m).ends_with(&suffix))
            })
            .with_context(|| format!("cargo metadata does not list {}", suffix.display()))?;
        Ok(Package {
            name: str_field(package, "name")?.to_string(),
            version: str_field(package, "version")?.to_string(),
            dir,
        })
    }
}

/// The commit `rev` names.
fn git_commit(root: &Path, rev: &str) -> Result<String> {
    let out = Command::new("git")
        .current_dir(root)
        .args(["rev-parse", "--verify", &format!("{rev}^{{commit}}")])
        .output()
        .context("run git")?;
    if !out.status.success() {
        bail!("`{rev}` is not a commit of this repository");
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// Makes `commit` available: a shallow clone (as some CI systems make)
/// lacks the commits of earlier releases, so its history is fetched.
fn ensure_commit(root: &Path, commit: &str) -> Result<()> {
    let present = |root: &Path| {
        Command::new("git")
            .current_dir(root)
            .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
            .status()
            .is_ok_and(|s| s.success())
    };
    if present(root) {
        return Ok(());
    }
    eprintln!("xtask: commit {commit} is not in this clone; fetching the history");
    let _ = Command::new("git")
        .current_dir(root)
        .args(["fetch", "--quiet", "--unshallow"])
        .status();
    if !present(root) {
        bail!(
            "commit {commit} is not in this repository, and fetching the history did not bring it: a release is rebuilt from its commit; clone the repository with its history"
        );
    }
    Ok(())
}

fn git_clean(root: &Path) -> Result<bool> {
    let out = Command::new("git")
        .current_dir(root)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .context("run git status")?;
    Ok(out.stdout.is_empty())
}

/// The tree of `commit`, exported into `dir` (no `.git`, no `target/`).
fn export_tree(root: &Path, commit: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    ensure_commit(root, commit)?;
    let archive = Command::new("git")
        .current_dir(root)
        .args(["archive", "--format=tar", commit])
        .output()
        .context("run git archive")?;
    if !archive.status.success() {
        bail!(
            "git archive {commit}: {}",
            String::from_utf8_lossy(&archive.stderr)
        );
    }
    let mut tar = Command::new("tar")
        .current_dir(dir)
        .args(["-x", "-m", "-f", "-"]) // -m: fresh mtimes, so Cargo never takes an older build for this tree
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("run tar")?;
    std::io::Write::write_all(tar.stdin.as_mut().expect("piped"), &archive.stdout)?;
    drop(tar.stdin.take());
    if !tar.wait()?.success() {
        bail!("tar could not unpack commit {commit}");
    }
    Ok(())
}

fn rustc_version() -> Result<String> {
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-V")
        .output()
        .context("run rustc -V")?;
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// The names a component imports and exports (`wasi:http/incoming-handler@0.2.0`, ...):
/// the outermost component's own sections, not those of the modules and
/// components nested inside it.
pub fn interfaces(wasm: &[u8]) -> Result<(Vec<String>, Vec<String>)> {
    use wasmparser::{Encoding, Parser, Payload};
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.context("the file is not a WebAssembly component")? {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding != Encoding::Component {
                    bail!("a core WebAssembly module, not a component");
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    imports.push(import?.name.0.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    exports.push(export?.name.0.to_string());
                }
            }
            _ => {}
        }
    }
    imports.sort();
    exports.sort();
    Ok((imports, exports))
}

/// The triggers of `component` in a manifest: HTTP routes (`private` for
/// service chaining only) and Redis channels.
fn triggers(spin_toml: &Path, component: &str) -> Result<Value> {
    let text = std::fs::read_to_string(spin_toml)
        .with_context(|| format!("read {}", spin_toml.display()))?;
    let doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parse {}", spin_toml.display()))?;
    let mut found = Vec::new();
    if let Some(kinds) = doc.get("trigger").and_then(|t| t.as_table()) {
        for (kind, entries) in kinds.iter() {
            let Some(entries) = entries.as_array_of_tables() else {
                continue;
            };
            for entry in entries.iter() {
                if entry.get("component").and_then(|c| c.as_str()) != Some(component) {
                    continue;
                }
                let mut trigger = json!({ "type": kind });
                if let Some(route) = entry.get("route") {
                    if let Some(route) = route.as_str() {
                        trigger["route"] = json!(route);
                    } else {
                        trigger["private"] = json!(true);
                    }
                }
                if let Some(channel) = entry.get("channel").and_then(|c| c.as_str()) {
                    trigger["channel"] = json!(channel);
                }
                found.push(trigger);
            }
        }
    }
    Ok(Value::Array(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_name_routes_private_routes_and_channels() {
        let root = crate::workspace_root();
        let users = triggers(&root.join("spin.toml"), "users").unwrap();
        assert_eq!(
            users,
            json!([{ "type": "http", "route": "/api/users/..." }])
        );
        let consumer = triggers(&root.join("spin.toml"), "order-events").unwrap();
        assert_eq!(
            consumer,
            json!([{ "type": "redis", "channel": "{{ events_channel }}" }])
        );
        let edge = triggers(&root.join("deploy/edge/spin.toml"), "order-events").unwrap();
        assert_eq!(edge, json!([{ "type": "http", "private": true }]));
    }

    /// `cargo xtask test` builds the components before running this.
    #[test]
    fn interfaces_are_the_outermost_components_imports_and_exports() {
        let target = std::env::var_os("APP_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::workspace_root().join("target"));
        let wasm = std::fs::read(target.join("wasm32-wasip2/release/users.wasm"))
            .expect("the users component, built by `cargo xtask build`");
        let (imports, exports) = interfaces(&wasm).unwrap();
        assert_eq!(exports, ["wasi:http/incoming-handler@0.2.0"]);
        for wanted in ["fermyon:spin/sqlite@2.0.0", "fermyon:spin/key-value@2.0.0"] {
            assert!(imports.iter().any(|i| i == wanted), "{imports:?}");
        }
        assert!(
            !imports
                .iter()
                .any(|i| i.starts_with("wasi_snapshot_preview1")),
            "a nested core module's imports are not the component's: {imports:?}"
        );
        let error = interfaces(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(error.to_string().contains("not a component"), "{error}");
    }
}
