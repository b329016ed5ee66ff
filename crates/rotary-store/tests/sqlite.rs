//! The SQLite store against the conformance suite.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;

use rotary_core::SecretStore;
use rotary_store::conformance::{HISTORY_LIMIT, chain};
use rotary_store::{SqliteOptions, SqliteStore, conformance_tests};

async fn sqlite() -> (Arc<dyn SecretStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = SqliteOptions { history_limit: HISTORY_LIMIT, ..Default::default() };
    let store = SqliteStore::open(&dir.path().join("rotary.db"), chain(), opts).await.expect("open store");
    (Arc::new(store), dir)
}

conformance_tests!(sqlite);
