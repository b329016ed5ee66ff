//! The key hierarchy: master key → protection keys (keyId 0 is the default) →
//! per-secret data keys → values. Only the master key lives outside the
//! database (a 0600 file or an environment variable); everything below it is
//! stored sealed.

use std::collections::BTreeMap;

use hmac::Mac;
use rotary_crypto::{Key, aad, key_id_of, open, seal};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::audit::AuditChain;
use crate::error::CoreError;
use crate::store::{ProtectionKeyRow, SecretStore};

const MASTER_CHECK_META: &str = "master_key_check";
/// The master key's own id in the sealed header of wrapped protection keys.
const MASTER_KEY_ID: u32 = u32::MAX;

fn derive(master: &Key, label: &[u8]) -> Vec<u8> {
    // invariant: HMAC accepts keys of any length
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(master.expose_bytes()).expect("any key length");
    mac.update(label);
    mac.finalize().into_bytes().to_vec()
}

/// The audit chain key, derived from the master key.
pub fn audit_chain(master: &Key) -> AuditChain {
    let bytes = derive(master, b"rotary audit chain v1");
    // invariant: HMAC-SHA256 output is 32 bytes
    AuditChain::new(Key::from_slice(&bytes).expect("32 bytes"))
}

pub struct Keyring {
    protection: BTreeMap<u32, Key>,
    current: u32,
}

impl Keyring {
    /// Loads the protection keys, creating key 0 on a new store. Fails with a
    /// clear message when the master key is not the one this store was made with.
    pub async fn load_or_init(store: &dyn SecretStore, master: &Key, now_ms: i64) -> Result<Self, CoreError> {
        let check = derive(master, b"rotary master key check v1");
        store.put_meta_if_absent(MASTER_CHECK_META, &check).await?;
        let stored = store.get_meta(MASTER_CHECK_META).await?.unwrap_or_default();
        if !bool::from(stored.ct_eq(&check)) {
            return Err(CoreError::new(
                crate::ErrorKind::Internal,
                "the master key does not match this data directory (wrong key file or ROTARY_MASTER_KEY?)",
            ));
        }
        let mut rows = store.protection_keys().await?;
        if rows.is_empty() {
            let pk = Key::generate();
            let row = ProtectionKeyRow {
                key_id: 0,
                wrapped: seal(
                    master,
                    MASTER_KEY_ID,
                    &aad(&[b"protection-key", &0u32.to_be_bytes()]),
                    pk.expose_bytes(),
                ),
                created_at: now_ms,
            };
            // Another node may have won the race: then read theirs.
            let _ = store.insert_protection_key(&row).await;
            rows = store.protection_keys().await?;
        }
        let mut protection = BTreeMap::new();
        for r in rows {
            let raw = open(master, &aad(&[b"protection-key", &r.key_id.to_be_bytes()]), &r.wrapped)?;
            protection.insert(r.key_id, Key::from_slice(&raw)?);
        }
        let current = *protection.keys().next_back().ok_or_else(|| CoreError::invalid("no protection key"))?;
        Ok(Self { protection, current })
    }

    pub fn current_key_id(&self) -> u32 {
        self.current
    }

    fn key(&self, id: u32) -> Result<&Key, CoreError> {
        self.protection
            .get(&id)
            .ok_or_else(|| CoreError::new(crate::ErrorKind::Internal, format!("protection key {id} is missing")))
    }

    /// A new data key for a secret, and its sealed form to store.
    pub fn new_data_key(&self, secret_id: &str) -> Result<(Key, Vec<u8>), CoreError> {
        let dek = Key::generate();
        let wrapped = seal(self.key(self.current)?, self.current, &dek_ctx(secret_id), dek.expose_bytes());
        Ok((dek, wrapped))
    }

    pub fn open_data_key(&self, secret_id: &str, wrapped: &[u8]) -> Result<Key, CoreError> {
        let key = self.key(key_id_of(wrapped)?)?;
        let raw = open(key, &dek_ctx(secret_id), wrapped)?;
        Ok(Key::from_slice(&raw)?)
    }

    /// Seals an access key's secret bound to its role and pattern: a role
    /// raised by editing the database makes the key unusable, not stronger.
    pub fn seal_access_secret(
        &self,
        access_key: &str,
        role: &str,
        pattern: Option<&str>,
        secret: &[u8],
    ) -> Result<Vec<u8>, CoreError> {
        Ok(seal(self.key(self.current)?, self.current, &access_ctx(access_key, role, pattern), secret))
    }

    pub fn open_access_secret(
        &self,
        access_key: &str,
        role: &str,
        pattern: Option<&str>,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CoreError> {
        let key = self.key(key_id_of(sealed)?)?;
        Ok(open(key, &access_ctx(access_key, role, pattern), sealed)?)
    }

    /// Seals a trigger's default parameters bound to its kind and config: a
    /// command changed by editing the database makes the trigger fail instead
    /// of running with the credentials.
    pub fn seal_trigger_params(
        &self,
        trigger_id: &str,
        kind: &str,
        config: &str,
        params: &[u8],
    ) -> Result<Vec<u8>, CoreError> {
        Ok(seal(self.key(self.current)?, self.current, &trigger_ctx(trigger_id, kind, config), params))
    }

    pub fn open_trigger_params(
        &self,
        trigger_id: &str,
        kind: &str,
        config: &str,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CoreError> {
        let key = self.key(key_id_of(sealed)?)?;
        Ok(open(key, &trigger_ctx(trigger_id, kind, config), sealed)?)
    }
}

fn access_ctx(access_key: &str, role: &str, pattern: Option<&str>) -> Vec<u8> {
    let p = pattern.map(|p| [b"1", p.as_bytes()].concat()).unwrap_or_else(|| b"0".to_vec());
    aad(&[b"access-key", access_key.as_bytes(), role.as_bytes(), &p])
}

fn trigger_ctx(trigger_id: &str, kind: &str, config: &str) -> Vec<u8> {
    aad(&[b"trigger-params", trigger_id.as_bytes(), kind.as_bytes(), config.as_bytes()])
}

fn dek_ctx(secret_id: &str) -> Vec<u8> {
    aad(&[b"data-key", secret_id.as_bytes()])
}

/// Context binding a value ciphertext to its secret and version.
pub fn value_ctx(secret_id: &str, version: i64) -> Vec<u8> {
    aad(&[b"value", secret_id.as_bytes(), &version.to_be_bytes()])
}

/// The data key's header id for values: always 0 (one data key per secret).
pub const DATA_KEY_ID: u32 = 0;
