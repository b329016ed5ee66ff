//! Group commit for SQLite's write-ahead log.
//!
//! The writer connection runs with `synchronous=NORMAL`: a COMMIT appends its
//! frames to the `-wal` file with `write()` but does not wait for the disk.
//! Every write path then calls [`GroupSync::sync`] before it reports success,
//! which returns only once an `fdatasync` of the WAL that *started after* the
//! commit has finished. Concurrent committers share one flush: while one flush
//! runs, the commits that land meanwhile wait and are covered by the next one.
//! The result is the durability of `synchronous=FULL` (nothing is acknowledged
//! before it is on disk) with one flush per burst of commits instead of one
//! per commit — the audit record written for every value read is the case
//! that matters.
//!
//! SQLite itself flushes the WAL before a checkpoint copies it into the main
//! database and flushes the database afterwards, so frames of an earlier WAL
//! generation are already durable when the file is reused.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rotary_core::store::StoreError;
use tokio::sync::Mutex;

pub(crate) struct GroupSync {
    wal: PathBuf,
    /// Tickets handed to commits that finished; a flush covers every ticket
    /// issued before it started.
    issued: AtomicU64,
    /// Flushes performed (for tests and metrics).
    flushes: AtomicU64,
    /// The highest ticket known durable, and the open WAL file. One flush at
    /// a time: a committer that finds its ticket covered returns at once.
    state: Mutex<Flushed>,
}

struct Flushed {
    durable: u64,
    file: Option<Arc<File>>,
}

impl GroupSync {
    pub(crate) fn new(wal: PathBuf) -> Self {
        Self {
            wal,
            issued: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            state: Mutex::new(Flushed { durable: 0, file: None }),
        }
    }

    pub(crate) fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Call after a COMMIT returned: waits until that commit is on disk.
    pub(crate) async fn sync(&self) -> Result<(), StoreError> {
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let mut st = self.state.lock().await;
        if st.durable >= ticket {
            return Ok(());
        }
        // Everything committed before this load is covered by the flush below.
        let target = self.issued.load(Ordering::SeqCst);
        let file = self.current_file(&mut st)?;
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        st.durable = target;
        Ok(())
    }

    /// The WAL file, reopened if SQLite replaced it (it deletes the file when
    /// the last connection closes and creates a new one on the next write).
    fn current_file(&self, st: &mut Flushed) -> Result<Arc<File>, StoreError> {
        let on_disk = std::fs::metadata(&self.wal).map_err(|e| StoreError::Backend(Box::new(e)))?;
        if let Some(f) = &st.file
            && let Ok(m) = f.metadata()
            && m.ino() == on_disk.ino()
            && m.dev() == on_disk.dev()
        {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(&self.wal).map_err(|e| StoreError::Backend(Box::new(e)))?);
        st.file = Some(f.clone());
        Ok(f)
    }
}
