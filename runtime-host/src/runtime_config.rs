//! Spin's runtime-config TOML (`--runtime-config-file`): which backend each
//! key-value store and SQLite database label uses.
//!
//! ```toml
//! [key_value_store.default]
//! type = "spin"                # embedded SQLite file
//! path = "data/kv.db"          # relative to this file's directory
//!
//! [key_value_store.shared]
//! type = "redis"
//! url = "redis://127.0.0.1:6379"
//!
//! [sqlite_database.default]
//! type = "spin"
//! path = "data/app.db"
//! ```
//!
//! Unknown tables, keys and types are errors that name the file.

use crate::capabilities::key_value::{self, KeyValueStore, SqliteKeyValue};
use anyhow::{Context as _, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct RuntimeConfig {
    file: PathBuf,
    key_value: BTreeMap<String, StoreConfig>,
    sqlite: BTreeMap<String, StoreConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, StoreConfig>,
    #[serde(default)]
    sqlite_database: BTreeMap<String, StoreConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum StoreConfig {
    Spin {
        #[serde(default)]
        path: Option<PathBuf>,
    },
    Redis {
        url: String,
    },
}

impl RuntimeConfig {
    pub fn load(path: &Path) -> Result<RuntimeConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read runtime config {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Reads a runtime config's text; `path` names it in errors and
    /// anchors its relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<RuntimeConfig> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: invalid runtime config: {e}", path.display()))?;
        Ok(RuntimeConfig {
            file: path.to_path_buf(),
            key_value: raw.key_value_store,
            sqlite: raw.sqlite_database,
        })
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.file.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    /// The backend for key-value label `label`, if the config names one.
    /// Whether any store lives on Redis: then messages go through Redis too.
    pub fn uses_redis(&self) -> bool {
        self.key_value
            .values()
            .any(|c| matches!(c, StoreConfig::Redis { .. }))
    }

    pub async fn key_value_store(
        &self,
        label: &str,
        state_dir: &Path,
    ) -> Result<Option<Arc<dyn KeyValueStore>>> {
        let Some(cfg) = self.key_value.get(label) else {
            return Ok(None);
        };
        match cfg {
            StoreConfig::Spin { path } => {
                let file = match path {
                    Some(p) => self.resolve(p),
                    None => state_dir.join("sqlite_key_value.db"),
                };
                let conn = key_value::open_database(&file)?;
                Ok(Some(Arc::new(SqliteKeyValue::new(conn, label))))
            }
            StoreConfig::Redis { url } => Ok(Some(Arc::new(
                key_value::RedisKeyValue::connect(url)
                    .await
                    .with_context(|| {
                        format!("{}: [key_value_store.{label}]", self.file.display())
                    })?,
            ))),
        }
    }

    /// The file for SQLite label `label`, if the config names one.
    pub fn sqlite_path(&self, label: &str, state_dir: &Path) -> Result<Option<PathBuf>> {
        match self.sqlite.get(label) {
            None => Ok(None),
            // Spin resolves SQLite paths against the working directory.
            Some(StoreConfig::Spin { path: Some(p) }) => Ok(Some(p.clone())),
            Some(StoreConfig::Redis { .. }) => bail!(
                "{}: [sqlite_database.{label}] cannot be of type \"redis\"; use type = \"spin\"",
                self.file.display()
            ),
            Some(StoreConfig::Spin { path: None }) => {
                if label == "default" {
                    Ok(Some(state_dir.join("sqlite_db.db")))
                } else {
                    bail!(
                        "{}: [sqlite_database.{label}] needs a `path`",
                        self.file.display()
                    )
                }
            }
        }
    }
}
