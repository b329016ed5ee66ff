//! Use cases. Handlers call exactly one of these per request; each authorizes,
//! does its work through the store, and for mutations writes the audit record
//! in the same store transaction.

mod access;
pub mod rotation;
mod secrets;

pub use access::{AccessKeys, AuditLog, AuthFailure, MAX_SKEW_MS, SignedRequest, Verification};
pub use rotation::{Dispatch, JobView, RotationConfig, RotationService};
pub use secrets::{Chain, NewSecret, SecretService, VersionView};

use std::sync::{Arc, Mutex};

use crate::audit::AuditDraft;
use crate::policy::Policy;

/// Per-request context shared by the HTTP edge and the core: who is calling,
/// which action, which secret, and whether the audit record was already
/// written inside a store transaction.
#[derive(Debug)]
pub struct RequestCtx {
    pub request_id: String,
    pub client_address: Option<String>,
    pub started_at: i64,
    state: Mutex<CtxState>,
}

#[derive(Debug, Default, Clone)]
struct CtxState {
    access_key: Option<String>,
    action: Option<&'static str>,
    secret_id: Option<String>,
    audited: bool,
}

impl RequestCtx {
    pub fn new(request_id: String, client_address: Option<String>, started_at: i64) -> Arc<Self> {
        Arc::new(Self { request_id, client_address, started_at, state: Mutex::default() })
    }

    fn with<R>(&self, f: impl FnOnce(&mut CtxState) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update of
        // these plain fields; the data is still usable.
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    pub fn set_access_key(&self, k: &str) {
        self.with(|s| s.access_key = Some(k.to_owned()));
    }
    pub fn set_action(&self, a: &'static str) {
        self.with(|s| s.action = Some(a));
    }
    pub fn set_secret_id(&self, id: &str) {
        self.with(|s| s.secret_id = Some(id.to_owned()));
    }
    pub fn action(&self) -> Option<&'static str> {
        self.with(|s| s.action)
    }
    pub fn mark_audited(&self) {
        self.with(|s| s.audited = true);
    }
    pub fn audited(&self) -> bool {
        self.with(|s| s.audited)
    }

    /// The audit draft of this request with the given result.
    pub fn draft(&self, result: &str, now: i64) -> AuditDraft {
        let s = self.with(|s| s.clone());
        AuditDraft {
            timestamp: now,
            access_key: s.access_key,
            action: s.action.unwrap_or("Unknown").to_owned(),
            secret_id: s.secret_id,
            result: result.to_owned(),
            client_address: self.client_address.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub policy: Policy,
    pub ctx: Arc<RequestCtx>,
}

/// Compare-and-swap attempts before a write gives up under contention.
pub(crate) const CAS_RETRIES: usize = 64;

/// A short random pause after a lost compare-and-swap, so that writers racing
/// on one secret spread out instead of colliding again in lockstep.
pub(crate) async fn cas_pause(attempt: usize) {
    use rand::Rng;
    let max_us = 200u64 << attempt.min(6);
    let us = rand::rngs::OsRng.gen_range(0..=max_us);
    tokio::time::sleep(std::time::Duration::from_micros(us)).await;
}

pub(crate) fn contention() -> crate::error::CoreError {
    crate::error::CoreError::status("the secret is being changed by other requests at the same time; try again")
}
