//! Fuzz targets for what every component parses from outside: JSON
//! bodies, cookies, CORS origin lists, correlation ids, pagination
//! parameters, e-mail addresses and base64 token parts.
//!
//! Under `cargo test` each target runs a short random campaign (bolero's
//! test engine); `FUZZ_ITERATIONS` makes it longer (`cargo xtask fuzz`).
//! Property: a value or a clear error, never a panic.

use crate::http::error::ApiError;
use serde::Deserialize;

fn iterations() -> usize {
    std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // only parsed
struct Body {
    name: String,
    count: u32,
    tags: Option<Vec<String>>,
}

#[test]
fn fuzz_json_bodies() {
    bolero::check!()
        .with_type::<(bool, Vec<u8>)>()
        .with_iterations(iterations())
        .for_each(|(typed, body)| {
            let content_type = typed.then_some("application/json");
            match crate::http::json::parse_body::<Body>(content_type, body) {
                Ok(_) => assert!(*typed),
                Err(ApiError {
                    status, message, ..
                }) => {
                    assert!(matches!(status, 400 | 415), "{status}: {message}");
                    assert!(!message.is_empty());
                }
            }
        });
}

#[test]
fn fuzz_json_shaped_bodies() {
    // Past the tokenizer: objects whose fields and values are arbitrary.
    bolero::check!()
        .with_type::<(String, String, i64)>()
        .with_iterations(iterations())
        .for_each(|(field, value, n)| {
            let body = serde_json::json!({ "name": value, field.as_str(): n, "count": n });
            let r = crate::http::json::parse_body::<Body>(
                Some("application/json"),
                body.to_string().as_bytes(),
            );
            if let Err(e) = r {
                assert_eq!(e.status, 400, "{}", e.message);
            }
        });
}

#[test]
fn fuzz_headers_and_parameters() {
    bolero::check!()
        .with_type::<(String, String)>()
        .with_iterations(iterations())
        .for_each(|(header, name)| {
            if let Some(v) = crate::http::headers::cookie_value(header, name) {
                assert!(header.contains(v));
            }
            let cors = crate::http::cors::CorsPolicy::parse(header);
            let _ = cors.response_headers(Some(name));
            let id = crate::http::correlation::accept_or_generate(Some(header));
            assert!(crate::http::correlation::is_sane(&id), "{id:?}");
            let _ = crate::http::pagination::parse_limit(Some(header));
            if let Ok(position) = crate::http::pagination::decode_cursor(header) {
                assert_eq!(
                    crate::http::pagination::decode_cursor(
                        &crate::http::pagination::encode_cursor(&position)
                    )
                    .ok(),
                    Some(position)
                );
            }
            let _ = crate::util::encoding::decode_base64url(header);
            let _ = crate::http::validate::normalize_email(header);
        });
}
