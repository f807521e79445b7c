//! The key-value stores and SQLite databases an app's components name:
//! embedded by default, as a runtime config says otherwise, each wrapped
//! for `--faults`.

use crate::capabilities::key_value::{self, FaultyStore, KeyValueStores, SqliteKeyValue};
use crate::capabilities::sqlite::{self, Database, Databases};
use crate::faults::Faults;
use crate::manifest::App;
use anyhow::{bail, Context as _, Result};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// Opens every key-value store and database the manifest names, embedded by
/// default, as the runtime config says otherwise.
pub async fn open(
    app: &App,
    state_dir: &Path,
    rc: &crate::runtime_config::RuntimeConfig,
    faults: &Arc<Faults>,
) -> Result<(KeyValueStores, Databases)> {
    let mut kv = KeyValueStores::default();
    let kv_labels: BTreeSet<&String> = app
        .components
        .values()
        .flat_map(|c| c.key_value_stores.iter())
        .collect();
    let mut default_kv_db = None;
    for label in kv_labels {
        let store = rc
            .key_value_store(label, state_dir)
            .await
            .with_context(|| format!("key-value store `{label}`"))?;
        match store {
            Some(s) => kv.insert(label, FaultyStore::wrap(s, faults)),
            None if label == "default" => {
                let conn = match &default_kv_db {
                    Some(c) => Arc::clone(c),
                    None => {
                        let c = key_value::open_database(&state_dir.join("sqlite_key_value.db"))?;
                        default_kv_db = Some(c.clone());
                        c
                    }
                };
                kv.insert(
                    label,
                    FaultyStore::wrap(Arc::new(SqliteKeyValue::new(conn, label)), faults),
                );
            }
            None => bail!(
                "a component uses key-value store `{label}`, which has no backend: only `default` exists without configuration; add `[key_value_store.{label}]` to a runtime-config file (--runtime-config-file)"
            ),
        }
    }

    let mut dbs = Databases::default();
    let db_labels: BTreeSet<&String> = app
        .components
        .values()
        .flat_map(|c| c.sqlite_databases.iter())
        .collect();
    for label in db_labels {
        let path = match rc.sqlite_path(label, state_dir)? {
            Some(p) => p,
            None if label == "default" => sqlite::default_path(state_dir, label),
            None => bail!(
                "a component uses SQLite database `{label}`, which has no backend: only `default` exists without configuration; add `[sqlite_database.{label}]` to a runtime-config file (--runtime-config-file)"
            ),
        };
        dbs.insert(label, Database::new(path, faults.clone())?);
    }
    Ok((kv, dbs))
}
