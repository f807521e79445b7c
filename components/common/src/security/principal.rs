//! Who is calling: the verified identity from an access token, the two
//! roles, and the authorisation rules every component applies.

use crate::http::error::ApiError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A caller whose access token verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub role: Role,
    /// The token's id (`jti`), for revocation at logout.
    pub token_id: String,
    /// When the token expires (Unix seconds).
    pub expires_at: u64,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this operation is for administrators"))
        }
    }

    /// 403 unless the caller is `user_id` or an admin.
    pub fn require_self_or_admin(&self, user_id: &str) -> Result<(), ApiError> {
        if self.user_id == user_id || self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "only the user themself or an administrator may do this",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Principal {
        Principal {
            user_id: "u1".into(),
            role,
            token_id: "t".into(),
            expires_at: 0,
        }
    }

    #[test]
    fn users_reach_only_themselves_and_admins_reach_everyone() {
        assert!(caller(Role::User).require_self_or_admin("u1").is_ok());
        assert_eq!(
            caller(Role::User)
                .require_self_or_admin("u2")
                .unwrap_err()
                .status,
            403
        );
        assert!(caller(Role::Admin).require_self_or_admin("u2").is_ok());
        assert_eq!(caller(Role::User).require_admin().unwrap_err().status, 403);
        assert!(caller(Role::Admin).require_admin().is_ok());
    }

    #[test]
    fn roles_round_trip() {
        for r in [Role::User, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
