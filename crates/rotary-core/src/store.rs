//! The storage port. Backends (SQLite now, PostgreSQL later) implement
//! [`SecretStore`]; the conformance suite (`conformance` feature) checks them
//! all with the same tests.
//!
//! The store only ever sees ciphertext: values and secret keys arrive sealed.
//! Every mutation that a request makes carries its [`AuditDraft`], written in
//! the same transaction, so that a change and its audit record land together
//! or not at all.

use async_trait::async_trait;

use crate::audit::{AuditDraft, AuditRow};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness or compare-and-swap conflict; the text is client-safe.
    #[error("{0}")]
    Conflict(String),
    #[error("storage backend error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// One secret's metadata and stage pointers. Versions are separate rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    pub id: String,
    pub name: String,
    pub memo: String,
    /// `ENABLE`, `DISABLE`, `REVOKE`, `ROTATING`.
    pub status: String,
    /// The status to return to when a deletion request is cancelled.
    pub status_before_revoke: Option<String>,
    pub rotation_targets: Vec<String>,
    /// The per-secret data key, sealed by a protection key.
    pub wrapped_dek: Vec<u8>,
    pub active_version: Option<i64>,
    pub pending_version: Option<i64>,
    pub previous_version: Option<i64>,
    /// The number the next version gets; versions are never reused.
    pub next_version: i64,
    /// Bumped by every update; updates compare-and-swap on it.
    pub revision: i64,
    pub auto_rotation: bool,
    pub rotation_period_days: Option<i64>,
    pub trigger_id: Option<String>,
    pub next_rotation_at: Option<i64>,
    pub last_rotation_at: Option<i64>,
    pub rotation_phase: Option<String>,
    pub expected_destroy_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One immutable sealed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub secret_id: String,
    pub version: i64,
    pub ciphertext: Vec<u8>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMeta {
    pub version: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyRow {
    pub access_key: String,
    /// The secret key, sealed by a protection key.
    pub sealed_secret: Vec<u8>,
    pub role: String,
    pub secret_pattern: Option<String>,
    pub description: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionKeyRow {
    pub key_id: u32,
    /// The protection key sealed by the master key.
    pub wrapped: Vec<u8>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only names matching this glob (`*`, `?`).
    pub name_glob: Option<String>,
    pub offset: i64,
    pub limit: i64,
}

#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    // --- metadata and keyring ---
    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets `key` unless it exists; returns whether it was set.
    async fn put_meta_if_absent(&self, key: &str, value: &[u8]) -> Result<bool, StoreError>;
    async fn protection_keys(&self) -> Result<Vec<ProtectionKeyRow>, StoreError>;
    /// Fails with `Conflict` if the id exists.
    async fn insert_protection_key(&self, row: &ProtectionKeyRow) -> Result<(), StoreError>;

    // --- secrets ---
    /// Fails with `Conflict` when the name is taken.
    async fn create_secret(
        &self,
        row: &SecretRow,
        versions: &[VersionRow],
        audit: &AuditDraft,
    ) -> Result<(), StoreError>;
    async fn get_secret(&self, id: &str) -> Result<Option<SecretRow>, StoreError>;
    /// A page of secrets ordered by creation, and the total matching count.
    async fn list_secrets(&self, filter: &ListFilter) -> Result<(Vec<SecretRow>, i64), StoreError>;
    /// Writes `row` if the stored revision is still `expected_revision`
    /// (else `Conflict`), inserts `new_versions`, then prunes versions that no
    /// stage points at beyond the newest `history_limit`.
    async fn update_secret(
        &self,
        row: &SecretRow,
        expected_revision: i64,
        new_versions: &[VersionRow],
        audit: &AuditDraft,
    ) -> Result<(), StoreError>;
    /// Removes the secret and all its versions; false if it did not exist.
    async fn delete_secret(&self, id: &str, audit: &AuditDraft) -> Result<bool, StoreError>;
    async fn get_versions(&self, secret_id: &str, versions: &[i64]) -> Result<Vec<VersionRow>, StoreError>;
    /// Every stored version, newest first.
    async fn list_versions(&self, secret_id: &str) -> Result<Vec<VersionMeta>, StoreError>;
    /// Ids of secrets in `REVOKE` whose recovery window ended at or before `now`.
    async fn due_for_destruction(&self, now: i64, limit: i64) -> Result<Vec<String>, StoreError>;

    // --- access keys ---
    /// `audit` is `None` only for the bootstrap key written on first start.
    async fn insert_access_key(&self, row: &AccessKeyRow, audit: Option<&AuditDraft>) -> Result<(), StoreError>;
    async fn get_access_key(&self, access_key: &str) -> Result<Option<AccessKeyRow>, StoreError>;
    async fn list_access_keys(&self) -> Result<Vec<AccessKeyRow>, StoreError>;
    /// Marks the key revoked; false if unknown or already revoked.
    async fn revoke_access_key(&self, access_key: &str, at: i64, audit: &AuditDraft) -> Result<bool, StoreError>;

    // --- audit ---
    async fn append_audit(&self, draft: &AuditDraft) -> Result<AuditRow, StoreError>;
    /// Newest first.
    async fn list_audit(&self, offset: i64, limit: i64) -> Result<(Vec<AuditRow>, i64), StoreError>;
    /// Records with `seq > after_seq`, oldest first.
    async fn audit_after(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError>;
    /// The last appended record's (seq, hash) as the store's head marker says.
    async fn audit_head(&self) -> Result<Option<(i64, Vec<u8>)>, StoreError>;
}
