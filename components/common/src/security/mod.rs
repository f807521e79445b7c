//! Who the caller is and what proves it: access tokens ([`tokens`]:
//! verification and revocation), passwords ([`password`]: Argon2id), the
//! verified caller ([`principal`]).

pub mod password;
pub mod principal;
pub mod tokens;
