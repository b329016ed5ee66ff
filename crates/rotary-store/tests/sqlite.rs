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

fn draft(i: usize) -> rotary_core::audit::AuditDraft {
    rotary_core::audit::AuditDraft {
        timestamp: 1,
        access_key: Some("AK".into()),
        action: "GetSecretValue".into(),
        secret_id: None,
        result: "SUCCESS".into(),
        client_address: None,
        request_id: format!("r{i}"),
    }
}

/// Group commit: concurrent writers share WAL flushes, every acknowledged
/// record is there after the store is closed and reopened, and the chain holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_share_flushes_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rotary.db");
    let store = Arc::new(SqliteStore::open(&path, chain(), SqliteOptions::default()).await.unwrap());
    let before = store.flushes();
    let n = 400;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move { s.append_audit(&draft(i)).await.map(|r| r.seq) })
        })
        .collect();
    let mut seqs = vec![];
    for t in tasks {
        seqs.push(t.await.unwrap().unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=n as i64).collect::<Vec<_>>(), "every append acknowledged once, in one chain");
    let flushes = store.flushes() - before;
    assert!(flushes >= 1, "an acknowledged write was flushed");
    assert!(flushes < n as u64, "{flushes} flushes for {n} overlapping commits: no group commit");
    store.close().await;
    drop(store);

    let reopened = SqliteStore::open(&path, chain(), SqliteOptions::default()).await.unwrap();
    let rows = reopened.audit_after(0, 1000).await.unwrap();
    assert_eq!(rows.len(), n);
    let mut prev = (0, rotary_core::audit::GENESIS.to_vec());
    chain().verify_run(&mut prev, &rows).expect("chain verifies after reopen");
}
