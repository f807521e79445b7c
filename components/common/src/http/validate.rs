//! Input rules shared by components: e-mail addresses, display names,
//! passwords, roles. Each check adds every problem it finds to a
//! [`Problems`] list so one 400 names all failed rules at once.

use crate::http::error::{ApiError, Detail};

pub const PASSWORD_MIN_CHARS: usize = 10;
pub const PASSWORD_MAX_CHARS: usize = 256;
pub const NAME_MAX_CHARS: usize = 100;
pub const EMAIL_MAX_LEN: usize = 254;

/// Shortest e-mail local part that a password may not contain (shorter ones
/// would forbid too many unrelated passwords).
pub const LOCAL_PART_MIN_FOR_CONTAINMENT: usize = 3;

const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// The problems found so far in one request.
#[derive(Debug, Default)]
pub struct Problems(Vec<Detail>);

impl Problems {
    pub fn new() -> Problems {
        Problems::default()
    }

    pub fn add(&mut self, field: &str, code: &str, message: impl Into<String>) {
        self.0.push(Detail::field(field, code, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn details(&self) -> &[Detail] {
        &self.0
    }

    /// `Ok` when nothing was found, else a 400 listing everything.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}

/// Trimmed and lower-cased: the form stored and compared.
pub fn normalize_email(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// Checks an already normalised address: `local@domain.tld`, at most 254
/// characters, local part at most 64 of the usual atom characters with no
/// leading, trailing or doubled dots, domain of dot-separated labels of
/// letters, digits and inner hyphens with at least two labels.
pub fn check_email(problems: &mut Problems, field: &str, email: &str) {
    if !is_valid_email(email) {
        problems.add(field, "invalid_email", "must be a valid e-mail address");
    }
}

fn is_valid_email(email: &str) -> bool {
    if email.is_empty() || email.len() > EMAIL_MAX_LEN {
        return false;
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

/// Trims a display name and checks it: 1–100 characters, no control
/// characters. Returns the trimmed name.
pub fn check_name(problems: &mut Problems, field: &str, raw: &str) -> String {
    let name = raw.trim().to_string();
    let chars = name.chars().count();
    if chars == 0 {
        problems.add(field, "required", "must not be empty");
    } else if chars > NAME_MAX_CHARS {
        problems.add(
            field,
            "too_long",
            format!("must be at most {NAME_MAX_CHARS} characters"),
        );
    }
    if name.chars().any(char::is_control) {
        problems.add(
            field,
            "control_characters",
            "must not contain control characters",
        );
    }
    name
}

/// Password rules: at least 10 (at most 256) characters, not a frequently
/// used password, not containing the local part of the owner's e-mail
/// address. Every broken rule is reported.
pub fn check_password(problems: &mut Problems, field: &str, password: &str, email: &str) {
    let chars = password.chars().count();
    if chars < PASSWORD_MIN_CHARS {
        problems.add(
            field,
            "too_short",
            format!("must be at least {PASSWORD_MIN_CHARS} characters"),
        );
    }
    if chars > PASSWORD_MAX_CHARS {
        problems.add(
            field,
            "too_long",
            format!("must be at most {PASSWORD_MAX_CHARS} characters"),
        );
    }
    if is_common_password(password) {
        problems.add(
            field,
            "too_common",
            "is one of the most frequently used passwords",
        );
    }
    let local = normalize_email(email)
        .rsplit_once('@')
        .map(|(l, _)| l.to_string())
        .unwrap_or_default();
    if local.chars().count() >= LOCAL_PART_MIN_FOR_CONTAINMENT
        && password.to_lowercase().contains(&local)
    {
        problems.add(
            field,
            "contains_email",
            "must not contain the e-mail address's local part",
        );
    }
}

pub fn is_common_password(password: &str) -> bool {
    let candidate = password.to_lowercase();
    COMMON_PASSWORDS
        .lines()
        .filter(|l| !l.starts_with('#'))
        .any(|l| l.trim() == candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(check: impl FnOnce(&mut Problems)) -> Vec<String> {
        let mut p = Problems::new();
        check(&mut p);
        p.details().iter().map(|d| d.code.clone()).collect()
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalize_email("  Ada@Example.COM "), "ada@example.com");
        for ok in ["ada@example.com", "a.b+tag@sub.example.co", "x@a-b.io"] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a..b@example.com",
            ".a@example.com",
            "ada@-example.com",
            "ada@exa mple.com",
            "a@b@example.com",
            "ada@example..com",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
        assert!(!is_valid_email(&format!("{}@example.com", "a".repeat(65))));
    }

    #[test]
    fn weak_passwords_list_every_failed_rule() {
        for weak in ["password", "12345678", "qwerty", "letmein"] {
            assert_eq!(
                codes(|p| check_password(p, "password", weak, "ada@example.com")),
                vec!["too_short", "too_common"],
                "{weak}"
            );
        }
        assert_eq!(
            codes(|p| check_password(p, "password", "Password123", "x@example.com")),
            vec!["too_common"]
        );
        assert_eq!(
            codes(|p| check_password(p, "password", "my-ADA.LOVELACE-pw", "ada.lovelace@x.io")),
            vec!["contains_email"]
        );
        assert!(
            codes(|p| check_password(p, "password", "correct horse battery", "ada@example.com"))
                .is_empty()
        );
        assert_eq!(
            codes(|p| check_password(p, "password", &"x".repeat(257), "a@b.io")),
            vec!["too_long"]
        );
    }

    #[test]
    fn short_local_parts_do_not_forbid_passwords() {
        assert!(codes(|p| check_password(p, "password", "jo-is-fine-here", "jo@x.io")).is_empty());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        let mut p = Problems::new();
        assert_eq!(check_name(&mut p, "name", "  Ada  "), "Ada");
        assert!(p.is_empty());
        assert_eq!(
            codes(|p| {
                check_name(p, "name", "   ");
            }),
            vec!["required"]
        );
        assert_eq!(
            codes(|p| {
                check_name(p, "name", &"x".repeat(101));
            }),
            vec!["too_long"]
        );
        assert_eq!(
            codes(|p| {
                check_name(p, "name", "a\u{0}b");
            }),
            vec!["control_characters"]
        );
    }

    #[test]
    fn problems_become_one_error() {
        let mut p = Problems::new();
        p.add("a", "x", "first");
        p.add("b", "y", "second");
        let e = p.into_result().unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.details.len(), 2);
        assert!(Problems::new().into_result().is_ok());
    }
}
