//! Wall-clock time as Unix seconds/milliseconds and RFC 3339 text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn now_secs() -> u64 {
    now_millis() / 1000
}

/// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z).
const LATEST_MILLIS: u64 = 253_402_300_800_000 - 1;

/// `2024-05-01T12:00:00.123Z` for a Unix time in milliseconds (formatted
/// by `humantime`; a time past year 9999, which no record holds, is
/// written as the latest instant RFC 3339 can spell rather than panic).
pub fn rfc3339_millis(unix_millis: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(unix_millis.min(LATEST_MILLIS));
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_714_564_800_123),
            "2024-05-01T12:00:00.123Z"
        );
        assert_eq!(rfc3339_millis(u64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn clock_is_after_2020() {
        assert!(now_secs() > 1_577_836_800);
    }
}
