//! Durable state in one redb file.
//!
//! Writes go through [`Store::submit`] to the single writer thread
//! ([`writer`]); reads open their own MVCC read transaction and never wait
//! for the writer. See `ARCHITECTURE.md` for the tables.

mod audit;
pub mod check;
mod codec;
mod commit_tables;
mod github;
pub mod guarded;
mod holders;
mod legacy;
mod migrate;
mod mutation;
mod open;
mod reads;
mod state;
mod tables;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use redb::{Database, ReadableTable};

pub use audit::{AuditFilter, AuditPage};
pub use guarded::DiskFaults;
pub use mutation::Mutation;
pub use reads::{
    DeploymentFilter, DeploymentPage, LISTING_SCAN_BUDGET, ProjectSnapshot, RoutePage,
};
pub use state::StoreState;
pub use writer::{Completion, WriterStats};

use crate::error::{Error, StorageFault};
use open::{damaged_file, open_file};
pub(crate) use state::storage;
use state::{Shared, panic_message};
use tables::*;

/// redb's page cache unless configured otherwise.
const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The on-disk layout this build reads and writes. Schema 1 files are
/// migrated on open (`migrate.rs`); newer ones are refused.
const SCHEMA_VERSION: u32 = 2;
const SCHEMA_KEY: &str = "schema_version";

/// A cheap, cloneable handle to the database and its writer.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    // Read only by tests, which fill the disk through it.
    #[cfg_attr(not(feature = "fail-points"), allow(dead_code))]
    faults: Arc<DiskFaults>,
    /// The queues to the writer thread, behind a lock that also hands out
    /// submission ids, so ids follow queue order.
    writer: Arc<Mutex<writer::Queues>>,
    stats: Arc<WriterStats>,
}

/// Joins the writer thread once every [`Store`] clone is gone.
pub struct WriterThread(Mutex<Option<JoinHandle<()>>>);

impl WriterThread {
    /// Waits until the writer has committed everything queued and exited.
    pub fn join(&self) {
        let handle = self.0.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

impl Store {
    /// Opens the database file, creating it only where no file exists. A
    /// file that is empty, not a redb database, damaged, or written by an
    /// incompatible version is an error: it is never silently recreated.
    pub fn open(path: &Path) -> Result<(Self, WriterThread), Error> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open`] with redb's page cache bounded to `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<(Self, WriterThread), Error> {
        Self::open_with_faults(path, cache_bytes, Arc::new(DiskFaults::default()))
    }

    /// [`Store::open_with_cache`] through a backend whose writes `faults`
    /// can make fail (tests reach it through [`Store::disk_faults`]).
    fn open_with_faults(
        path: &Path,
        cache_bytes: usize,
        faults: Arc<DiskFaults>,
    ) -> Result<(Self, WriterThread), Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::internal(format!(
                    "cannot create data directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        // Every page is verified on open: damage found now is a refusal to
        // start, not a panic in some handler later.
        let db = open_file(path, cache_bytes, &faults, true)?;
        let reopen_path = path.to_path_buf();
        let reopen_faults = faults.clone();
        let reopen: writer::Reopen =
            Box::new(move || open_file(&reopen_path, cache_bytes, &reopen_faults, false));
        Self::from_database(db, Some(reopen), faults).map_err(|e| match e {
            Error::Storage(StorageFault::Damaged(what)) => damaged_file(path, &what),
            other => other,
        })
    }

    /// For tests: a store in memory.
    pub fn in_memory() -> Result<(Self, WriterThread), Error> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(storage)?;
        Self::from_database(db, None, Arc::new(DiskFaults::default()))
    }

    fn from_database(
        db: Database,
        reopen: Option<writer::Reopen>,
        faults: Arc<DiskFaults>,
    ) -> Result<(Self, WriterThread), Error> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| init_schema(&db))) {
            Ok(result) => result?,
            Err(panic) => {
                return Err(Error::Storage(StorageFault::Damaged(format!(
                    "reading its schema panicked: {}",
                    panic_message(panic.as_ref())
                ))));
            }
        }
        let shared = Arc::new(Shared::new(db));
        let stats = Arc::new(WriterStats::default());
        let (writer, handle) = writer::spawn(shared.clone(), reopen, stats.clone())
            .map_err(|e| Error::internal(format!("cannot start store writer: {e}")))?;
        Ok((
            Self {
                shared,
                faults,
                writer: Arc::new(Mutex::new(writer)),
                stats,
            },
            WriterThread(Mutex::new(Some(handle))),
        ))
    }

    /// Whether the data file can be written now, and if not, why.
    pub fn state(&self) -> StoreState {
        StoreState {
            fault: self.shared.fault(),
        }
    }

    /// Every change of [`Store::state`] (the health service follows it).
    pub fn watch_state(&self) -> tokio::sync::watch::Receiver<StoreState> {
        self.shared.subscribe()
    }

    /// The switch tests use to fill the disk.
    #[cfg(feature = "fail-points")]
    pub fn disk_faults(&self) -> &DiskFaults {
        &self.faults
    }

    /// Hands mutations to the writer; `done` runs once they are durable (or
    /// rejected, or failed). Never waits for the disk. Returns the
    /// submission's id (see [`Store::settled_through`]).
    pub fn submit(&self, mutations: Vec<Mutation>, done: Completion) -> u64 {
        self.enqueue(mutations, done, false)
    }

    /// [`Store::submit`], committed ahead of ordinary submissions queued with
    /// it. Only for a sender none of whose earlier submissions is still
    /// queued; otherwise its own changes could land out of order.
    pub fn submit_urgent(&self, mutations: Vec<Mutation>, done: Completion) -> u64 {
        self.enqueue(mutations, done, true)
    }

    fn enqueue(&self, mutations: Vec<Mutation>, done: Completion, urgent: bool) -> u64 {
        let rejected = {
            let Ok(mut queue) = self.writer.lock() else {
                done(
                    Err(Error::Unavailable("the store writer is gone".into())),
                    mutations,
                );
                return 0;
            };
            match queue.send(mutations, done, urgent) {
                Ok(id) => return id,
                Err(submission) => submission,
            }
        };
        (rejected.done)(
            Err(Error::Unavailable("the daemon is shutting down".into())),
            rejected.mutations,
        );
        0
    }

    /// Every submission with an id up to the returned one has settled
    /// (committed, rejected or failed).
    pub fn settled_through(&self) -> u64 {
        self.stats
            .settled_through
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Submits and waits for durability. For callers outside the actors
    /// (API handlers that create workspaces and projects).
    pub async fn commit(&self, mutations: Vec<Mutation>) -> Result<(), Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(
            mutations,
            Box::new(move |result, _| {
                let _ = tx.send(result);
            }),
        );
        rx.await
            .map_err(|_| Error::Unavailable("the store writer stopped".into()))?
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

/// Creates every table and checks the schema version, so that reads never
/// meet a missing table and an incompatible file is refused. A schema 1
/// file is migrated in the same transaction (`migrate.rs`).
fn init_schema(db: &Database) -> Result<(), Error> {
    let txn = db.begin_write().map_err(storage)?;
    {
        let mut meta = txn.open_table(META).map_err(storage)?;
        let found = meta
            .get(SCHEMA_KEY)
            .map_err(storage)?
            .map(|v| v.value().to_vec());
        let migrate_from_v1 = match found {
            None => false,
            Some(bytes) if bytes == SCHEMA_VERSION.to_le_bytes() => false,
            Some(bytes) if bytes == 1u32.to_le_bytes() => true,
            Some(bytes) => {
                return Err(Error::internal(format!(
                    "the data file has schema {bytes:?}; this build of deployd reads schemas 1 and {SCHEMA_VERSION}. Refusing to start"
                )));
            }
        };
        meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_le_bytes().as_slice())
            .map_err(storage)?;
        drop(meta);
        txn.open_table(WORKSPACES).map_err(storage)?;
        txn.open_table(WORKSPACE_SLUGS).map_err(storage)?;
        txn.open_table(PROJECTS).map_err(storage)?;
        txn.open_table(PROJECT_SLUGS).map_err(storage)?;
        txn.open_table(DEPLOYMENTS).map_err(storage)?;
        txn.open_table(PROJECT_DEPLOYMENTS).map_err(storage)?;
        txn.open_table(DEPLOYMENTS_BY_ENVIRONMENT)
            .map_err(storage)?;
        txn.open_table(DEPLOYMENTS_BY_STATUS).map_err(storage)?;
        txn.open_table(IN_FLIGHT).map_err(storage)?;
        txn.open_table(ROUTES).map_err(storage)?;
        txn.open_table(PROJECT_ROUTE_KINDS).map_err(storage)?;
        txn.open_table(RESERVED_HOSTNAMES).map_err(storage)?;
        txn.open_table(DOMAINS).map_err(storage)?;
        txn.open_table(SCHEDULES).map_err(storage)?;
        txn.open_table(IDEMPOTENCY).map_err(storage)?;
        txn.open_table(IDEMPOTENCY_EXPIRY).map_err(storage)?;
        txn.open_table(WORKLOADS).map_err(storage)?;
        // New tables, not a new schema: an older build opens this file and
        // never looks at them, and no existing record changed shape.
        txn.open_table(TOKENS).map_err(storage)?;
        txn.open_table(AUDIT).map_err(storage)?;
        txn.open_table(AUDIT_BY_WORKSPACE).map_err(storage)?;
        txn.open_table(AUDIT_BY_PROJECT).map_err(storage)?;
        // Tables added since schema 2 need no migration: an older file
        // simply gets them empty, and older builds never open them.
        txn.open_table(GITHUB_CONNECTIONS).map_err(storage)?;
        txn.open_table(GITHUB_REPOSITORIES).map_err(storage)?;
        txn.open_table(GITHUB_STATUSES).map_err(storage)?;
        txn.open_table(GITHUB_OUTBOX).map_err(storage)?;
        if migrate_from_v1 {
            migrate::from_v1(&txn)?;
        }
    }
    txn.commit().map_err(storage)
}
