//! The users component's rules as plain functions: who may change what,
//! what a patch must look like, and when an `If-Match` precondition holds.

use accounts_model::Account;
use app_common::http::validate::{
    Problems, check_email, check_name, check_password, normalize_email,
};
use app_common::{ApiError, Principal, Role};
use serde::Deserialize;

/// `PATCH /api/users/:id` body; every field optional, unknown ones refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchBody {
    pub name: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
    pub current_password: Option<String>,
    pub role: Option<String>,
}

/// A validated patch: the new values, and the password to set (after the
/// current one is verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchPlan {
    pub name: String,
    pub email: String,
    pub role: Role,
    /// `(current password, new password)` when the password changes.
    pub password_change: Option<(String, String)>,
}

/// Checks a patch by `caller` of `current`: everyone may change their own
/// name, e-mail and password (the latter with the current password); only
/// admins may change roles. Returns every validation problem at once; a
/// role change by a non-admin is a 403.
pub fn plan_patch(
    caller: &Principal,
    current: &Account,
    body: &PatchBody,
) -> Result<PatchPlan, ApiError> {
    if body.role.is_some() && !caller.is_admin() {
        return Err(ApiError::forbidden("only administrators may change roles"));
    }
    let mut problems = Problems::new();
    if body.name.is_none() && body.email.is_none() && body.password.is_none() && body.role.is_none()
    {
        problems.add(
            "body",
            "empty_patch",
            "must contain at least one of: name, email, password, role",
        );
    }
    let name = match &body.name {
        Some(raw) => check_name(&mut problems, "name", raw),
        None => current.name.clone(),
    };
    let email = match &body.email {
        Some(raw) => {
            let email = normalize_email(raw);
            check_email(&mut problems, "email", &email);
            email
        }
        None => current.email.clone(),
    };
    let role = match body.role.as_deref() {
        Some(text) => Role::parse(text).unwrap_or_else(|| {
            problems.add("role", "invalid_role", "must be `user` or `admin`");
            current.role
        }),
        None => current.role,
    };
    let password_change = match (&body.password, &body.current_password) {
        (Some(new), Some(old)) => {
            check_password(&mut problems, "password", new, &email);
            Some((old.clone(), new.clone()))
        }
        (Some(new), None) => {
            check_password(&mut problems, "password", new, &email);
            problems.add(
                "currentPassword",
                "required",
                "is required to change the password",
            );
            None
        }
        (None, Some(_)) => {
            problems.add(
                "currentPassword",
                "unexpected",
                "is only accepted together with a new password",
            );
            None
        }
        (None, None) => None,
    };
    problems.into_result()?;
    Ok(PatchPlan {
        name,
        email,
        role,
        password_change,
    })
}

/// Whether an `If-Match` header allows writing a record at
/// `current_version` (shared with orders: [`app_common::http::headers::if_match_holds`]).
pub fn precondition_holds(if_match: Option<&str>, current_version: i64) -> bool {
    app_common::http::headers::if_match_holds(if_match, current_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account {
        Account {
            id: "u1".into(),
            email: "ada@example.com".into(),
            name: "Ada".into(),
            role: Role::User,
            password_hash: "$argon2id$...".into(),
            version: 3,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn caller(role: Role) -> Principal {
        Principal {
            user_id: "u1".into(),
            role,
            token_id: "t".into(),
            expires_at: 0,
        }
    }

    fn codes(e: &ApiError) -> Vec<&str> {
        e.details.iter().map(|d| d.code.as_str()).collect()
    }

    #[test]
    fn a_user_may_change_name_and_email() {
        let body = PatchBody {
            name: Some(" Ada L. ".into()),
            email: Some("ADA@lovelace.org".into()),
            ..Default::default()
        };
        let plan = plan_patch(&caller(Role::User), &account(), &body).unwrap();
        assert_eq!(plan.name, "Ada L.");
        assert_eq!(plan.email, "ada@lovelace.org");
        assert_eq!(plan.role, Role::User);
        assert_eq!(plan.password_change, None);
    }

    #[test]
    fn only_admins_change_roles() {
        let body = PatchBody {
            role: Some("admin".into()),
            ..Default::default()
        };
        assert_eq!(
            plan_patch(&caller(Role::User), &account(), &body)
                .unwrap_err()
                .status,
            403
        );
        let plan = plan_patch(&caller(Role::Admin), &account(), &body).unwrap();
        assert_eq!(plan.role, Role::Admin);
        let bad = PatchBody {
            role: Some("root".into()),
            ..Default::default()
        };
        let e = plan_patch(&caller(Role::Admin), &account(), &bad).unwrap_err();
        assert_eq!(codes(&e), vec!["invalid_role"]);
    }

    #[test]
    fn a_password_change_needs_the_current_password_and_the_rules() {
        let body = PatchBody {
            password: Some("short".into()),
            ..Default::default()
        };
        let e = plan_patch(&caller(Role::User), &account(), &body).unwrap_err();
        assert_eq!(codes(&e), vec!["too_short", "required"]);
        let body = PatchBody {
            current_password: Some("x".into()),
            ..Default::default()
        };
        let e = plan_patch(&caller(Role::User), &account(), &body).unwrap_err();
        assert_eq!(codes(&e), vec!["empty_patch", "unexpected"]);
        let body = PatchBody {
            password: Some("a brand new passphrase".into()),
            current_password: Some("old one".into()),
            ..Default::default()
        };
        let plan = plan_patch(&caller(Role::User), &account(), &body).unwrap();
        assert_eq!(
            plan.password_change,
            Some(("old one".into(), "a brand new passphrase".into()))
        );
    }

    #[test]
    fn empty_and_invalid_patches_list_every_problem() {
        let e = plan_patch(&caller(Role::User), &account(), &PatchBody::default()).unwrap_err();
        assert_eq!(codes(&e), vec!["empty_patch"]);
        let body = PatchBody {
            name: Some("".into()),
            email: Some("nope".into()),
            ..Default::default()
        };
        let e = plan_patch(&caller(Role::User), &account(), &body).unwrap_err();
        assert_eq!(codes(&e), vec!["required", "invalid_email"]);
    }

    #[test]
    fn if_match_uses_strong_comparison() {
        assert!(precondition_holds(None, 3));
        assert!(precondition_holds(Some("*"), 3));
        assert!(precondition_holds(Some("\"3\""), 3));
        assert!(precondition_holds(Some("\"1\", \"3\""), 3));
        assert!(!precondition_holds(Some("\"2\""), 3));
        assert!(!precondition_holds(Some("W/\"3\""), 3));
        assert!(!precondition_holds(Some("3"), 3));
        assert!(!precondition_holds(Some(""), 3));
    }
}
