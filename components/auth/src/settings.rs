//! The auth component's settings, from Spin variables (declared in
//! `spin.toml`):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `jwt_signing_key` (secret) | (none: 503) | `kid:base64-key-pair`, see [`crate::signing`] |
//! | `access_token_ttl_seconds` | 900 | access-token lifetime |
//! | `refresh_token_ttl_seconds` | 1209600 | refresh-token lifetime (14 days) |
//! | `credentials_rate_limit` / `credentials_rate_window_seconds` | 10 / 3600 | register + login attempts per client address |
//! | `login_max_failures` / `login_failure_window_seconds` | 5 / 900 | failed logins per (client address, e-mail) within the window that lock the pair |
//! | `login_lockout_seconds` | 900 | how long a locked pair stays locked |
//! | `admin_email` | (none) | the first account registering with this address becomes an admin, once: only while the app has never had an admin |

use crate::lockout::LockoutPolicy;
use crate::signing::Signer;
use anyhow::Result;
use app_common::ApiError;
use app_common::config::{CommonSettings, var, var_limit, var_u64};
use app_common::http::rate_limit::Limit;
use app_common::http::validate::normalize_email;
use app_common::security::tokens::PublicKeySet;

pub struct AuthSettings {
    /// The signer, or why there is none (answered with 503).
    signer: Result<Signer, String>,
    /// `jwt_public_keys` plus the signing key's public key.
    verification_keys: Result<PublicKeySet, String>,
    pub refresh_ttl_secs: u64,
    pub credentials_limit: Limit,
    pub lockout: LockoutPolicy,
    pub admin_email: Option<String>,
}

impl AuthSettings {
    pub fn load(common: &CommonSettings) -> Result<AuthSettings> {
        let access_ttl_secs = var_u64("access_token_ttl_seconds", 900)?;
        let signer = match var("jwt_signing_key")? {
            None => Err("no token signing key is configured: set the secret variable `jwt_signing_key` (`cargo xtask up` generates a development key)".to_string()),
            Some(spec) => Signer::parse(&spec, common.token_policy.clone(), access_ttl_secs)
                .map_err(|e| format!("the `jwt_signing_key` variable is invalid: {e:#}")),
        };
        let verification_keys = match (&common.public_keys, &signer) {
            (Ok(keys), Ok(signer)) => {
                let mut keys = keys.clone();
                if !keys.contains(signer.kid()) {
                    keys.add(signer.kid(), &signer.public_key())
                        .map_err(|e| e.to_string())
                        .map(|()| keys)
                } else {
                    Ok(keys)
                }
            }
            (Err(_), Ok(signer)) => {
                let mut keys = PublicKeySet::default();
                keys.add(signer.kid(), &signer.public_key())
                    .map_err(|e| e.to_string())
                    .map(|()| keys)
            }
            (Ok(keys), Err(_)) => Ok(keys.clone()),
            (Err(why), Err(_)) => Err(why.clone()),
        };
        let lockout_secs = var_u64("login_lockout_seconds", 900)?.max(1);
        let window_secs = var_u64("login_failure_window_seconds", 900)?.max(1);
        Ok(AuthSettings {
            signer,
            verification_keys,
            refresh_ttl_secs: var_u64("refresh_token_ttl_seconds", 14 * 24 * 3600)?,
            credentials_limit: var_limit(
                "credentials_rate_limit",
                10,
                "credentials_rate_window_seconds",
                3600,
            )?,
            lockout: LockoutPolicy {
                max_failures: var_u64("login_max_failures", 5)?.max(1),
                window_millis: window_secs * 1000,
                lockout_millis: lockout_secs * 1000,
            },
            admin_email: var("admin_email")?.map(|e| normalize_email(&e)),
        })
    }

    /// The signer, or 503 saying how to configure one.
    pub fn signer(&self) -> Result<&Signer, ApiError> {
        self.signer
            .as_ref()
            .map_err(|why| ApiError::service_unavailable(why.clone()))
    }

    /// The keys access tokens are verified with, or 503.
    pub fn verification_keys(&self) -> Result<&PublicKeySet, ApiError> {
        self.verification_keys
            .as_ref()
            .map_err(|why| ApiError::service_unavailable(why.clone()))
    }
}
