//! Access keys (create, list, revoke, authenticate requests) and the audit log.

use std::sync::Arc;

use rotary_crypto::{new_access_key_id, new_secret_key, verify_v2};
use secrecy::{ExposeSecret, SecretString};

use super::Caller;
use crate::audit::{AuditChain, AuditRow, GENESIS};
use crate::clock::Clock;
use crate::error::CoreError;
use crate::keyring::Keyring;
use crate::policy::{NamePattern, Permission, Policy, Role};
use crate::store::{AccessKeyRow, SecretStore};

/// Requests more than this far from the server clock are rejected (NCP: 5 min).
pub const MAX_SKEW_MS: i64 = 300_000;

/// The signature headers and what was signed.
#[derive(Debug)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path_with_query: &'a str,
    pub timestamp: Option<&'a str>,
    pub access_key: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Why authentication failed: shown to the client in `details`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("x-ncp-apigw-timestamp must be milliseconds since the Unix epoch")]
    BadTimestamp,
    #[error(
        "request timestamp {given} is {skew_s} s away from the server time {server_ms}; it must be less than 300 s"
    )]
    Skewed { given: i64, server_ms: i64, skew_s: String },
    #[error("unknown access key")]
    UnknownKey,
    #[error("access key is revoked")]
    Revoked,
    #[error(
        "signature does not match (sign METHOD + \" \" + path with query + \"\\n\" + timestamp + \"\\n\" + access key)"
    )]
    BadSignature,
    #[error("authentication could not be checked")]
    Internal,
}

pub struct AccessKeys {
    store: Arc<dyn SecretStore>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
}

impl AccessKeys {
    pub fn new(store: Arc<dyn SecretStore>, keyring: Arc<Keyring>, clock: Arc<dyn Clock>) -> Self {
        Self { store, keyring, clock }
    }

    fn row(
        &self,
        access_key: &str,
        secret: &SecretString,
        role: Role,
        pattern: Option<&NamePattern>,
        description: Option<String>,
    ) -> Result<AccessKeyRow, CoreError> {
        Ok(AccessKeyRow {
            access_key: access_key.to_owned(),
            sealed_secret: self.keyring.seal_access_secret(
                access_key,
                role.as_str(),
                pattern.map(NamePattern::as_str),
                secret.expose_secret().as_bytes(),
            )?,
            role: role.as_str().to_owned(),
            secret_pattern: pattern.map(|p| p.as_str().to_owned()),
            description,
            created_at: self.clock.now_ms(),
            revoked_at: None,
        })
    }

    /// Writes the first admin key of a new data directory.
    pub async fn bootstrap_admin(&self, access_key: &str, secret: &SecretString) -> Result<(), CoreError> {
        if access_key.len() < 8 || access_key.len() > 128 || !access_key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(CoreError::invalid("ROTARY_ADMIN_ACCESS_KEY must be 8-128 letters and digits"));
        }
        if secret.expose_secret().len() < 16 {
            return Err(CoreError::invalid("ROTARY_ADMIN_SECRET_KEY must be at least 16 characters"));
        }
        let row = self.row(access_key, secret, Role::Admin, None, Some("first admin key".into()))?;
        self.store.insert_access_key(&row, None).await?;
        Ok(())
    }

    pub async fn create(
        &self,
        caller: &Caller,
        role: &str,
        pattern: Option<&str>,
        description: Option<String>,
    ) -> Result<(AccessKeyRow, SecretString), CoreError> {
        caller.policy.check(Permission::Administer, None)?;
        let role = Role::parse(role)?;
        let pattern = pattern.map(NamePattern::parse).transpose()?;
        if description.as_deref().is_some_and(|d| d.chars().count() > 256) {
            return Err(CoreError::invalid("description is longer than 256 characters"));
        }
        let id = new_access_key_id();
        let secret = new_secret_key();
        let row = self.row(&id, &secret, role, pattern.as_ref(), description)?;
        let audit = caller.ctx.draft("SUCCESS", self.clock.now_ms());
        self.store.insert_access_key(&row, Some(&audit)).await?;
        caller.ctx.mark_audited();
        Ok((row, secret))
    }

    pub async fn list(&self, caller: &Caller) -> Result<Vec<AccessKeyRow>, CoreError> {
        caller.policy.check(Permission::Administer, None)?;
        Ok(self.store.list_access_keys().await?)
    }

    pub async fn revoke(&self, caller: &Caller, access_key: &str) -> Result<(), CoreError> {
        caller.policy.check(Permission::Administer, None)?;
        let Some(row) = self.store.get_access_key(access_key).await? else {
            return Err(CoreError::not_found(format!("no access key {access_key:?}")));
        };
        if row.revoked_at.is_some() {
            return Err(CoreError::status("access key is already revoked"));
        }
        let unscoped_admin =
            |k: &AccessKeyRow| k.role == "admin" && k.secret_pattern.is_none() && k.revoked_at.is_none();
        if unscoped_admin(&row)
            && self.store.list_access_keys().await?.iter().filter(|k| unscoped_admin(k)).count() <= 1
        {
            return Err(CoreError::status(
                "this is the last active admin key without a secret pattern; create another admin key before revoking it",
            ));
        }
        let now = self.clock.now_ms();
        let audit = caller.ctx.draft("SUCCESS", now);
        if !self.store.revoke_access_key(access_key, now, &audit).await? {
            return Err(CoreError::status("access key is already revoked"));
        }
        caller.ctx.mark_audited();
        Ok(())
    }

    /// Checks a request's signature v2 headers; on success returns the key's policy.
    pub async fn authenticate(&self, req: &SignedRequest<'_>) -> Result<(String, Policy), AuthFailure> {
        let ts_s = req.timestamp.ok_or(AuthFailure::MissingHeader("x-ncp-apigw-timestamp"))?;
        let ak = req.access_key.ok_or(AuthFailure::MissingHeader("x-ncp-iam-access-key"))?;
        let sig = req.signature.ok_or(AuthFailure::MissingHeader("x-ncp-apigw-signature-v2"))?;
        let ts: i64 = ts_s.trim().parse().map_err(|_| AuthFailure::BadTimestamp)?;
        let now = self.clock.now_ms();
        let skew = now.saturating_sub(ts).saturating_abs();
        if skew >= MAX_SKEW_MS {
            let skew_s = format!("{:.1}", skew as f64 / 1000.0);
            return Err(AuthFailure::Skewed { given: ts, server_ms: now, skew_s });
        }
        let row =
            self.store.get_access_key(ak).await.map_err(|_| AuthFailure::Internal)?.ok_or(AuthFailure::UnknownKey)?;
        let secret = self
            .keyring
            .open_access_secret(ak, &row.role, row.secret_pattern.as_deref(), &row.sealed_secret)
            .map_err(|_| {
                self.store.forget_cached();
                AuthFailure::Internal
            })?;
        if !verify_v2(&secret, req.method, req.path_with_query, ts_s, ak, sig) {
            return Err(AuthFailure::BadSignature);
        }
        // Checked after the signature so that revocation is only disclosed to
        // someone holding the secret key.
        if row.revoked_at.is_some() {
            return Err(AuthFailure::Revoked);
        }
        let role = Role::parse(&row.role).map_err(|_| AuthFailure::Internal)?;
        let pattern =
            row.secret_pattern.as_deref().map(NamePattern::parse).transpose().map_err(|_| AuthFailure::Internal)?;
        Ok((row.access_key, Policy { role, pattern }))
    }
}

pub struct AuditLog {
    store: Arc<dyn SecretStore>,
    chain: Arc<AuditChain>,
}

#[derive(Debug)]
pub struct Verification {
    pub valid: bool,
    pub checked: i64,
    pub first_invalid: Option<i64>,
    pub reason: Option<String>,
}

impl AuditLog {
    pub fn new(store: Arc<dyn SecretStore>, chain: Arc<AuditChain>) -> Self {
        Self { store, chain }
    }

    pub async fn list(&self, caller: &Caller, page_no: u32, page_size: u32) -> Result<(Vec<AuditRow>, i64), CoreError> {
        caller.policy.check(Permission::Administer, None)?;
        if page_no == 0 || !(1..=1000).contains(&page_size) {
            return Err(CoreError::invalid("pageNo starts at 1 and pageSize must be 1-1000"));
        }
        Ok(self.store.list_audit(i64::from(page_no - 1) * i64::from(page_size), i64::from(page_size)).await?)
    }

    /// Walks the chain up to the head marker read first (records appended
    /// meanwhile are left for the next check), and requires the walk to end
    /// exactly at the head: a truncated tail, an emptied log or a forged head
    /// all fail.
    pub async fn verify(&self, caller: &Caller) -> Result<Verification, CoreError> {
        caller.policy.check(Permission::Administer, None)?;
        let bad = |checked: i64, first: i64, why: String| Verification {
            valid: false,
            checked,
            first_invalid: Some(first),
            reason: Some(why),
        };
        let (head_seq, head_hash) = match self.store.audit_head().await {
            Ok(Some((seq, hash, mac))) => {
                if mac != self.chain.head_mac(seq, &hash) {
                    return Ok(bad(0, seq, "the head marker was altered".into()));
                }
                (seq, hash)
            }
            // Initialization writes the first record, so a valid log has a head.
            Ok(None) => return Ok(bad(0, 1, "the head marker is missing: the audit log was emptied".into())),
            Err(_) => return Ok(bad(0, 1, "the head marker is corrupt".into())),
        };
        let mut prev = (0i64, GENESIS.to_vec());
        let mut checked = 0;
        while prev.0 < head_seq {
            let mut rows = self.store.audit_after(prev.0, 1000).await?;
            rows.retain(|r| r.seq <= head_seq);
            if rows.is_empty() {
                break;
            }
            checked += rows.len() as i64;
            if let Err((seq, why)) = self.chain.verify_run(&mut prev, &rows) {
                return Ok(bad(checked, seq, why));
            }
        }
        if prev.0 != head_seq || prev.1 != head_hash {
            let why = format!("records after {} are missing (the head is record {head_seq})", prev.0);
            return Ok(bad(checked, prev.0 + 1, why));
        }
        Ok(Verification { valid: true, checked, first_invalid: None, reason: None })
    }
}
