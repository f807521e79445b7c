//! Base64 in the spellings configuration and tokens use: standard (with or
//! without padding) and URL-safe. Delegates to `ct-codecs`.

use anyhow::{Result, anyhow};
use jwt_simple::reexports::ct_codecs::{
    Base64, Base64NoPadding, Base64UrlSafe, Base64UrlSafeNoPadding, Decoder, Encoder,
};

/// Decodes standard or URL-safe base64, padded or not.
pub fn decode_base64(text: &str) -> Result<Vec<u8>> {
    let text = text.trim();
    Base64::decode_to_vec(text, None)
        .or_else(|_| Base64NoPadding::decode_to_vec(text, None))
        .or_else(|_| Base64UrlSafe::decode_to_vec(text, None))
        .or_else(|_| Base64UrlSafeNoPadding::decode_to_vec(text, None))
        .map_err(|_| anyhow!("not valid base64"))
}

/// URL-safe base64 without padding (for tokens and cursors).
pub fn base64url(bytes: &[u8]) -> String {
    // Encoding into a string of the exact computed size cannot fail.
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap_or_default()
}

pub fn decode_base64url(text: &str) -> Result<Vec<u8>> {
    Base64UrlSafeNoPadding::decode_to_vec(text, None).map_err(|_| anyhow!("not valid base64url"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_decodes() {
        let bytes = [0xfbu8, 0xff, 0x01, 0x02];
        for text in ["+/8BAg==", "+/8BAg", "-_8BAg==", "-_8BAg"] {
            assert_eq!(decode_base64(text).unwrap(), bytes, "{text}");
        }
        assert_eq!(base64url(&bytes), "-_8BAg");
        assert_eq!(decode_base64url("-_8BAg").unwrap(), bytes);
        assert!(decode_base64("not base64!").is_err());
    }
}
