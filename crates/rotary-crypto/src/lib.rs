//! Cryptography of Rotary: the sealed (AES-256-GCM) format, the key hierarchy
//! (master key → protection keys → per-secret data keys → values) and NCP
//! signature v2.
//!
//! Nothing here does I/O. Key material lives in [`Key`], which zeroizes on
//! drop and has neither `Clone` nor `Debug`.

mod seal;
mod signature;

pub use seal::{FORMAT_V1, HEADER_LEN, Key, aad, key_id_of, open, seal};
pub use signature::{sign_v2, verify_v2};

use rand::Rng;
use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// Too short, unknown format version, or the tag did not verify (wrong key,
    /// wrong associated data, or altered bytes). Deliberately one variant: the
    /// caller cannot act differently on each, and an oracle helps nobody.
    #[error("ciphertext could not be decrypted (wrong key, wrong context or altered data)")]
    Undecryptable,
    #[error("unsupported ciphertext format version {0}")]
    UnsupportedFormat(u8),
    #[error("key material has the wrong length")]
    BadKeyLength,
}

/// A random string of ASCII letters and digits from the OS CSPRNG.
pub fn random_alnum(len: usize) -> String {
    OsRng.sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

/// A random string over `set` (ASCII) from the OS CSPRNG, without modulo bias.
pub fn random_from(set: &[u8], len: usize) -> String {
    (0..len).map(|_| set[OsRng.gen_range(0..set.len())] as char).collect()
}

/// A new NCP-style access key id: 20 upper-case letters and digits.
pub fn new_access_key_id() -> String {
    random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 20)
}

/// A new secret id: 20 lower-case letters and digits (≈103 bits).
pub fn new_secret_id() -> String {
    random_from(b"abcdefghijklmnopqrstuvwxyz0123456789", 20)
}

/// A new secret key: 40 letters and digits (≈238 bits).
pub fn new_secret_key() -> secrecy::SecretString {
    random_alnum(40).into()
}
