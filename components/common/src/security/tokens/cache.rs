//! Verify a token once, not on every request: Ed25519 verification in
//! WebAssembly is most of the CPU time of an authenticated request, and a
//! client sends the same access token until it expires.
//!
//! A token that verified is remembered in the key-value store under a
//! SHA-256 of everything the verdict depends on: the whole token, the key
//! id and public key that verified it, the issuer and the audience. Change
//! any of them (a key rotated out, another policy) and the entry is no
//! longer found, so the token is verified again. An entry never outlives
//! the token's `exp`. Revocation is not cached: it is checked on every
//! request ([`super::is_refused`]), after this.
//!
//! Only what was verified is written, by the components themselves, in the
//! store they already trust with the denylist; whoever can write that store
//! can already un-revoke tokens, so the cache trusts no one new. A broken or
//! unavailable cache is a miss, never a refusal.

use super::{PublicKeySet, Rejection, TokenPolicy, Verified, verify_token};
use crate::security::principal::{Principal, Role};
use crate::storage::kv;
use jwt_simple::prelude::Token;
use serde::{Deserialize, Serialize};

/// Key-value prefix of remembered verifications (shared by all components).
pub const VERIFIED_PREFIX: &str = "tokens:verified:";

/// What a verification established, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Remembered {
    user_id: String,
    role: Role,
    token_id: String,
    expires_at: u64,
    issued_at_ms: u64,
}

impl From<&Verified> for Remembered {
    fn from(v: &Verified) -> Self {
        Remembered {
            user_id: v.principal.user_id.clone(),
            role: v.principal.role,
            token_id: v.principal.token_id.clone(),
            expires_at: v.principal.expires_at,
            issued_at_ms: v.issued_at_ms,
        }
    }
}

impl From<Remembered> for Verified {
    fn from(r: Remembered) -> Self {
        Verified {
            principal: Principal {
                user_id: r.user_id,
                role: r.role,
                token_id: r.token_id,
                expires_at: r.expires_at,
            },
            issued_at_ms: r.issued_at_ms,
        }
    }
}

/// As [`verify_token`], answered from the store when this token already
/// verified with the same key and policy.
pub fn verify_token_cached(
    keys: &PublicKeySet,
    policy: &TokenPolicy,
    token: &str,
) -> Result<Verified, Rejection> {
    let Some(key) = cache_key(keys, policy, token) else {
        // No usable key id: let the full check say what is wrong.
        return verify_token(keys, policy, token);
    };
    let store = kv::open().ok();
    if let Some(hit) = store
        .as_ref()
        .and_then(|s| kv::get_unexpired::<Remembered>(s, &key).ok().flatten())
    {
        return Ok(hit.into());
    }
    let verified = verify_token(keys, policy, token)?;
    if let Some(store) = store {
        let remembered = Remembered::from(&verified);
        let until_millis = remembered.expires_at.saturating_mul(1000);
        // Best effort: a failed write only means verifying again next time.
        let _ = kv::put_expiring(&store, &key, &remembered, until_millis);
    }
    Ok(verified)
}

/// The store key for `token` under `keys` and `policy`, or `None` when the
/// token names no key of the set.
fn cache_key(keys: &PublicKeySet, policy: &TokenPolicy, token: &str) -> Option<String> {
    let metadata = Token::decode_metadata(token).ok()?;
    let kid = metadata.key_id()?;
    let public_key = keys.find(kid)?;
    let mut h = hmac_sha256::Hash::new();
    // Length-prefixed, so no two different inputs hash the same bytes.
    for part in [
        kid.as_bytes(),
        public_key,
        policy.issuer.as_bytes(),
        policy.audience.as_bytes(),
        token.as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    Some(format!("{VERIFIED_PREFIX}{}", hex::encode(h.finalize())))
}

#[cfg(test)]
mod tests {
    use super::super::tests::policy;
    use super::*;
    use jwt_simple::prelude::{Claims, Duration, Ed25519KeyPair, EdDSAKeyPairLike};

    fn signed(kp: &Ed25519KeyPair) -> String {
        let claims = Claims::with_custom_claims(
            super::super::AccessClaims {
                role: Role::User,
                issued_at_ms: None,
            },
            Duration::from_mins(15),
        )
        .with_subject("u1")
        .with_jwt_id("j1")
        .with_issuer("iss")
        .with_audience("aud");
        kp.sign(claims).unwrap()
    }

    fn set_of(kid: &str, kp: &Ed25519KeyPair) -> PublicKeySet {
        let mut set = PublicKeySet::default();
        set.add(kid, &kp.public_key().to_bytes()).unwrap();
        set
    }

    #[test]
    fn the_key_depends_on_token_key_and_policy() {
        let kp = Ed25519KeyPair::generate().with_key_id("k1");
        let token = signed(&kp);
        let keys = set_of("k1", &kp);
        let key = cache_key(&keys, &policy(), &token).unwrap();
        assert!(key.starts_with(VERIFIED_PREFIX));
        assert_eq!(cache_key(&keys, &policy(), &token), Some(key.clone()));

        // The same key id bound to another public key (a rotation that
        // reused the id) must not find the old verdict.
        let other = Ed25519KeyPair::generate();
        let rotated = set_of("k1", &other);
        assert_ne!(cache_key(&rotated, &policy(), &token), Some(key.clone()));

        let mut stricter = policy();
        stricter.audience = "other".into();
        assert_ne!(cache_key(&keys, &stricter, &token), Some(key.clone()));

        let another_token = signed(&kp);
        assert_ne!(cache_key(&keys, &policy(), &another_token), Some(key));
    }

    #[test]
    fn tokens_of_unknown_keys_have_no_key() {
        let kp = Ed25519KeyPair::generate().with_key_id("k1");
        let token = signed(&kp);
        assert_eq!(cache_key(&set_of("k2", &kp), &policy(), &token), None);
        assert_eq!(cache_key(&set_of("k1", &kp), &policy(), "not.a.jwt"), None);
    }

    #[test]
    fn remembered_verdicts_round_trip() {
        let verified = Verified {
            principal: Principal {
                user_id: "u".into(),
                role: Role::Admin,
                token_id: "j".into(),
                expires_at: 42,
            },
            issued_at_ms: 41_500,
        };
        let json = serde_json::to_string(&Remembered::from(&verified)).unwrap();
        let back: Remembered = serde_json::from_str(&json).unwrap();
        assert_eq!(Verified::from(back), verified);
    }
}
