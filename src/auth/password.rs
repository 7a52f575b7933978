//! Password hashing: argon2id with the crate's defaults (OWASP's m = 19 MiB, t = 2, p = 1), stored as PHC
//! strings. Slow on purpose, so only ever called from auth workers.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// A hash of a random password, verified against when a login names an unknown account, so that a wrong
/// name costs the same time as a wrong password and the answer reveals nothing.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let random: String = {
        let salt = SaltString::generate(&mut OsRng);
        salt.as_str().to_owned()
    };
    hash(&random).expect("hashing a fresh random password cannot fail")
});

/// Hashes a password with a fresh random salt into a PHC string.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches the stored PHC string. A malformed stored hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Spends the time of one verification without an account, so unknown names are not told apart.
pub fn verify_nothing(password: &str) {
    let _ = verify(password, &DUMMY_HASH);
}

/// Computes the dummy hash now (at start) rather than on the first unknown-user login.
pub fn warm_up() {
    LazyLock::force(&DUMMY_HASH);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_strings_that_verify() {
        let stored = hash("correct horse battery").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(!stored.contains("correct horse"));
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterY", &stored));
        assert!(!verify("anything", "not a phc string"));
        assert_ne!(
            stored,
            hash("correct horse battery").unwrap(),
            "salts differ"
        );
    }
}
