//! The embedded SQLite store: one file in the data directory, WAL mode,
//! `synchronous=FULL` (a committed secret survives power loss).
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
    AccessKeyRow, ListFilter, ProtectionKeyRow, SecretRow, SecretStore, StoreError, VersionMeta, VersionRow,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

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
        let writer = SqlitePoolOptions::new().max_connections(1).connect_with(base.clone()).await.map_err(backend)?;
        sqlx::raw_sql(SCHEMA).execute(&writer).await.map_err(backend)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(opts.read_connections.max(1))
            .connect_with(base.read_only(true))
            .await
            .map_err(backend)?;
        Ok(Self { writer, reader, chain, opts })
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn append_in(&self, tx: &mut Transaction<'_, Sqlite>, d: &AuditDraft) -> Result<AuditRow, StoreError> {
        let head: Option<(i64, Vec<u8>)> = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?
            .map(|r| (r.get(0), r.get(1)));
        let (prev_seq, prev_hash) = head.unwrap_or((0, GENESIS.to_vec()));
        let seq = prev_seq + 1;
        let hash = self.chain.link(&prev_hash, seq, d);
        sqlx::query(
            "INSERT INTO audit (seq, ts, access_key, action, secret_id, result, client_address, request_id, prev_hash, hash)
             VALUES (?,?,?,?,?,?,?,?,?,?)",
        )
        .bind(seq)
        .bind(d.timestamp)
        .bind(&d.access_key)
        .bind(&d.action)
        .bind(&d.secret_id)
        .bind(&d.result)
        .bind(&d.client_address)
        .bind(&d.request_id)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        let mut marker = seq.to_be_bytes().to_vec();
        marker.extend_from_slice(&hash);
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .bind(AUDIT_HEAD)
        .bind(&marker)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        Ok(AuditRow { seq, draft: d.clone(), prev_hash, hash })
    }

    async fn begin(&self) -> Result<Transaction<'_, Sqlite>, StoreError> {
        self.writer.begin().await.map_err(backend)
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
    expected_destroy_at, created_at, updated_at";

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
        Ok(())
    }

    async fn create_secret(
        &self,
        row: &SecretRow,
        versions: &[VersionRow],
        audit: &AuditDraft,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(&format!("INSERT INTO secrets ({SECRET_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"))
            .bind(&row.id)
            .bind(&row.name)
            .bind(&row.memo)
            .bind(&row.status)
            .bind(&row.status_before_revoke)
            .bind(serde_json::to_string(&row.rotation_targets).map_err(|e| StoreError::Backend(Box::new(e)))?)
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
            .bind(row.expected_destroy_at)
            .bind(row.created_at)
            .bind(row.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        insert_versions(&mut tx, versions).await?;
        self.append_in(&mut tx, audit).await?;
        tx.commit().await.map_err(backend)
    }

    async fn get_secret(&self, id: &str) -> Result<Option<SecretRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {SECRET_COLS} FROM secrets WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        row.as_ref().map(secret_from_row).transpose()
    }

    async fn list_secrets(&self, f: &ListFilter) -> Result<(Vec<SecretRow>, i64), StoreError> {
        let glob = f.name_glob.clone().unwrap_or_else(|| "*".into());
        let rows = sqlx::query(&format!(
            "SELECT {SECRET_COLS} FROM secrets WHERE name GLOB ? ORDER BY created_at, id LIMIT ? OFFSET ?"
        ))
        .bind(&glob)
        .bind(f.limit)
        .bind(f.offset)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE name GLOB ?")
            .bind(&glob)
            .fetch_one(&self.reader)
            .await
            .map_err(backend)?;
        Ok((rows.iter().map(secret_from_row).collect::<Result<_, _>>()?, total))
    }

    async fn update_secret(
        &self,
        row: &SecretRow,
        expected_revision: i64,
        new_versions: &[VersionRow],
        audit: &AuditDraft,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE secrets SET name=?, memo=?, status=?, status_before_revoke=?, rotation_targets=?, wrapped_dek=?,
               active_version=?, pending_version=?, previous_version=?, next_version=?, revision=?, auto_rotation=?,
               rotation_period_days=?, trigger_id=?, next_rotation_at=?, last_rotation_at=?, rotation_phase=?,
               expected_destroy_at=?, updated_at=?
             WHERE id=? AND revision=?",
        )
        .bind(&row.name)
        .bind(&row.memo)
        .bind(&row.status)
        .bind(&row.status_before_revoke)
        .bind(serde_json::to_string(&row.rotation_targets).map_err(|e| StoreError::Backend(Box::new(e)))?)
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
        .bind(row.expected_destroy_at)
        .bind(row.updated_at)
        .bind(&row.id)
        .bind(expected_revision)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if r.rows_affected() != 1 {
            return Err(StoreError::Conflict("the secret was changed or deleted concurrently".into()));
        }
        insert_versions(&mut tx, new_versions).await?;
        // Prune: keep every version a stage points at, plus the newest
        // `history_limit` others.
        sqlx::query(
            "DELETE FROM secret_versions WHERE secret_id = ?1
               AND version NOT IN (SELECT v FROM (SELECT ?2 AS v UNION ALL SELECT ?3 UNION ALL SELECT ?4) WHERE v IS NOT NULL)
               AND version NOT IN (SELECT version FROM secret_versions WHERE secret_id = ?1 ORDER BY version DESC LIMIT ?5)",
        )
        .bind(&row.id)
        .bind(row.active_version)
        .bind(row.pending_version)
        .bind(row.previous_version)
        .bind(self.opts.history_limit)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        self.append_in(&mut tx, audit).await?;
        tx.commit().await.map_err(backend)
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
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn get_versions(&self, secret_id: &str, versions: &[i64]) -> Result<Vec<VersionRow>, StoreError> {
        let mut out = Vec::with_capacity(versions.len());
        for v in versions {
            let row =
                sqlx::query("SELECT ciphertext, created_at FROM secret_versions WHERE secret_id = ? AND version = ?")
                    .bind(secret_id)
                    .bind(v)
                    .fetch_optional(&self.reader)
                    .await
                    .map_err(backend)?;
            if let Some(r) = row {
                out.push(VersionRow {
                    secret_id: secret_id.to_owned(),
                    version: *v,
                    ciphertext: r.get(0),
                    created_at: r.get(1),
                });
            }
        }
        Ok(out)
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
        tx.commit().await.map_err(backend)
    }

    async fn get_access_key(&self, access_key: &str) -> Result<Option<AccessKeyRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM access_keys WHERE access_key = ?")
            .bind(access_key)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        Ok(row.as_ref().map(access_from_row))
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
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn append_audit(&self, draft: &AuditDraft) -> Result<AuditRow, StoreError> {
        let mut tx = self.begin().await?;
        let row = self.append_in(&mut tx, draft).await?;
        tx.commit().await.map_err(backend)?;
        Ok(row)
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

    async fn audit_head(&self) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        let Some(v) = self.get_meta(AUDIT_HEAD).await? else {
            return Ok(None);
        };
        if v.len() < 8 {
            return Err(StoreError::Corrupt("audit head marker is truncated".into()));
        }
        let (seq, hash) = v.split_at(8);
        let mut b = [0u8; 8];
        b.copy_from_slice(seq);
        Ok(Some((i64::from_be_bytes(b), hash.to_vec())))
    }
}
