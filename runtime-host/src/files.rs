//! Component `files`, as Spin's manifest defines them: what a component may
//! read from its filesystem, always read-only.
//!
//! - `"static/**/*"`: a glob relative to the manifest's directory. Every
//!   matching file, minus those matching an `exclude_files` glob, appears at
//!   the same relative path under `/`. Matches are copied at start-up into
//!   `<state-dir>/files/<component>/` (rebuilt on every start), so the
//!   component sees the files as they were when the app started, as under
//!   `spin up`.
//! - `{ source = "assets", destination = "/static" }`: the directory
//!   itself, at `destination` (absolute), seen live.
//!
//! A pattern or source that leaves the app's directory (`..`, an absolute
//! path) is refused before the host listens.

use anyhow::{Context as _, Result, bail};
use std::path::{Component as PathPart, Path, PathBuf};

/// One entry of a component's `files`.
#[derive(Debug, Clone, PartialEq)]
pub enum FileMount {
    Pattern(String),
    Directory { source: String, destination: String },
}

/// A host directory the guest sees at `guest` (read-only).
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub host: PathBuf,
    pub guest: String,
}

impl FileMount {
    /// One `files` entry of the manifest.
    pub fn parse(value: &toml::Value) -> Result<FileMount> {
        const SHAPE: &str =
            "a `files` entry is a glob string or `{ source = \"dir\", destination = \"/path\" }`";
        let mount = match value {
            toml::Value::String(pattern) => FileMount::Pattern(pattern.clone()),
            toml::Value::Table(t) => {
                let text = |key: &str| t.get(key).and_then(|v| v.as_str()).map(str::to_string);
                if let Some(other) = t.keys().find(|k| *k != "source" && *k != "destination") {
                    bail!("{SHAPE}; `{other}` is not a key of it");
                }
                let (Some(source), Some(destination)) = (text("source"), text("destination"))
                else {
                    bail!("{SHAPE}; both keys are needed");
                };
                if !destination.starts_with('/') {
                    bail!("`files` destination `{destination}` must be an absolute path");
                }
                FileMount::Directory {
                    source,
                    destination,
                }
            }
            _ => bail!("{SHAPE}"),
        };
        let inside = match &mount {
            FileMount::Pattern(p) => p,
            FileMount::Directory { source, .. } => source,
        };
        if !stays_inside(inside) {
            bail!(
                "`files` entry `{inside}` leaves the app's directory: give a path relative to it, without `..`"
            );
        }
        Ok(mount)
    }
}

/// Whether `relative` is relative and never climbs out.
fn stays_inside(relative: &str) -> bool {
    Path::new(relative)
        .components()
        .all(|c| matches!(c, PathPart::Normal(_) | PathPart::CurDir))
}

/// Prepares the mounts of component `id`: copies pattern matches into
/// `staging` (emptied first) and checks directory sources exist.
pub fn stage(
    id: &str,
    files: &[FileMount],
    exclude: &[String],
    app_dir: &Path,
    staging: &Path,
) -> Result<Vec<Mount>> {
    let excluded: Vec<glob::Pattern> = exclude
        .iter()
        .map(|e| {
            glob::Pattern::new(e).with_context(|| {
                format!("component `{id}`: exclude_files entry `{e}` is not a valid glob")
            })
        })
        .collect::<Result<_>>()?;
    let mut mounts = Vec::new();
    let mut staged_any = false;
    if staging.exists() {
        std::fs::remove_dir_all(staging)
            .with_context(|| format!("cannot clear {}", staging.display()))?;
    }
    for file in files {
        match file {
            FileMount::Pattern(pattern) => {
                let full = app_dir.join(pattern);
                let matches = glob::glob(&full.to_string_lossy()).with_context(|| {
                    format!("component `{id}`: files entry `{pattern}` is not a valid glob")
                })?;
                for path in matches {
                    let path =
                        path.with_context(|| format!("component `{id}`: reading `{pattern}`"))?;
                    if !path.is_file() {
                        continue;
                    }
                    let relative = path.strip_prefix(app_dir).unwrap_or(&path);
                    if excluded.iter().any(|e| e.matches_path(relative)) {
                        continue;
                    }
                    let target = staging.join(relative);
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent)
                            .with_context(|| format!("cannot create {}", parent.display()))?;
                    }
                    std::fs::copy(&path, &target).with_context(|| {
                        format!(
                            "component `{id}`: cannot copy {} for mounting",
                            path.display()
                        )
                    })?;
                    staged_any = true;
                }
            }
            FileMount::Directory {
                source,
                destination,
            } => {
                let host = app_dir.join(source);
                if !host.is_dir() {
                    bail!(
                        "component `{id}`: files source `{source}` is not a directory ({})",
                        host.display()
                    );
                }
                mounts.push(Mount {
                    host,
                    guest: destination.clone(),
                });
            }
        }
    }
    if staged_any {
        mounts.insert(
            0,
            Mount {
                host: staging.to_path_buf(),
                guest: "/".into(),
            },
        );
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileMount> {
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("f = {text}"))
            .unwrap()
            .remove("f")
            .unwrap();
        FileMount::parse(&value)
    }

    #[test]
    fn entries_parse_as_spin_writes_them() {
        assert_eq!(
            parse(r#""static/**/*""#).unwrap(),
            FileMount::Pattern("static/**/*".into())
        );
        assert_eq!(
            parse(r#"{ source = "assets", destination = "/www" }"#).unwrap(),
            FileMount::Directory {
                source: "assets".into(),
                destination: "/www".into()
            }
        );
        for (bad, says) in [
            (r#"{ source = "a", destination = "www" }"#, "absolute"),
            (r#"{ source = "a" }"#, "both keys"),
            (
                r#"{ source = "a", destination = "/w", mode = "rw" }"#,
                "`mode`",
            ),
            (r#""../secrets/*""#, "leaves"),
            (r#"{ source = "/etc", destination = "/etc" }"#, "leaves"),
            ("3", "glob string"),
        ] {
            let e = format!("{:#}", parse(bad).unwrap_err());
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn patterns_are_staged_minus_exclusions() {
        let app = std::env::temp_dir().join(format!("files-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&app);
        std::fs::create_dir_all(app.join("static/css")).unwrap();
        std::fs::write(app.join("static/index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(app.join("static/css/site.css"), "body{}").unwrap();
        std::fs::write(app.join("static/secret.key"), "no").unwrap();
        let staging = app.join("state/files/web");
        let mounts = stage(
            "web",
            &[FileMount::Pattern("static/**/*".into())],
            &["**/*.key".into()],
            &app,
            &staging,
        )
        .unwrap();
        assert_eq!(
            mounts,
            vec![Mount {
                host: staging.clone(),
                guest: "/".into()
            }]
        );
        assert!(staging.join("static/index.html").is_file());
        assert!(staging.join("static/css/site.css").is_file());
        assert!(!staging.join("static/secret.key").exists());
        std::fs::remove_dir_all(&app).unwrap();
    }
}
