//! Shared application state: the services, the store and the clock.

use std::sync::Arc;

use rotary_core::service::{AccessKeys, AuditLog, RotationService, SecretService};
use rotary_core::{Clock, SecretStore};
use tokio::sync::Notify;

#[derive(Clone)]
pub struct AppState {
    pub secrets: Arc<SecretService>,
    pub access: Arc<AccessKeys>,
    pub audit_log: Arc<AuditLog>,
    pub rotation: Arc<RotationService>,
    pub store: Arc<dyn SecretStore>,
    pub clock: Arc<dyn Clock>,
    /// Wakes the scheduler early (a job was queued or ended).
    pub wake: Arc<Notify>,
}
