//! Revoked access tokens: the shared denylist of token ids (logout) and
//! per-user markers (password change), both in key-value with an expiry,
//! and the check [`is_refused`] every verification ends with.

use super::{CLOCK_SKEW_SECS, DENYLIST_PREFIX, Verified};
use anyhow::{Context as _, Result};

pub fn denylist_key(token_id: &str) -> String {
    format!("{DENYLIST_PREFIX}{token_id}")
}

/// Records `token_id` as revoked until `expires_at` (Unix seconds) plus
/// the clock skew [`super::verify`] tolerates, after which the token is refused
/// anyway. The entry is in the expiry index, so the sweeper removes it then.
pub fn revoke(token_id: &str, expires_at: u64) -> Result<()> {
    let store = crate::storage::kv::open()?;
    crate::storage::kv::put_expiring(
        &store,
        &denylist_key(token_id),
        &(),
        denylist_expiry_millis(expires_at),
    )
}

/// When a denylist entry for a token expiring at `expires_at` (Unix
/// seconds) may go: only once no verifier would accept the token.
pub fn denylist_expiry_millis(expires_at: u64) -> u64 {
    (expires_at + CLOCK_SKEW_SECS) * 1000
}

/// Whether `token_id` was revoked (and the entry not yet expired).
pub fn is_revoked(token_id: &str) -> Result<bool> {
    let store = crate::storage::kv::open()?;
    Ok(crate::storage::kv::get_unexpired::<()>(&store, &denylist_key(token_id))?.is_some())
}

/// Key of a user's marker: their tokens issued before it are revoked.
pub fn user_marker_key(user_id: &str) -> String {
    format!("{DENYLIST_PREFIX}user:{user_id}")
}

/// Revokes every access token of `user_id` issued before `at_millis`
/// (after a password change). The marker outlives those tokens (lifetime
/// `access_ttl_secs` plus the clock skew verification allows) and no
/// longer; a later marker is never replaced by an earlier one.
pub fn revoke_user_tokens(user_id: &str, at_millis: u64, access_ttl_secs: u64) -> Result<()> {
    use crate::storage::kv::{Expiring, Update};
    let marker = Expiring {
        expires_at: at_millis + (access_ttl_secs + CLOCK_SKEW_SECS) * 1000,
        value: at_millis,
    };
    let now = crate::util::time::now_millis();
    // In the expiry index, so the sweeper removes the marker once it is over.
    crate::storage::expiry::schedule(&user_marker_key(user_id), marker.expires_at)?;
    crate::storage::kv::update_atomically(
        &user_marker_key(user_id),
        |current: Option<Expiring<u64>>| {
            Ok(match current {
                Some(c) if c.is_live(now) && c.value >= marker.value => (Update::Keep, ()),
                _ => (Update::Write(marker.clone()), ()),
            })
        },
    )
}

/// Whether a verified token is revoked: its `jti` is on the denylist, or
/// its user's marker is later than its issue time. One key-value round
/// trip (`wasi:keyvalue` `get-many`) reads both.
pub fn is_refused(token: &Verified) -> Result<bool> {
    use crate::storage::kv::Expiring;
    let jti_key = denylist_key(&token.principal.token_id);
    let user_key = user_marker_key(&token.principal.user_id);
    let bucket = crate::storage::kv::open_bucket()?;
    let found = spin_sdk::wit::wasi::keyvalue::batch::get_many(
        &bucket,
        &[jti_key.clone(), user_key.clone()],
    )
    .map_err(anyhow::Error::new)
    .context("key-value get-many of the token denylist")?;
    let now = crate::util::time::now_millis();
    let mut refused = false;
    for (key, bytes) in found {
        let Some(bytes) = bytes else { continue };
        let live = if key == jti_key {
            serde_json::from_slice::<Expiring<()>>(&bytes)
                .ok()
                .filter(|e| e.is_live(now))
                .map(|_| true)
        } else if key == user_key {
            serde_json::from_slice::<Expiring<u64>>(&bytes)
                .ok()
                .filter(|e| e.is_live(now))
                .map(|e| token.issued_at_ms < e.value)
        } else {
            continue;
        };
        // Expired or unreadable: absent, left to the sweeper (as
        // `kv::get_unexpired` does), so verifying never writes.
        refused |= live.unwrap_or(false);
    }
    Ok(refused)
}
