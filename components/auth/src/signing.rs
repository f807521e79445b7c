//! Access-token issuing: the one place holding the private key. Tokens are
//! Ed25519 (`EdDSA`) JWTs with `kid`, `iss`, `aud`, `sub`, `iat`, `nbf`,
//! `exp`, a random `jti` and `iatMs` (the issue time in milliseconds, which
//! a password change's revocation marker is compared with); everyone else
//! verifies them with the public key only ([`app_common::security::tokens`]).
//!
//! The key comes from the secret variable `jwt_signing_key` as
//! `kid:base64-ed25519-key-pair` (64 bytes: seed then public key, as
//! `Ed25519KeyPair::to_bytes` writes it). There is no built-in key: without
//! the variable, routes that issue tokens answer 503.

use anyhow::{Context as _, Result, anyhow};
use app_common::security::principal::Role;
use app_common::security::tokens::{AccessClaims, TokenPolicy};
use app_common::util::encoding::decode_base64;
use jwt_simple::prelude::{Claims, Duration, Ed25519KeyPair, EdDSAKeyPairLike};

pub struct Signer {
    kid: String,
    key_pair: Ed25519KeyPair,
    policy: TokenPolicy,
    access_ttl_secs: u64,
}

/// A freshly signed access token.
pub struct AccessToken {
    pub token: String,
    pub expires_in: u64,
}

impl Signer {
    pub fn parse(spec: &str, policy: TokenPolicy, access_ttl_secs: u64) -> Result<Signer> {
        let (kid, key) = spec
            .trim()
            .split_once(':')
            .context("`jwt_signing_key` must be `kid:base64-ed25519-key-pair`")?;
        let kid = kid.trim();
        if kid.is_empty() {
            anyhow::bail!("`jwt_signing_key` has an empty key id");
        }
        let bytes = decode_base64(key).context("`jwt_signing_key` key part")?;
        let key_pair = Ed25519KeyPair::from_bytes(&bytes)
            .map_err(|e| anyhow!("`jwt_signing_key` is not a 64-byte Ed25519 key pair: {e}"))?
            .with_key_id(kid);
        Ok(Signer {
            kid: kid.to_string(),
            key_pair,
            policy,
            access_ttl_secs,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.key_pair.public_key().to_bytes()
    }

    pub fn issue(&self, user_id: &str, role: Role) -> Result<AccessToken> {
        let claims = Claims::with_custom_claims(
            AccessClaims {
                role,
                issued_at_ms: Some(app_common::util::time::now_millis()),
            },
            Duration::from_secs(self.access_ttl_secs),
        )
        .with_issuer(&self.policy.issuer)
        .with_audience(&self.policy.audience)
        .with_subject(user_id)
        .with_jwt_id(app_common::util::ids::hex(
            &app_common::util::ids::random_bytes::<16>(),
        ));
        let token = self
            .key_pair
            .sign(claims)
            .map_err(|e| anyhow!("sign access token: {e}"))?;
        Ok(AccessToken {
            token,
            expires_in: self.access_ttl_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app_common::security::tokens::{PublicKeySet, verify};
    use app_common::util::encoding::base64url;

    fn policy() -> TokenPolicy {
        TokenPolicy {
            issuer: "app-auth".into(),
            audience: "app-api".into(),
        }
    }

    #[test]
    fn issued_tokens_verify_with_the_public_key_only() {
        let kp = Ed25519KeyPair::generate();
        let signer =
            Signer::parse(&format!("k1:{}", base64url(&kp.to_bytes())), policy(), 900).unwrap();
        let mut keys = PublicKeySet::default();
        keys.add(signer.kid(), &signer.public_key()).unwrap();
        let a = signer.issue("user-1", Role::Admin).unwrap();
        let b = signer.issue("user-1", Role::Admin).unwrap();
        let p = verify(&keys, &policy(), &a.token).unwrap();
        assert_eq!(p.user_id, "user-1");
        assert_eq!(p.role, Role::Admin);
        assert_ne!(
            p.token_id,
            verify(&keys, &policy(), &b.token).unwrap().token_id
        );
        assert_eq!(a.expires_in, 900);
        let now = jwt_simple::prelude::Clock::now_since_epoch().as_secs();
        assert!((now + 899..=now + 901).contains(&p.expires_at));
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in ["", "nokid", ":AAAA", "k1:AAAA", "k1:!!"] {
            assert!(Signer::parse(bad, policy(), 900).is_err(), "{bad}");
        }
    }
}
