//! Structured logs: one JSON line per request on stdout (component, method,
//! route template, status, duration, correlation id, user id), plus the
//! cause of an internal error. Every string in a log line passes through
//! [`redact`], which masks passwords, tokens, secrets and card-like
//! numbers wherever they appear.

use serde::Serialize;
use serde_json::Value;

const REDACTED: &str = "[REDACTED]";

/// Field names whose values are secret (matched case-insensitively as a
/// part of the name: `password`, `currentPassword`, `refreshToken`, ...).
const SECRET_NAME_PARTS: [&str; 6] = [
    "password",
    "token",
    "secret",
    "authorization",
    "cookie",
    "apikey",
];

/// One request, as logged.
#[derive(Debug, Serialize)]
pub struct RequestLog<'a> {
    pub ts: String,
    pub level: &'static str,
    pub msg: &'static str,
    pub component: &'a str,
    pub method: &'a str,
    /// The route template (`/api/users/:id`), never the raw path.
    pub route: &'a str,
    pub status: u16,
    pub duration_ms: f64,
    pub correlation_id: &'a str,
    pub user_id: Option<&'a str>,
    pub client: &'a str,
    /// The error code of a failed request (`validation_failed`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'a str>,
    /// The cause of an internal error (never sent to the client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The JSON line for `log`, redacted.
pub fn render(log: &RequestLog<'_>) -> String {
    let mut value = serde_json::to_value(log).unwrap_or(Value::Null);
    redact_strings(&mut value);
    value.to_string()
}

/// Writes the line to stdout.
pub fn emit(log: &RequestLog<'_>) {
    println!("{}", render(log));
}

/// Writes any JSON log line (events, background work) to stdout, redacted
/// like request lines.
pub fn emit_value(mut value: Value) {
    redact_strings(&mut value);
    println!("{value}");
}

fn redact_strings(value: &mut Value) {
    match value {
        Value::String(s) => *s = redact(s),
        Value::Array(items) => items.iter_mut().for_each(redact_strings),
        Value::Object(map) => map.values_mut().for_each(redact_strings),
        _ => {}
    }
}

/// Masks secrets in free text: values of secret-named fields
/// (`"password":"..."`, `token=...`), bearer credentials, JWTs, refresh
/// tokens (`rt_...`) and card-like numbers (13–19 digits, optionally
/// grouped by spaces or hyphens).
pub fn redact(text: &str) -> String {
    let text = redact_bearer(text);
    let text = redact_secret_fields(&text);
    let text = redact_words(&text);
    redact_card_numbers(&text)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_token_byte(b: u8) -> bool {
    is_word_byte(b) || b == b'.' || b == b'~' || b == b'+' || b == b'/' || b == b'='
}

fn into_string(bytes: Vec<u8>) -> String {
    // Every edit replaces whole ASCII runs, so UTF-8 stays valid; lossy
    // conversion is only a guard.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `Bearer <credential>` → `Bearer [REDACTED]`.
fn redact_bearer(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let at_word_start = i == 0 || !is_word_byte(bytes[i - 1]);
        if at_word_start
            && bytes.len() - i > 7
            && bytes[i..i + 6].eq_ignore_ascii_case(b"bearer")
            && bytes[i + 6] == b' '
        {
            let mut j = i + 6;
            while j < bytes.len() && bytes[j] == b' ' {
                j += 1;
            }
            let start = j;
            while j < bytes.len() && is_token_byte(bytes[j]) {
                j += 1;
            }
            out.extend_from_slice(&bytes[i..start]);
            if j > start {
                out.extend_from_slice(REDACTED.as_bytes());
            }
            i = j;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    into_string(out)
}

fn is_secret_name(word: &[u8]) -> bool {
    let lower = word.to_ascii_lowercase();
    let lower = String::from_utf8_lossy(&lower);
    SECRET_NAME_PARTS.iter().any(|p| lower.contains(p))
}

/// `"password": "x"`, `password=x`, `refreshToken: x` → value masked.
fn redact_secret_fields(text: &str) -> String {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        if !is_word_byte(bytes[i]) || (i > 0 && is_word_byte(bytes[i - 1])) {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let mut j = i;
        while j < n && is_word_byte(bytes[j]) {
            j += 1;
        }
        let word = &bytes[i..j];
        out.extend_from_slice(word);
        i = j;
        if !is_secret_name(word) {
            continue;
        }
        // Separator: optional closing quote, spaces, `:` or `=`, spaces.
        let mut k = j;
        if k < n && (bytes[k] == b'"' || bytes[k] == b'\'') {
            k += 1;
        }
        while k < n && bytes[k] == b' ' {
            k += 1;
        }
        if k >= n || (bytes[k] != b':' && bytes[k] != b'=') {
            continue;
        }
        k += 1;
        while k < n && bytes[k] == b' ' {
            k += 1;
        }
        out.extend_from_slice(&bytes[j..k]);
        if k < n && (bytes[k] == b'"' || bytes[k] == b'\'') {
            let quote = bytes[k];
            let mut m = k + 1;
            while m < n && bytes[m] != quote {
                if bytes[m] == b'\\' {
                    m += 1;
                }
                m += 1;
            }
            out.push(quote);
            out.extend_from_slice(REDACTED.as_bytes());
            out.push(quote);
            i = (m + 1).min(n);
        } else {
            let mut m = k;
            while m < n && !b",;& \t\r\n}]".contains(&bytes[m]) {
                m += 1;
            }
            if m > k {
                out.extend_from_slice(REDACTED.as_bytes());
            }
            i = m;
        }
    }
    into_string(out)
}

/// JWTs (`eyJ...` with two dots) and refresh tokens (`rt_` + 20 or more
/// token characters) anywhere in the text.
fn redact_words(text: &str) -> String {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let at_word_start = i == 0 || !is_token_byte(bytes[i - 1]);
        if at_word_start && (bytes[i..].starts_with(b"eyJ") || bytes[i..].starts_with(b"rt_")) {
            let mut j = i;
            while j < n && is_token_byte(bytes[j]) {
                j += 1;
            }
            let word = &bytes[i..j];
            let is_jwt =
                word.starts_with(b"eyJ") && word.iter().filter(|b| **b == b'.').count() >= 2;
            let is_refresh = word.starts_with(b"rt_") && word.len() >= 23;
            if is_jwt || is_refresh {
                out.extend_from_slice(REDACTED.as_bytes());
            } else {
                out.extend_from_slice(word);
            }
            i = j;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    into_string(out)
}

/// 13–19 digits, optionally grouped by single spaces or hyphens, standing
/// alone (not inside a longer word such as a hex id).
fn redact_card_numbers(text: &str) -> String {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let at_start = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if at_start && bytes[i].is_ascii_digit() {
            let mut j = i;
            let mut digits = 0;
            let mut end = i;
            while j < n {
                if bytes[j].is_ascii_digit() {
                    digits += 1;
                    j += 1;
                    end = j;
                } else if (bytes[j] == b' ' || bytes[j] == b'-')
                    && j + 1 < n
                    && bytes[j + 1].is_ascii_digit()
                {
                    j += 1;
                } else {
                    break;
                }
            }
            let ends_word = end == n || !bytes[end].is_ascii_alphanumeric();
            if (13..=19).contains(&digits) && ends_word {
                out.extend_from_slice(b"[REDACTED_NUMBER]");
            } else {
                out.extend_from_slice(&bytes[i..end]);
            }
            i = end;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    into_string(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_are_masked_in_json_and_forms() {
        assert_eq!(
            redact(r#"{"email":"a@b.io","password":"hunter2 is long","name":"x"}"#),
            r#"{"email":"a@b.io","password":"[REDACTED]","name":"x"}"#
        );
        assert_eq!(
            redact(r#"{"currentPassword": "a\"b", "refreshToken":"abc"}"#),
            r#"{"currentPassword": "[REDACTED]", "refreshToken":"[REDACTED]"}"#
        );
        assert_eq!(
            redact("password=hunter2&user=ada"),
            "password=[REDACTED]&user=ada"
        );
        assert_eq!(
            redact("client_secret: s3cr3t, ok"),
            "client_secret: [REDACTED], ok"
        );
        assert_eq!(redact("no secrets here: 42"), "no secrets here: 42");
    }

    #[test]
    fn tokens_are_masked_anywhere() {
        let jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        assert_eq!(redact(&format!("got {jwt} x")), "got [REDACTED] x");
        assert_eq!(
            redact(&format!("Authorization: Bearer {jwt}")),
            "Authorization: [REDACTED] [REDACTED]"
        );
        assert_eq!(redact("bearer abc.def"), "bearer [REDACTED]");
        assert_eq!(
            redact("reuse of rt_0123456789abcdef.SECRETSECRETSECRET"),
            "reuse of [REDACTED]"
        );
        assert_eq!(redact("rt_short"), "rt_short");
    }

    #[test]
    fn card_like_numbers_are_masked() {
        assert_eq!(
            redact("card 4111 1111 1111 1111 expired"),
            "card [REDACTED_NUMBER] expired"
        );
        assert_eq!(redact("4111-1111-1111-1111"), "[REDACTED_NUMBER]");
        assert_eq!(redact("4111111111111111"), "[REDACTED_NUMBER]");
        assert_eq!(
            redact("order 12345 of 2024-05-01"),
            "order 12345 of 2024-05-01"
        );
        let hex_id = "a1234567890123456789b";
        assert_eq!(redact(hex_id), hex_id);
    }

    #[test]
    fn non_ascii_text_survives() {
        assert_eq!(
            redact("naïve café password=ü"),
            "naïve café password=[REDACTED]"
        );
    }

    #[test]
    fn log_lines_are_one_redacted_json_object() {
        let line = render(&RequestLog {
            ts: "t".into(),
            level: "error",
            msg: "request",
            component: "auth",
            method: "POST",
            route: "/api/auth/login",
            status: 500,
            duration_ms: 1.5,
            correlation_id: "c1",
            user_id: None,
            client: "127.0.0.1",
            error_code: Some("internal_error"),
            error: Some(r#"insert failed: {"password":"pw1234567890"}"#.into()),
        });
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["route"], "/api/auth/login");
        assert_eq!(v["status"], 500);
        assert_eq!(v["user_id"], Value::Null);
        assert!(!line.contains("pw1234567890"), "{line}");
    }
}
