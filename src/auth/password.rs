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

/// Makes freed argon2 buffers go back to the operating system.
///
/// Each hash allocates m = 19 MiB. glibc raises its mmap threshold to the size of the last freed mmapped
/// chunk, so from the second hash on these buffers come from a thread's heap arena and stay resident
/// after they are freed: measured with `mmo-loadgen chat --clients 10`, RSS went from 12 MB to 107 MB.
/// Pinning the threshold keeps every large buffer mmapped and unmapped on free (RSS stays at 12 MB).
pub fn return_buffers_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; any value is valid for M_MMAP_THRESHOLD.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Lowers the calling thread's scheduling priority (nice 10), so that when hashes keep every core busy
/// the tick thread still gets the CPU it needs: a login storm on 2 cores with 2 workers at normal
/// priority pushed chat p99 to 129 ms (`mmo-loadgen login-storm --clients 200 --rate 10`).
pub fn yield_cpu_to_the_tick() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread (who = 0 with PRIO_PROCESS means "this thread" for a
    // Linux thread id) only changes its niceness; failure is harmless and ignored.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
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
