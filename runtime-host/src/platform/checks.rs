//! Before listening: what in the manifest, the runtime config and the
//! flags the edge platform cannot run, every problem at once, each naming
//! the file and line (as the manifest module does, [`line_of`]) or the
//! flag, and what to do instead.
//!
//! The manifest is read here on its own, loosely (unknown fields ignored),
//! so that what the edge lacks is reported even where this host's own
//! manifest rules would stop at the first problem (a trigger type it does
//! not know, say). A file that is not valid TOML is left to the manifest
//! module, whose error names the line.

use super::{Deployment, EdgeLimits};
use crate::manifest::line_of;
use anyhow::{Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use toml::Spanned;

/// What to use instead of a manifest with SQLite or the Redis trigger.
const EDGE_MANIFEST_HINT: &str = "For the edge, use the edge manifest `deploy/edge/spin.toml` written by `cargo xtask edge-manifest`: it has none of these.";

pub fn edge(d: &Deployment) -> Result<()> {
    let mut problems = flags(d);
    let mut in_files = Vec::new();
    if let Ok(text) = std::fs::read_to_string(d.manifest) {
        in_files.extend(manifest(&text, d.manifest));
    }
    if let Some(path) = d.runtime_config
        && let Ok(text) = std::fs::read_to_string(path)
    {
        in_files.extend(runtime_config(&text, path));
    }
    let in_files_found = !in_files.is_empty();
    problems.extend(in_files);
    if problems.is_empty() {
        return Ok(());
    }
    let mut message = format!(
        "the app cannot run on the edge platform (--platform edge) as configured; {} problem{}:\n  - {}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems.join("\n  - ")
    );
    if in_files_found {
        message.push('\n');
        message.push_str(EDGE_MANIFEST_HINT);
    }
    bail!(message)
}

fn flags(d: &Deployment) -> Vec<String> {
    let mut problems = Vec::new();
    if d.max_memory_mib > EdgeLimits::MEMORY_MIB {
        problems.push(format!(
            "--max-memory {} is over the edge platform's limit of {} MiB per instance; lower it or drop the flag (the default is {} MiB)",
            d.max_memory_mib,
            EdgeLimits::MEMORY_MIB,
            EdgeLimits::MEMORY_MIB
        ));
    }
    if d.request_timeout_secs > EdgeLimits::REQUEST_SECONDS {
        problems.push(format!(
            "--request-timeout {} is over the edge platform's limit of {} s per request; lower it or drop the flag (the default is {} s)",
            d.request_timeout_secs,
            EdgeLimits::REQUEST_SECONDS,
            EdgeLimits::REQUEST_SECONDS
        ));
    }
    if let Some(backend) = d.message_backend {
        problems.push(format!(
            "--message-backend {backend}: the edge platform has no message trigger to deliver to; drop the flag"
        ));
    }
    problems
}

#[derive(Deserialize, Default)]
struct ManifestView {
    #[serde(default)]
    application: ApplicationView,
    /// Trigger type → its `[[trigger.TYPE]]` tables.
    #[serde(default)]
    trigger: BTreeMap<Spanned<String>, Vec<Spanned<TriggerView>>>,
    #[serde(default)]
    component: BTreeMap<String, ComponentView>,
}

#[derive(Deserialize, Default)]
struct ApplicationView {
    /// Trigger type → its `[application.trigger.TYPE]` settings.
    #[serde(default)]
    trigger: BTreeMap<Spanned<String>, toml::Value>,
}

#[derive(Deserialize)]
struct TriggerView {
    #[serde(default)]
    component: Option<toml::Value>,
}

#[derive(Deserialize)]
struct ComponentView {
    #[serde(default)]
    sqlite_databases: Option<Spanned<Vec<String>>>,
}

/// The manifest's problems, in the order they appear in the file.
fn manifest(text: &str, path: &Path) -> Vec<String> {
    let Ok(view) = toml::from_str::<ManifestView>(text) else {
        return Vec::new();
    };
    let at = |offset: usize| format!("{}:{}", path.display(), line_of(text, offset));
    let mut problems: Vec<(usize, String)> = Vec::new();
    for kind in view.application.trigger.keys() {
        if kind.get_ref() != "http" {
            problems.push((
                kind.span().start,
                format!(
                    "{}: [application.trigger.{}]: the edge platform runs the HTTP trigger only; remove the table",
                    at(kind.span().start),
                    kind.get_ref()
                ),
            ));
        }
    }
    for (kind, triggers) in &view.trigger {
        if kind.get_ref() == "http" {
            continue;
        }
        for t in triggers {
            let component = match &t.get_ref().component {
                Some(toml::Value::String(c)) => format!(" for component `{c}`"),
                _ => String::new(),
            };
            problems.push((
                t.span().start,
                format!(
                    "{}: [[trigger.{}]]{component}: the edge platform runs the HTTP trigger only; remove the trigger",
                    at(t.span().start),
                    kind.get_ref()
                ),
            ));
        }
    }
    for (id, c) in &view.component {
        let Some(dbs) = &c.sqlite_databases else {
            continue;
        };
        if dbs.get_ref().is_empty() {
            continue;
        }
        problems.push((
            dbs.span().start,
            format!(
                "{}: component `{id}`: sqlite_databases = {:?}: the edge platform has no SQLite; remove it (records go to PostgreSQL through the `database_url` variable)",
                at(dbs.span().start),
                dbs.get_ref()
            ),
        ));
    }
    problems.sort_by_key(|(offset, _)| *offset);
    problems.into_iter().map(|(_, p)| p).collect()
}

#[derive(Deserialize)]
struct RuntimeConfigView {
    #[serde(default)]
    sqlite_database: BTreeMap<Spanned<String>, toml::Value>,
}

/// The runtime config's problems: its SQLite databases.
fn runtime_config(text: &str, path: &Path) -> Vec<String> {
    let Ok(view) = toml::from_str::<RuntimeConfigView>(text) else {
        return Vec::new();
    };
    view.sqlite_database
        .keys()
        .map(|label| {
            format!(
                "{}:{}: [sqlite_database.{}]: the edge platform has no SQLite; remove the table (records go to PostgreSQL through the `database_url` variable)",
                path.display(),
                line_of(text, label.span().start),
                label.get_ref()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"spin_manifest_version = 2
[application]
name = "t"
[application.trigger.redis]
address = "redis://127.0.0.1:6379"

[[trigger.http]]
route = "/..."
component = "web"

[[trigger.redis]]
channel = "events"
component = "worker"

[[trigger.cron]]
cron_expression = "* * * * *"
component = "web"

[component.web]
source = "web.wasm"
sqlite_databases = ["default"]
key_value_stores = ["default"]

[component.worker]
source = "worker.wasm"
sqlite_databases = []
"#;

    fn problems(text: &str) -> Vec<String> {
        manifest(text, Path::new("spin.toml"))
    }

    #[test]
    fn every_problem_is_named_with_its_line_in_file_order() {
        let found = problems(MANIFEST);
        let lines: Vec<&str> = found
            .iter()
            .map(|p| p.split(": ").next().unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                "spin.toml:4",
                "spin.toml:11",
                "spin.toml:15",
                "spin.toml:21"
            ],
            "{found:#?}"
        );
        assert!(
            found[0].contains("[application.trigger.redis]"),
            "{}",
            found[0]
        );
        assert!(
            found[1].contains("[[trigger.redis]] for component `worker`"),
            "{}",
            found[1]
        );
        assert!(found[2].contains("[[trigger.cron]]"), "{}", found[2]);
        assert!(
            found[3].contains("component `web`: sqlite_databases"),
            "{}",
            found[3]
        );
    }

    #[test]
    fn an_http_only_manifest_without_sqlite_passes() {
        let text = MANIFEST
            .replace(
                "[application.trigger.redis]\naddress = \"redis://127.0.0.1:6379\"\n",
                "",
            )
            .replace(
                "[[trigger.redis]]\nchannel = \"events\"\ncomponent = \"worker\"\n",
                "",
            )
            .replace(
                "[[trigger.cron]]\ncron_expression = \"* * * * *\"\ncomponent = \"web\"\n",
                "",
            )
            .replace("sqlite_databases = [\"default\"]\n", "");
        assert_eq!(problems(&text), Vec::<String>::new());
    }

    #[test]
    fn invalid_toml_is_left_to_the_manifest_module() {
        assert!(problems("spin_manifest_version = ").is_empty());
    }

    #[test]
    fn runtime_config_sqlite_databases_are_named_with_their_lines() {
        let text = "[key_value_store.default]\ntype = \"spin\"\n\n[sqlite_database.default]\ntype = \"spin\"\n";
        let found = runtime_config(text, Path::new("rc.toml"));
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("rc.toml:4: [sqlite_database.default]"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn flags_over_the_limits_are_named_with_the_limit() {
        let d = Deployment {
            manifest: Path::new("missing.toml"),
            runtime_config: None,
            message_backend: Some("redis"),
            max_memory_mib: 256,
            request_timeout_secs: 30,
        };
        let err = format!("{:#}", edge(&d).unwrap_err());
        assert!(err.contains("2 problems"), "{err}");
        assert!(
            err.contains("--max-memory 256") && err.contains("128 MiB"),
            "{err}"
        );
        assert!(err.contains("--message-backend redis"), "{err}");
        assert!(!err.contains("edge-manifest"), "flags alone: {err}");
        let ok = Deployment {
            message_backend: None,
            max_memory_mib: 64,
            ..d
        };
        assert!(edge(&ok).is_ok());
    }
}
