//! Password hashing: Argon2id with OWASP's minimum parameters (19 MiB,
//! 2 passes, 1 lane), stored as a PHC string (`$argon2id$v=19$m=19456,...`)
//! that carries its own parameters and salt.

use anyhow::{Context as _, Result, anyhow};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Memory cost in KiB (19 MiB).
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

fn hasher() -> Result<Argon2<'static>> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| anyhow!("argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A fresh PHC string for `password` with a random 16-byte salt.
pub fn hash(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&crate::util::ids::random_bytes::<16>())
        .map_err(|e| anyhow!("encode salt: {e}"))?;
    Ok(hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow!("hash password: {e}"))?
        .to_string())
}

/// Whether `password` matches the stored PHC string. A malformed stored
/// hash is an error, not a mismatch.
pub fn verify(stored_phc: &str, password: &str) -> Result<bool> {
    let parsed = PasswordHash::new(stored_phc)
        .map_err(|e| anyhow!("{e}"))
        .context("stored password hash is not a PHC string")?;
    match hasher()?.verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(anyhow!("verify password: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_strings_with_owasp_parameters() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(verify(&phc, "correct horse battery").unwrap());
        assert!(!verify(&phc, "correct horse battery!").unwrap());
        assert_ne!(phc, hash("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn a_malformed_stored_hash_is_an_error() {
        assert!(verify("plaintext", "x").is_err());
    }
}
