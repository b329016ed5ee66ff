//! The audit chain. Each record's hash is an HMAC, keyed by a key derived from
//! the master key, over the previous record's hash and this record's fields.
//! An edited, inserted or deleted record breaks the chain; and since the key
//! is not in the database, someone with only the database file cannot forge
//! a consistent chain after editing it.

use rotary_crypto::{Key, aad};
use sha2::Sha256;

/// What a request contributes to its audit record. Never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    pub timestamp: i64,
    pub access_key: Option<String>,
    pub action: String,
    pub secret_id: Option<String>,
    /// `SUCCESS` or an error code.
    pub result: String,
    pub client_address: Option<String>,
    pub request_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub draft: AuditDraft,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

pub const GENESIS: [u8; 32] = [0u8; 32];

/// The keyed hash function of the chain; stores call [`AuditChain::link`]
/// inside the transaction that appends a record.
pub struct AuditChain {
    key: Key,
}

impl AuditChain {
    pub fn new(key: Key) -> Self {
        Self { key }
    }

    pub fn link(&self, prev_hash: &[u8], seq: i64, d: &AuditDraft) -> Vec<u8> {
        use hmac::Mac;
        let seq_b = seq.to_be_bytes();
        let ts_b = d.timestamp.to_be_bytes();
        let opt = |o: &Option<String>| o.as_deref().map(|s| [b"1", s.as_bytes()].concat()).unwrap_or(b"0".to_vec());
        let (ak, sid, ca) = (opt(&d.access_key), opt(&d.secret_id), opt(&d.client_address));
        let msg = aad(&[
            prev_hash,
            &seq_b,
            &ts_b,
            &ak,
            d.action.as_bytes(),
            &sid,
            d.result.as_bytes(),
            &ca,
            d.request_id.as_bytes(),
        ]);
        // invariant: HMAC accepts keys of any length
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(self.key.expose_bytes()).expect("any key length");
        mac.update(&msg);
        mac.finalize().into_bytes().to_vec()
    }

    /// A MAC over the chain's head (last seq and hash). Stored beside the
    /// records, it lets verification detect a truncated tail: without the key,
    /// a shortened chain cannot be given a matching head.
    pub fn head_mac(&self, seq: i64, hash: &[u8]) -> Vec<u8> {
        use hmac::Mac;
        // invariant: HMAC accepts keys of any length
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(self.key.expose_bytes()).expect("any key length");
        mac.update(&aad(&[b"audit-head", &seq.to_be_bytes(), hash]));
        mac.finalize().into_bytes().to_vec()
    }

    /// Checks a run of records (oldest first) that should follow `prev`.
    /// Returns the first bad seq and why.
    pub fn verify_run(&self, prev: &mut (i64, Vec<u8>), rows: &[AuditRow]) -> Result<(), (i64, String)> {
        for r in rows {
            if r.seq != prev.0 + 1 {
                return Err((prev.0 + 1, format!("record {} is missing", prev.0 + 1)));
            }
            if r.prev_hash != prev.1 {
                return Err((r.seq, "previous-hash link does not match".into()));
            }
            if self.link(&prev.1, r.seq, &r.draft) != r.hash {
                return Err((r.seq, "record content does not match its hash".into()));
            }
            *prev = (r.seq, r.hash.clone());
        }
        Ok(())
    }
}
