//! Authentication of a request: the bearer access token, verified with the
//! configured public keys ([`crate::security::tokens`]; a token verifies
//! once and is remembered until it expires) and checked against
//! revocations on every request; the caller becomes the request's [`Principal`].

use crate::http::error::ApiError;
use crate::http::request::ApiRequest;
use crate::security::principal::Principal;
use crate::security::tokens::{self, PublicKeySet, Rejection};

impl ApiRequest {
    /// The credential of `Authorization: Bearer <token>`.
    pub fn bearer_token(&self) -> Option<&str> {
        bearer(self.header("authorization")?)
    }

    /// The caller, from a bearer access token verified with the
    /// `jwt_public_keys` variable; 401 for any bad token, 503 when no keys
    /// are configured.
    pub fn authenticate(&self) -> Result<Principal, ApiError> {
        let keys = self
            .settings
            .public_keys
            .as_ref()
            .map_err(|why| ApiError::service_unavailable(why.clone()))?;
        self.authenticate_with(keys)
    }

    /// As [`ApiRequest::authenticate`], with the given keys.
    pub fn authenticate_with(&self, keys: &PublicKeySet) -> Result<Principal, ApiError> {
        let token = self.bearer_token().ok_or_else(|| {
            ApiError::unauthenticated(
                "this route needs an `Authorization: Bearer <access token>` header",
            )
        })?;
        let verified = tokens::verify_token_cached(keys, &self.settings.token_policy, token)
            .map_err(|rejection| ApiError::unauthenticated(rejection.message()))?;
        if tokens::is_refused(&verified)? {
            return Err(ApiError::unauthenticated(Rejection::Revoked.message()));
        }
        let principal = verified.principal;
        self.set_user(&principal.user_id);
        Ok(principal)
    }
}

/// The credential of an `Authorization: Bearer <token>` header value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_credentials_are_parsed() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer(" bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
