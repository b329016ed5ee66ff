//! The storage conformance suite: every backend runs these same cases.
//!
//! A backend's test file calls [`conformance_tests!`] with an async factory
//! returning `(Arc<dyn SecretStore>, guard)`; the store must be new and empty,
//! built with [`chain()`] as its audit chain and [`HISTORY_LIMIT`] as its
//! history bound. The guard is dropped at the end of each case (temp dirs,
//! throwaway databases).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;

use rotary_core::audit::{AuditChain, AuditDraft, GENESIS};
use rotary_core::store::{AccessKeyRow, ListFilter, ProtectionKeyRow, SecretRow, SecretStore, StoreError, VersionRow};

pub const HISTORY_LIMIT: i64 = 3;

/// The audit chain every conformance store must be built with.
pub fn chain() -> Arc<AuditChain> {
    Arc::new(AuditChain::new(rotary_crypto::Key::from_slice(&[42u8; 32]).expect("32 bytes")))
}

#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@cases $factory;
            meta_is_set_once, protection_keys, create_and_get, duplicate_name_conflicts_and_writes_nothing,
            update_is_compare_and_swap, versions_are_immutable, history_is_pruned, list_pages_and_filters,
            delete_removes_versions, access_keys, audit_chain_links, destruction_due);
    };
    (@cases $factory:path; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $factory().await;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

fn draft(action: &str) -> AuditDraft {
    AuditDraft {
        timestamp: 1_000,
        access_key: Some("AK".into()),
        action: action.into(),
        secret_id: None,
        result: "SUCCESS".into(),
        client_address: Some("127.0.0.1".into()),
        request_id: "req".into(),
    }
}

fn secret(id: &str, name: &str, created_at: i64) -> SecretRow {
    SecretRow {
        id: id.into(),
        name: name.into(),
        memo: String::new(),
        status: "ENABLE".into(),
        status_before_revoke: None,
        rotation_targets: vec!["password".into()],
        wrapped_dek: vec![1, 2, 3],
        active_version: Some(1),
        pending_version: None,
        previous_version: None,
        next_version: 2,
        revision: 1,
        auto_rotation: false,
        rotation_period_days: None,
        trigger_id: None,
        next_rotation_at: None,
        last_rotation_at: None,
        rotation_phase: None,
        schedule_base_at: None,
        expected_destroy_at: None,
        created_at,
        updated_at: created_at,
    }
}

fn version(id: &str, v: i64) -> VersionRow {
    VersionRow { secret_id: id.into(), version: v, ciphertext: vec![v as u8; 8], created_at: v }
}

async fn audit_count(store: &dyn SecretStore) -> i64 {
    store.list_audit(0, 1).await.expect("list audit").1
}

pub async fn meta_is_set_once(store: Arc<dyn SecretStore>) {
    assert_eq!(store.get_meta("k").await.unwrap(), None);
    assert!(store.put_meta_if_absent("k", b"one").await.unwrap());
    assert!(!store.put_meta_if_absent("k", b"two").await.unwrap());
    assert_eq!(store.get_meta("k").await.unwrap().as_deref(), Some(&b"one"[..]));
}

pub async fn protection_keys(store: Arc<dyn SecretStore>) {
    let row = ProtectionKeyRow { key_id: 0, wrapped: vec![9; 40], created_at: 5 };
    store.insert_protection_key(&row).await.unwrap();
    assert!(store.insert_protection_key(&row).await.is_err(), "duplicate key id must fail");
    assert_eq!(store.protection_keys().await.unwrap(), vec![row]);
}

pub async fn create_and_get(store: Arc<dyn SecretStore>) {
    let s = secret("s1", "db/main", 10);
    store.create_secret(&s, &[version("s1", 1)], &draft("CreateSecret")).await.unwrap();
    assert_eq!(store.get_secret("s1").await.unwrap(), Some(s));
    assert_eq!(store.get_secret("nope").await.unwrap(), None);
    assert_eq!(store.get_versions("s1", &[1, 7]).await.unwrap(), vec![version("s1", 1)]);
    assert_eq!(audit_count(&*store).await, 1, "the audit record is written with the change");
}

pub async fn duplicate_name_conflicts_and_writes_nothing(store: Arc<dyn SecretStore>) {
    store.create_secret(&secret("s1", "same", 1), &[version("s1", 1)], &draft("a")).await.unwrap();
    let err = store.create_secret(&secret("s2", "same", 2), &[version("s2", 1)], &draft("b")).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert_eq!(store.get_secret("s2").await.unwrap(), None);
    assert!(store.get_versions("s2", &[1]).await.unwrap().is_empty());
    assert_eq!(audit_count(&*store).await, 1, "a failed change leaves no audit record");
}

pub async fn update_is_compare_and_swap(store: Arc<dyn SecretStore>) {
    let mut s = secret("s1", "n", 1);
    store.create_secret(&s, &[version("s1", 1)], &draft("c")).await.unwrap();
    s.memo = "first".into();
    s.revision = 2;
    s.active_version = Some(2);
    s.previous_version = Some(1);
    s.next_version = 3;
    store.update_secret(&s, 1, &[version("s1", 2)], &draft("u")).await.unwrap();
    let mut stale = s.clone();
    stale.memo = "stale".into();
    stale.revision = 2;
    let err = store.update_secret(&stale, 1, &[version("s1", 3)], &draft("u")).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    let got = store.get_secret("s1").await.unwrap().unwrap();
    assert_eq!(got.memo, "first");
    assert!(store.get_versions("s1", &[3]).await.unwrap().is_empty(), "the losing write left nothing");
    assert_eq!(audit_count(&*store).await, 2);
}

pub async fn versions_are_immutable(store: Arc<dyn SecretStore>) {
    let mut s = secret("s1", "n", 1);
    store.create_secret(&s, &[version("s1", 1)], &draft("c")).await.unwrap();
    s.revision = 2;
    let mut clash = version("s1", 1);
    clash.ciphertext = vec![0xff; 8];
    assert!(store.update_secret(&s, 1, &[clash], &draft("u")).await.is_err());
    assert_eq!(store.get_versions("s1", &[1]).await.unwrap(), vec![version("s1", 1)]);
    assert_eq!(store.get_secret("s1").await.unwrap().unwrap().revision, 1, "whole update rolled back");
}

pub async fn history_is_pruned(store: Arc<dyn SecretStore>) {
    let mut s = secret("s1", "n", 1);
    store.create_secret(&s, &[version("s1", 1)], &draft("c")).await.unwrap();
    // Ten updates, each a new active; previous follows.
    for v in 2..=10 {
        let expected = s.revision;
        s.previous_version = s.active_version;
        s.active_version = Some(v);
        s.next_version = v + 1;
        s.revision += 1;
        store.update_secret(&s, expected, &[version("s1", v)], &draft("u")).await.unwrap();
    }
    let kept: Vec<i64> = store.list_versions("s1").await.unwrap().iter().map(|m| m.version).collect();
    assert_eq!(kept, vec![10, 9, 8, 7, 6], "the stages' versions and the newest {HISTORY_LIMIT} others, newest first");
    // A stage pointing at an old version keeps it.
    let expected = s.revision;
    s.pending_version = Some(8);
    s.previous_version = Some(9);
    s.revision += 1;
    store.update_secret(&s, expected, &[], &draft("u")).await.unwrap();
    for v in 11..=13 {
        let expected = s.revision;
        s.active_version = Some(v);
        s.next_version = v + 1;
        s.revision += 1;
        store.update_secret(&s, expected, &[version("s1", v)], &draft("u")).await.unwrap();
    }
    let kept: Vec<i64> = store.list_versions("s1").await.unwrap().iter().map(|m| m.version).collect();
    assert_eq!(kept, vec![13, 12, 11, 10, 9, 8]);
}

pub async fn list_pages_and_filters(store: Arc<dyn SecretStore>) {
    for i in 0..7 {
        let name = if i % 2 == 0 { format!("app/s{i}") } else { format!("other-{i}") };
        let id = format!("id{i}");
        store.create_secret(&secret(&id, &name, i), &[version(&id, 1)], &draft("c")).await.unwrap();
    }
    let page = |offset, limit, glob: Option<&str>| ListFilter { name_glob: glob.map(Into::into), offset, limit };
    let (rows, total) = store.list_secrets(&page(0, 3, None)).await.unwrap();
    assert_eq!(total, 7);
    assert_eq!(rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["id0", "id1", "id2"]);
    let (rows, _) = store.list_secrets(&page(6, 3, None)).await.unwrap();
    assert_eq!(rows.len(), 1);
    let (rows, total) = store.list_secrets(&page(0, 10, Some("app/*"))).await.unwrap();
    assert_eq!(total, 4);
    assert!(rows.iter().all(|r| r.name.starts_with("app/")));
    let (_, total) = store.list_secrets(&page(0, 10, Some("APP/*"))).await.unwrap();
    assert_eq!(total, 0, "name patterns are case-sensitive");
}

pub async fn delete_removes_versions(store: Arc<dyn SecretStore>) {
    store.create_secret(&secret("s1", "n", 1), &[version("s1", 1)], &draft("c")).await.unwrap();
    assert!(store.delete_secret("s1", &draft("d")).await.unwrap());
    assert_eq!(store.get_secret("s1").await.unwrap(), None);
    assert!(store.get_versions("s1", &[1]).await.unwrap().is_empty());
    assert!(!store.delete_secret("s1", &draft("d")).await.unwrap());
    assert_eq!(audit_count(&*store).await, 2, "no record for a delete that did nothing");
}

pub async fn access_keys(store: Arc<dyn SecretStore>) {
    let k = AccessKeyRow {
        access_key: "AK1".into(),
        sealed_secret: vec![7; 30],
        role: "reader".into(),
        secret_pattern: Some("app/*".into()),
        description: None,
        created_at: 3,
        revoked_at: None,
    };
    store.insert_access_key(&k, None).await.unwrap();
    assert!(store.insert_access_key(&k, Some(&draft("k"))).await.is_err());
    assert_eq!(store.get_access_key("AK1").await.unwrap(), Some(k.clone()));
    assert_eq!(store.list_access_keys().await.unwrap().len(), 1);
    assert!(store.revoke_access_key("AK1", 9, &draft("r")).await.unwrap());
    assert!(!store.revoke_access_key("AK1", 10, &draft("r")).await.unwrap());
    assert_eq!(store.get_access_key("AK1").await.unwrap().unwrap().revoked_at, Some(9));
    assert_eq!(audit_count(&*store).await, 1);
}

pub async fn audit_chain_links(store: Arc<dyn SecretStore>) {
    let chain = chain();
    for i in 0..5 {
        let row = store.append_audit(&draft(&format!("a{i}"))).await.unwrap();
        assert_eq!(row.seq, i + 1);
    }
    let rows = store.audit_after(0, 100).await.unwrap();
    assert_eq!(rows.len(), 5);
    let mut prev = (0, GENESIS.to_vec());
    chain.verify_run(&mut prev, &rows).expect("chain verifies");
    let (seq, hash, mac) = store.audit_head().await.unwrap().expect("head marker");
    assert_eq!((seq, &hash), (prev.0, &prev.1));
    assert_eq!(mac, chain.head_mac(seq, &hash), "the head marker carries the chain's MAC");
    assert_eq!(store.audit_after(3, 100).await.unwrap().len(), 2);
    let (page, total) = store.list_audit(0, 2).await.unwrap();
    assert_eq!(total, 5);
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [5, 4], "newest first");
}

pub async fn destruction_due(store: Arc<dyn SecretStore>) {
    let mut a = secret("a", "a", 1);
    a.status = "REVOKE".into();
    a.expected_destroy_at = Some(100);
    let mut b = secret("b", "b", 2);
    b.status = "REVOKE".into();
    b.expected_destroy_at = Some(200);
    store.create_secret(&a, &[], &draft("c")).await.unwrap();
    store.create_secret(&b, &[], &draft("c")).await.unwrap();
    store.create_secret(&secret("c", "c", 3), &[], &draft("c")).await.unwrap();
    assert_eq!(store.due_for_destruction(150, 10).await.unwrap(), vec!["a".to_string()]);
    assert_eq!(store.due_for_destruction(200, 10).await.unwrap().len(), 2);
}
