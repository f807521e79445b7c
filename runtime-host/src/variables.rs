//! Application variables with Spin's semantics.
//!
//! Sources, highest precedence first: `--variable name=value`, the
//! environment (`SPIN_VARIABLE_NAME`, name upper-cased), the manifest default.
//! A `required` variable with no value from any source stops the host at start
//! with the variable's name and how to set it. Components see only the
//! variables their own `[component.x.variables]` table declares, each a template
//! over application variables (`"{{ api_key }}"`, literal text allowed).
//! Values of `secret = true` variables are never printed.

use crate::manifest::App;
use anyhow::{Result, bail};
use std::collections::BTreeMap;

/// Checks Spin's variable name rule: lower-case ASCII letters, digits and
/// single underscores, starting with a letter.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_');
    if !ok {
        bail!(
            "variable names use lower-case letters, digits and single underscores, starting with a letter (got `{name}`)"
        );
    }
    Ok(())
}

/// A template piece: literal text or a `{{ variable }}` reference.
#[derive(Debug, PartialEq)]
enum Part<'a> {
    Literal(&'a str),
    Var(&'a str),
}

fn parse_template(template: &str) -> Result<Vec<Part<'_>>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Part::Literal(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("unterminated `{{{{` in template `{template}`");
        };
        let name = after[..end].trim();
        validate_name(name)?;
        parts.push(Part::Var(name));
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        bail!("stray `}}}}` in template `{template}`");
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest));
    }
    Ok(parts)
}

/// The application variables a template refers to.
pub fn template_references(template: &str) -> Result<Vec<String>> {
    Ok(parse_template(template)?
        .into_iter()
        .filter_map(|p| match p {
            Part::Var(v) => Some(v.to_string()),
            Part::Literal(_) => None,
        })
        .collect())
}

/// Why a component's variable lookup failed; maps onto the WIT `error` variants.
#[derive(Debug)]
pub enum LookupError {
    InvalidName(String),
    Undefined(String),
}

/// Resolved application variables plus each component's templates.
#[derive(Debug, Default)]
pub struct Variables {
    values: BTreeMap<String, String>,
    secrets: Vec<String>,
    components: BTreeMap<String, BTreeMap<String, String>>,
}

impl Variables {
    /// Resolves every application variable from its sources. `cli` holds
    /// `--variable` pairs; `env` is the process environment.
    pub fn resolve(
        app: &App,
        cli: &[(String, String)],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Variables> {
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, decl) in &app.variables {
            let from_cli = cli.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v);
            let env_name = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
            let value = from_cli
                .cloned()
                .or_else(|| env(&env_name))
                .or_else(|| decl.default.clone());
            match value {
                Some(v) => {
                    values.insert(name.clone(), v);
                }
                None => missing.push(format!(
                    "`{name}` (pass `--variable {name}=VALUE` or set {env_name})"
                )),
            }
        }
        if !missing.is_empty() {
            bail!("required variable(s) not set: {}", missing.join(", "));
        }
        for (name, _) in cli {
            if !app.variables.contains_key(name) {
                bail!(
                    "--variable {name}=...: the manifest declares no variable `{name}` in [variables]"
                );
            }
        }
        let secrets = app
            .variables
            .iter()
            .filter(|(_, d)| d.secret)
            .map(|(n, _)| n.clone())
            .collect();
        let components = app
            .components
            .values()
            .map(|c| (c.id.clone(), c.variables.clone()))
            .collect();
        Ok(Variables {
            values,
            secrets,
            components,
        })
    }

    /// The value component `component` sees for its variable `name`.
    pub fn get(&self, component: &str, name: &str) -> Result<String, LookupError> {
        if validate_name(name).is_err() {
            return Err(LookupError::InvalidName(name.to_string()));
        }
        let template = self
            .components
            .get(component)
            .and_then(|vars| vars.get(name))
            .ok_or_else(|| LookupError::Undefined(name.to_string()))?;
        self.expand(template)
            .map_err(|_| LookupError::Undefined(name.to_string()))
    }

    /// Expands `{{ var }}` references against the application variables.
    pub fn expand(&self, template: &str) -> Result<String> {
        let mut out = String::new();
        for part in parse_template(template)? {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(v) => match self.values.get(v) {
                    Some(value) => out.push_str(value),
                    None => bail!("variable `{v}` is not declared in [variables]"),
                },
            }
        }
        Ok(out)
    }

    /// Lines describing each application variable for the start-up banner;
    /// secret values are masked.
    pub fn describe(&self) -> Vec<String> {
        self.values
            .iter()
            .map(|(n, v)| {
                if self.secrets.contains(n) {
                    format!("{n} = <secret>")
                } else {
                    format!("{n} = {v:?}")
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_mix_literals_and_references() {
        assert_eq!(
            parse_template("redis://{{ host }}:{{port}}/").unwrap(),
            vec![
                Part::Literal("redis://"),
                Part::Var("host"),
                Part::Literal(":"),
                Part::Var("port"),
                Part::Literal("/")
            ]
        );
        assert!(parse_template("{{ open").is_err());
        assert!(parse_template("{{ Bad }}").is_err());
    }

    #[test]
    fn names_follow_spin_rules() {
        assert!(validate_name("api_key2").is_ok());
        for bad in ["", "Api", "9a", "a__b", "a_", "a-b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
