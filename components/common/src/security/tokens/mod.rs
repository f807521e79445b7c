//! Access-token verification with public keys only: Ed25519 (`EdDSA`)
//! JWTs signed by the auth component, checked for algorithm, key id,
//! signature, issuer, audience, expiry and not-before, then against the
//! shared denylist of revoked token ids.
//!
//! Public keys come from the `jwt_public_keys` variable, either a
//! comma-separated list of `kid:base64-public-key` or a JWKS document
//! (`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":..,"x":..}]}`). Several keys
//! may be valid at once, which is how keys rotate: publish the new public
//! key, switch the signing key, drop the old public key after the longest
//! token lifetime.

use crate::security::principal::{Principal, Role};
use crate::util::encoding::{base64url, decode_base64, decode_base64url};
use anyhow::{Context as _, Result, anyhow, bail};
use jwt_simple::prelude::{
    Duration, Ed25519PublicKey, EdDSAPublicKeyLike, HashSet, Token, VerificationOptions,
};
use serde::{Deserialize, Serialize};

mod cache;
mod revocation;
pub use cache::{VERIFIED_PREFIX, verify_token_cached};
pub use revocation::*;

/// The only accepted JWS algorithm.
pub const ALGORITHM: &str = "EdDSA";

/// Clock difference tolerated when checking `exp` and `nbf`.
pub const CLOCK_SKEW_SECS: u64 = 30;

/// Key-value prefix of revoked access-token ids (shared by all components).
pub const DENYLIST_PREFIX: &str = "denylist:";

/// The claims the API adds to the registered ones (`sub`, `iss`, `aud`,
/// `iat`, `nbf`, `exp`, `jti`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub role: Role,
    /// When the token was issued, in Unix milliseconds: `iat` has whole
    /// seconds only, too coarse to tell a token signed just before a
    /// password change from one signed just after.
    #[serde(rename = "iatMs", default, skip_serializing_if = "Option::is_none")]
    pub issued_at_ms: Option<u64>,
}

/// Who issues tokens and for whom; both are checked on every token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
}

/// The public keys tokens may be signed with, by key id.
///
/// Kept as raw bytes: checking that 32 bytes are a point of the curve costs
/// a field exponentiation in WebAssembly, and the set is parsed on every
/// request while most requests present a token that already verified
/// ([`verify_token_cached`]). A key is checked when a token is verified
/// with it.
#[derive(Clone, Default)]
pub struct PublicKeySet {
    keys: Vec<(String, [u8; PUBLIC_KEY_LEN])>,
}

/// Bytes of an Ed25519 public key.
const PUBLIC_KEY_LEN: usize = 32;

impl std::fmt::Debug for PublicKeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.key_ids()).finish()
    }
}

impl PublicKeySet {
    /// Parses the `jwt_public_keys` variable (see the module docs); an empty
    /// value is an empty set.
    pub fn parse(spec: &str) -> Result<PublicKeySet> {
        let spec = spec.trim();
        let mut set = PublicKeySet::default();
        if spec.starts_with('{') {
            let jwks: serde_json::Value = serde_json::from_str(spec)
                .context("public keys look like JWKS but are not JSON")?;
            let keys = jwks["keys"]
                .as_array()
                .context("a JWKS document needs a `keys` array")?;
            for key in keys {
                if key["kty"] != "OKP" || key["crv"] != "Ed25519" {
                    continue;
                }
                let kid = key["kid"].as_str().context("a JWKS key has no `kid`")?;
                let x = key["x"].as_str().context("a JWKS key has no `x`")?;
                let bytes = decode_base64url(x).with_context(|| format!("key `{kid}`: `x`"))?;
                set.add(kid, &bytes)?;
            }
        } else {
            for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let (kid, key) = entry.split_once(':').with_context(|| {
                    format!("public key entry `{entry}` is not `kid:base64-public-key`")
                })?;
                let bytes = decode_base64(key).with_context(|| format!("public key `{kid}`"))?;
                set.add(kid.trim(), &bytes)?;
            }
        }
        Ok(set)
    }

    /// Adds a raw 32-byte Ed25519 public key (replacing one with that id).
    pub fn add(&mut self, kid: &str, public_key: &[u8]) -> Result<()> {
        if kid.is_empty() {
            bail!("a public key needs a non-empty key id");
        }
        let key: [u8; PUBLIC_KEY_LEN] = public_key.try_into().map_err(|_| {
            anyhow!(
                "public key `{kid}` is not an Ed25519 public key: it has {} bytes, not {PUBLIC_KEY_LEN}",
                public_key.len()
            )
        })?;
        self.keys.retain(|(k, _)| k != kid);
        self.keys.push((kid.to_string(), key));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(k, _)| k.as_str())
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.find(kid).is_some()
    }

    /// The raw public key of `kid`.
    fn find(&self, kid: &str) -> Option<&[u8; PUBLIC_KEY_LEN]> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }

    /// The set as a JWKS document (RFC 7517, OKP keys of RFC 8037).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .map(|(kid, key)| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "alg": ALGORITHM,
                    "use": "sig",
                    "kid": kid,
                    "x": base64url(key),
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// Why a token was refused; every case is a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Malformed,
    Algorithm(String),
    UnknownKey,
    /// Signature, issuer, audience, expiry or not-before failed.
    Invalid(String),
    MissingClaim(&'static str),
    Revoked,
}

impl Rejection {
    pub fn message(&self) -> String {
        match self {
            Rejection::Malformed => "the access token is not a well-formed JWT".into(),
            Rejection::Algorithm(alg) => {
                format!("the access token algorithm `{alg}` is not accepted (only {ALGORITHM})")
            }
            Rejection::UnknownKey => "the access token was not signed by a known key".into(),
            Rejection::Invalid(why) => format!("the access token is not valid: {why}"),
            Rejection::MissingClaim(claim) => {
                format!("the access token lacks the `{claim}` claim")
            }
            Rejection::Revoked => "the access token has been revoked".into(),
        }
    }
}

/// A verified token: its principal and when it was issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub principal: Principal,
    /// Unix ms (`iatMs`, else `iat`, else 0).
    pub issued_at_ms: u64,
}

/// Checks everything about `token` except revocation (see [`is_revoked`]).
pub fn verify(
    keys: &PublicKeySet,
    policy: &TokenPolicy,
    token: &str,
) -> Result<Principal, Rejection> {
    verify_token(keys, policy, token).map(|v| v.principal)
}

/// As [`verify`], with the time the token was issued.
pub fn verify_token(
    keys: &PublicKeySet,
    policy: &TokenPolicy,
    token: &str,
) -> Result<Verified, Rejection> {
    let metadata = Token::decode_metadata(token).map_err(|_| Rejection::Malformed)?;
    if metadata.algorithm() != ALGORITHM {
        return Err(Rejection::Algorithm(
            metadata.algorithm().chars().take(20).collect(),
        ));
    }
    let (kid, raw) = metadata
        .key_id()
        .and_then(|kid| Some((kid, keys.find(kid)?)))
        .ok_or(Rejection::UnknownKey)?;
    let key = Ed25519PublicKey::from_bytes(raw).map_err(|e| {
        Rejection::Invalid(format!(
            "the configured public key `{kid}` is not an Ed25519 public key ({e}); fix `jwt_public_keys`"
        ))
    })?;
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from([policy.issuer.clone()])),
        allowed_audiences: Some(HashSet::from([policy.audience.clone()])),
        time_tolerance: Some(Duration::from_secs(CLOCK_SKEW_SECS)),
        ..Default::default()
    };
    let claims = key
        .verify_token::<AccessClaims>(token, Some(options))
        .map_err(|e| Rejection::Invalid(e.to_string()))?;
    let user_id = claims.subject.ok_or(Rejection::MissingClaim("sub"))?;
    let token_id = claims.jwt_id.ok_or(Rejection::MissingClaim("jti"))?;
    let expires_at = claims
        .expires_at
        .ok_or(Rejection::MissingClaim("exp"))?
        .as_secs();
    let issued_at_ms = claims
        .custom
        .issued_at_ms
        .or(claims.issued_at.map(|t| t.as_secs() * 1000))
        .unwrap_or(0);
    Ok(Verified {
        principal: Principal {
            user_id,
            role: claims.custom.role,
            token_id,
            expires_at,
        },
        issued_at_ms,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use jwt_simple::prelude::{Claims, Ed25519KeyPair, EdDSAKeyPairLike, HS256Key, MACLike};

    /// The policy every unit test of this module and its submodules uses.
    pub(in crate::security::tokens) fn policy() -> TokenPolicy {
        TokenPolicy {
            issuer: "iss".into(),
            audience: "aud".into(),
        }
    }

    fn pair(kid: &str) -> (Ed25519KeyPair, PublicKeySet) {
        let kp = Ed25519KeyPair::generate().with_key_id(kid);
        let mut set = PublicKeySet::default();
        set.add(kid, &kp.public_key().to_bytes()).unwrap();
        (kp, set)
    }

    fn claims() -> jwt_simple::prelude::JWTClaims<AccessClaims> {
        Claims::with_custom_claims(
            AccessClaims {
                role: Role::User,
                issued_at_ms: None,
            },
            Duration::from_mins(15),
        )
        .with_issuer("iss")
        .with_audience("aud")
        .with_subject("u1")
        .with_jwt_id("j1")
    }

    #[test]
    fn a_good_token_gives_its_principal() {
        let (kp, keys) = pair("k1");
        let p = verify(&keys, &policy(), &kp.sign(claims()).unwrap()).unwrap();
        assert_eq!(p.user_id, "u1");
        assert_eq!(p.token_id, "j1");
        assert_eq!(p.role, Role::User);
    }

    #[test]
    fn bad_tokens_are_rejected() {
        let (kp, keys) = pair("k1");
        let (foreign, _) = pair("k1");
        assert!(matches!(
            verify(&keys, &policy(), &foreign.sign(claims()).unwrap()),
            Err(Rejection::Invalid(_))
        ));
        let other_kid = Ed25519KeyPair::generate().with_key_id("k2");
        assert_eq!(
            verify(&keys, &policy(), &other_kid.sign(claims()).unwrap()),
            Err(Rejection::UnknownKey)
        );
        let hs = HS256Key::generate().with_key_id("k1");
        assert!(matches!(
            verify(&keys, &policy(), &hs.authenticate(claims()).unwrap()),
            Err(Rejection::Algorithm(a)) if a == "HS256"
        ));
        let none = format!(
            "{}.{}.",
            base64url(br#"{"alg":"none","kid":"k1"}"#),
            base64url(br#"{"sub":"u1","role":"admin"}"#)
        );
        assert!(verify(&keys, &policy(), &none).is_err());
        assert_eq!(verify(&keys, &policy(), "x"), Err(Rejection::Malformed));
        let wrong_aud = claims().with_audience("other");
        assert!(matches!(
            verify(&keys, &policy(), &kp.sign(wrong_aud).unwrap()),
            Err(Rejection::Invalid(_))
        ));
        let mut expired = claims();
        expired.expires_at =
            Some(jwt_simple::prelude::Clock::now_since_epoch() - Duration::from_mins(5));
        assert!(matches!(
            verify(&keys, &policy(), &kp.sign(expired).unwrap()),
            Err(Rejection::Invalid(_))
        ));
        let not_yet = claims()
            .invalid_before(jwt_simple::prelude::Clock::now_since_epoch() + Duration::from_mins(5));
        assert!(matches!(
            verify(&keys, &policy(), &kp.sign(not_yet).unwrap()),
            Err(Rejection::Invalid(_))
        ));
        let mut no_jti = claims();
        no_jti.jwt_id = None;
        assert_eq!(
            verify(&keys, &policy(), &kp.sign(no_jti).unwrap()),
            Err(Rejection::MissingClaim("jti"))
        );
    }

    #[test]
    fn several_keys_may_be_valid_at_once() {
        let a = Ed25519KeyPair::generate().with_key_id("a");
        let b = Ed25519KeyPair::generate().with_key_id("b");
        let spec = format!(
            "a:{}, b:{}",
            crate::util::encoding::base64url(&a.public_key().to_bytes()),
            crate::util::encoding::base64url(&b.public_key().to_bytes())
        );
        let keys = PublicKeySet::parse(&spec).unwrap();
        for kp in [&a, &b] {
            assert!(verify(&keys, &policy(), &kp.sign(claims()).unwrap()).is_ok());
        }
        let from_jwks = PublicKeySet::parse(&keys.jwks().to_string()).unwrap();
        assert_eq!(from_jwks.key_ids().collect::<Vec<_>>(), vec!["a", "b"]);
        assert!(verify(&from_jwks, &policy(), &b.sign(claims()).unwrap()).is_ok());
    }

    #[test]
    fn bad_key_specs_are_errors() {
        assert!(PublicKeySet::parse("").unwrap().is_empty());
        assert!(PublicKeySet::parse("nokid").is_err());
        assert!(PublicKeySet::parse("k:AAAA").is_err());
        assert!(PublicKeySet::parse("{not json").is_err());
    }
}
