//! `cargo xtask compat <component> [--against <release dir>] [--candidate FILE]`:
//! does a new build of one component keep the contracts the deployed
//! others rely on? The release directory defaults to `releases/`, the
//! repository's record of what is deployed; the candidate to the working
//! tree's contract, or a release manifest (`dist/<c>-<version>.json`).
//!
//! Each component states its contract in `components/<c>/contract.json`,
//! and every release manifest carries it ([`crate::release`]):
//! - `publishes`: events it sends (`type`, envelope `version`, JSON Schema
//!   of `data`);
//! - `consumes`: events it reads (`type`, the `versions` it accepts, the
//!   schema of the `data` it reads);
//! - `serves`: routes other components call by service chaining
//!   (`method`, `path`, JSON Schema of the body per status code);
//! - `calls`: such routes of another `component` it calls, with the
//!   statuses it handles and the part of each body it reads.
//!
//! The check is consumer-driven: what a consumer declares it reads must
//! still be there. A provider's schema satisfies a consumer's when every
//! property the consumer requires is still required with the same type
//! (recursively), no property it reads changed type, and an enum the
//! consumer knows gained no value it does not. Adding fields, statuses the
//! consumer does not call for, or events nobody reads is never a break.

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A component's contract (`contract.json`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    #[serde(rename = "$comment", default)]
    _comment: Option<Value>,
    #[serde(default)]
    pub publishes: Vec<PublishedEvent>,
    #[serde(default)]
    pub consumes: Vec<ConsumedEvent>,
    #[serde(default)]
    pub serves: Vec<Route>,
    #[serde(default)]
    pub calls: Vec<CalledRoute>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    pub data: Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumedEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub versions: Vec<u32>,
    pub data: Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub method: String,
    pub path: String,
    /// Status code → JSON Schema of the body.
    pub responses: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalledRoute {
    pub component: String,
    pub method: String,
    pub path: String,
    pub responses: BTreeMap<String, Value>,
}

impl Contract {
    pub fn from_value(value: &Value) -> Result<Contract> {
        Ok(Contract::deserialize(value)?)
    }

    fn served(&self, method: &str, path: &str) -> Option<&Route> {
        self.serves
            .iter()
            .find(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
    }

    fn published(&self, kind: &str) -> Option<&PublishedEvent> {
        self.publishes.iter().find(|e| e.kind == kind)
    }
}

/// One component at one version, with its contract.
#[derive(Debug, Clone)]
pub struct Party {
    pub name: String,
    pub version: String,
    pub contract: Contract,
}

impl Party {
    fn label(&self) -> String {
        format!("{} {}", self.name, self.version)
    }

    /// From a release manifest.
    pub fn from_manifest(manifest: &Value) -> Result<Party> {
        Ok(Party {
            name: crate::release::str_field(manifest, "name")?.to_string(),
            version: crate::release::str_field(manifest, "version")?.to_string(),
            contract: Contract::from_value(&manifest["contract"]).with_context(|| {
                format!(
                    "the contract in the release manifest of {}",
                    manifest["name"]
                )
            })?,
        })
    }
}

/// `cargo xtask compat <component> --against DIR [--candidate FILE]`.
pub fn command(root: &Path, args: &[String]) -> Result<()> {
    const USAGE: &str = "usage: cargo xtask compat <component> [--against <release dir, default releases/>] [--candidate <release manifest>]";
    let component = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .context(USAGE)?;
    let against = crate::flag_value(args, "--against")
        .map(PathBuf::from)
        .unwrap_or_else(|| record_dir(root));
    let candidate = match crate::flag_value(args, "--candidate") {
        Some(file) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("read {file}"))?;
            Party::from_manifest(&serde_json::from_str(&text).with_context(|| file.to_string())?)?
        }
        None => working_tree_party(root, component)?,
    };
    if candidate.name != *component {
        bail!("the candidate is `{}`, not `{component}`", candidate.name);
    }
    let deployed = deployed(&against)?;
    let breaks = check(&candidate, &deployed);
    let others: Vec<String> = deployed
        .iter()
        .filter(|p| p.name != candidate.name)
        .map(Party::label)
        .collect();
    if breaks.is_empty() {
        println!(
            "compatible: {} keeps every contract it shares with {}",
            candidate.label(),
            others.join(", ")
        );
        return Ok(());
    }
    for b in &breaks {
        eprintln!("BREAKING: {b}");
    }
    bail!(
        "{} breaks {} contract(s) the deployed components rely on",
        candidate.label(),
        breaks.len()
    )
}

/// The component as the working tree has it: its crate's version and its
/// `contract.json`.
pub fn working_tree_party(root: &Path, component: &str) -> Result<Party> {
    let dir = root.join("components").join(component);
    let path = dir.join("contract.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "read {} (every component states its contract there)",
            path.display()
        )
    })?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let cargo_toml = std::fs::read_to_string(dir.join("Cargo.toml"))?;
    let version = cargo_toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("version = \"")?.strip_suffix('"'))
        .with_context(|| {
            format!("components/{component}/Cargo.toml has no `version = \"x.y.z\"` of its own")
        })?;
    Ok(Party {
        name: component.to_string(),
        version: version.to_string(),
        contract: Contract::from_value(&value).with_context(|| path.display().to_string())?,
    })
}

/// The newest release of each component in `dir`.
pub fn deployed(dir: &Path) -> Result<Vec<Party>> {
    let mut newest: BTreeMap<String, Party> = BTreeMap::new();
    for manifest in crate::release::read_manifests(dir)? {
        let party = Party::from_manifest(&manifest)?;
        let newer = newest
            .get(&party.name)
            .is_none_or(|p| version_key(&party.version) > version_key(&p.version));
        if newer {
            newest.insert(party.name.clone(), party);
        }
    }
    if newest.is_empty() {
        bail!("{} holds no release manifests (*.json)", dir.display());
    }
    Ok(newest.into_values().collect())
}

fn version_key(version: &str) -> Vec<u64> {
    version.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// Every contract `candidate` would break if it replaced its deployed
/// version among `deployed`, each as a sentence naming both sides.
pub fn check(candidate: &Party, deployed: &[Party]) -> Vec<String> {
    let mut breaks = Vec::new();
    let others = deployed.iter().filter(|p| p.name != candidate.name);
    for other in others {
        // What the others call on the candidate...
        for call in other
            .contract
            .calls
            .iter()
            .filter(|c| c.component == candidate.name)
        {
            breaks.extend(route_breaks(call, candidate, other));
        }
        // ...and the events they read from it.
        for consumed in &other.contract.consumes {
            if let Some(published) = candidate.contract.published(&consumed.kind) {
                breaks.extend(event_breaks(published, consumed, candidate, other));
            } else if deployed_publisher(deployed, candidate, &consumed.kind) {
                breaks.push(format!(
                    "{} consumes `{}`, which {} no longer publishes",
                    other.label(),
                    consumed.kind,
                    candidate.label()
                ));
            }
        }
        // The reverse: what the candidate relies on from the others.
        for call in candidate
            .contract
            .calls
            .iter()
            .filter(|c| c.component == other.name)
        {
            breaks.extend(route_breaks(call, other, candidate));
        }
        for consumed in &candidate.contract.consumes {
            if let Some(published) = other.contract.published(&consumed.kind) {
                breaks.extend(event_breaks(published, consumed, other, candidate));
            }
        }
    }
    breaks
}

/// Whether the deployed version of the candidate's component published `kind`.
fn deployed_publisher(deployed: &[Party], candidate: &Party, kind: &str) -> bool {
    deployed
        .iter()
        .any(|p| p.name == candidate.name && p.contract.published(kind).is_some())
}

fn route_breaks(call: &CalledRoute, provider: &Party, caller: &Party) -> Vec<String> {
    let what = format!(
        "{} calls {} {} on {}",
        caller.label(),
        call.method,
        call.path,
        provider.label()
    );
    let Some(route) = provider.contract.served(&call.method, &call.path) else {
        return vec![format!("{what}, which no longer serves that route")];
    };
    let mut breaks = Vec::new();
    for (status, read) in &call.responses {
        match route.responses.get(status) {
            None => breaks.push(format!(
                "{what}: it no longer answers {status}, which the caller handles"
            )),
            Some(schema) => breaks.extend(
                schema_breaks(schema, read, "body")
                    .into_iter()
                    .map(|b| format!("{what}: {status} response: {b}")),
            ),
        }
    }
    breaks
}

fn event_breaks(
    published: &PublishedEvent,
    consumed: &ConsumedEvent,
    publisher: &Party,
    consumer: &Party,
) -> Vec<String> {
    let what = format!(
        "{} consumes `{}` from {}",
        consumer.label(),
        consumed.kind,
        publisher.label()
    );
    if !consumed.versions.contains(&published.version) {
        return vec![format!(
            "{what}: it is published as version {}, and the consumer reads versions {:?}",
            published.version, consumed.versions
        )];
    }
    schema_breaks(&published.data, &consumed.data, "data")
        .into_iter()
        .map(|b| format!("{what}: {b}"))
        .collect()
}

/// Where `provided` (what a producer sends) fails to give what a reader's
/// schema `read` relies on; `at` names the place (`data.items[]`).
pub fn schema_breaks(provided: &Value, read: &Value, at: &str) -> Vec<String> {
    let mut breaks = Vec::new();
    if let Some(want) = read.get("type") {
        match provided.get("type") {
            Some(got) if got == want => {}
            Some(got) => {
                breaks.push(format!("`{at}` is {got} where the reader expects {want}"));
                return breaks;
            }
            None => {
                breaks.push(format!(
                    "`{at}` has no declared type; the reader expects {want}"
                ));
                return breaks;
            }
        }
    }
    if let Some(known) = read.get("enum").and_then(Value::as_array) {
        match provided.get("enum").and_then(Value::as_array) {
            Some(values) => {
                for v in values.iter().filter(|v| !known.contains(v)) {
                    breaks.push(format!(
                        "`{at}` may now be {v}, which the reader does not know"
                    ));
                }
            }
            None => breaks.push(format!(
                "`{at}` is no longer limited to the values the reader knows ({})",
                Value::Array(known.clone())
            )),
        }
    }
    let required = |schema: &Value| -> Vec<String> {
        schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let provided_required = required(provided);
    for name in required(read) {
        if !provided_required.contains(&name) {
            breaks.push(format!(
                "`{at}.{name}` is no longer always present, and the reader requires it"
            ));
        }
    }
    if let Some(props) = read.get("properties").and_then(Value::as_object) {
        for (name, schema) in props {
            match provided.get("properties").and_then(|p| p.get(name)) {
                Some(theirs) => {
                    breaks.extend(schema_breaks(theirs, schema, &format!("{at}.{name}")))
                }
                None if provided_required.contains(name) => {}
                None => {
                    if !breaks.iter().any(|b| b.contains(&format!("`{at}.{name}`"))) {
                        breaks.push(format!("`{at}.{name}` is no longer described"));
                    }
                }
            }
        }
    }
    if let Some(items) = read.get("items") {
        match provided.get("items") {
            Some(theirs) => breaks.extend(schema_breaks(theirs, items, &format!("{at}[]"))),
            None => breaks.push(format!("`{at}[]` items are no longer described")),
        }
    }
    breaks
}

/// The release record kept in the repository (see [`crate::release::RECORD_DIR`]).
pub fn record_dir(root: &Path) -> PathBuf {
    root.join(crate::release::RECORD_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn root() -> PathBuf {
        crate::workspace_root()
    }

    fn party(name: &str) -> Party {
        working_tree_party(&root(), name).unwrap()
    }

    /// The deployed set as the repository records it, with `candidate` in
    /// place of its recorded version.
    fn breaks_against_record(candidate: &Party) -> Vec<String> {
        check(candidate, &deployed(&record_dir(&root())).unwrap())
    }

    #[test]
    fn every_component_of_the_working_tree_keeps_the_recorded_contracts() {
        for name in [
            "auth",
            "users",
            "orders",
            "order-events",
            "uploads",
            "metrics",
        ] {
            let breaks = breaks_against_record(&party(name));
            assert!(breaks.is_empty(), "{name}: {breaks:#?}");
        }
    }

    #[test]
    fn users_dropping_a_profile_field_orders_reads_is_named() {
        let mut users = party("users");
        let route = users
            .contract
            .serves
            .iter_mut()
            .find(|r| r.path == "/internal/users/{id}")
            .expect("users serves its profile route");
        let profile = route.responses.get_mut("200").unwrap();
        profile["required"] = json!(["id", "name", "role", "version", "createdAt", "updatedAt"]);
        profile["properties"]
            .as_object_mut()
            .unwrap()
            .remove("email");
        let breaks = breaks_against_record(&users);
        assert_eq!(breaks.len(), 1, "{breaks:#?}");
        assert!(breaks[0].contains("orders") && breaks[0].contains("GET /internal/users/{id}"));
        assert!(breaks[0].contains("`body.email`"), "{}", breaks[0]);
    }

    #[test]
    fn a_new_event_version_breaks_its_consumers_and_an_added_field_does_not() {
        let mut users = party("users");
        let deleted = users
            .contract
            .publishes
            .iter_mut()
            .find(|e| e.kind == "user.deleted")
            .unwrap();
        deleted.data["properties"]["reason"] = json!({ "type": "string" });
        assert!(breaks_against_record(&users).is_empty());
        users.contract.publishes[0].version = 2;
        let breaks = breaks_against_record(&users);
        assert_eq!(breaks.len(), 1, "{breaks:#?}");
        assert!(breaks[0].contains("order-events") && breaks[0].contains("version 2"));
    }

    #[test]
    fn no_longer_publishing_or_serving_what_others_use_is_named() {
        let mut users = party("users");
        users.contract.publishes.clear();
        users.contract.serves.clear();
        let breaks = breaks_against_record(&users);
        assert!(
            breaks.iter().any(|b| b.contains("no longer publishes")),
            "{breaks:#?}"
        );
        assert!(
            breaks.iter().any(|b| b.contains("no longer serves")),
            "{breaks:#?}"
        );
    }

    #[test]
    fn a_consumer_that_starts_reading_a_field_nobody_sends_is_named() {
        let mut events = party("order-events");
        let created = events
            .contract
            .consumes
            .iter_mut()
            .find(|e| e.kind == "order.created")
            .unwrap();
        created.data["required"]
            .as_array_mut()
            .unwrap()
            .push(json!("coupon"));
        let breaks = breaks_against_record(&events);
        assert_eq!(breaks.len(), 1, "{breaks:#?}");
        assert!(breaks[0].contains("`data.coupon`") && breaks[0].contains("orders"));
    }

    #[test]
    fn schemas_compare_types_enums_and_nesting() {
        let read = json!({"type": "object", "required": ["a"], "properties": {
            "a": {"type": "object", "required": ["b"], "properties": {"b": {"type": "integer"}}},
            "s": {"type": "string", "enum": ["x", "y"]}}});
        let same = read.clone();
        assert!(schema_breaks(&same, &read, "data").is_empty());
        let retyped = json!({"type": "object", "required": ["a"], "properties": {
            "a": {"type": "object", "required": ["b"], "properties": {"b": {"type": "string"}}},
            "s": {"type": "string", "enum": ["x", "y", "z"]}}});
        let breaks = schema_breaks(&retyped, &read, "data");
        assert_eq!(breaks.len(), 2, "{breaks:#?}");
        assert!(breaks[0].contains("`data.a.b`") && breaks[0].contains("\"string\""));
        assert!(breaks[1].contains("`data.s`") && breaks[1].contains("\"z\""));
    }
}
