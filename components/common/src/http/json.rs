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
    let mut json = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut json)
        .map_err(|e| json_error(e.path().to_string(), e.into_inner()))?;
    // Trailing characters after the value are malformed JSON too.
    json.end().map_err(|e| json_error(String::new(), e))?;
    Ok(value)
}

/// `path` is where the value failed (`items[0].quantity`; `.` is the body).
fn json_error(path: String, e: serde_json::Error) -> ApiError {
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
            // serde_path_to_error names where the value failed (`items[0].quantity`).
            // A missing field fails at its parent object, and serde reports
            // its name only in the message (`missing field `name``), so that
            // one name is read from serde's own text.
            let text = e.to_string();
            let (field, code) = if text.starts_with("missing field") {
                let name = quoted_name(&text);
                (join(&path, name), "missing_field")
            } else if text.starts_with("unknown field") {
                (Some(path), "unknown_field")
            } else {
                (Some(path), "invalid_type")
            };
            ApiError::validation(vec![position(
                field.filter(|f| !f.is_empty() && f != "."),
                code,
            )])
        }
    }
}

/// `parent.name`, or `name` at the top level.
fn join(parent: &str, name: Option<String>) -> Option<String> {
    let name = name?;
    Some(match parent {
        "." | "" => name,
        parent => format!("{parent}.{name}"),
    })
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
        assert_eq!(e.details[0].field.as_deref(), Some("email"));
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Order {
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        sku: String,
        quantity: u32,
    }

    #[test]
    fn nested_fields_are_named_by_their_path() {
        let body = br#"{"items":[{"sku":"a","quantity":1},{"sku":"b","quantity":-1}]}"#;
        let e = parse_body::<Order>(JSON, body).unwrap_err();
        assert_eq!(e.details[0].code, "invalid_type");
        assert_eq!(e.details[0].field.as_deref(), Some("items[1].quantity"));
        let e = parse_body::<Order>(JSON, br#"{"items":[{"sku":"a"}]}"#).unwrap_err();
        assert_eq!(e.details[0].code, "missing_field");
        assert_eq!(e.details[0].field.as_deref(), Some("items[0].quantity"));
        let e = parse_body::<Order>(JSON, br#"{"items":[{"sku":"a","quantity":1,"x":0}]}"#)
            .unwrap_err();
        assert_eq!(e.details[0].code, "unknown_field");
        assert_eq!(e.details[0].field.as_deref(), Some("items[0].x"));
    }

    #[test]
    fn trailing_characters_are_malformed_json() {
        let e = parse_body::<Login>(JSON, br#"{"email":"a","password":"b"} x"#).unwrap_err();
        assert_eq!(e.code, "malformed_json");
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
