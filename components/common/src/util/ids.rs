//! Identifiers and secrets: random bytes from the platform (WASI
//! `random` in a component), time-ordered record ids (UUID version 7),
//! SHA-256 digests and hex encoding (`uuid` and `hex` do the formatting).

/// `N` bytes from the platform's cryptographically secure source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // A platform without a working random source cannot run this app
    // safely at all; failing the request (a trap → 500) is the only answer.
    getrandom::fill(&mut bytes).expect("the platform's random source failed");
    bytes
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// SHA-256 of `bytes` as hex: how secrets such as refresh tokens are
/// stored (the store never holds a usable token).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&hmac_sha256::Hash::hash(bytes))
}

/// A new record id: a UUID version 7 (millisecond timestamp + 74 random
/// bits), so ids sort by creation time and paginate in that order.
pub fn new_record_id() -> String {
    uuid_v7(crate::util::time::now_millis(), random_bytes::<10>())
}

/// A new random id: a UUID version 4, for ids that must reveal nothing
/// (not even their creation time).
pub fn new_random_id() -> String {
    uuid::Builder::from_random_bytes(random_bytes::<16>())
        .into_uuid()
        .hyphenated()
        .to_string()
}

fn uuid_v7(unix_millis: u64, random: [u8; 10]) -> String {
    uuid::Builder::from_unix_timestamp_millis(unix_millis, &random)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// Lower-case canonical UUID text (`8-4-4-4-12` hex digits).
pub fn is_uuid(candidate: &str) -> bool {
    candidate.len() == 36
        && uuid::Uuid::try_parse(candidate).is_ok_and(|id| {
            id.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                == candidate
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v7_layout() {
        let id = uuid_v7(0x0123_4567_89ab, [0xff; 10]);
        assert_eq!(id, "01234567-89ab-7fff-bfff-ffffffffffff");
        assert!(is_uuid(&id));
    }

    #[test]
    fn ids_sort_by_time() {
        let a = uuid_v7(1_000, [0xff; 10]);
        let b = uuid_v7(1_001, [0; 10]);
        assert!(a < b);
        assert!(is_uuid(&new_record_id()));
    }

    #[test]
    fn random_ids_are_version_4() {
        let a = new_random_id();
        assert!(is_uuid(&a), "{a}");
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert_ne!(a, new_random_id());
    }

    #[test]
    fn uuid_check_rejects_other_text() {
        for bad in [
            "",
            "42",
            "01234567-89ab-7fff-bfff-ffffffffffffx",
            "01234567-89AB-7fff-bfff-ffffffffffff",
            "01234567_89ab-7fff-bfff-ffffffffffff",
            "../../etc/passwd",
            "0123456789ab7fffbfffffffffffffff",
            "{01234567-89ab-7fff-bfff-ffffffffffff}",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }

    #[test]
    fn sha256_matches_the_standard_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn random_bytes_differ() {
        assert_ne!(random_bytes::<16>(), random_bytes::<16>());
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
