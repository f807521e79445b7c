//! Response headers every answer carries (security headers), the JSON
//! content type, and the request headers handlers read (`If-Match`,
//! `Cookie`).

/// Sent on every response, errors included.
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// Whether an `If-Match` header allows writing a record at
/// `current_version` (its `ETag` is `"<version>"`): absent or `*` always;
/// otherwise one of the listed strong entity tags must be the current
/// version. Weak tags never match (RFC 9110 strong comparison).
pub fn if_match_holds(if_match: Option<&str>, current_version: i64) -> bool {
    let Some(header) = if_match.map(str::trim) else {
        return true;
    };
    if header == "*" {
        return true;
    }
    header.split(',').map(str::trim).any(|tag| {
        tag.strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .and_then(|t| t.parse::<i64>().ok())
            == Some(current_version)
    })
}

/// The value of cookie `name` in a `Cookie` request header (surrounding
/// double quotes removed); pairs that do not parse are skipped.
pub fn cookie_value<'a>(cookie_header: &'a str, name: &str) -> Option<&'a str> {
    cookie::Cookie::split_parse(cookie_header)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .and_then(|c| c.value_raw())
        .map(|v| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let h = "theme=dark; refresh_token=rt_abc.def ; x=\"q\"";
        assert_eq!(cookie_value(h, "refresh_token"), Some("rt_abc.def"));
        assert_eq!(cookie_value(h, "x"), Some("q"));
        assert_eq!(cookie_value(h, "refresh"), None);
    }
}
