//! Cursor pagination: `limit` (1–100, default 20) and an opaque `cursor`
//! naming where the previous page ended. Cursors are URL-safe base64 of a
//! versioned position so clients cannot build or edit them meaningfully;
//! a cursor that does not decode is a 400.

use crate::http::error::{ApiError, Detail};
use crate::util::encoding::{base64url, decode_base64url};

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

const CURSOR_VERSION: &str = "v1:";

/// `limit` from the query string.
pub fn parse_limit(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::validation(vec![Detail::field(
            "limit",
            "out_of_range",
            format!("must be a whole number from 1 to {MAX_LIMIT}"),
        )])),
    }
}

/// The opaque cursor for "after `position`".
pub fn encode_cursor(position: &str) -> String {
    base64url(format!("{CURSOR_VERSION}{position}").as_bytes())
}

/// The position inside a cursor from [`encode_cursor`].
pub fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    decode_base64url(cursor.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(CURSOR_VERSION).map(str::to_string))
        .filter(|position| !position.is_empty())
        .ok_or_else(|| {
            ApiError::validation(vec![Detail::field(
                "cursor",
                "invalid_cursor",
                "is not a cursor this API returned",
            )])
        })
}

/// One page: the items and the cursor of the next page, if any.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched rows: the extra row only
    /// tells that another page exists. `position` gives a row's cursor
    /// position.
    pub fn from_rows(mut rows: Vec<T>, limit: usize, position: impl Fn(&T) -> String) -> Page<T> {
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more {
            rows.last().map(|last| encode_cursor(&position(last)))
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded() {
        assert_eq!(parse_limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(parse_limit(Some("100")).unwrap(), 100);
        for bad in ["0", "101", "-1", "ten", ""] {
            assert_eq!(parse_limit(Some(bad)).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_tampering() {
        let c = encode_cursor("0190-abc");
        assert!(!c.contains("0190"), "opaque");
        assert_eq!(decode_cursor(&c).unwrap(), "0190-abc");
        for bad in ["", "!!!", &base64url(b"v2:x"), &base64url(b"v1:")] {
            assert_eq!(decode_cursor(bad).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn pages_know_whether_more_follow() {
        let p = Page::from_rows(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(p.items, vec![1, 2]);
        assert_eq!(
            decode_cursor(p.next_cursor.as_deref().unwrap()).unwrap(),
            "2"
        );
        let p = Page::from_rows(vec![1, 2], 2, |n| n.to_string());
        assert_eq!(p.next_cursor, None);
    }
}
