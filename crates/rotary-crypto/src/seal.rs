//! The sealed format, version 1:
//!
//! ```text
//! +------+------------+-----------+---------------------+
//! | 0x01 | key id u32 | nonce 12B | AES-256-GCM ct‖tag  |
//! +------+------------+-----------+---------------------+
//! ```
//!
//! The associated data is the 5-byte header followed by a caller context
//! (see [`aad`]), so a ciphertext neither decrypts under another key id nor in
//! another place (another secret, another version).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;

pub const FORMAT_V1: u8 = 1;
/// Version byte + key id.
pub const HEADER_LEN: usize = 5;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A 256-bit symmetric key. Zeroized on drop; no `Clone`, `Debug` or serde.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Key([u8; 32]);

impl Key {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        Self(k)
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKeyLength)?;
        Ok(Self(arr))
    }

    /// Raw bytes, for wrapping under another key or writing the key file.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Encodes context parts unambiguously: each part is length-prefixed, so
/// `("ab","c")` and `("a","bc")` differ.
pub fn aad(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// Encrypts `plaintext` under `key` (identified by `key_id`) bound to `context`.
pub fn seal(key: &Key, key_id: u32, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    seal_with_nonce(key, key_id, context, plaintext, nonce)
}

pub(crate) fn seal_with_nonce(
    key: &Key,
    key_id: u32,
    context: &[u8],
    plaintext: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let mut header = [0u8; HEADER_LEN];
    header[0] = FORMAT_V1;
    header[1..].copy_from_slice(&key_id.to_be_bytes());
    let mut ad = header.to_vec();
    ad.extend_from_slice(context);
    let cipher = Aes256Gcm::new_from_slice(&key.0).expect("a 32-byte key is always valid"); // invariant: Key is 32 bytes
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &ad })
        .expect("AES-GCM encryption of an in-memory buffer cannot fail"); // invariant: length < 2^36
    let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + ct.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// The key id a sealed blob names, without decrypting it.
pub fn key_id_of(sealed: &[u8]) -> Result<u32, CryptoError> {
    if sealed.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Undecryptable);
    }
    if sealed[0] != FORMAT_V1 {
        return Err(CryptoError::UnsupportedFormat(sealed[0]));
    }
    let mut id = [0u8; 4];
    id.copy_from_slice(&sealed[1..HEADER_LEN]);
    Ok(u32::from_be_bytes(id))
}

/// Decrypts a sealed blob; fails on any altered byte, wrong key or wrong context.
pub fn open(key: &Key, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    key_id_of(sealed)?;
    let (header, rest) = sealed.split_at(HEADER_LEN);
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let mut ad = header.to_vec();
    ad.extend_from_slice(context);
    let cipher = Aes256Gcm::new_from_slice(&key.0).map_err(|_| CryptoError::BadKeyLength)?;
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &ad })
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Undecryptable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key([b; 32])
    }

    /// Known-answer vector. The expected bytes were computed independently with
    /// Python's `cryptography` package:
    /// `AESGCM(bytes([7]*32)).encrypt(bytes(range(12)), b"hello", header + ctx)`
    /// where header = `01 00000003` and ctx = aad([b"secret-1", b"4"]).
    #[test]
    fn known_answer_vector_pins_the_format() {
        let ctx = aad(&[b"secret-1", b"4"]);
        let nonce: [u8; 12] = core::array::from_fn(|i| i as u8);
        let sealed = seal_with_nonce(&key(7), 3, &ctx, b"hello", nonce);
        assert_eq!(hex::encode(&sealed), KAT_SEALED);
        assert_eq!(&open(&key(7), &ctx, &sealed).unwrap()[..], b"hello");
    }

    const KAT_SEALED: &str = include_str!("kat_v1.hex");

    #[test]
    fn every_flipped_bit_is_detected() {
        let sealed = seal(&key(1), 0, b"ctx", b"some value");
        for i in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(open(&key(1), b"ctx", &bad).is_err(), "bit {i} flip undetected");
        }
    }

    #[test]
    fn wrong_context_or_key_fails() {
        let sealed = seal(&key(1), 0, &aad(&[b"s1", b"1"]), b"v");
        assert_eq!(open(&key(1), &aad(&[b"s2", b"1"]), &sealed).unwrap_err(), CryptoError::Undecryptable);
        assert_eq!(open(&key(1), &aad(&[b"s1", b"2"]), &sealed).unwrap_err(), CryptoError::Undecryptable);
        assert_eq!(open(&key(2), &aad(&[b"s1", b"1"]), &sealed).unwrap_err(), CryptoError::Undecryptable);
    }

    #[test]
    fn header_carries_version_and_key_id() {
        let sealed = seal(&key(1), 0x0102_0304, b"", b"");
        assert_eq!(&sealed[..5], &[1, 1, 2, 3, 4]);
        assert_eq!(key_id_of(&sealed).unwrap(), 0x0102_0304);
        let mut v2 = sealed.clone();
        v2[0] = 2;
        assert_eq!(key_id_of(&v2).unwrap_err(), CryptoError::UnsupportedFormat(2));
        assert!(open(&key(1), b"", &sealed[..10]).is_err(), "truncated input must not panic");
    }

    #[test]
    fn aad_is_unambiguous() {
        assert_ne!(aad(&[b"ab", b"c"]), aad(&[b"a", b"bc"]));
    }

    proptest::proptest! {
        #[test]
        fn roundtrip(pt in proptest::collection::vec(proptest::num::u8::ANY, 0..512), ctx in ".*") {
            let k = Key::generate();
            let sealed = seal(&k, 9, ctx.as_bytes(), &pt);
            proptest::prop_assert_eq!(&open(&k, ctx.as_bytes(), &sealed).unwrap()[..], &pt[..]);
        }

        #[test]
        fn open_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = open(&Key::generate(), b"", &bytes);
        }
    }
}
