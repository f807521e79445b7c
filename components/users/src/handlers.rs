//! The users routes: each authenticates the caller, checks what they may
//! do ([`app_common::Principal`], [`crate::rules`]) and reads or writes the
//! shared account records ([`accounts_model`]).
//!
//! Reads go through [`KvCache`] (entries expire after
//! `user_cache_ttl_seconds`); every write invalidates the record's entry.
//! Writes compare the record version: an `If-Match` naming another version
//! is a 412 and nothing is written.

use crate::rules::{PatchBody, plan_patch, precondition_holds};
use accounts_model::{self as accounts, Account, ListFilter, Profile, WriteConflict, etag};
use anyhow::anyhow;
use app_common::events::{Event, EventSettings};
use app_common::http::error::Detail;
use app_common::http::pagination::{Page, decode_cursor, parse_limit};
use app_common::http::validate::normalize_email;
use app_common::security::password;
use app_common::storage::cache::KvCache;
use app_common::storage::db;
use app_common::{ApiError, ApiRequest, ApiResponse, Principal, Role};

/// Attempts of a write without `If-Match` that lost a race to another
/// writer before giving up with 409.
const WRITE_ATTEMPTS: usize = 3;

pub fn profile_cache(ttl_secs: u64) -> KvCache {
    KvCache::new("users:cache:user:", ttl_secs)
}

fn not_found() -> ApiError {
    ApiError::not_found("no user has this id")
}

fn precondition_failed(current_version: i64) -> ApiError {
    ApiError::precondition_failed(format!(
        "If-Match does not name the current version; the record's ETag is {}",
        etag(current_version)
    ))
}

fn profile_response(profile: &Profile) -> Result<ApiResponse, ApiError> {
    Ok(ApiResponse::json(200, profile)?.with_header("etag", etag(profile.version)))
}

fn cached_profile(cache: &KvCache, id: &str) -> Result<Option<Profile>, ApiError> {
    Ok(cache.get_or_load(id, || {
        let conn = accounts::connect()?;
        Ok(accounts::find_by_id(&conn, id)?.map(|a| a.profile()))
    })?)
}

/// `GET /api/users?limit&cursor&role&emailPrefix` (admin) → a page.
pub fn list(request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate()?;
    caller.require_admin()?;
    request.reject_unknown_query_params(&["limit", "cursor", "role", "emailPrefix"])?;
    let limit = parse_limit(request.query_param("limit").as_deref())?;
    let after = match request.query_param("cursor") {
        Some(cursor) => Some(decode_cursor(&cursor)?),
        None => None,
    };
    let role = match request.query_param("role") {
        Some(text) => Some(Role::parse(&text).ok_or_else(|| {
            ApiError::validation(vec![Detail::field(
                "role",
                "invalid_role",
                "must be `user` or `admin`",
            )])
        })?),
        None => None,
    };
    let email_prefix = request
        .query_param("emailPrefix")
        .map(|p| normalize_email(&p))
        .filter(|p| !p.is_empty());
    let filter = ListFilter { role, email_prefix };
    let conn = accounts::connect()?;
    let rows = accounts::list(&conn, &filter, after.as_deref(), limit + 1)?;
    let profiles: Vec<Profile> = rows.iter().map(Account::profile).collect();
    let page = Page::from_rows(profiles, limit, |p| p.id.clone());
    ApiResponse::json(200, &page)
}

/// `GET /api/users/me` → the caller's profile.
pub fn me(request: &ApiRequest, cache: &KvCache) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate()?;
    let profile = cached_profile(cache, &caller.user_id)?.ok_or_else(not_found)?;
    profile_response(&profile)
}

/// `GET /api/users/:id` (self or admin) → the profile, with its `ETag`.
pub fn get(request: &ApiRequest, cache: &KvCache) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate()?;
    let id = request.id_param("a user")?;
    caller.require_self_or_admin(id)?;
    let profile = cached_profile(cache, id)?.ok_or_else(not_found)?;
    profile_response(&profile)
}

/// `PATCH /api/users/:id` (self or admin): name, email, password (with
/// `currentPassword`), and for admins role. A password change ends every
/// session of the user, the caller's included: refresh tokens die with the
/// old password hash (auth compares it), and access tokens issued before
/// the change are revoked by a marker that outlives them
/// (`access_token_ttl_seconds`, default 900).
pub fn patch(request: &ApiRequest, cache: &KvCache) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate()?;
    let id = request.id_param("a user")?;
    caller.require_self_or_admin(id)?;
    let body: PatchBody = request.json()?;
    let if_match = request.header("if-match");
    let conn = accounts::connect()?;
    for _ in 0..WRITE_ATTEMPTS {
        let current = accounts::find_by_id(&conn, id)?.ok_or_else(not_found)?;
        if !precondition_holds(if_match, current.version) {
            return Err(precondition_failed(current.version));
        }
        let updated = apply_patch(&caller, &current, &body)?;
        match accounts::update(&conn, &updated)? {
            Ok(account) => {
                cache.invalidate(id)?;
                if account.password_hash != current.password_hash {
                    let access_ttl = app_common::config::var_u64("access_token_ttl_seconds", 900)?;
                    app_common::security::tokens::revoke_user_tokens(
                        id,
                        app_common::util::time::now_millis(),
                        access_ttl,
                    )?;
                }
                return profile_response(&account.profile());
            }
            Err(WriteConflict::EmailTaken) => {
                return Err(ApiError::conflict(
                    "another account already uses this e-mail address",
                ));
            }
            Err(WriteConflict::NotFound) => return Err(not_found()),
            Err(WriteConflict::VersionMismatch { current }) if if_match.is_some() => {
                return Err(precondition_failed(current));
            }
            // Someone else wrote in between and the client did not pin a
            // version: apply the patch again on the newer record.
            Err(WriteConflict::VersionMismatch { .. }) => continue,
        }
    }
    Err(ApiError::conflict(
        "the record kept changing while this update was applied; retry",
    ))
}

/// The record `current` would become under `body`: validated, the current
/// password verified and the new one hashed.
fn apply_patch(
    caller: &Principal,
    current: &Account,
    body: &PatchBody,
) -> Result<Account, ApiError> {
    let plan = plan_patch(caller, current, body)?;
    let password_hash = match &plan.password_change {
        Some((current_password, new_password)) => {
            if !password::verify(&current.password_hash, current_password)? {
                return Err(ApiError::validation(vec![Detail::field(
                    "currentPassword",
                    "incorrect",
                    "is not the account's current password",
                )]));
            }
            password::hash(new_password)?
        }
        None => current.password_hash.clone(),
    };
    Ok(Account {
        name: plan.name,
        email: plan.email,
        role: plan.role,
        password_hash,
        ..current.clone()
    })
}

/// `DELETE /api/users/:id` (self or admin) → 204. The deletion and its
/// `user.deleted` event commit together (outbox); the event is published
/// after the commit.
pub fn delete(
    request: &ApiRequest,
    cache: &KvCache,
    events: &EventSettings,
) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate()?;
    let id = request.id_param("a user")?;
    caller.require_self_or_admin(id)?;
    let conn = accounts::connect()?;
    let expected_version = match request.header("if-match") {
        None => None,
        Some(header) => {
            let current = accounts::find_by_id(&conn, id)?.ok_or_else(not_found)?;
            if !precondition_holds(Some(header), current.version) {
                return Err(precondition_failed(current.version));
            }
            Some(current.version)
        }
    };
    let event = Event::new(
        "user.deleted",
        request.correlation_id(),
        serde_json::json!({ "userId": id }),
    );
    let deleted = db::transaction(&conn, |conn| {
        let deleted = accounts::delete(conn, id, expected_version)?;
        if deleted.is_ok() {
            app_common::events::enqueue(conn, events, &event)?;
        }
        Ok(deleted)
    })?;
    match deleted {
        Ok(()) => {
            cache.forget(id)?;
            app_common::events::publish_after_commit(conn, events, &[event]);
            Ok(ApiResponse::no_content())
        }
        Err(WriteConflict::NotFound) => Err(not_found()),
        Err(WriteConflict::VersionMismatch { current }) => Err(precondition_failed(current)),
        Err(other) => Err(anyhow!("delete user: unexpected {other:?}").into()),
    }
}
