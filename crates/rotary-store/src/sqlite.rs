//! The embedded SQLite store: one file in the data directory, WAL mode, and
//! group commit (see [`crate::durable`]): no write is acknowledged before it
//! is on disk, so a committed secret survives power loss.
//!
//! Writes go through a pool of exactly one connection, so SQLite never has to
//! upgrade a read lock under contention (no `SQLITE_BUSY` deadlocks) and the
//! audit chain is appended strictly in order; reads use a separate pool.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rotary_core::audit::{AuditChain, AuditDraft, AuditRow, GENESIS};
use rotary_core::store::{
    AccessKeyRow, Batch, JobRow, JobStep, JobValue, ListFilter, LogFilter, ProtectionKeyRow, SecretRow, SecretStore,
    StoreError, TriggerRow, VersionMeta, VersionRow,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::durable::GroupSync;

const SCHEMA: &str = include_str!("schema.sql");
const AUDIT_HEAD: &str = "audit_head";

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Versions kept beyond those a stage points at.
    pub history_limit: i64,
    pub read_connections: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { history_limit: 10, read_connections: 4 }
    }
}

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    chain: Arc<AuditChain>,
    opts: SqliteOptions,
    sync: Arc<GroupSync>,
    cache: Arc<crate::cache::ReadCache>,
    /// The audit chain's head as the batch writer last committed it; emptied
    /// by every other append (see [`audit_batcher`]).
    audit_head: Arc<AuditHead>,
    audit_tx: tokio::sync::mpsc::Sender<AuditJob>,
}

fn backend(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        return StoreError::Conflict("already exists".into());
    }
    StoreError::Backend(Box::new(e))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub async fn open(path: &Path, chain: Arc<AuditChain>, opts: SqliteOptions) -> Result<Self, StoreError> {
        let url = format!("sqlite://{}", path.display());
        let base = SqliteConnectOptions::from_str(&url)
            .map_err(backend)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // The writer leaves flushing to the group commit; readers never write.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(base.clone().synchronous(SqliteSynchronous::Normal))
            .await
            .map_err(backend)?;
        sqlx::raw_sql(SCHEMA).execute(&writer).await.map_err(backend)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let sync = Arc::new(GroupSync::new(wal.into()));
        sync.sync().await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(opts.read_connections.max(1))
            .connect_with(base.read_only(true))
            .await
            .map_err(backend)?;
        let (audit_tx, audit_rx) = tokio::sync::mpsc::channel(4096);
        let audit_head = Arc::new(std::sync::Mutex::new(None));
        tokio::spawn(audit_batcher(writer.clone(), chain.clone(), sync.clone(), audit_head.clone(), audit_rx));
        let cache = Arc::new(crate::cache::ReadCache::default());
        Ok(Self { writer, reader, chain, opts, sync, cache, audit_head, audit_tx })
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn append_in(&self, tx: &mut Transaction<'_, Sqlite>, d: &AuditDraft) -> Result<AuditRow, StoreError> {
        // This transaction holds the one writer connection, so the batch
        // writer is not running; it reads the head afresh next time.
        set_head(&self.audit_head, None);
        let head = read_head(tx).await?;
        let (mut rows, _) = link_rows(&self.chain, head, vec![d.clone()]);
        let script = rows_script(&self.chain, &rows);
        sqlx::query(&script).persistent(false).execute(&mut **tx).await.map_err(backend)?;
        rows.pop().ok_or_else(|| StoreError::Corrupt("audit append returned no row".into()))
    }

    async fn update_secret_in(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        row: &SecretRow,
        expected_revision: i64,
    ) -> Result<(), StoreError> {
        let sets: Vec<String> =
            SECRET_COLS.split(',').map(str::trim).enumerate().skip(1).map(|(n, c)| format!("{c}=?{}", n + 1)).collect();
        let sql = format!("UPDATE secrets SET {} WHERE id=?1 AND revision=?23", sets.join(", "));
        let r =
            bind_secret(sqlx::query(&sql), row)?.bind(expected_revision).execute(&mut **tx).await.map_err(backend)?;
        if r.rows_affected() != 1 {
            return Err(StoreError::Conflict("the secret was changed or deleted concurrently".into()));
        }
        Ok(())
    }

    async fn prune_in(&self, tx: &mut Transaction<'_, Sqlite>, row: &SecretRow) -> Result<(), StoreError> {
        // Keep every version a stage points at, plus the newest
        // `history_limit` of the others.
        sqlx::query(
            "DELETE FROM secret_versions WHERE secret_id = ?1
               AND version NOT IN (SELECT v FROM (SELECT ?2 AS v UNION ALL SELECT ?3 UNION ALL SELECT ?4) WHERE v IS NOT NULL)
               AND version NOT IN (SELECT version FROM secret_versions WHERE secret_id = ?1
                   AND version NOT IN (SELECT v FROM (SELECT ?2 AS v UNION ALL SELECT ?3 UNION ALL SELECT ?4) WHERE v IS NOT NULL)
                   ORDER BY version DESC LIMIT ?5)",
        )
        .bind(&row.id)
        .bind(row.active_version)
        .bind(row.pending_version)
        .bind(row.previous_version)
        .bind(self.opts.history_limit)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn write_job_in(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        job: &JobRow,
        expected: Option<i64>,
    ) -> Result<(), StoreError> {
        let q = if expected.is_some() {
            "UPDATE jobs SET secret_id=?1, token_hash=?2, status=?3, is_open=?4, kind=?5, attempt=?6, trigger_id=?7,
               run_at=?8, started_at=?9, deadline_at=?10, finished_at=?11, error=?12, pending_stored=?13, revision=?14,
               created_at=?15 WHERE id=?16 AND revision=?17"
        } else {
            "INSERT INTO jobs (secret_id, token_hash, status, is_open, kind, attempt, trigger_id, run_at, started_at,
               deadline_at, finished_at, error, pending_stored, revision, created_at, id)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)"
        };
        let r = sqlx::query(q)
            .bind(&job.secret_id)
            .bind(&job.token_hash)
            .bind(&job.status)
            .bind(i64::from(job.is_open()))
            .bind(&job.kind)
            .bind(job.attempt)
            .bind(&job.trigger_id)
            .bind(job.run_at)
            .bind(job.started_at)
            .bind(job.deadline_at)
            .bind(job.finished_at)
            .bind(&job.error)
            .bind(i64::from(job.pending_stored))
            .bind(job.revision)
            .bind(job.created_at)
            .bind(&job.id)
            .bind(expected.unwrap_or(0))
            .execute(&mut **tx)
            .await
            .map_err(|e| match backend(e) {
                StoreError::Conflict(_) => {
                    StoreError::Conflict("a rotation job is already open for this secret".into())
                }
                other => other,
            })?;
        if r.rows_affected() != 1 {
            return Err(StoreError::Conflict("the job was changed concurrently".into()));
        }
        Ok(())
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.writer.begin().await.map_err(backend)
    }

    /// Commits and waits until the commit is on disk (group commit). Every
    /// committed write empties the read cache before it is acknowledged. The
    /// commit and the invalidation run in a task of their own: a caller that
    /// is cancelled while SQLite commits cannot leave the cache stale.
    async fn finish(&self, tx: Transaction<'static, Sqlite>) -> Result<(), StoreError> {
        let cache = self.cache.clone();
        let committed = tokio::spawn(async move {
            let r = tx.commit().await.map_err(backend);
            cache.invalidate();
            r
        })
        .await;
        match committed {
            Ok(r) => r?,
            Err(e) => {
                self.cache.invalidate();
                return Err(StoreError::Backend(Box::new(e)));
            }
        }
        self.sync.sync().await
    }

    /// WAL flushes so far; fewer than commits when commits overlap.
    pub fn flushes(&self) -> u64 {
        self.sync.flushes()
    }
}

fn secret_from_row(r: &SqliteRow) -> Result<SecretRow, StoreError> {
    let targets: String = r.get("rotation_targets");
    Ok(SecretRow {
        id: r.get("id"),
        name: r.get("name"),
        memo: r.get("memo"),
        status: r.get("status"),
        status_before_revoke: r.get("status_before_revoke"),
        rotation_targets: serde_json::from_str(&targets)
            .map_err(|_| StoreError::Corrupt("rotation_targets is not a JSON list".into()))?,
        wrapped_dek: r.get("wrapped_dek"),
        active_version: r.get("active_version"),
        pending_version: r.get("pending_version"),
        previous_version: r.get("previous_version"),
        next_version: r.get("next_version"),
        revision: r.get("revision"),
        auto_rotation: r.get::<i64, _>("auto_rotation") != 0,
        rotation_period_days: r.get("rotation_period_days"),
        trigger_id: r.get("trigger_id"),
        next_rotation_at: r.get("next_rotation_at"),
        last_rotation_at: r.get("last_rotation_at"),
        rotation_phase: r.get("rotation_phase"),
        schedule_base_at: r.get("schedule_base_at"),
        expected_destroy_at: r.get("expected_destroy_at"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

fn audit_from_row(r: &SqliteRow) -> AuditRow {
    AuditRow {
        seq: r.get("seq"),
        draft: AuditDraft {
            timestamp: r.get("ts"),
            access_key: r.get("access_key"),
            action: r.get("action"),
            secret_id: r.get("secret_id"),
            result: r.get("result"),
            client_address: r.get("client_address"),
            request_id: r.get("request_id"),
        },
        prev_hash: r.get("prev_hash"),
        hash: r.get("hash"),
    }
}

fn job_from_row(r: &SqliteRow) -> JobRow {
    JobRow {
        id: r.get("id"),
        secret_id: r.get("secret_id"),
        token_hash: r.get("token_hash"),
        status: r.get("status"),
        kind: r.get("kind"),
        attempt: r.get("attempt"),
        trigger_id: r.get("trigger_id"),
        run_at: r.get("run_at"),
        started_at: r.get("started_at"),
        deadline_at: r.get("deadline_at"),
        finished_at: r.get("finished_at"),
        error: r.get("error"),
        pending_stored: r.get::<i64, _>("pending_stored") != 0,
        revision: r.get("revision"),
        created_at: r.get("created_at"),
    }
}

fn trigger_from_row(r: &SqliteRow) -> TriggerRow {
    TriggerRow {
        id: r.get("id"),
        name: r.get("name"),
        kind: r.get("kind"),
        config: r.get("config"),
        sealed_params: r.get("sealed_params"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    }
}

fn access_from_row(r: &SqliteRow) -> AccessKeyRow {
    AccessKeyRow {
        access_key: r.get("access_key"),
        sealed_secret: r.get("sealed_secret"),
        role: r.get("role"),
        secret_pattern: r.get("secret_pattern"),
        description: r.get("description"),
        created_at: r.get("created_at"),
        revoked_at: r.get("revoked_at"),
    }
}

const SECRET_COLS: &str = "id, name, memo, status, status_before_revoke, rotation_targets, wrapped_dek, \
    active_version, pending_version, previous_version, next_version, revision, auto_rotation, \
    rotation_period_days, trigger_id, next_rotation_at, last_rotation_at, rotation_phase, \
    schedule_base_at, expected_destroy_at, created_at, updated_at";

/// Binds every column of `SECRET_COLS`, in its order, as ?1..?22.
fn bind_secret<'q>(
    q: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    row: &'q SecretRow,
) -> Result<sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>, StoreError> {
    let targets = serde_json::to_string(&row.rotation_targets).map_err(|e| StoreError::Backend(Box::new(e)))?;
    Ok(q.bind(&row.id)
        .bind(&row.name)
        .bind(&row.memo)
        .bind(&row.status)
        .bind(&row.status_before_revoke)
        .bind(targets)
        .bind(&row.wrapped_dek)
        .bind(row.active_version)
        .bind(row.pending_version)
        .bind(row.previous_version)
        .bind(row.next_version)
        .bind(row.revision)
        .bind(i64::from(row.auto_rotation))
        .bind(row.rotation_period_days)
        .bind(&row.trigger_id)
        .bind(row.next_rotation_at)
        .bind(row.last_rotation_at)
        .bind(&row.rotation_phase)
        .bind(row.schedule_base_at)
        .bind(row.expected_destroy_at)
        .bind(row.created_at)
        .bind(row.updated_at))
}

async fn insert_versions(tx: &mut Transaction<'_, Sqlite>, versions: &[VersionRow]) -> Result<(), StoreError> {
    for v in versions {
        sqlx::query("INSERT INTO secret_versions (secret_id, version, ciphertext, created_at) VALUES (?,?,?,?)")
            .bind(&v.secret_id)
            .bind(v.version)
            .bind(&v.ciphertext)
            .bind(v.created_at)
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

#[async_trait]
impl SecretStore for SqliteStore {
    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.writer)
            .await
            .map_err(backend)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn put_meta_if_absent(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let r = sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        self.sync.sync().await?;
        Ok(r.rows_affected() == 1)
    }

    async fn protection_keys(&self) -> Result<Vec<ProtectionKeyRow>, StoreError> {
        let rows = sqlx::query("SELECT key_id, wrapped, created_at FROM protection_keys ORDER BY key_id")
            .fetch_all(&self.writer)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(ProtectionKeyRow {
                    key_id: u32::try_from(r.get::<i64, _>(0))
                        .map_err(|_| StoreError::Corrupt("protection key id out of range".into()))?,
                    wrapped: r.get(1),
                    created_at: r.get(2),
                })
            })
            .collect()
    }

    async fn insert_protection_key(&self, row: &ProtectionKeyRow) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO protection_keys (key_id, wrapped, created_at) VALUES (?,?,?)")
            .bind(i64::from(row.key_id))
            .bind(&row.wrapped)
            .bind(row.created_at)
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        self.sync.sync().await
    }

    async fn create_secret(
        &self,
        row: &SecretRow,
        versions: &[VersionRow],
        audit: &AuditDraft,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let sql = format!("INSERT INTO secrets ({SECRET_COLS}) VALUES ({})", vec!["?"; 22].join(","));
        bind_secret(sqlx::query(&sql), row)?.execute(&mut *tx).await.map_err(backend)?;
        insert_versions(&mut tx, versions).await?;
        self.append_in(&mut tx, audit).await?;
        self.finish(tx).await
    }

    async fn get_secret(&self, id: &str) -> Result<Option<SecretRow>, StoreError> {
        if let Some(r) = self.cache.secret(id) {
            return Ok(Some(r));
        }
        let generation = self.cache.generation();
        let row = sqlx::query(&format!("SELECT {SECRET_COLS} FROM secrets WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        let row = row.as_ref().map(secret_from_row).transpose()?;
        if let Some(r) = &row {
            self.cache.put_secret(generation, r);
        }
        Ok(row)
    }

    async fn list_secrets(&self, f: &ListFilter) -> Result<(Vec<SecretRow>, i64), StoreError> {
        // Without a pattern, neither query has a WHERE: the page is read off
        // the (created_at, id) index, so the rows skipped by OFFSET are never
        // looked up in the table, and the count uses an index too.
        let filter = if f.name_glob.is_some() { " WHERE name GLOB ?" } else { "" };
        let page_sql = format!("SELECT {SECRET_COLS} FROM secrets{filter} ORDER BY created_at, id LIMIT ? OFFSET ?");
        let count_sql = format!("SELECT COUNT(*) FROM secrets{filter}");
        let (mut page, mut count) = (sqlx::query(&page_sql), sqlx::query_scalar(&count_sql));
        if let Some(glob) = &f.name_glob {
            (page, count) = (page.bind(glob), count.bind(glob));
        }
        let rows = page.bind(f.limit).bind(f.offset).fetch_all(&self.reader).await.map_err(backend)?;
        let total: i64 = count.fetch_one(&self.reader).await.map_err(backend)?;
        Ok((rows.iter().map(secret_from_row).collect::<Result<_, _>>()?, total))
    }

    async fn update_secret(
        &self,
        row: &SecretRow,
        expected_revision: i64,
        new_versions: &[VersionRow],
        audit: &AuditDraft,
    ) -> Result<(), StoreError> {
        self.commit(Batch {
            secret: Some((row, expected_revision)),
            versions: new_versions,
            audit: Some(audit),
            ..Default::default()
        })
        .await
    }

    async fn delete_secret(&self, id: &str, audit: &AuditDraft) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM secret_versions WHERE secret_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let r = sqlx::query("DELETE FROM secrets WHERE id = ?").bind(id).execute(&mut *tx).await.map_err(backend)?;
        if r.rows_affected() == 0 {
            return Ok(false); // dropping tx rolls back
        }
        self.append_in(&mut tx, audit).await?;
        self.finish(tx).await?;
        Ok(true)
    }

    async fn get_versions(&self, secret_id: &str, versions: &[i64]) -> Result<Vec<VersionRow>, StoreError> {
        let mut out = Vec::with_capacity(versions.len());
        for v in versions {
            if let Some(r) = self.cache.version(secret_id, *v) {
                out.push(r);
                continue;
            }
            let generation = self.cache.generation();
            let row =
                sqlx::query("SELECT ciphertext, created_at FROM secret_versions WHERE secret_id = ? AND version = ?")
                    .bind(secret_id)
                    .bind(v)
                    .fetch_optional(&self.reader)
                    .await
                    .map_err(backend)?;
            if let Some(r) = row {
                let row = VersionRow {
                    secret_id: secret_id.to_owned(),
                    version: *v,
                    ciphertext: r.get(0),
                    created_at: r.get(1),
                };
                self.cache.put_version(generation, &row);
                out.push(row);
            }
        }
        Ok(out)
    }

    fn forget_cached(&self) {
        self.cache.invalidate();
    }

    async fn list_versions(&self, secret_id: &str) -> Result<Vec<VersionMeta>, StoreError> {
        let rows =
            sqlx::query("SELECT version, created_at FROM secret_versions WHERE secret_id = ? ORDER BY version DESC")
                .bind(secret_id)
                .fetch_all(&self.reader)
                .await
                .map_err(backend)?;
        Ok(rows.iter().map(|r| VersionMeta { version: r.get(0), created_at: r.get(1) }).collect())
    }

    async fn due_for_destruction(&self, now: i64, limit: i64) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT id FROM secrets WHERE status = 'REVOKE' AND expected_destroy_at IS NOT NULL
               AND expected_destroy_at <= ? ORDER BY expected_destroy_at LIMIT ?",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)
    }

    async fn commit(&self, b: Batch<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        if let Some((row, expected)) = b.secret {
            self.update_secret_in(&mut tx, row, expected).await?;
        }
        insert_versions(&mut tx, b.versions).await?;
        if let Some((row, _)) = b.secret {
            self.prune_in(&mut tx, row).await?;
        }
        // Close the old job before opening a new one: the one-open-job index
        // is checked per statement.
        if let Some((job, expected)) = b.update_job {
            self.write_job_in(&mut tx, job, Some(expected)).await?;
        }
        if let Some(job) = b.insert_job {
            self.write_job_in(&mut tx, job, None).await?;
        }
        for s in b.steps {
            sqlx::query("INSERT INTO job_steps (job_id, ts, step, result, message) VALUES (?,?,?,?,?)")
                .bind(&s.job_id)
                .bind(s.ts)
                .bind(&s.step)
                .bind(&s.result)
                .bind(&s.message)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        for v in b.job_values {
            sqlx::query("INSERT INTO job_values (job_id, seq, source, ciphertext, created_at) VALUES (?,?,?,?,?)")
                .bind(&v.job_id)
                .bind(v.seq)
                .bind(&v.source)
                .bind(&v.ciphertext)
                .bind(v.created_at)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        if let Some(a) = b.audit {
            self.append_in(&mut tx, a).await?;
        }
        self.finish(tx).await
    }

    async fn insert_trigger(&self, row: &TriggerRow, audit: &AuditDraft) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO triggers (id, name, kind, config, sealed_params, created_at, updated_at) VALUES (?,?,?,?,?,?,?)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.kind)
        .bind(&row.config)
        .bind(&row.sealed_params)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        self.append_in(&mut tx, audit).await?;
        self.finish(tx).await
    }

    async fn delete_trigger(&self, id: &str, audit: &AuditDraft) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let linked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE trigger_id = ?")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        if linked > 0 {
            return Err(StoreError::Conflict(format!("{linked} secret(s) still use this trigger")));
        }
        let r = sqlx::query("DELETE FROM triggers WHERE id = ?").bind(id).execute(&mut *tx).await.map_err(backend)?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        self.append_in(&mut tx, audit).await?;
        self.finish(tx).await?;
        Ok(true)
    }

    async fn get_trigger(&self, id: &str) -> Result<Option<TriggerRow>, StoreError> {
        let r = sqlx::query("SELECT * FROM triggers WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        Ok(r.as_ref().map(trigger_from_row))
    }

    async fn list_triggers(&self) -> Result<Vec<TriggerRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM triggers ORDER BY created_at, id")
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        Ok(rows.iter().map(trigger_from_row).collect())
    }

    async fn trigger_secrets(&self, trigger_id: &str) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT id FROM secrets WHERE trigger_id = ? ORDER BY created_at")
            .bind(trigger_id)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)
    }

    async fn get_job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        let r = sqlx::query("SELECT * FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.writer)
            .await
            .map_err(backend)?;
        Ok(r.as_ref().map(job_from_row))
    }

    async fn job_by_token_hash(&self, hash: &[u8]) -> Result<Option<JobRow>, StoreError> {
        let r = sqlx::query("SELECT * FROM jobs WHERE token_hash = ?")
            .bind(hash)
            .fetch_optional(&self.writer)
            .await
            .map_err(backend)?;
        Ok(r.as_ref().map(job_from_row))
    }

    async fn open_job(&self, secret_id: &str) -> Result<Option<JobRow>, StoreError> {
        let r = sqlx::query("SELECT * FROM jobs WHERE secret_id = ? AND is_open = 1")
            .bind(secret_id)
            .fetch_optional(&self.writer)
            .await
            .map_err(backend)?;
        Ok(r.as_ref().map(job_from_row))
    }

    async fn last_job(&self, secret_id: &str) -> Result<Option<JobRow>, StoreError> {
        let r = sqlx::query("SELECT * FROM jobs WHERE secret_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1")
            .bind(secret_id)
            .fetch_optional(&self.writer)
            .await
            .map_err(backend)?;
        Ok(r.as_ref().map(job_from_row))
    }

    async fn list_jobs(&self, secret_id: &str, f: &LogFilter) -> Result<(Vec<JobRow>, i64), StoreError> {
        let keyword = f
            .keyword
            .as_deref()
            .map(|k| format!("%{}%", k.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
        let cond = "secret_id = ?1 AND created_at >= ?2 AND created_at <= ?3
            AND (?4 IS NULL OR EXISTS (SELECT 1 FROM job_steps s WHERE s.job_id = jobs.id
                 AND (s.message LIKE ?4 ESCAPE '\\' OR s.step LIKE ?4 ESCAPE '\\'))
                 OR (?4 IS NOT NULL AND (jobs.status LIKE ?4 ESCAPE '\\' OR jobs.error LIKE ?4 ESCAPE '\\')))";
        let rows = sqlx::query(&format!(
            "SELECT * FROM jobs WHERE {cond} ORDER BY created_at DESC, rowid DESC LIMIT ?5 OFFSET ?6"
        ))
        .bind(secret_id)
        .bind(f.from.unwrap_or(i64::MIN))
        .bind(f.to.unwrap_or(i64::MAX))
        .bind(&keyword)
        .bind(f.limit)
        .bind(f.offset)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM jobs WHERE {cond}"))
            .bind(secret_id)
            .bind(f.from.unwrap_or(i64::MIN))
            .bind(f.to.unwrap_or(i64::MAX))
            .bind(&keyword)
            .fetch_one(&self.reader)
            .await
            .map_err(backend)?;
        Ok((rows.iter().map(job_from_row).collect(), total))
    }

    async fn job_steps(&self, job_id: &str) -> Result<Vec<JobStep>, StoreError> {
        let rows = sqlx::query("SELECT job_id, ts, step, result, message FROM job_steps WHERE job_id = ? ORDER BY seq")
            .bind(job_id)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| JobStep { job_id: r.get(0), ts: r.get(1), step: r.get(2), result: r.get(3), message: r.get(4) })
            .collect())
    }

    async fn job_values(&self, job_id: &str) -> Result<Vec<JobValue>, StoreError> {
        let rows = sqlx::query(
            "SELECT job_id, seq, source, ciphertext, created_at FROM job_values WHERE job_id = ? ORDER BY seq",
        )
        .bind(job_id)
        .fetch_all(&self.writer)
        .await
        .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| JobValue {
                job_id: r.get(0),
                seq: r.get(1),
                source: r.get(2),
                ciphertext: r.get(3),
                created_at: r.get(4),
            })
            .collect())
    }

    async fn jobs_to_dispatch(&self, now: i64, limit: i64) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM jobs WHERE status = 'QUEUED' AND run_at <= ? ORDER BY run_at LIMIT ?")
            .bind(now)
            .bind(limit)
            .fetch_all(&self.writer)
            .await
            .map_err(backend)?;
        Ok(rows.iter().map(job_from_row).collect())
    }

    async fn jobs_overdue(&self, now: i64, limit: i64) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE status IN ('DISPATCHED', 'RUNNING') AND deadline_at <= ? ORDER BY deadline_at LIMIT ?",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.writer)
        .await
        .map_err(backend)?;
        Ok(rows.iter().map(job_from_row).collect())
    }

    async fn secrets_due(&self, now: i64, limit: i64) -> Result<Vec<SecretRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SECRET_COLS} FROM secrets WHERE auto_rotation = 1 AND next_rotation_at <= ? AND status = 'ENABLE'
               AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.secret_id = secrets.id AND jobs.is_open = 1)
             ORDER BY next_rotation_at LIMIT ?"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.writer)
        .await
        .map_err(backend)?;
        rows.iter().map(secret_from_row).collect()
    }

    async fn insert_access_key(&self, row: &AccessKeyRow, audit: Option<&AuditDraft>) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO access_keys (access_key, sealed_secret, role, secret_pattern, description, created_at, revoked_at)
             VALUES (?,?,?,?,?,?,?)",
        )
        .bind(&row.access_key)
        .bind(&row.sealed_secret)
        .bind(&row.role)
        .bind(&row.secret_pattern)
        .bind(&row.description)
        .bind(row.created_at)
        .bind(row.revoked_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if let Some(a) = audit {
            self.append_in(&mut tx, a).await?;
        }
        self.finish(tx).await
    }

    async fn get_access_key(&self, access_key: &str) -> Result<Option<AccessKeyRow>, StoreError> {
        if let Some(r) = self.cache.access_key(access_key) {
            return Ok(Some(r));
        }
        let generation = self.cache.generation();
        let row = sqlx::query("SELECT * FROM access_keys WHERE access_key = ?")
            .bind(access_key)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        let row = row.as_ref().map(access_from_row);
        if let Some(r) = &row {
            self.cache.put_access_key(generation, r);
        }
        Ok(row)
    }

    async fn list_access_keys(&self) -> Result<Vec<AccessKeyRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM access_keys ORDER BY created_at, access_key")
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        Ok(rows.iter().map(access_from_row).collect())
    }

    async fn revoke_access_key(&self, access_key: &str, at: i64, audit: &AuditDraft) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let r = sqlx::query("UPDATE access_keys SET revoked_at = ? WHERE access_key = ? AND revoked_at IS NULL")
            .bind(at)
            .bind(access_key)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        self.append_in(&mut tx, audit).await?;
        self.finish(tx).await?;
        Ok(true)
    }

    /// Audit records of reads and rejections are the write on every request:
    /// they go to one task that appends whatever has queued up in a single
    /// transaction (and one WAL flush), and each caller gets its answer only
    /// once its record is on disk.
    async fn append_audit(&self, draft: &AuditDraft) -> Result<AuditRow, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let gone = || StoreError::Backend("the audit writer has stopped".into());
        self.audit_tx.send((draft.clone(), tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    async fn list_audit(&self, offset: i64, limit: i64) -> Result<(Vec<AuditRow>, i64), StoreError> {
        let rows = sqlx::query("SELECT * FROM audit ORDER BY seq DESC LIMIT ? OFFSET ?")
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM audit").fetch_one(&self.reader).await.map_err(backend)?;
        Ok((rows.iter().map(audit_from_row).collect(), total))
    }

    async fn audit_after(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        Ok(rows.iter().map(audit_from_row).collect())
    }

    async fn audit_head(&self) -> Result<Option<(i64, Vec<u8>, Vec<u8>)>, StoreError> {
        let Some(v) = self.get_meta(AUDIT_HEAD).await? else {
            return Ok(None);
        };
        if v.len() != 8 + 32 + 32 {
            return Err(StoreError::Corrupt("audit head marker has the wrong length".into()));
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&v[..8]);
        Ok(Some((i64::from_be_bytes(b), v[8..40].to_vec(), v[40..].to_vec())))
    }
}

/// What the batch writer hands back to each waiting request.
type AuditJob = (AuditDraft, tokio::sync::oneshot::Sender<Result<AuditRow, StoreError>>);

/// The chain's last (seq, hash) in the database, or the genesis.
async fn read_head(conn: &mut sqlx::SqliteConnection) -> Result<(i64, Vec<u8>), StoreError> {
    Ok(sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .fetch_optional(conn)
        .await
        .map_err(backend)?
        .map(|r| (r.get(0), r.get(1)))
        .unwrap_or((0, GENESIS.to_vec())))
}

/// Links `drafts` onto the chain after `head`, in order; returns the rows and
/// the new head.
fn link_rows(chain: &AuditChain, head: (i64, Vec<u8>), drafts: Vec<AuditDraft>) -> (Vec<AuditRow>, (i64, Vec<u8>)) {
    let (mut seq, mut prev) = head;
    let mut rows = Vec::with_capacity(drafts.len());
    for draft in drafts {
        seq += 1;
        let hash = chain.link(&prev, seq, &draft);
        rows.push(AuditRow { seq, draft, prev_hash: std::mem::replace(&mut prev, hash.clone()), hash });
    }
    (rows, (seq, prev))
}

/// The audit chain's last (seq, hash), when known without a query.
type AuditHead = std::sync::Mutex<Option<(i64, Vec<u8>)>>;

fn set_head(head: &AuditHead, v: Option<(i64, Vec<u8>)>) {
    *head.lock().unwrap_or_else(|p| p.into_inner()) = v;
}

/// An SQL literal for text: hex, so that no character of it needs escaping.
fn text_literal(sql: &mut String, v: Option<&str>) {
    match v {
        None => sql.push_str("NULL"),
        Some(t) => {
            sql.push_str("CAST(");
            blob_literal(sql, t.as_bytes());
            sql.push_str(" AS TEXT)");
        }
    }
}

fn blob_literal(sql: &mut String, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    sql.reserve(b.len() * 2 + 3);
    sql.push_str("X'");
    for x in b {
        sql.push(char::from(HEX[usize::from(x >> 4)]));
        sql.push(char::from(HEX[usize::from(x & 0xF)]));
    }
    sql.push('\'');
}

/// The statements that append `rows` — multi-row inserts and the keyed head
/// marker — as one script, so that they cost one round trip to SQLite's
/// thread. Every value is a number or a hex literal: nothing is
/// interpolated as SQL text. The one way audit rows are written, by the batch
/// writer (wrapped in BEGIN…COMMIT) and inside a mutation's transaction.
fn rows_script(chain: &AuditChain, rows: &[AuditRow]) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(64 + rows.len() * 400);
    for chunk in rows.chunks(100) {
        sql.push_str(
            "INSERT INTO audit (seq, ts, access_key, action, secret_id, result, client_address, request_id, prev_hash, hash) VALUES ",
        );
        for (i, r) in chunk.iter().enumerate() {
            let d = &r.draft;
            let _ = write!(sql, "{}({}, {}, ", if i == 0 { "" } else { ", " }, r.seq, d.timestamp);
            text_literal(&mut sql, d.access_key.as_deref());
            sql.push_str(", ");
            text_literal(&mut sql, Some(&d.action));
            sql.push_str(", ");
            text_literal(&mut sql, d.secret_id.as_deref());
            sql.push_str(", ");
            text_literal(&mut sql, Some(&d.result));
            sql.push_str(", ");
            text_literal(&mut sql, d.client_address.as_deref());
            sql.push_str(", ");
            text_literal(&mut sql, Some(&d.request_id));
            sql.push_str(", ");
            blob_literal(&mut sql, &r.prev_hash);
            sql.push_str(", ");
            blob_literal(&mut sql, &r.hash);
            sql.push(')');
        }
        sql.push_str(";\n");
    }
    if let Some(last) = rows.last() {
        let mut marker = last.seq.to_be_bytes().to_vec();
        marker.extend_from_slice(&last.hash);
        marker.extend_from_slice(&chain.head_mac(last.seq, &last.hash));
        sql.push_str("INSERT INTO meta (key, value) VALUES ('");
        sql.push_str(AUDIT_HEAD);
        sql.push_str("', ");
        blob_literal(&mut sql, &marker);
        sql.push_str(") ON CONFLICT(key) DO UPDATE SET value = excluded.value;\n");
    }
    sql
}

/// The audit writer task: takes the records queued since its last
/// transaction (up to 256) and appends them in one transaction. The flush and
/// the answers are left to a task of their own, so the next batch is written
/// while the disk syncs the last; every caller is answered only once a flush
/// that started after its commit has finished. A failed batch fails each of
/// its requests (and nothing of it is written).
///
/// The chain's head is kept between batches while this task holds the one
/// writer connection; any other append (a mutation's, in its own
/// transaction) empties it, and so does a failed batch, so the next batch
/// reads it from the database.
async fn audit_batcher(
    writer: SqlitePool,
    chain: Arc<AuditChain>,
    sync: Arc<GroupSync>,
    head: Arc<AuditHead>,
    mut rx: tokio::sync::mpsc::Receiver<AuditJob>,
) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        let (drafts, waiters): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let written = write_batch(&writer, &chain, &head, drafts).await;
        let sync = sync.clone();
        tokio::spawn(async move {
            let result = match written {
                Ok(rows) => sync.sync().await.map(|()| rows),
                Err(e) => Err(e),
            };
            match result {
                Ok(rows) => {
                    for (w, row) in waiters.into_iter().zip(rows) {
                        let _ = w.send(Ok(row));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, records = waiters.len(), "audit batch failed");
                    for w in waiters {
                        let _ = w.send(Err(StoreError::Backend("the audit record could not be written".into())));
                    }
                }
            }
        });
    }
}

/// Appends one batch of records in one transaction; see [`audit_batcher`].
async fn write_batch(
    writer: &SqlitePool,
    chain: &AuditChain,
    head: &AuditHead,
    drafts: Vec<AuditDraft>,
) -> Result<Vec<AuditRow>, StoreError> {
    let mut conn = writer.acquire().await.map_err(backend)?;
    let known = head.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let start = match known {
        Some(h) => h,
        None => read_head(&mut conn).await?,
    };
    let (rows, new_head) = link_rows(chain, start, drafts);
    let script = format!("BEGIN IMMEDIATE;\n{}COMMIT;", rows_script(chain, &rows));
    // Not prepared for reuse: every script is different.
    if let Err(e) = sqlx::query(&script).persistent(false).execute(&mut *conn).await {
        set_head(head, None);
        let _ = sqlx::Executor::execute(&mut *conn, "ROLLBACK").await;
        return Err(backend(e));
    }
    set_head(head, Some(new_head));
    Ok(rows)
}
