//! Settings from Spin variables. Every setting has a default here and a
//! declaration in `spin.toml`; an empty or undeclared variable means the
//! default. A value that does not parse is an error naming the variable.
//!
//! Settings every component reads (see `spin.toml` for the full list):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `cors_allowed_origins` | (none) | browser origins allowed to call the API |
//! | `json_body_limit_bytes` | 102400 | largest JSON request body |
//! | `api_rate_limit` / `api_rate_window_seconds` | 100 / 900 | all `/api/*` requests per client address |
//! | `jwt_issuer` / `jwt_audience` | `app-auth` / `app-api` | required `iss` / `aud` of access tokens |
//! | `jwt_public_keys` | (none) | keys tokens are verified with (see [`crate::security::tokens`]) |

use crate::http::cors::CorsPolicy;
use crate::http::rate_limit::Limit;
use crate::security::tokens::{PublicKeySet, TokenPolicy};
use anyhow::{Context as _, Result, bail};

pub const DEFAULT_JSON_BODY_LIMIT: u64 = 100 * 1024;
pub const DEFAULT_ISSUER: &str = "app-auth";
pub const DEFAULT_AUDIENCE: &str = "app-api";

/// A variable's value; `None` when empty or not declared.
pub fn var(name: &str) -> Result<Option<String>> {
    match spin_sdk::variables::get(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(spin_sdk::variables::Error::Undefined(_)) => Ok(None),
        Err(e) => Err(anyhow::anyhow!("{e}")).with_context(|| format!("read variable `{name}`")),
    }
}

/// A whole-number variable.
pub fn var_u64(name: &str, default: u64) -> Result<u64> {
    parse_u64(name, var(name)?.as_deref(), default)
}

pub fn parse_u64(name: &str, raw: Option<&str>, default: u64) -> Result<u64> {
    match raw.map(str::trim) {
        None => Ok(default),
        Some(text) => match text.parse::<u64>() {
            Ok(n) => Ok(n),
            Err(_) => bail!("variable `{name}` must be a whole number, got `{text}`"),
        },
    }
}

/// A rate limit from a count variable and a window variable.
pub fn var_limit(
    max_name: &str,
    default_max: u64,
    window_name: &str,
    default_window: u64,
) -> Result<Limit> {
    let window_secs = var_u64(window_name, default_window)?;
    if window_secs == 0 {
        bail!("variable `{window_name}` must be at least 1 second");
    }
    Ok(Limit {
        max: var_u64(max_name, default_max)?,
        window_secs,
    })
}

/// What the request pipeline of every component needs.
#[derive(Debug, Clone)]
pub struct CommonSettings {
    pub cors: CorsPolicy,
    pub json_body_limit: u64,
    pub api_limit: Limit,
    pub token_policy: TokenPolicy,
    /// The verification keys, or why they are unusable (answered with 503
    /// when a request needs them, so a key problem does not take down
    /// public routes).
    pub public_keys: Result<PublicKeySet, String>,
}

impl CommonSettings {
    pub fn load() -> Result<CommonSettings> {
        let public_keys = match var("jwt_public_keys")? {
            None => Err("no token verification keys are configured: set the `jwt_public_keys` variable (`cargo xtask up` generates development keys)".to_string()),
            Some(spec) => PublicKeySet::parse(&spec)
                .map_err(|e| format!("the `jwt_public_keys` variable is invalid: {e:#}")),
        };
        Ok(CommonSettings {
            cors: CorsPolicy::parse(&var("cors_allowed_origins")?.unwrap_or_default()),
            json_body_limit: var_u64("json_body_limit_bytes", DEFAULT_JSON_BODY_LIMIT)?,
            api_limit: var_limit("api_rate_limit", 100, "api_rate_window_seconds", 900)?,
            token_policy: TokenPolicy {
                issuer: var("jwt_issuer")?.unwrap_or_else(|| DEFAULT_ISSUER.into()),
                audience: var("jwt_audience")?.unwrap_or_else(|| DEFAULT_AUDIENCE.into()),
            },
            public_keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_or_name_the_variable() {
        assert_eq!(parse_u64("x", None, 7).unwrap(), 7);
        assert_eq!(parse_u64("x", Some(" 12 "), 7).unwrap(), 12);
        let e = parse_u64("api_rate_limit", Some("many"), 7).unwrap_err();
        assert!(e.to_string().contains("api_rate_limit"), "{e}");
    }
}
