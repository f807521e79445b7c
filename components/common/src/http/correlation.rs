//! Correlation ids: every response carries `x-correlation-id`, echoed from
//! the request when it is a sane value, generated otherwise, so one id ties
//! a client's report to the log line of its request.

use crate::util::ids;

pub const HEADER: &str = "x-correlation-id";

/// Longest id accepted from a client.
pub const MAX_LEN: usize = 64;

/// 1–64 characters of `[A-Za-z0-9._-]`: safe to echo and to log.
pub fn is_sane(candidate: &str) -> bool {
    !candidate.is_empty()
        && candidate.len() <= MAX_LEN
        && candidate
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The client's id when sane, else a fresh random one.
pub fn accept_or_generate(from_client: Option<&str>) -> String {
    match from_client.map(str::trim) {
        Some(id) if is_sane(id) => id.to_string(),
        _ => ids::hex(&ids::random_bytes::<16>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_echoed() {
        assert_eq!(accept_or_generate(Some("req-1.a_B")), "req-1.a_B");
    }

    #[test]
    fn unsafe_or_long_ids_are_replaced() {
        for bad in ["", "has space", "new\nline", "<script>", &"x".repeat(65)] {
            let id = accept_or_generate(Some(bad));
            assert_ne!(id, bad);
            assert!(is_sane(&id), "{id}");
            assert_eq!(id.len(), 32);
        }
        assert!(is_sane(&accept_or_generate(None)));
        assert!(is_sane(&"x".repeat(64)));
    }
}
