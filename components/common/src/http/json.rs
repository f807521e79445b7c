//! JSON request bodies: the media type must be JSON (415 otherwise),
//! malformed JSON is a 400 naming the parser's line and column, and a body
//! of the wrong shape (unknown field — every request type uses
//! `#[serde(deny_unknown_fields)]` —, missing field, wrong type) is a 400
//! naming the field.

use crate::http::error::{ApiError, Detail};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

/// `application/json` or any `+json` type, parameters ignored.
pub fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON request body into `T`.
pub fn parse_body<T: DeserializeOwned>(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<T, ApiError> {
    match content_type {
        Some(ct) if is_json_media_type(ct) => {}
        Some(ct) => {
            return Err(ApiError::unsupported_media_type(format!(
                "expected a JSON body (Content-Type: application/json), got `{}`",
                ct.chars().take(100).collect::<String>()
            )));
        }
        None if body.is_empty() => {}
        None => {
            return Err(ApiError::unsupported_media_type(
                "expected a JSON body with Content-Type: application/json",
            ));
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            400,
            "malformed_json",
            "the request body is empty; expected a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(json_error)
}

fn json_error(e: serde_json::Error) -> ApiError {
    let position = |field: Option<String>, code: &str| Detail {
        field,
        code: code.to_string(),
        message: e.to_string(),
        line: Some(e.line()),
        column: Some(e.column()),
    };
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            400,
            "malformed_json",
            format!("malformed JSON at line {} column {}", e.line(), e.column()),
        )
        .with_details(vec![position(None, "syntax")]),
        Category::Data => {
            let text = e.to_string();
            let (field, code) = if text.starts_with("unknown field") {
                (quoted_name(&text), "unknown_field")
            } else if text.starts_with("missing field") {
                (quoted_name(&text), "missing_field")
            } else {
                (None, "invalid_type")
            };
            ApiError::validation(vec![position(field, code)])
        }
    }
}

/// The first `` `name` `` in a serde message.
fn quoted_name(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Login {
        email: String,
        password: String,
    }

    const JSON: Option<&str> = Some("application/json; charset=utf-8");

    #[test]
    fn accepts_a_matching_body() {
        let l: Login = parse_body(JSON, br#"{"email":"a@b.c","password":"x"}"#).unwrap();
        assert_eq!(l.email, "a@b.c");
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let e = parse_body::<Login>(JSON, b"{\n  \"email\": \"a\",\n  oops\n}").unwrap_err();
        assert_eq!((e.status, e.code), (400, "malformed_json"));
        assert!(e.message.contains("line 3 column 3"), "{}", e.message);
        assert_eq!(e.details[0].line, Some(3));
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let e = parse_body::<Login>(JSON, br#"{"email":"a","password":"b","isAdmin":true}"#)
            .unwrap_err();
        assert_eq!((e.status, e.code), (400, "validation_failed"));
        assert_eq!(e.details[0].field.as_deref(), Some("isAdmin"));
        assert_eq!(e.details[0].code, "unknown_field");
        let e = parse_body::<Login>(JSON, br#"{"email":"a"}"#).unwrap_err();
        assert_eq!(e.details[0].field.as_deref(), Some("password"));
        let e = parse_body::<Login>(JSON, br#"{"email":1,"password":"b"}"#).unwrap_err();
        assert_eq!(e.details[0].code, "invalid_type");
    }

    #[test]
    fn media_type_must_be_json() {
        let e = parse_body::<Login>(Some("text/plain"), b"{}").unwrap_err();
        assert_eq!(e.status, 415);
        assert!(is_json_media_type("application/problem+json"));
        assert!(!is_json_media_type("application/jsonx"));
        let e = parse_body::<Login>(JSON, b"  ").unwrap_err();
        assert_eq!(e.status, 400);
    }
}
