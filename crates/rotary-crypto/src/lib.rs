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

use rand::RngCore;
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
    random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", len)
}

/// A random string over `set` (1–256 ASCII bytes) from the OS CSPRNG, without
/// modulo bias: random bytes are read from the OS in blocks (one system call
/// for most strings, not one per character) and a byte is used only if it is
/// below the largest multiple of the set's size.
pub fn random_from(set: &[u8], len: usize) -> String {
    assert!(!set.is_empty() && set.len() <= 256, "random_from: the set must have 1-256 characters");
    let n = set.len();
    let limit = accept_below(n);
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 128];
    while out.len() < len {
        OsRng.fill_bytes(&mut buf);
        for &b in &buf {
            if out.len() == len {
                break;
            }
            if usize::from(b) < limit {
                out.push(char::from(set[usize::from(b) % n]));
            }
        }
    }
    out
}

/// Random bytes below this are used (`b % n`), the rest are drawn again: the
/// largest multiple of `n` that fits in a byte, so every character of the
/// set is equally likely.
fn accept_below(n: usize) -> usize {
    256 - 256 % n
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_bytes_map_onto_the_set_evenly() {
        for n in 1..=256 {
            let limit = accept_below(n);
            assert_eq!(limit % n, 0, "n = {n}: every character gets the same number of byte values");
            assert!(limit > 256 - n, "n = {n}: no fewer bytes rejected than needed");
        }
        assert_eq!(accept_below(62), 248); // letters and digits: 248..=255 are drawn again
    }

    #[test]
    fn random_strings_use_only_their_set_have_their_length_and_cover_it_evenly() {
        // A coarse check of the distribution (bias from a missing rejection
        // step is too small to see here; `accepted_bytes_map_onto_the_set_evenly`
        // covers that).
        let set = b"abc";
        let s = random_from(set, 300_000);
        assert_eq!(s.len(), 300_000);
        for c in set {
            let n = s.bytes().filter(|b| b == c).count();
            // Each within 2% of a third (about 7 standard deviations).
            assert!((98_000..=102_000).contains(&n), "{} appears {n} times", char::from(*c));
        }
        assert!(s.bytes().all(|b| set.contains(&b)));
        let a = random_alnum(1000);
        assert!(a.len() == 1000 && a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(random_alnum(40), random_alnum(40));
        assert_eq!(random_from(b"x", 5), "xxxxx");
        assert_eq!(random_alnum(0), "");
    }
}
