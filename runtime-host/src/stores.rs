//! The key-value stores and SQLite databases an app's components name:
//! embedded by default, as a runtime config says otherwise, each wrapped
//! for `--faults`.

use crate::capabilities::key_value::{self, FaultyStore, KeyValueStores, SqliteKeyValue};
use crate::capabilities::sqlite::{self, Database, Databases};
use crate::faults::Faults;
use crate::manifest::{App, Component};
use anyhow::{Context as _, Result};
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
    for label in labels(app, |c| &c.key_value_stores) {
        let store = rc
            .key_value_store(label, state_dir)
            .await
            .with_context(|| format!("key-value store `{label}`"))?;
        let store = match store {
            Some(s) => s,
            None if label == "default" => {
                let conn = key_value::open_database(&state_dir.join("sqlite_key_value.db"))?;
                Arc::new(SqliteKeyValue::new(conn, label))
            }
            None => return Err(no_backend("key-value store", label, "key_value_store")),
        };
        kv.insert(label, FaultyStore::wrap(store, faults));
    }

    let mut dbs = Databases::default();
    for label in labels(app, |c| &c.sqlite_databases) {
        let path = match rc.sqlite_path(label, state_dir)? {
            Some(p) => p,
            None if label == "default" => sqlite::default_path(state_dir, label),
            None => return Err(no_backend("SQLite database", label, "sqlite_database")),
        };
        dbs.insert(label, Database::new(path, faults.clone())?);
    }
    Ok((kv, dbs))
}

/// Every label the components name in `field`, once each.
fn labels<'a>(
    app: &'a App,
    field: impl Fn(&'a Component) -> &'a Vec<String>,
) -> BTreeSet<&'a String> {
    app.components.values().flat_map(field).collect()
}

fn no_backend(what: &str, label: &str, table: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "a component uses {what} `{label}`, which has no backend: only `default` exists without configuration; add `[{table}.{label}]` to a runtime-config file (--runtime-config-file)"
    )
}
