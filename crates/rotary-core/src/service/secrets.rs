//! Secrets: create, read, change stages, lifecycle.

use std::sync::Arc;

use rotary_crypto::{Key, new_secret_id, open, seal};

use super::{CAS_RETRIES, Caller, cas_pause, contention};
use crate::clock::Clock;
use crate::domain::{MAX_MEMO_LEN, SecretName, SecretStatus, SecretValue, Stage};
use crate::error::CoreError;
use crate::keyring::{DATA_KEY_ID, Keyring, value_ctx};
use crate::policy::Permission;
use crate::store::{ListFilter, SecretRow, SecretStore, StoreError, VersionRow};

const DAY_MS: i64 = 86_400_000;

pub struct NewSecret {
    pub name: String,
    pub memo: Option<String>,
    pub value: SecretValue,
    pub rotation_targets: Vec<String>,
    /// Automatic rotation from the start: (period in days, trigger id). The
    /// caller has checked that the trigger exists.
    pub auto_rotation: Option<(i64, String)>,
}

/// Decrypted stages of a secret, each with its version.
#[derive(Debug, Default)]
pub struct Chain {
    pub active: Option<(i64, SecretValue)>,
    pub pending: Option<(i64, SecretValue)>,
    pub previous: Option<(i64, SecretValue)>,
}

#[derive(Debug)]
pub struct VersionView {
    pub version: i64,
    pub created_at: i64,
    pub stages: Vec<Stage>,
}

pub struct SecretService {
    store: Arc<dyn SecretStore>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    /// Days a secret stays recoverable after a deletion request.
    pub default_recovery_days: i64,
}

fn stage_ptr(row: &mut SecretRow, stage: Stage) -> &mut Option<i64> {
    match stage {
        Stage::Active => &mut row.active_version,
        Stage::Pending => &mut row.pending_version,
        Stage::Previous => &mut row.previous_version,
    }
}

fn stage_version(row: &SecretRow, stage: Stage) -> Option<i64> {
    match stage {
        Stage::Active => row.active_version,
        Stage::Pending => row.pending_version,
        Stage::Previous => row.previous_version,
    }
}

fn check_memo(memo: &str) -> Result<(), CoreError> {
    if memo.chars().count() > MAX_MEMO_LEN {
        return Err(CoreError::invalid(format!("memo is longer than {MAX_MEMO_LEN} characters")));
    }
    Ok(())
}

fn readable(row: &SecretRow) -> Result<(), CoreError> {
    match SecretStatus::parse(&row.status) {
        Some(SecretStatus::Enable | SecretStatus::Rotating) => Ok(()),
        Some(SecretStatus::Disable) => Err(CoreError::status("secret is disabled; enable it to read its values")),
        Some(SecretStatus::Revoke) => {
            Err(CoreError::status("secret is scheduled for deletion; cancel the deletion to read its values"))
        }
        _ => Err(CoreError::status(format!("secret is {}", row.status))),
    }
}

fn changeable(row: &SecretRow) -> Result<(), CoreError> {
    match SecretStatus::parse(&row.status) {
        Some(SecretStatus::Enable | SecretStatus::Disable) => Ok(()),
        Some(SecretStatus::Revoke) => {
            Err(CoreError::status("secret is scheduled for deletion; cancel the deletion first"))
        }
        Some(SecretStatus::Rotating) => Err(CoreError::status("secret is being rotated; wait for the rotation to end")),
        _ => Err(CoreError::status(format!("secret is {}", row.status))),
    }
}

impl SecretService {
    pub fn new(store: Arc<dyn SecretStore>, keyring: Arc<Keyring>, clock: Arc<dyn Clock>) -> Self {
        Self { store, keyring, clock, default_recovery_days: 7 }
    }

    pub(crate) fn seal_value(&self, dek: &Key, row: &SecretRow, version: i64, v: &SecretValue, now: i64) -> VersionRow {
        use secrecy::ExposeSecret;
        VersionRow {
            secret_id: row.id.clone(),
            version,
            ciphertext: seal(dek, DATA_KEY_ID, &value_ctx(&row.id, version), v.json().expose_secret().as_bytes()),
            created_at: now,
        }
    }

    pub(crate) fn open_version(&self, dek: &Key, v: &VersionRow) -> Result<SecretValue, CoreError> {
        let pt = open(dek, &value_ctx(&v.secret_id, v.version), &v.ciphertext)?;
        SecretValue::from_stored(&pt)
    }

    pub(crate) async fn load(&self, caller: &Caller, id: &str, perm: Permission) -> Result<SecretRow, CoreError> {
        caller.ctx.set_secret_id(id);
        let row = self
            .store
            .get_secret(id)
            .await?
            .filter(|r| caller.policy.sees(&r.name))
            .ok_or_else(|| CoreError::not_found(format!("no secret with id {id:?}")))?;
        caller.policy.check(perm, Some(&row.name))?;
        Ok(row)
    }

    pub async fn create(&self, caller: &Caller, new: NewSecret) -> Result<SecretRow, CoreError> {
        let name = SecretName::parse(&new.name)?;
        caller.policy.check(Permission::Manage, Some(name.as_str()))?;
        let memo = new.memo.unwrap_or_default();
        check_memo(&memo)?;
        new.value.check_targets(&new.rotation_targets)?;
        if let Some((period, _)) = &new.auto_rotation {
            if !(1..=730).contains(period) {
                return Err(CoreError::invalid("autoRotationPeriod must be 1-730 days"));
            }
            if new.rotation_targets.is_empty() {
                return Err(CoreError::invalid("automatic rotation needs at least one rotation target"));
            }
        }
        let now = self.clock.now_ms();
        let id = new_secret_id();
        caller.ctx.set_secret_id(&id);
        let (dek, wrapped) = self.keyring.new_data_key(&id)?;
        let row = SecretRow {
            id,
            name: name.as_str().to_owned(),
            memo,
            status: SecretStatus::Enable.as_str().into(),
            status_before_revoke: None,
            rotation_targets: new.rotation_targets,
            wrapped_dek: wrapped,
            active_version: Some(1),
            pending_version: None,
            previous_version: None,
            next_version: 2,
            revision: 1,
            auto_rotation: new.auto_rotation.is_some(),
            rotation_period_days: new.auto_rotation.as_ref().map(|(p, _)| *p),
            trigger_id: new.auto_rotation.as_ref().map(|(_, t)| t.clone()),
            next_rotation_at: new.auto_rotation.as_ref().map(|(p, _)| now + p * DAY_MS),
            last_rotation_at: None,
            rotation_phase: None,
            schedule_base_at: new.auto_rotation.as_ref().map(|_| now),
            expected_destroy_at: None,
            created_at: now,
            updated_at: now,
        };
        let v1 = self.seal_value(&dek, &row, 1, &new.value, now);
        let audit = caller.ctx.draft("SUCCESS", now);
        self.store.create_secret(&row, &[v1], &audit).await.map_err(|e| match e {
            StoreError::Conflict(_) => CoreError::status(format!("a secret named {:?} already exists", row.name)),
            other => other.into(),
        })?;
        caller.ctx.mark_audited();
        Ok(row)
    }

    pub async fn list(
        &self,
        caller: &Caller,
        page_no: u32,
        page_size: u32,
    ) -> Result<(Vec<SecretRow>, i64), CoreError> {
        caller.policy.check(Permission::ReadMetadata, None)?;
        if page_no == 0 {
            return Err(CoreError::invalid("pageNo starts at 1"));
        }
        if !(1..=1000).contains(&page_size) {
            return Err(CoreError::invalid("pageSize must be 1-1000"));
        }
        let filter = ListFilter {
            name_glob: caller.policy.pattern.as_ref().map(|p| p.as_str().to_owned()),
            offset: i64::from(page_no - 1) * i64::from(page_size),
            limit: i64::from(page_size),
        };
        Ok(self.store.list_secrets(&filter).await?)
    }

    pub async fn get(&self, caller: &Caller, id: &str) -> Result<SecretRow, CoreError> {
        self.load(caller, id, Permission::ReadMetadata).await
    }

    pub async fn values(&self, caller: &Caller, id: &str) -> Result<(SecretRow, Chain), CoreError> {
        let row = self.load(caller, id, Permission::ReadValue).await?;
        readable(&row)?;
        let chain = self.decrypt_chain(&row).await?;
        Ok((row, chain))
    }

    /// Decrypts every stage of `row`. For use by trusted internal callers
    /// (rotation) after their own authorization.
    pub async fn decrypt_chain(&self, row: &SecretRow) -> Result<Chain, CoreError> {
        let wanted: Vec<i64> =
            [row.active_version, row.pending_version, row.previous_version].into_iter().flatten().collect();
        let versions = self.store.get_versions(&row.id, &wanted).await?;
        let dek = self.keyring.open_data_key(&row.id, &row.wrapped_dek).inspect_err(|_| self.store.forget_cached())?;
        let find = |v: Option<i64>| -> Result<Option<(i64, SecretValue)>, CoreError> {
            let Some(v) = v else { return Ok(None) };
            let ver = versions.iter().find(|r| r.version == v).ok_or_else(|| {
                CoreError::new(crate::ErrorKind::Internal, format!("version {v} of a stage is missing"))
            })?;
            let value = self.open_version(&dek, ver).inspect_err(|_| self.store.forget_cached())?;
            Ok(Some((v, value)))
        };
        Ok(Chain {
            active: find(row.active_version)?,
            pending: find(row.pending_version)?,
            previous: find(row.previous_version)?,
        })
    }

    pub async fn stage_value(&self, caller: &Caller, id: &str, stage: Stage) -> Result<(i64, SecretValue), CoreError> {
        let (_, chain) = self.values(caller, id).await?;
        let v = match stage {
            Stage::Active => chain.active,
            Stage::Pending => chain.pending,
            Stage::Previous => chain.previous,
        };
        v.ok_or_else(|| CoreError::not_found(format!("secret has no {} value", stage.as_str())))
    }

    /// Loads, lets `f` change the row (and optionally give a value for a new
    /// version), and writes with compare-and-swap, retrying on a concurrent update.
    pub(crate) async fn update<F>(
        &self,
        caller: &Caller,
        id: &str,
        perm: Permission,
        mut f: F,
    ) -> Result<SecretRow, CoreError>
    where
        F: FnMut(&mut SecretRow, i64) -> Result<Option<(Stage, bool)>, CoreError> + Send,
    {
        self.update_with_value(caller, id, perm, None, |row, now| f(row, now)).await
    }

    async fn update_with_value<F>(
        &self,
        caller: &Caller,
        id: &str,
        perm: Permission,
        value: Option<&SecretValue>,
        mut f: F,
    ) -> Result<SecretRow, CoreError>
    where
        F: FnMut(&mut SecretRow, i64) -> Result<Option<(Stage, bool)>, CoreError> + Send,
    {
        for attempt in 0..CAS_RETRIES {
            let mut row = self.load(caller, id, perm).await?;
            let expected = row.revision;
            let now = self.clock.now_ms();
            // f returns the stage that the new value goes to, and whether the
            // old active moves to previous.
            let placement = f(&mut row, now)?;
            let mut new_versions = Vec::new();
            if let (Some(value), Some((stage, demote))) = (value, placement) {
                let dek = self.keyring.open_data_key(&row.id, &row.wrapped_dek)?;
                let version = row.next_version;
                row.next_version += 1;
                new_versions.push(self.seal_value(&dek, &row, version, value, now));
                if demote {
                    row.previous_version = row.active_version;
                }
                *stage_ptr(&mut row, stage) = Some(version);
            }
            row.revision += 1;
            row.updated_at = now;
            let audit = caller.ctx.draft("SUCCESS", now);
            match self.store.update_secret(&row, expected, &new_versions, &audit).await {
                Ok(()) => {
                    caller.ctx.mark_audited();
                    return Ok(row);
                }
                Err(StoreError::Conflict(_)) => cas_pause(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(contention())
    }

    /// `PUT /values`: the value becomes active and the old active becomes
    /// previous (a manual rotation). Optionally replaces the rotation targets.
    pub async fn put_active(
        &self,
        caller: &Caller,
        id: &str,
        value: SecretValue,
        targets: Option<Vec<String>>,
    ) -> Result<SecretRow, CoreError> {
        self.update_with_value(caller, id, Permission::Manage, Some(&value), |row, _| {
            changeable(row)?;
            if let Some(t) = &targets {
                row.rotation_targets = t.clone();
            }
            value.check_targets(&row.rotation_targets)?;
            // A pending made from the old active (a failed rotation's) no
            // longer fits the new one; it stays in the version history.
            row.pending_version = None;
            Ok(Some((Stage::Active, true)))
        })
        .await
    }

    /// `PUT /values/{stage}`: sets exactly that stage to a new version.
    pub async fn put_stage(
        &self,
        caller: &Caller,
        id: &str,
        stage: Stage,
        value: SecretValue,
    ) -> Result<SecretRow, CoreError> {
        self.update_with_value(caller, id, Permission::Manage, Some(&value), |row, _| {
            changeable(row)?;
            value.check_targets(&row.rotation_targets)?;
            Ok(Some((stage, false)))
        })
        .await
    }

    pub async fn set_memo(&self, caller: &Caller, id: &str, memo: String) -> Result<SecretRow, CoreError> {
        check_memo(&memo)?;
        self.update(caller, id, Permission::Manage, |row, _| {
            changeable(row)?;
            row.memo = memo.clone();
            Ok(None)
        })
        .await
    }

    pub async fn set_enabled(&self, caller: &Caller, id: &str, enabled: bool) -> Result<SecretRow, CoreError> {
        self.update(caller, id, Permission::Manage, |row, _| {
            changeable(row)?;
            row.status = if enabled { SecretStatus::Enable } else { SecretStatus::Disable }.as_str().into();
            Ok(None)
        })
        .await
    }

    pub async fn request_deletion(&self, caller: &Caller, id: &str, days: Option<i64>) -> Result<SecretRow, CoreError> {
        let days = days.unwrap_or(self.default_recovery_days);
        if !(1..=30).contains(&days) {
            return Err(CoreError::invalid("waitingPeriod must be 1-30 days"));
        }
        self.update(caller, id, Permission::Manage, |row, now| {
            changeable(row)?;
            row.status_before_revoke = Some(row.status.clone());
            row.status = SecretStatus::Revoke.as_str().into();
            row.expected_destroy_at = Some(now + days * DAY_MS);
            Ok(None)
        })
        .await
    }

    pub async fn cancel_deletion(&self, caller: &Caller, id: &str) -> Result<SecretRow, CoreError> {
        self.update(caller, id, Permission::Manage, |row, _| {
            if row.status != SecretStatus::Revoke.as_str() {
                return Err(CoreError::status("secret is not scheduled for deletion"));
            }
            row.status = row.status_before_revoke.take().unwrap_or_else(|| SecretStatus::Enable.as_str().into());
            row.expected_destroy_at = None;
            Ok(None)
        })
        .await
    }

    /// Deletes a secret for good. Only a secret scheduled for deletion can be
    /// deleted: two deliberate steps, so one mistaken call loses nothing.
    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<(), CoreError> {
        let row = self.load(caller, id, Permission::Manage).await?;
        if row.status != SecretStatus::Revoke.as_str() {
            return Err(CoreError::status(
                "secret must be scheduled for deletion first (POST /api/v1/secrets/{id}/request-deletion)",
            ));
        }
        let audit = caller.ctx.draft("SUCCESS", self.clock.now_ms());
        if !self.store.delete_secret(id, &audit).await? {
            return Err(CoreError::not_found(format!("no secret with id {id:?}")));
        }
        caller.ctx.mark_audited();
        Ok(())
    }

    pub async fn versions(&self, caller: &Caller, id: &str) -> Result<Vec<VersionView>, CoreError> {
        let row = self.load(caller, id, Permission::ReadMetadata).await?;
        let metas = self.store.list_versions(id).await?;
        Ok(metas
            .into_iter()
            .map(|m| VersionView {
                version: m.version,
                created_at: m.created_at,
                stages: Stage::ALL.into_iter().filter(|s| stage_version(&row, *s) == Some(m.version)).collect(),
            })
            .collect())
    }

    /// Destroys secrets whose recovery window has ended. Audited as the system.
    pub async fn purge_expired(&self, request_id: &str) -> Result<usize, CoreError> {
        let now = self.clock.now_ms();
        let ids = self.store.due_for_destruction(now, 100).await?;
        let mut n = 0;
        for id in ids {
            let audit = crate::audit::AuditDraft {
                timestamp: now,
                access_key: None,
                action: "DestroySecret".into(),
                secret_id: Some(id.clone()),
                result: "SUCCESS".into(),
                client_address: None,
                request_id: request_id.to_owned(),
            };
            if self.store.delete_secret(&id, &audit).await? {
                n += 1;
            }
        }
        Ok(n)
    }
}
