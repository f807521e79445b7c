//! `spin.toml` (manifest version 2) → an [`App`] the host can run.
//!
//! The schema follows Spin's `crates/manifest/src/schema/v2.rs`: the same
//! tables, the same field names, unknown fields rejected. Everything that can
//! be checked before a single component is compiled is checked here, and every
//! error names the file and, where the TOML parser gives us a span, the line.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The parsed, validated application.
#[derive(Debug)]
pub struct App {
    pub name: String,
    /// Directory holding `spin.toml`; relative paths resolve against it.
    pub base_dir: PathBuf,
    pub manifest_path: PathBuf,
    pub variables: BTreeMap<String, VariableDecl>,
    pub components: BTreeMap<String, Component>,
    pub http_base: String,
    pub http_triggers: Vec<HttpTrigger>,
    pub redis_address: Option<String>,
    pub redis_triggers: Vec<RedisTrigger>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
    /// Accepted for Spin compatibility; not used by the host.
    #[serde(default)]
    #[allow(dead_code)]
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Component {
    pub id: String,
    pub source: Source,
    pub environment: BTreeMap<String, String>,
    /// Component-level variables: name → template (`"{{ app_var }}"`).
    pub variables: BTreeMap<String, String>,
    pub key_value_stores: Vec<String>,
    pub sqlite_databases: Vec<String>,
    pub allowed_outbound_hosts: Vec<String>,
    /// What the component may read from its filesystem ([`crate::files`]).
    pub files: Vec<crate::files::FileMount>,
    pub exclude_files: Vec<String>,
}

/// Where a component's `.wasm` comes from; [`crate::sources::resolve`]
/// turns each into a file on disk.
#[derive(Debug, Clone)]
pub enum Source {
    /// `source = "x.wasm"`, resolved against the manifest's directory.
    Local(PathBuf),
    /// `source = { url = "...", digest = "sha256:..." }`.
    Remote(crate::sources::Remote),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Local(path) => write!(f, "{}", path.display()),
            Source::Remote(r) => write!(f, "{}", r.url),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpTrigger {
    pub component: String,
    pub route: RouteSpec,
    /// 1-based line of the trigger's `route` in the manifest, for errors.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSpec {
    Route(String),
    /// `route = { private = true }`: reachable only through service chaining.
    Private,
}

#[derive(Debug, Clone)]
pub struct RedisTrigger {
    pub component: String,
    pub channel: String,
    pub address: Option<String>,
}

mod raw;

use raw::*;

/// 1-based line number of a byte offset in `text`.
/// Any offset is accepted: one past the end, or inside a character, still
/// names a line instead of panicking.
pub fn line_of(text: &str, offset: usize) -> usize {
    let before = &text.as_bytes()[..offset.min(text.len())];
    before.iter().filter(|b| **b == b'\n').count() + 1
}

impl App {
    /// Reads and validates a manifest. Errors name the file and line.
    pub fn load(path: &Path) -> Result<App> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<App> {
        let shown = path.display();
        let raw: RawManifest =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{shown}: invalid manifest: {e}"))?;
        let at = |offset: usize| format!("{shown}:{}", line_of(text, offset));

        match raw.spin_manifest_version.get_ref() {
            toml::Value::Integer(2) => {}
            toml::Value::String(s) if s == "1" => bail!(
                "{}: spin_manifest_version \"1\" is not supported; convert the manifest to version 2 (`spin doctor` can do it)",
                at(raw.spin_manifest_version.span().start)
            ),
            other => bail!(
                "{}: spin_manifest_version must be 2, found {other}",
                at(raw.spin_manifest_version.span().start)
            ),
        }

        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base_dir = if base_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base_dir
        };

        let mut variables = BTreeMap::new();
        for (name, decl) in raw.variables {
            let line = at(decl.span().start);
            let decl = decl.into_inner();
            crate::variables::validate_name(&name)
                .with_context(|| format!("{line}: invalid variable name `{name}`"))?;
            if decl.required && decl.default.is_some() {
                bail!("{line}: variable `{name}` cannot be both required and have a default");
            }
            if !decl.required && decl.default.is_none() {
                bail!("{line}: variable `{name}` needs either `required = true` or a `default`");
            }
            variables.insert(name, decl);
        }

        let mut components = BTreeMap::new();
        for (id, raw_component) in raw.component {
            let line = at(raw_component.span().start);
            validate_component_id(&id).with_context(|| format!("{line}: invalid component id"))?;
            let c = raw_component.into_inner();
            let source_line = at(c.source.span().start);
            let source = match c.source.into_inner() {
                RawSource::Path(p) => Source::Local(base_dir.join(p)),
                RawSource::Remote { url, digest } => Source::Remote(
                    crate::sources::Remote::parse(&url, digest.as_deref())
                        .with_context(|| format!("{source_line}: component `{id}`"))?,
                ),
                RawSource::Registry { package, .. } => bail!(
                    "{source_line}: component `{id}` comes from a registry package ({package}); runtime-host runs a path or a `{{ url, digest }}` source only"
                ),
            };
            let files = c
                .files
                .iter()
                .map(crate::files::FileMount::parse)
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("{line}: component `{id}`"))?;
            if c.dependencies.as_ref().is_some_and(|d| !d.is_empty()) {
                bail!(
                    "{line}: component `{id}` declares `dependencies`; runtime-host does not compose component dependencies"
                );
            }
            for (name, template) in &c.variables {
                crate::variables::validate_name(name).with_context(|| {
                    format!("{line}: component `{id}` has an invalid variable name `{name}`")
                })?;
                for referenced in crate::variables::template_references(template)
                    .with_context(|| format!("{line}: component `{id}` variable `{name}`"))?
                {
                    if !variables.contains_key(&referenced) {
                        bail!(
                            "{line}: component `{id}` variable `{name}` refers to `{{{{ {referenced} }}}}`, which is not declared in [variables]"
                        );
                    }
                }
            }
            let mut allowed_outbound_hosts = c.allowed_outbound_hosts;
            allowed_outbound_hosts.extend(c.allowed_http_hosts);
            components.insert(
                id.clone(),
                Component {
                    id,
                    source,
                    environment: c.environment,
                    variables: c.variables,
                    key_value_stores: c.key_value_stores,
                    sqlite_databases: c.sqlite_databases,
                    allowed_outbound_hosts,
                    files,
                    exclude_files: c.exclude_files,
                },
            );
        }

        let mut http_triggers = Vec::new();
        let mut redis_triggers = Vec::new();
        for t in raw.trigger.http {
            let line = line_of(text, t.route.span().start);
            if t.static_response.is_some() {
                bail!(
                    "{shown}:{line}: `static_response` triggers are not supported by runtime-host; serve the response from a component"
                );
            }
            if let Some(exec) = &t.executor {
                let kind = exec.get("type").and_then(|v| v.as_str()).unwrap_or("");
                if kind != "spin" && kind != "http" {
                    bail!(
                        "{shown}:{line}: executor type `{kind}` is not supported; only WASI HTTP components (executor `http`) run here"
                    );
                }
            }
            let route = match t.route.into_inner() {
                RawRoute::Route(r) => RouteSpec::Route(r),
                RawRoute::Private { private: true } => RouteSpec::Private,
                RawRoute::Private { private: false } => bail!(
                    "{shown}:{line}: `route = {{ private = false }}` is not valid; give a route string or `{{ private = true }}`"
                ),
            };
            http_triggers.push(HttpTrigger {
                component: t.component,
                route,
                line,
            });
        }
        for t in raw.trigger.redis {
            redis_triggers.push(RedisTrigger {
                component: t.component,
                channel: t.channel,
                address: t.address,
            });
        }

        for t in &http_triggers {
            if !components.contains_key(&t.component) {
                bail!(
                    "{shown}:{}: [[trigger.http]] refers to component `{}`, which has no [component.{}] table",
                    t.line,
                    t.component,
                    t.component
                );
            }
        }
        for t in &redis_triggers {
            if !components.contains_key(&t.component) {
                bail!(
                    "{shown}: [[trigger.redis]] for channel `{}` refers to component `{}`, which has no [component.{}] table",
                    t.channel,
                    t.component,
                    t.component
                );
            }
        }

        let http_base = raw
            .application
            .trigger
            .http
            .and_then(|h| h.base)
            .unwrap_or_else(|| "/".to_string());

        Ok(App {
            name: raw.application.name,
            base_dir,
            manifest_path: path.to_path_buf(),
            variables,
            components,
            http_base,
            http_triggers,
            redis_address: raw.application.trigger.redis.map(|r| r.address),
            redis_triggers,
        })
    }

    /// Checks that every component's local `.wasm` exists, naming the
    /// component and the command that builds it. (`url` sources are
    /// fetched later, by [`crate::sources::resolve`].)
    pub fn check_sources(&self) -> Result<()> {
        for c in self.components.values() {
            let Source::Local(path) = &c.source else {
                continue;
            };
            if !path.is_file() {
                bail!(
                    "{}: component `{}`: source {} does not exist; build the components first (`cargo xtask build`, or `spin build`)",
                    self.manifest_path.display(),
                    c.id,
                    path.display()
                );
            }
        }
        Ok(())
    }
}

/// Spin's rule: lower-case words of letters and digits joined by `-`, starting
/// with a letter... in practice Spin accepts kebab-case ids with `_` too.
fn validate_component_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "`{id}` must be kebab-case: lower-case letters, digits and `-`, starting with a letter"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<App> {
        App::parse(text, Path::new("spin.toml"))
    }

    const MINIMAL: &str = r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
greeting = { default = "hi" }
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = "web.wasm"
variables = { message = "{{ greeting }}" }
"#;

    #[test]
    fn parses_a_minimal_manifest() {
        let app = parse(MINIMAL).unwrap();
        assert_eq!(app.http_triggers.len(), 1);
        assert_eq!(app.components["web"].variables["message"], "{{ greeting }}");
    }

    #[test]
    fn unknown_fields_name_the_line() {
        let text = MINIMAL.replace("source = \"web.wasm\"", "source = \"web.wasm\"\nsorce = 1");
        let err = format!("{:#}", parse(&text).unwrap_err());
        assert!(err.contains("sorce"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn trigger_for_a_missing_component_is_an_error() {
        let text = MINIMAL.replace("component = \"web\"", "component = \"nope\"");
        let err = format!("{:#}", parse(&text).unwrap_err());
        assert!(err.contains("spin.toml:8") && err.contains("nope"), "{err}");
    }

    #[test]
    fn undeclared_variable_reference_is_an_error() {
        let text = MINIMAL.replace("{{ greeting }}", "{{ other }}");
        let err = format!("{:#}", parse(&text).unwrap_err());
        assert!(err.contains("other"), "{err}");
    }
}
