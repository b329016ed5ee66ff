//! Shared application state: the services, the store and the clock.

use std::sync::Arc;

use rotary_core::service::{AccessKeys, AuditLog, SecretService};
use rotary_core::{Clock, SecretStore};

#[derive(Clone)]
pub struct AppState {
    pub secrets: Arc<SecretService>,
    pub access: Arc<AccessKeys>,
    pub audit_log: Arc<AuditLog>,
    pub store: Arc<dyn SecretStore>,
    pub clock: Arc<dyn Clock>,
}
