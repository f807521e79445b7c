//! The raw serde schema of `spin.toml`, as in Spin's
//! `crates/manifest/src/schema/v2.rs`: unknown fields rejected, spans kept
//! for error lines. [`super::App::parse`] validates it into an [`super::App`].

use super::VariableDecl;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    pub(super) spin_manifest_version: Spanned<toml::Value>,
    pub(super) application: RawApplication,
    #[serde(default)]
    pub(super) variables: BTreeMap<String, Spanned<VariableDecl>>,
    #[serde(default)]
    pub(super) trigger: RawTriggers,
    #[serde(default)]
    pub(super) component: BTreeMap<String, Spanned<RawComponent>>,
}

/// Trigger types runtime-host runs; another type (e.g. a plugin's) is an
/// error naming the supported ones.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTriggers {
    #[serde(default)]
    pub(super) http: Vec<RawHttpTrigger>,
    #[serde(default)]
    pub(super) redis: Vec<RawRedisTrigger>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApplication {
    pub(super) name: String,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) version: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) description: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) authors: Vec<String>,
    #[serde(default)]
    pub(super) trigger: RawAppTriggers,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) tool: Option<toml::Table>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawAppTriggers {
    #[serde(default)]
    pub(super) http: Option<RawAppHttp>,
    #[serde(default)]
    pub(super) redis: Option<RawAppRedis>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAppHttp {
    #[serde(default)]
    pub(super) base: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAppRedis {
    pub(super) address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawComponent {
    pub(super) source: Spanned<RawSource>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) variables: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) environment: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) files: Vec<toml::Value>,
    #[serde(default)]
    pub(super) exclude_files: Vec<String>,
    #[serde(default)]
    pub(super) allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub(super) allowed_http_hosts: Vec<String>,
    #[serde(default)]
    pub(super) key_value_stores: Vec<String>,
    #[serde(default)]
    pub(super) sqlite_databases: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) ai_models: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) build: Option<toml::Table>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) tool: Option<toml::Table>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) dependencies_inherit_configuration: bool,
    #[serde(default)]
    pub(super) dependencies: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawSource {
    Path(String),
    /// `{ url, digest }`; `digest` is required, checked by [`super::App::parse`]
    /// so that its absence is an error naming the line.
    Remote {
        url: String,
        #[serde(default)]
        digest: Option<String>,
    },
    /// `{ registry, package, version }`: refused with a message, not run.
    Registry {
        package: String,
        #[serde(default)]
        #[allow(dead_code)]
        registry: Option<String>,
        #[allow(dead_code)]
        version: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttpTrigger {
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) id: Option<String>,
    pub(super) route: Spanned<RawRoute>,
    pub(super) component: String,
    #[serde(default)]
    pub(super) executor: Option<toml::Table>,
    #[serde(default)]
    pub(super) static_response: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawRoute {
    Route(String),
    Private { private: bool },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedisTrigger {
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) id: Option<String>,
    pub(super) channel: String,
    pub(super) component: String,
    #[serde(default)]
    pub(super) address: Option<String>,
}
