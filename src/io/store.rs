//! Durable state in one redb file.
//!
//! Writes go through [`Store::submit`] to the single writer thread
//! ([`writer`]); reads open their own MVCC read transaction and never wait
//! for the writer. See `ARCHITECTURE.md` for the tables.

pub mod check;
mod codec;
mod mutation;
mod tables;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

pub use mutation::Mutation;
pub use writer::{Completion, WriterStats};

use crate::error::Error;
use crate::model::{
    Deployment, DeploymentId, DeploymentStatus, IdempotencyKey, IdempotencyRecord, Project,
    ProjectId, Route, ScheduledChange, UnixMillis, Workspace, WorkspaceId,
};
use codec::decode;
use tables::*;

/// redb's page cache unless configured otherwise.
const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The on-disk layout this build reads and writes.
const SCHEMA_VERSION: u32 = 1;
const SCHEMA_KEY: &str = "schema_version";

fn storage(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("storage: {e}"))
}

/// A cheap, cloneable handle to the database and its writer.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    /// The queue to the writer thread, behind a lock that also hands out
    /// submission ids, so ids follow queue order.
    writer: Arc<Mutex<(u64, mpsc::Sender<writer::Submission>)>>,
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

/// Everything a project actor needs to rebuild its state.
#[derive(Debug, Default)]
pub struct ProjectSnapshot {
    pub routes: BTreeMap<String, Route>,
    pub schedules: Vec<ScheduledChange>,
    pub in_flight: Vec<Deployment>,
}

/// A page of deployments, newest first.
#[derive(Debug, Default)]
pub struct DeploymentPage {
    pub deployments: Vec<Deployment>,
    /// Sequence to continue below, if there is more.
    pub next_before: Option<u64>,
}

impl Store {
    /// Opens (or creates) the database file. A file that is not a redb
    /// database, or one written by an incompatible version, is an error: it
    /// is never silently recreated.
    pub fn open(path: &Path) -> Result<(Self, WriterThread), Error> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open`] with redb's page cache bounded to `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<(Self, WriterThread), Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::internal(format!(
                    "cannot create data directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| Error::internal(format!("cannot open {}: {e}", path.display())))?;
        Self::from_database(db)
    }

    /// For tests: a store in memory.
    pub fn in_memory() -> Result<(Self, WriterThread), Error> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(storage)?;
        Self::from_database(db)
    }

    fn from_database(db: Database) -> Result<(Self, WriterThread), Error> {
        init_schema(&db)?;
        let db = Arc::new(db);
        let stats = Arc::new(WriterStats::default());
        let (writer, handle) = writer::spawn(db.clone(), stats.clone())
            .map_err(|e| Error::internal(format!("cannot start store writer: {e}")))?;
        Ok((
            Self {
                db,
                writer: Arc::new(Mutex::new((0, writer))),
                stats,
            },
            WriterThread(Mutex::new(Some(handle))),
        ))
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
            queue.0 += 1;
            let id = queue.0;
            match queue.1.send(writer::Submission {
                id,
                mutations,
                done,
                urgent,
            }) {
                Ok(()) => return id,
                Err(mpsc::SendError(submission)) => submission,
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

    fn read(&self) -> Result<redb::ReadTransaction, Error> {
        self.db.begin_read().map_err(storage)
    }

    fn get_record<T: serde::de::DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        what: &str,
    ) -> Result<Option<T>, Error> {
        let txn = self.read()?;
        let table = txn.open_table(table).map_err(storage)?;
        match table.get(key).map_err(storage)? {
            Some(bytes) => decode(bytes.value(), what).map(Some),
            None => Ok(None),
        }
    }

    pub fn workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>, Error> {
        self.get_record(WORKSPACES, id.as_str(), "workspace")
    }

    pub fn project(&self, id: &ProjectId) -> Result<Option<Project>, Error> {
        self.get_record(PROJECTS, id.as_str(), "project")
    }

    pub fn deployment(&self, id: &DeploymentId) -> Result<Option<Deployment>, Error> {
        self.get_record(DEPLOYMENTS, id.as_str(), "deployment")
    }

    pub fn projects_of_workspace(&self, id: &WorkspaceId) -> Result<Vec<Project>, Error> {
        let txn = self.read()?;
        let slugs = txn.open_table(PROJECT_SLUGS).map_err(storage)?;
        let projects = txn.open_table(PROJECTS).map_err(storage)?;
        let mut out = Vec::new();
        for entry in slugs.range((id.as_str(), "")..).map_err(storage)? {
            let (key, project_id) = entry.map_err(storage)?;
            if key.value().0 != id.as_str() {
                break;
            }
            if let Some(bytes) = projects.get(project_id.value()).map_err(storage)? {
                out.push(decode(bytes.value(), "project")?);
            }
        }
        Ok(out)
    }

    /// Deployments of a project, newest first, optionally filtered.
    pub fn deployments_of_project(
        &self,
        project: &ProjectId,
        before_sequence: Option<u64>,
        limit: usize,
        filter: impl Fn(&Deployment) -> bool,
    ) -> Result<DeploymentPage, Error> {
        let txn = self.read()?;
        let index = txn.open_table(PROJECT_DEPLOYMENTS).map_err(storage)?;
        let deployments = txn.open_table(DEPLOYMENTS).map_err(storage)?;
        let upper = before_sequence.unwrap_or(u64::MAX);
        let mut page = DeploymentPage::default();
        let range = index
            .range((project.as_str(), 0)..(project.as_str(), upper))
            .map_err(storage)?;
        for entry in range.rev() {
            let (key, id) = entry.map_err(storage)?;
            let Some(bytes) = deployments.get(id.value()).map_err(storage)? else {
                continue;
            };
            let deployment: Deployment = decode(bytes.value(), "deployment")?;
            if !filter(&deployment) {
                continue;
            }
            if page.deployments.len() == limit {
                page.next_before = Some(key.value().1 + 1);
                break;
            }
            page.deployments.push(deployment);
        }
        Ok(page)
    }

    pub fn routes_of_project(&self, project: &ProjectId) -> Result<BTreeMap<String, Route>, Error> {
        let txn = self.read()?;
        read_routes(&txn, project)
    }

    /// The routes at these hostnames, where there are any (one read
    /// transaction, one point lookup each).
    pub fn routes_named(&self, hostnames: &[String]) -> Result<Vec<Route>, Error> {
        let txn = self.read()?;
        let table = txn.open_table(ROUTES).map_err(storage)?;
        let mut out = Vec::new();
        for fqdn in hostnames {
            if let Some(bytes) = table.get(fqdn.as_str()).map_err(storage)? {
                out.push(decode(bytes.value(), "route")?);
            }
        }
        Ok(out)
    }

    /// Routes, schedules and unfinished deployments of one project.
    pub fn project_snapshot(&self, project: &ProjectId) -> Result<ProjectSnapshot, Error> {
        let txn = self.read()?;
        let routes = read_routes(&txn, project)?;
        let mut schedules = Vec::new();
        let table = txn.open_table(SCHEDULES).map_err(storage)?;
        for entry in table.range((project.as_str(), "")..).map_err(storage)? {
            let (key, bytes) = entry.map_err(storage)?;
            if key.value().0 != project.as_str() {
                break;
            }
            schedules.push(decode(bytes.value(), "schedule")?);
        }
        let mut in_flight = Vec::new();
        let index = txn.open_table(IN_FLIGHT).map_err(storage)?;
        let deployments = txn.open_table(DEPLOYMENTS).map_err(storage)?;
        for entry in index.range((project.as_str(), "")..).map_err(storage)? {
            let (key, ()) = entry.map(|(k, _)| (k, ())).map_err(storage)?;
            let (owner, id) = key.value();
            if owner != project.as_str() {
                break;
            }
            if let Some(bytes) = deployments.get(id).map_err(storage)? {
                let deployment: Deployment = decode(bytes.value(), "deployment")?;
                if deployment.status != DeploymentStatus::Ready
                    && deployment.status != DeploymentStatus::Failed
                {
                    in_flight.push(deployment);
                }
            }
        }
        Ok(ProjectSnapshot {
            routes,
            schedules,
            in_flight,
        })
    }

    /// Projects with unfinished deployments or pending schedules: the ones
    /// whose actors start right after the daemon does.
    pub fn projects_with_pending_work(&self) -> Result<Vec<ProjectId>, Error> {
        let txn = self.read()?;
        let mut ids: Vec<String> = Vec::new();
        let in_flight = txn.open_table(IN_FLIGHT).map_err(storage)?;
        for entry in in_flight.iter().map_err(storage)? {
            let (key, _) = entry.map_err(storage)?;
            ids.push(key.value().0.to_string());
        }
        let schedules = txn.open_table(SCHEDULES).map_err(storage)?;
        for entry in schedules.iter().map_err(storage)? {
            let (key, _) = entry.map_err(storage)?;
            ids.push(key.value().0.to_string());
        }
        ids.sort();
        ids.dedup();
        ids.iter()
            .map(|id| ProjectId::parse(id, "stored project id"))
            .collect()
    }

    /// The live (unexpired) record of an idempotency key.
    pub fn idempotency(
        &self,
        project: &ProjectId,
        key: &IdempotencyKey,
        now: UnixMillis,
    ) -> Result<Option<IdempotencyRecord>, Error> {
        let txn = self.read()?;
        let table = txn.open_table(IDEMPOTENCY).map_err(storage)?;
        let Some(bytes) = table
            .get((project.as_str(), key.as_str()))
            .map_err(storage)?
        else {
            return Ok(None);
        };
        let record: IdempotencyRecord = decode(bytes.value(), "idempotency")?;
        Ok((record.expires_at > now).then_some(record))
    }

    /// The project a custom domain is reserved for, if any.
    pub fn domain_owner(&self, fqdn: &str) -> Result<Option<String>, Error> {
        let txn = self.read()?;
        let table = txn.open_table(DOMAINS).map_err(storage)?;
        Ok(table
            .get(fqdn)
            .map_err(storage)?
            .map(|g| g.value().to_string()))
    }
}

fn read_routes(
    txn: &redb::ReadTransaction,
    project: &ProjectId,
) -> Result<BTreeMap<String, Route>, Error> {
    let index = txn.open_table(PROJECT_ROUTES).map_err(storage)?;
    let routes = txn.open_table(ROUTES).map_err(storage)?;
    let mut out = BTreeMap::new();
    for entry in index.range((project.as_str(), "")..).map_err(storage)? {
        let (key, _) = entry.map_err(storage)?;
        let (owner, fqdn) = key.value();
        if owner != project.as_str() {
            break;
        }
        if let Some(bytes) = routes.get(fqdn).map_err(storage)? {
            let route: Route = decode(bytes.value(), "route")?;
            out.insert(route.fqdn.clone(), route);
        }
    }
    Ok(out)
}

/// Creates every table and checks the schema version, so that reads never
/// meet a missing table and an incompatible file is refused.
fn init_schema(db: &Database) -> Result<(), Error> {
    let txn = db.begin_write().map_err(storage)?;
    {
        let mut meta = txn.open_table(META).map_err(storage)?;
        let found = meta
            .get(SCHEMA_KEY)
            .map_err(storage)?
            .map(|v| v.value().to_vec());
        match found {
            None => {
                meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_le_bytes().as_slice())
                    .map_err(storage)?;
            }
            Some(bytes) if bytes == SCHEMA_VERSION.to_le_bytes() => {}
            Some(bytes) => {
                return Err(Error::internal(format!(
                    "the data file has schema {bytes:?}; this build of deployd reads schema {SCHEMA_VERSION}. Refusing to start"
                )));
            }
        }
        txn.open_table(WORKSPACES).map_err(storage)?;
        txn.open_table(WORKSPACE_SLUGS).map_err(storage)?;
        txn.open_table(PROJECTS).map_err(storage)?;
        txn.open_table(PROJECT_SLUGS).map_err(storage)?;
        txn.open_table(DEPLOYMENTS).map_err(storage)?;
        txn.open_table(PROJECT_DEPLOYMENTS).map_err(storage)?;
        txn.open_table(IN_FLIGHT).map_err(storage)?;
        txn.open_table(ROUTES).map_err(storage)?;
        txn.open_table(PROJECT_ROUTES).map_err(storage)?;
        txn.open_table(DOMAINS).map_err(storage)?;
        txn.open_table(SCHEDULES).map_err(storage)?;
        txn.open_table(IDEMPOTENCY).map_err(storage)?;
        txn.open_table(IDEMPOTENCY_EXPIRY).map_err(storage)?;
    }
    txn.commit().map_err(storage)
}
