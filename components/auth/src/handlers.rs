//! The auth routes: each parses and authorises its request, applies the
//! rules ([`crate::lockout`], [`crate::refresh`], `app_common::http::validate`)
//! and answers.
//!
//! A session is an access token (JWT, 15 minutes) plus a refresh token
//! (opaque, single-use). Register and login also set the refresh token as
//! an `HttpOnly; Secure; SameSite=Strict` cookie scoped to `/api/auth`, so
//! a browser can refresh without script access to the token.

use crate::refresh::{self, Outcome};
use crate::settings::AuthSettings;
use crate::{lockout, signing::Signer};
use accounts_model::{self as accounts, Account, NewAccount, Profile, WriteConflict};
use anyhow::anyhow;
use app_common::http::validate::{
    Problems, check_email, check_name, check_password, normalize_email,
};
use app_common::security::{password, tokens};
use app_common::telemetry::metrics::record_business;
use app_common::{ApiError, ApiRequest, ApiResponse, Role};
use serde::{Deserialize, Serialize};

/// Name of the refresh-token cookie.
pub const REFRESH_COOKIE: &str = "refresh_token";

/// Scope of register + login attempts in the rate limiter.
const CREDENTIALS_SCOPE: &str = "credentials";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    name: String,
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RefreshTokenBody {
    refresh_token: Option<String>,
}

/// What register, login and refresh answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Session {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
    user: Profile,
}

/// `Set-Cookie` carrying a refresh token for `max_age_secs`.
pub fn refresh_cookie(token: &str, max_age_secs: u64) -> String {
    let max_age = i64::try_from(max_age_secs).unwrap_or(i64::MAX);
    cookie::Cookie::build((REFRESH_COOKIE, token))
        .path("/api/auth")
        .max_age(cookie::time::Duration::seconds(max_age))
        .http_only(true)
        .secure(true)
        .same_site(cookie::SameSite::Strict)
        .to_string()
}

fn open_session(
    signer: &Signer,
    account: &Account,
    settings: &AuthSettings,
) -> Result<Session, ApiError> {
    let refresh_token = refresh::start_family(
        &account.id,
        &refresh::credentials_of(&account.password_hash),
        settings.refresh_ttl_secs,
    )?;
    session_with(signer, account, refresh_token)
}

/// A session around an already started refresh family: signing only, so
/// it cannot fail on a store.
fn session_with(
    signer: &Signer,
    account: &Account,
    refresh_token: String,
) -> Result<Session, ApiError> {
    let access = signer.issue(&account.id, account.role)?;
    Ok(Session {
        access_token: access.token,
        refresh_token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        user: account.profile(),
    })
}

fn session_response(
    status: u16,
    session: &Session,
    settings: &AuthSettings,
) -> Result<ApiResponse, ApiError> {
    Ok(ApiResponse::json(status, session)?.with_header(
        "set-cookie",
        refresh_cookie(&session.refresh_token, settings.refresh_ttl_secs),
    ))
}

/// What register and login begin with, in this order: the signing key
/// (503 without one), the per-client credentials limit (429), the body.
fn credentials_attempt<'s, B: serde::de::DeserializeOwned>(
    request: &ApiRequest,
    settings: &'s AuthSettings,
) -> Result<(&'s Signer, B), ApiError> {
    let signer = settings.signer()?;
    request.limit(
        CREDENTIALS_SCOPE,
        settings.credentials_limit,
        "register and login attempts",
    )?;
    Ok((signer, request.json()?))
}

/// `POST /api/auth/register {name, email, password}` → 201 session.
pub fn register(request: &ApiRequest, settings: &AuthSettings) -> Result<ApiResponse, ApiError> {
    let (signer, body): (_, RegisterBody) = credentials_attempt(request, settings)?;
    let email = normalize_email(&body.email);
    let mut problems = Problems::new();
    let name = check_name(&mut problems, "name", &body.name);
    check_email(&mut problems, "email", &email);
    check_password(&mut problems, "password", &body.password, &email);
    if !problems.is_empty() {
        record_business("register", "invalid");
    }
    problems.into_result()?;

    let password_hash = password::hash(&body.password)?;
    // Only a bootstrap candidate: the role is decided with the insert.
    let bootstrap = settings.admin_email.as_deref() == Some(email.as_str());
    let conn = accounts::connect()?;
    // The first session's refresh family is written before the account:
    // once the account exists nothing else can fail, so a 503 always means
    // "nothing registered, retry" (a retry would otherwise meet 409).
    let id = app_common::util::ids::new_record_id();
    let refresh_token = refresh::start_family(
        &id,
        &refresh::credentials_of(&password_hash),
        settings.refresh_ttl_secs,
    )?;
    let new = NewAccount {
        id: &id,
        email: &email,
        name: &name,
        role: Role::User,
        password_hash: &password_hash,
    };
    let account = match accounts::insert_bootstrapping(&conn, &new, bootstrap)? {
        Ok(account) => account,
        Err(WriteConflict::EmailTaken) => {
            // The family of an account that was never created: end it now
            // rather than at its expiry (best effort: it opens nothing).
            if let Err(e) = refresh::revoke_family_of(&refresh_token, None) {
                eprintln!("register: ending an unused refresh family failed: {e:#}");
            }
            record_business("register", "conflict");
            return Err(ApiError::conflict(
                "an account with this e-mail address already exists",
            ));
        }
        Err(other) => return Err(anyhow!("insert user: unexpected {other:?}").into()),
    };
    request.set_user(&account.id);
    record_business("register", "success");
    let session = session_with(signer, &account, refresh_token)?;
    Ok(session_response(201, &session, settings)?
        .with_header("location", format!("/api/users/{}", account.id)))
}

/// `POST /api/auth/login {email, password}` → 200 session (+ cookie).
pub fn login(request: &ApiRequest, settings: &AuthSettings) -> Result<ApiResponse, ApiError> {
    let (signer, body): (_, LoginBody) = credentials_attempt(request, settings)?;
    let email = normalize_email(&body.email);
    if let Some(millis) = lockout::check(request.client(), &email)? {
        record_business("login", "locked");
        return Err(ApiError::too_many_requests(
            "account_locked",
            "too many failed logins for this e-mail address from this client; try again later",
            millis.div_ceil(1000),
        ));
    }
    let conn = accounts::connect()?;
    let account = accounts::find_by_email(&conn, &email)?;
    let password_matches = match &account {
        Some(account) => password::verify(&account.password_hash, &body.password)?,
        None => {
            // The same Argon2 work as a verification, so an unknown address
            // is not faster to reject than a wrong password.
            password::hash(&body.password)?;
            false
        }
    };
    let Some(account) = account.filter(|_| password_matches) else {
        lockout::record_failure(request.client(), &email, settings.lockout)?;
        record_business("login", "failure");
        return Err(ApiError::unauthenticated(
            "the e-mail address or the password is wrong",
        ));
    };
    lockout::reset(request.client(), &email)?;
    request.set_user(&account.id);
    let session = open_session(signer, &account, settings)?;
    confirm_credentials(&conn, &account, &session.refresh_token)?;
    record_business("login", "success");
    session_response(200, &session, settings)
}

/// Re-reads `account` after its tokens were signed: had its password
/// changed since it was read, the new session is revoked (401). A password
/// change that committed later marks these tokens revoked itself (its
/// marker is later than their issue time), so no session outlives a
/// password change, whatever the interleaving.
fn confirm_credentials(
    conn: &app_common::storage::db::Connection,
    account: &Account,
    refresh_token: &str,
) -> Result<(), ApiError> {
    let current = accounts::find_by_id(conn, &account.id)?;
    if current.is_some_and(|c| c.password_hash == account.password_hash) {
        return Ok(());
    }
    refresh::revoke_family_of(refresh_token, None)?;
    Err(ApiError::unauthenticated(
        "the account's password changed while this session was opened; log in again",
    ))
}

/// The refresh token from the body (`{refreshToken}`) or the cookie.
fn presented_refresh_token(request: &ApiRequest) -> Result<Option<String>, ApiError> {
    let from_body = if request.body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        request.json::<RefreshTokenBody>()?.refresh_token
    };
    Ok(from_body.or_else(|| request.cookie(REFRESH_COOKIE).map(str::to_string)))
}

/// `POST /api/auth/refresh {refreshToken}` → a new session; the presented
/// token is used up, and presenting a used one revokes its family.
pub fn refresh(request: &ApiRequest, settings: &AuthSettings) -> Result<ApiResponse, ApiError> {
    let signer = settings.signer()?;
    let token = presented_refresh_token(request)?.ok_or_else(|| {
        ApiError::unauthenticated("no refresh token: send {\"refreshToken\": ...} or the cookie")
    })?;
    let (outcome, next_token) = refresh::use_token(&token, settings.refresh_ttl_secs)?;
    let (user_id, credentials) = match outcome {
        Outcome::Rotated {
            user_id,
            credentials,
        } => (user_id, credentials),
        Outcome::Reused => {
            return Err(ApiError::unauthenticated(
                "this refresh token was already used; its whole session has been revoked",
            ));
        }
        Outcome::Revoked => {
            return Err(ApiError::unauthenticated(
                "this refresh token has been revoked",
            ));
        }
        Outcome::Expired => {
            return Err(ApiError::unauthenticated("this refresh token has expired"));
        }
        Outcome::Unknown => {
            return Err(ApiError::unauthenticated("this refresh token is not valid"));
        }
    };
    let next_token = next_token.ok_or_else(|| anyhow!("rotation returned no token"))?;
    let conn = accounts::connect()?;
    let Some(account) = accounts::find_by_id(&conn, &user_id)? else {
        refresh::revoke_family_of(&next_token, None)?;
        return Err(ApiError::unauthenticated(
            "the account of this session no longer exists",
        ));
    };
    if refresh::credentials_of(&account.password_hash) != credentials {
        refresh::revoke_family_of(&next_token, None)?;
        return Err(ApiError::unauthenticated(
            "this refresh token was revoked by a password change; log in again",
        ));
    }
    request.set_user(&account.id);
    let access = signer.issue(&account.id, account.role)?;
    confirm_credentials(&conn, &account, &next_token)?;
    let session = Session {
        access_token: access.token,
        refresh_token: next_token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        user: account.profile(),
    };
    session_response(200, &session, settings)
}

/// `POST /api/auth/logout [{refreshToken}]` (with the access token) → 204:
/// the access token's `jti` is denied until it expires, and the refresh
/// token's family (body or cookie) is revoked.
pub fn logout(request: &ApiRequest, settings: &AuthSettings) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate_with(settings.verification_keys()?)?;
    let refresh_token = presented_refresh_token(request)?;
    tokens::revoke(&caller.token_id, caller.expires_at)?;
    if let Some(token) = refresh_token {
        refresh::revoke_family_of(&token, Some(&caller.user_id))?;
    }
    Ok(ApiResponse::no_content().with_header("set-cookie", refresh_cookie("", 0)))
}

/// `GET /api/auth/me` → the caller's account.
pub fn me(request: &ApiRequest, settings: &AuthSettings) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate_with(settings.verification_keys()?)?;
    let conn = accounts::connect()?;
    let account = accounts::find_by_id(&conn, &caller.user_id)?
        .ok_or_else(|| ApiError::unauthenticated("the account of this token no longer exists"))?;
    ApiResponse::json(200, &account.profile())
}

/// `GET /.well-known/jwks.json` → every public key tokens may be signed
/// with (cacheable for five minutes).
pub fn jwks(settings: &AuthSettings) -> Result<ApiResponse, ApiError> {
    let keys = settings.verification_keys()?;
    Ok(ApiResponse::json(200, &keys.jwks())?.with_header("cache-control", "public, max-age=300"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_cookie_is_locked_down() {
        let c = refresh_cookie("rt_x.y", 60);
        for part in [
            "refresh_token=rt_x.y",
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/api/auth",
            "Max-Age=60",
        ] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
    }
}
