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
    /// Time the schedule counts from: when rotation was enabled or last succeeded.
    pub schedule_base_at: Option<i64>,
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

/// A registered rotator. `config` is not secret (commands, URLs, options);
/// `defaultParams` may hold credentials and is stored sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerRow {
    pub id: String,
    pub name: String,
    /// `exec`, `http` (later `postgres`, `mysql`).
    pub kind: String,
    /// JSON text.
    pub config: String,
    pub sealed_params: Vec<u8>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One rotation attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub id: String,
    pub secret_id: String,
    /// SHA-256 of the job token, set when the job is dispatched.
    pub token_hash: Option<Vec<u8>>,
    /// `QUEUED`, `DISPATCHED`, `RUNNING` (open) or `SUCCEEDED`, `FAILED`,
    /// `TIMED_OUT`, `CANCELLED` (closed).
    pub status: String,
    /// `MANUAL`, `SCHEDULED`, `RETRY`.
    pub kind: String,
    /// 1 for the first attempt of a rotation, 2.. for retries.
    pub attempt: i64,
    pub trigger_id: Option<String>,
    /// Not dispatched before this time (retry backoff).
    pub run_at: i64,
    pub started_at: Option<i64>,
    pub deadline_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Client-safe failure reason.
    pub error: Option<String>,
    /// Whether this job stored a pending value (PUT/POST pending).
    pub pending_stored: bool,
    pub revision: i64,
    pub created_at: i64,
}

impl JobRow {
    pub fn is_open(&self) -> bool {
        matches!(self.status.as_str(), "QUEUED" | "DISPATCHED" | "RUNNING")
    }
}

/// One line of a job's log. Never a value: messages are written by the
/// server, and function output is redacted before it gets here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStep {
    pub job_id: String,
    pub ts: i64,
    pub step: String,
    /// `OK`, `FAILED`, `INFO`, `SKIPPED`.
    pub result: String,
    pub message: String,
}

/// A value the server generated for a job, sealed with the secret's data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobValue {
    pub job_id: String,
    pub seq: i64,
    /// `generate-random-secret` or `pending`.
    pub source: String,
    pub ciphertext: Vec<u8>,
    pub created_at: i64,
}

/// Changes committed atomically: all or nothing.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    /// A compare-and-swap update of a secret: row and expected revision.
    pub secret: Option<(&'a SecretRow, i64)>,
    pub versions: &'a [VersionRow],
    /// A new job. Fails with `Conflict` if the secret already has an open job.
    pub insert_job: Option<&'a JobRow>,
    /// A compare-and-swap update of a job: row and expected revision.
    pub update_job: Option<(&'a JobRow, i64)>,
    pub steps: &'a [JobStep],
    pub job_values: &'a [JobValue],
    pub audit: Option<&'a AuditDraft>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub keyword: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub offset: i64,
    pub limit: i64,
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
    /// Drops whatever the store keeps cached, so that the next read goes to
    /// the database. Called when stored data failed an integrity check (a
    /// row that does not open must not keep failing from a cache once it is
    /// repaired). Stores without a cache need not implement it.
    fn forget_cached(&self) {}
    /// Every stored version, newest first.
    async fn list_versions(&self, secret_id: &str) -> Result<Vec<VersionMeta>, StoreError>;
    /// Ids of secrets in `REVOKE` whose recovery window ended at or before `now`.
    async fn due_for_destruction(&self, now: i64, limit: i64) -> Result<Vec<String>, StoreError>;

    // --- rotation ---
    /// Commits every part of `batch` in one transaction.
    async fn commit(&self, batch: Batch<'_>) -> Result<(), StoreError>;
    async fn insert_trigger(&self, row: &TriggerRow, audit: &AuditDraft) -> Result<(), StoreError>;
    async fn get_trigger(&self, id: &str) -> Result<Option<TriggerRow>, StoreError>;
    /// Deletes a trigger no secret links to; `Conflict` if one does, false if unknown.
    async fn delete_trigger(&self, id: &str, audit: &AuditDraft) -> Result<bool, StoreError>;
    async fn list_triggers(&self) -> Result<Vec<TriggerRow>, StoreError>;
    /// Ids of secrets using the trigger.
    async fn trigger_secrets(&self, trigger_id: &str) -> Result<Vec<String>, StoreError>;
    async fn get_job(&self, id: &str) -> Result<Option<JobRow>, StoreError>;
    async fn job_by_token_hash(&self, hash: &[u8]) -> Result<Option<JobRow>, StoreError>;
    async fn open_job(&self, secret_id: &str) -> Result<Option<JobRow>, StoreError>;
    /// The secret's most recent job.
    async fn last_job(&self, secret_id: &str) -> Result<Option<JobRow>, StoreError>;
    /// A secret's jobs, newest first, filtered by their steps' text and time.
    async fn list_jobs(&self, secret_id: &str, filter: &LogFilter) -> Result<(Vec<JobRow>, i64), StoreError>;
    async fn job_steps(&self, job_id: &str) -> Result<Vec<JobStep>, StoreError>;
    async fn job_values(&self, job_id: &str) -> Result<Vec<JobValue>, StoreError>;
    /// `QUEUED` jobs whose `run_at` has come.
    async fn jobs_to_dispatch(&self, now: i64, limit: i64) -> Result<Vec<JobRow>, StoreError>;
    /// Dispatched or running jobs past their deadline.
    async fn jobs_overdue(&self, now: i64, limit: i64) -> Result<Vec<JobRow>, StoreError>;
    /// Enabled secrets with automatic rotation due at or before `now` and no
    /// open job. Uses an index on the due time: cost follows the number due,
    /// not the number of schedules.
    async fn secrets_due(&self, now: i64, limit: i64) -> Result<Vec<SecretRow>, StoreError>;

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
    /// The head marker written with the last appended record: its seq, its
    /// hash, and the chain's MAC over both (`AuditChain::head_mac`).
    async fn audit_head(&self) -> Result<Option<(i64, Vec<u8>, Vec<u8>)>, StoreError>;
}
