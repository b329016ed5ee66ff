//! The SQLite store's read cache: secret rows, version ciphertexts and
//! access-key rows, as stored (values stay sealed; nothing is decrypted here).
//!
//! It is correct because the embedded store has exactly one writer — this
//! process (the data directory is locked) through one connection — and every
//! committed write empties the cache before it is acknowledged. A read that
//! raced with a write cannot put an old row back: it notes the cache's
//! generation before it queries and inserts only if no write has happened
//! since. Edits made to the database file by another program while the
//! server runs are not seen until they are evicted or the server restarts;
//! such edits are an attack, and sealed rows still refuse to open if they were
//! tampered with.

use std::collections::HashMap;
use std::sync::Mutex;

use rotary_core::store::{AccessKeyRow, SecretRow, VersionRow};

/// Entries per map; a full map is emptied (simple, and a miss is only a query).
const CAP: usize = 10_000;

#[derive(Default)]
pub(crate) struct ReadCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    secrets: HashMap<String, SecretRow>,
    versions: HashMap<(String, i64), VersionRow>,
    keys: HashMap<String, AccessKeyRow>,
}

fn put<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, k: K, v: V) {
    if map.len() >= CAP {
        map.clear();
    }
    map.insert(k, v);
}

impl ReadCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves only cached copies behind.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take before querying; pass to `put_*` afterwards.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// After every commit (and every failed commit).
    pub(crate) fn invalidate(&self) {
        let mut c = self.lock();
        c.generation += 1;
        c.secrets.clear();
        c.versions.clear();
        c.keys.clear();
    }

    /// Runs `put` only if no write happened since `generation` was taken.
    fn put_if_current(&self, generation: u64, put: impl FnOnce(&mut Inner)) {
        let mut c = self.lock();
        if c.generation == generation {
            put(&mut c);
        }
    }

    pub(crate) fn secret(&self, id: &str) -> Option<SecretRow> {
        self.lock().secrets.get(id).cloned()
    }

    pub(crate) fn put_secret(&self, generation: u64, row: &SecretRow) {
        self.put_if_current(generation, |c| put(&mut c.secrets, row.id.clone(), row.clone()));
    }

    pub(crate) fn version(&self, secret_id: &str, version: i64) -> Option<VersionRow> {
        self.lock().versions.get(&(secret_id.to_owned(), version)).cloned()
    }

    pub(crate) fn put_version(&self, generation: u64, row: &VersionRow) {
        self.put_if_current(generation, |c| put(&mut c.versions, (row.secret_id.clone(), row.version), row.clone()));
    }

    pub(crate) fn access_key(&self, key: &str) -> Option<AccessKeyRow> {
        self.lock().keys.get(key).cloned()
    }

    pub(crate) fn put_access_key(&self, generation: u64, row: &AccessKeyRow) {
        self.put_if_current(generation, |c| put(&mut c.keys, row.access_key.clone(), row.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str, role: &str) -> AccessKeyRow {
        AccessKeyRow {
            access_key: k.into(),
            sealed_secret: vec![1],
            role: role.into(),
            secret_pattern: None,
            description: None,
            created_at: 0,
            revoked_at: None,
        }
    }

    #[test]
    fn a_read_that_raced_with_a_write_does_not_cache_the_old_row() {
        let c = ReadCache::default();
        let before = c.generation(); // a reader starts its query
        c.invalidate(); // a write commits meanwhile
        c.put_access_key(before, &key("K", "reader")); // the reader's (old) row
        assert!(c.access_key("K").is_none());
        let now = c.generation();
        c.put_access_key(now, &key("K", "admin"));
        assert_eq!(c.access_key("K").map(|r| r.role), Some("admin".into()));
        c.invalidate();
        assert!(c.access_key("K").is_none(), "a write empties the cache");
    }
}
