//! The owner's profile for `GET /api/orders/:id`, fetched from the users
//! component through service chaining and cached in key-value.
//!
//! - The call goes to `<users_base_url>/internal/users/<id>` (default base
//!   `http://users.spin.internal`). That path lies outside the users
//!   component's public route (`/api/users/...`), so only chained requests
//!   reach it; the caller's own bearer token is forwarded and users checks
//!   it as on its public routes (self or admin), so the route grants nothing
//!   the caller could not read anyway.
//! - Profiles are cached under `orders:cache:user:<id>` for
//!   `user_cache_ttl_seconds` (default 60).
//! - Calls pass the circuit breaker ([`crate::breaker`]). Any failure
//!   (transport error, 5xx, unexpected answer) counts; "no such user" does
//!   not. Whatever happens, the order is still served, with `user: null`.

use crate::breaker::{self, Admission, BreakerPolicy};
use accounts_model::Profile;
use anyhow::{Context as _, Result, anyhow, bail};
use app_common::storage::kv;
use spin_sdk::http::{Request, Response};

pub const CACHE_PREFIX: &str = "orders:cache:user:";

/// Where and how the users component is called.
#[derive(Debug, Clone)]
pub struct UsersClient {
    pub base_url: String,
    pub cache_ttl_secs: u64,
    pub breaker: BreakerPolicy,
}

impl UsersClient {
    /// The profile of `user_id`, or `None` when it cannot be had (user
    /// gone, users failing, circuit open). `bearer` is the caller's token.
    pub async fn profile(
        &self,
        user_id: &str,
        bearer: &str,
        correlation_id: &str,
    ) -> Option<Profile> {
        let key = format!("{CACHE_PREFIX}{user_id}");
        if self.cache_ttl_secs > 0
            && let Ok(Some(hit)) = kv::open().and_then(|s| kv::get_unexpired::<Profile>(&s, &key))
        {
            return Some(hit);
        }
        let admission = breaker::admit(breaker::USERS_KEY, &self.breaker).unwrap_or_else(|e| {
            log(
                "circuit breaker state unavailable; calling users",
                correlation_id,
                &e,
            );
            Admission::Call
        });
        if admission == Admission::Reject {
            return None;
        }
        let outcome = self.fetch(user_id, bearer, correlation_id).await;
        if let Err(e) = breaker::record(breaker::USERS_KEY, &self.breaker, outcome.is_ok()) {
            log("circuit breaker state not recorded", correlation_id, &e);
        }
        match outcome {
            Ok(Some(profile)) => {
                if self.cache_ttl_secs > 0 {
                    let expires = app_common::util::time::now_millis() + self.cache_ttl_secs * 1000;
                    if let Err(e) =
                        kv::open().and_then(|s| kv::put_expiring(&s, &key, &profile, expires))
                    {
                        log("profile not cached", correlation_id, &e);
                    }
                }
                Some(profile)
            }
            Ok(None) => None,
            Err(e) => {
                log(
                    "users component call failed; serving the order without its owner",
                    correlation_id,
                    &e,
                );
                None
            }
        }
    }

    /// One call: `Ok(None)` when users says the user does not exist.
    async fn fetch(
        &self,
        user_id: &str,
        bearer: &str,
        correlation_id: &str,
    ) -> Result<Option<Profile>> {
        let url = format!(
            "{}/internal/users/{user_id}",
            self.base_url.trim_end_matches('/')
        );
        let request = Request::get(&url)
            .header("authorization", format!("Bearer {bearer}"))
            .header(app_common::http::correlation::HEADER, correlation_id)
            .header("accept", "application/json")
            .build();
        let response: Response = spin_sdk::http::send(request)
            .await
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("GET {url}"))?;
        let status = *response.status();
        let body = response.body();
        match status {
            200 => Ok(Some(
                serde_json::from_slice(body).context("users answered 200 without a profile")?,
            )),
            404 if error_code(body).as_deref() == Some("not_found") => Ok(None),
            _ => bail!(
                "users answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
        }
    }
}

/// The `error.code` of an API error body.
fn error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value["error"]["code"].as_str().map(str::to_string)
}

fn log(msg: &str, correlation_id: &str, e: &anyhow::Error) {
    app_common::telemetry::logging::emit_value(serde_json::json!({
        "ts": app_common::util::time::rfc3339_millis(app_common::util::time::now_millis()),
        "level": "warn",
        "msg": msg,
        "component": crate::COMPONENT,
        "correlation_id": correlation_id,
        "error": format!("{e:#}"),
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read_from_api_errors_only() {
        assert_eq!(
            error_code(br#"{"error":{"code":"not_found"}}"#).as_deref(),
            Some("not_found")
        );
        assert_eq!(error_code(b"<html>"), None);
    }
}
