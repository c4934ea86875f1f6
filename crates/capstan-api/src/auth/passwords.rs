//! Password hashes: argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane — OWASP's
//! recommended minimum), stored as PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`),
//! so the parameters travel with each hash and can be raised later without breaking old
//! ones.

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};

/// The shortest password an account may be given.
pub const MIN_LENGTH: usize = 8;

/// Why a password cannot be set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Shorter than [`MIN_LENGTH`].
    #[error("a password needs at least {MIN_LENGTH} characters")]
    TooShort,
    /// Hashing failed (no randomness for the salt).
    #[error("hashing the password failed: {0}")]
    Hashing(String),
}

/// The PHC string of `password` with a fresh random salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_LENGTH {
        return Err(PasswordError::TooShort);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Whether `password` is the one `phc` was made from; a malformed hash verifies nothing.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A random password for the initial `admin` account (shown once at first start, as Argo CD's
/// `argocd-initial-admin-secret`): 24 characters from 62, about 143 bits.
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(24);
    while out.len() < 24 {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system provides randomness");
        // Rejection sampling keeps every character equally likely (248 = 4 × 62).
        out.extend(
            bytes
                .iter()
                .filter(|&&b| b < 248)
                .map(|&b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
                .take(24 - out.len()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_their_password_only_and_are_salted() {
        let first = hash("correct horse battery").expect("hashes");
        let second = hash("correct horse battery").expect("hashes");
        assert!(first.starts_with("$argon2id$v=19$"), "{first}");
        assert_ne!(first, second, "a fresh salt each time");
        assert!(verify("correct horse battery", &first));
        assert!(verify("correct horse battery", &second));
        assert!(!verify("correct horse batterY", &first));
        assert!(!verify("", &first));
        assert!(!verify("correct horse battery", "not a hash"));
        assert!(
            !first.contains("correct"),
            "the hash does not hold the password"
        );
    }

    #[test]
    fn short_passwords_are_refused() {
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
    }

    #[test]
    fn generated_passwords_are_long_varied_and_alphanumeric() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
        assert!(verify(&a, &hash(&a).expect("hashes")));
    }
}
