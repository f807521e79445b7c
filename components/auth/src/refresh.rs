//! Refresh tokens: opaque, single-use, rotated on every refresh, grouped in
//! families (one per login). Presenting a token that was already used
//! revokes its whole family, so a stolen token dies the moment either the
//! thief or the owner uses it twice.
//!
//! A token is `rt_<family id>.<secret>`; the store keeps only its SHA-256.
//! The family record (`auth:refresh-family:<family id>`) holds the hash of
//! the one token currently valid and is rotated with compare-and-swap, so
//! two parallel refreshes with one token cannot both succeed. Every family
//! is in the expiry index until its current token expires (each rotation
//! moves that time on), so the sweeper removes it afterwards, revoked or
//! not: an expired family's tokens are refused either way.
//!
//! A family also remembers the credentials it was opened with (a digest of
//! the account's password hash): once the password changes, every family
//! opened before is dead ([`credentials_of`]), with no per-user index to
//! walk and nothing to expire beyond the families themselves.

use anyhow::Result;
use app_common::storage::kv::{self, Update};
use app_common::util::encoding::base64url;
use app_common::util::ids::{hex, random_bytes, sha256_hex};
use serde::{Deserialize, Serialize};

const PREFIX: &str = "rt_";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Family {
    pub user_id: String,
    /// SHA-256 (hex) of the token currently valid.
    pub current_hash: String,
    /// Unix ms after which the current token is expired.
    pub expires_at: u64,
    pub revoked: bool,
    /// [`credentials_of`] the password hash at login; families stored
    /// before this field existed read as empty, so they match nothing.
    #[serde(default)]
    pub credentials: String,
}

/// What a family remembers of the credentials it was opened with: the
/// SHA-256 of the password hash (no salt or hash leaves the database).
pub fn credentials_of(password_hash: &str) -> String {
    sha256_hex(password_hash.as_bytes())
}

/// A new token of a family.
pub struct IssuedToken {
    pub token: String,
    pub hash: String,
}

fn new_token(family_id: &str) -> IssuedToken {
    let token = format!("{PREFIX}{family_id}.{}", base64url(&random_bytes::<32>()));
    let hash = sha256_hex(token.as_bytes());
    IssuedToken { token, hash }
}

/// The family id inside a token, if it has the token shape.
pub fn family_of(token: &str) -> Option<&str> {
    let (family, secret) = token.strip_prefix(PREFIX)?.split_once('.')?;
    let family_ok = family.len() == 32 && family.bytes().all(|b| b.is_ascii_hexdigit());
    (family_ok && secret.len() >= 32).then_some(family)
}

fn family_key(family_id: &str) -> String {
    format!("auth:refresh-family:{family_id}")
}

/// What presenting a token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Rotated {
        user_id: String,
        /// The family's [`Family::credentials`].
        credentials: String,
    },
    /// Not a token of a known family.
    Unknown,
    Expired,
    /// The family was revoked earlier (reuse, logout).
    Revoked,
    /// The token was already used: the family is now revoked.
    Reused,
}

/// The rule: given the family record, the presented token's hash and the
/// next token, decide what to store and what happened.
pub fn rotate(
    family: Option<Family>,
    presented_hash: &str,
    next: &IssuedToken,
    now: u64,
    ttl_millis: u64,
) -> (Update<Family>, Outcome) {
    let Some(family) = family else {
        return (Update::Keep, Outcome::Unknown);
    };
    if family.revoked {
        return (Update::Keep, Outcome::Revoked);
    }
    if family.current_hash != presented_hash {
        let revoked = Family {
            revoked: true,
            ..family
        };
        return (Update::Write(revoked), Outcome::Reused);
    }
    if now >= family.expires_at {
        return (Update::Keep, Outcome::Expired);
    }
    let user_id = family.user_id.clone();
    let credentials = family.credentials.clone();
    let rotated = Family {
        current_hash: next.hash.clone(),
        expires_at: now + ttl_millis,
        ..family
    };
    (
        Update::Write(rotated),
        Outcome::Rotated {
            user_id,
            credentials,
        },
    )
}

/// Starts a family for `user_id`, opened with `credentials` (see
/// [`credentials_of`]), and returns its first token.
pub fn start_family(user_id: &str, credentials: &str, ttl_secs: u64) -> Result<String> {
    let family_id = hex(&random_bytes::<16>());
    let first = new_token(&family_id);
    let family = Family {
        user_id: user_id.to_string(),
        current_hash: first.hash,
        expires_at: app_common::util::time::now_millis() + ttl_secs * 1000,
        revoked: false,
        credentials: credentials.to_string(),
    };
    let key = family_key(&family_id);
    app_common::storage::expiry::schedule(&key, family.expires_at)?;
    kv::open()?.set_json(key, &family)?;
    Ok(first.token)
}

/// Presents `token`; on success returns the outcome and the next token.
pub fn use_token(token: &str, ttl_secs: u64) -> Result<(Outcome, Option<String>)> {
    let Some(family_id) = family_of(token) else {
        return Ok((Outcome::Unknown, None));
    };
    let presented = sha256_hex(token.as_bytes());
    let next = new_token(family_id);
    let mut expires_at = 0;
    let outcome = kv::update_atomically(&family_key(family_id), |family| {
        let (update, outcome) = rotate(
            family,
            &presented,
            &next,
            app_common::util::time::now_millis(),
            ttl_secs * 1000,
        );
        if let Update::Write(f) = &update {
            expires_at = f.expires_at;
        }
        Ok((update, outcome))
    })?;
    if matches!(outcome, Outcome::Rotated { .. }) {
        // Rotation moved the expiry on; an expired family never rotates, so
        // the sweeper cannot have taken this one meanwhile.
        app_common::storage::expiry::schedule(&family_key(family_id), expires_at)?;
    }
    let next_token = matches!(outcome, Outcome::Rotated { .. }).then_some(next.token);
    Ok((outcome, next_token))
}

/// Revokes the family of `token`; with `owner`, only if the family is
/// that user's (a logout cannot end someone else's session).
pub fn revoke_family_of(token: &str, owner: Option<&str>) -> Result<()> {
    let Some(family_id) = family_of(token) else {
        return Ok(());
    };
    kv::update_atomically(&family_key(family_id), |family: Option<Family>| {
        Ok(match family {
            Some(f) if !f.revoked && owner.is_none_or(|o| o == f.user_id) => {
                (Update::Write(Family { revoked: true, ..f }), ())
            }
            _ => (Update::Keep, ()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(hash: &str) -> Family {
        Family {
            user_id: "u1".into(),
            current_hash: hash.into(),
            expires_at: 10_000,
            revoked: false,
            credentials: "c1".into(),
        }
    }

    #[test]
    fn tokens_have_a_recognisable_shape() {
        let t = new_token(&"a".repeat(32));
        assert_eq!(family_of(&t.token), Some("a".repeat(32).as_str()));
        assert_eq!(t.hash, sha256_hex(t.token.as_bytes()));
        for bad in [
            "",
            "rt_",
            "rt_abc.def",
            "xx_aaaa.bbbb",
            &format!("rt_{}", "a".repeat(32)),
        ] {
            assert_eq!(family_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_current_token_rotates() {
        let next = new_token(&"f".repeat(32));
        let (update, outcome) = rotate(Some(family("h1")), "h1", &next, 5_000, 1_000);
        assert_eq!(
            outcome,
            Outcome::Rotated {
                user_id: "u1".into(),
                credentials: "c1".into(),
            }
        );
        let Update::Write(f) = update else {
            panic!("must write")
        };
        assert_eq!(f.current_hash, next.hash);
        assert_eq!(f.expires_at, 6_000);
        assert!(!f.revoked);
    }

    #[test]
    fn a_used_token_revokes_the_family() {
        let next = new_token(&"f".repeat(32));
        let (update, outcome) = rotate(Some(family("h2")), "h1", &next, 5_000, 1_000);
        assert_eq!(outcome, Outcome::Reused);
        assert!(matches!(
            update,
            Update::Write(Family { revoked: true, .. })
        ));
        let revoked = Family {
            revoked: true,
            ..family("h2")
        };
        let (update, outcome) = rotate(Some(revoked), "h2", &next, 5_000, 1_000);
        assert_eq!((update, outcome), (Update::Keep, Outcome::Revoked));
    }

    #[test]
    fn expired_and_unknown_tokens_change_nothing() {
        let next = new_token(&"f".repeat(32));
        assert_eq!(
            rotate(Some(family("h1")), "h1", &next, 10_000, 1_000),
            (Update::Keep, Outcome::Expired)
        );
        assert_eq!(
            rotate(None, "h1", &next, 0, 1_000),
            (Update::Keep, Outcome::Unknown)
        );
    }
}
