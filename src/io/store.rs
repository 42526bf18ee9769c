//! Durable state in one redb file.
//!
//! Writes go through [`Store::submit`] to the single writer thread
//! ([`writer`]); reads open their own MVCC read transaction and never wait
//! for the writer. See `ARCHITECTURE.md` for the tables.

pub mod check;
mod codec;
pub mod guarded;
mod holders;
mod legacy;
mod migrate;
mod mutation;
mod open;
mod state;
mod tables;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

pub use guarded::DiskFaults;
pub use mutation::Mutation;
pub use state::StoreState;
pub use writer::{Completion, WriterStats};

use crate::error::{Error, StorageFault};
use crate::model::routes::Holder;
use crate::model::{
    Deployment, DeploymentId, DeploymentStatus, IdempotencyKey, IdempotencyRecord, Project,
    ProjectId, Route, RouteKind, ScheduledChange, UnixMillis, Workspace, WorkspaceId,
};
use codec::{Record, decode};
use holders::holder_of;
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

/// Everything a project actor needs to rebuild its state. Bounded by what
/// is unfinished, scheduled and fixed, never by the project's history.
#[derive(Debug, Default)]
pub struct ProjectSnapshot {
    /// `LIVE` and `ENVIRONMENT` routes by hostname.
    pub fixed_routes: BTreeMap<String, Route>,
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

/// Which deployments a listing returns.
#[derive(Debug, Clone, Default)]
pub struct DeploymentFilter {
    pub environment: Option<String>,
    pub status: Option<DeploymentStatus>,
}

/// Index entries a listing looks at before it returns a shorter page with a
/// token to go on: a page's cost is bounded whatever the history.
pub const LISTING_SCAN_BUDGET: usize = 10_000;

/// A page of routes, ordered by kind, then hostname.
#[derive(Debug, Default)]
pub struct RoutePage {
    pub routes: Vec<Route>,
    /// (kind, hostname) to continue after, if there is more.
    pub next_after: Option<(RouteKind, String)>,
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
                writer: Arc::new(Mutex::new((0, writer))),
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
        self.shared.database()?.begin_read().map_err(storage)
    }

    fn get_record<T: Record>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, Error> {
        let txn = self.read()?;
        let table = txn.open_table(table).map_err(storage)?;
        match table.get(key).map_err(storage)? {
            Some(bytes) => decode(bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    pub fn workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>, Error> {
        self.shared
            .guard(|| self.get_record(WORKSPACES, id.as_str()))
    }

    pub fn project(&self, id: &ProjectId) -> Result<Option<Project>, Error> {
        self.shared.guard(|| self.get_record(PROJECTS, id.as_str()))
    }

    pub fn deployment(&self, id: &DeploymentId) -> Result<Option<Deployment>, Error> {
        self.shared
            .guard(|| self.get_record(DEPLOYMENTS, id.as_str()))
    }

    /// A page of a workspace's projects, by slug, after `after_slug`.
    /// Returns the page and whether more follow.
    pub fn projects_of_workspace(
        &self,
        id: &WorkspaceId,
        after_slug: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Project>, bool), Error> {
        self.shared.guard(|| {
            let txn = self.read()?;
            let slugs = txn.open_table(PROJECT_SLUGS).map_err(storage)?;
            let projects = txn.open_table(PROJECTS).map_err(storage)?;
            let w = id.as_str();
            let start = match after_slug {
                Some(slug) => std::ops::Bound::Excluded((w, slug)),
                None => std::ops::Bound::Included((w, "")),
            };
            let mut out = Vec::new();
            for entry in slugs
                .range::<(&str, &str)>((start, std::ops::Bound::Unbounded))
                .map_err(storage)?
            {
                let (key, project_id) = entry.map_err(storage)?;
                if key.value().0 != w {
                    break;
                }
                if out.len() == limit {
                    return Ok((out, true));
                }
                if let Some(bytes) = projects.get(project_id.value()).map_err(storage)? {
                    out.push(decode(bytes.value())?);
                }
            }
            Ok((out, false))
        })
    }

    /// Deployments of a project, newest first, filtered through an index
    /// per filter: a page costs at most [`LISTING_SCAN_BUDGET`] index
    /// entries, and returns early with a token when the budget runs out.
    pub fn deployments_of_project(
        &self,
        project: &ProjectId,
        filter: &DeploymentFilter,
        before_sequence: Option<u64>,
        limit: usize,
    ) -> Result<DeploymentPage, Error> {
        self.shared.guard(|| {
            let txn = self.read()?;
            let deployments = txn.open_table(DEPLOYMENTS).map_err(storage)?;
            let upper = before_sequence.unwrap_or(u64::MAX);
            let p = project.as_str();
            let mut pager = Pager {
                deployments: &deployments,
                filter,
                limit,
                scanned: 0,
                page: DeploymentPage::default(),
            };
            match (&filter.status, &filter.environment) {
                (Some(status), environment) if status.is_terminal() => {
                    let index = txn.open_table(DEPLOYMENTS_BY_STATUS).map_err(storage)?;
                    let code = status.code();
                    let range = (p, code, 0)..(p, code, upper);
                    for entry in index.range(range).map_err(storage)?.rev() {
                        let (key, value) = entry.map_err(storage)?;
                        let (id, env) = value.value();
                        // The environment is in the index: a mismatch costs no
                        // record read, only a place in the scan budget.
                        let wanted = environment.as_ref().is_none_or(|e| e == env);
                        if !pager.offer(key.value().2, wanted.then_some(id))? {
                            break;
                        }
                    }
                }
                (Some(_), _) => {
                    // Unfinished statuses: the in-flight index is small (bounded
                    // by `max_unfinished_per_project`).
                    let index = txn.open_table(IN_FLIGHT).map_err(storage)?;
                    let mut unfinished = Vec::new();
                    for entry in index.range((p, "")..).map_err(storage)? {
                        let (key, _) = entry.map_err(storage)?;
                        let (owner, id) = key.value();
                        if owner != p {
                            break;
                        }
                        if let Some(bytes) = deployments.get(id).map_err(storage)? {
                            let deployment: Deployment = decode(bytes.value())?;
                            if deployment.sequence < upper {
                                unfinished.push((deployment.sequence, id.to_string()));
                            }
                        }
                    }
                    unfinished.sort_unstable_by(|a, b| b.cmp(a));
                    for (sequence, id) in unfinished {
                        if !pager.offer(sequence, Some(&id))? {
                            break;
                        }
                    }
                }
                (None, Some(environment)) => {
                    let index = txn
                        .open_table(DEPLOYMENTS_BY_ENVIRONMENT)
                        .map_err(storage)?;
                    let range = (p, environment.as_str(), 0)..(p, environment.as_str(), upper);
                    for entry in index.range(range).map_err(storage)?.rev() {
                        let (key, id) = entry.map_err(storage)?;
                        if !pager.offer(key.value().2, Some(id.value()))? {
                            break;
                        }
                    }
                }
                (None, None) => {
                    let index = txn.open_table(PROJECT_DEPLOYMENTS).map_err(storage)?;
                    for entry in index.range((p, 0)..(p, upper)).map_err(storage)?.rev() {
                        let (key, id) = entry.map_err(storage)?;
                        if !pager.offer(key.value().1, Some(id.value()))? {
                            break;
                        }
                    }
                }
            }
            Ok(pager.page)
        })
    }

    /// A page of a project's routes, optionally of one kind, ordered by
    /// kind and hostname.
    pub fn routes_of_project(
        &self,
        project: &ProjectId,
        kind: Option<RouteKind>,
        after: Option<(RouteKind, String)>,
        limit: usize,
    ) -> Result<RoutePage, Error> {
        self.shared.guard(|| {
            let txn = self.read()?;
            let index = txn.open_table(PROJECT_ROUTE_KINDS).map_err(storage)?;
            let table = txn.open_table(ROUTES).map_err(storage)?;
            let p = project.as_str();
            let (low_code, high_code) = match kind {
                Some(kind) => (kind.code(), kind.code()),
                None => (0, u8::MAX),
            };
            let start = match &after {
                Some((kind, fqdn)) => std::ops::Bound::Excluded((p, kind.code(), fqdn.as_str())),
                None => std::ops::Bound::Included((p, low_code, "")),
            };
            let mut page = RoutePage::default();
            for entry in index
                .range::<(&str, u8, &str)>((start, std::ops::Bound::Unbounded))
                .map_err(storage)?
            {
                let (key, _) = entry.map_err(storage)?;
                let (owner, code, fqdn) = key.value();
                if owner != p || code > high_code {
                    break;
                }
                let Some(bytes) = table.get(fqdn).map_err(storage)? else {
                    continue;
                };
                let route: Route = decode(bytes.value())?;
                if page.routes.len() == limit {
                    if let Some(last) = page.routes.last() {
                        page.next_after = Some((last.kind, last.fqdn.clone()));
                    }
                    break;
                }
                page.routes.push(route);
            }
            Ok(page)
        })
    }

    /// The routes at these hostnames, where there are any (one read
    /// transaction, one point lookup each).
    pub fn routes_named(&self, hostnames: &[String]) -> Result<Vec<Route>, Error> {
        self.shared.guard(|| {
            let txn = self.read()?;
            let table = txn.open_table(ROUTES).map_err(storage)?;
            let mut out = Vec::new();
            for fqdn in hostnames {
                if let Some(bytes) = table.get(fqdn.as_str()).map_err(storage)? {
                    out.push(decode(bytes.value())?);
                }
            }
            Ok(out)
        })
    }

    /// Who holds `fqdn`: a route, a reservation or a custom domain claim.
    pub fn holder(&self, fqdn: &str) -> Result<Option<Holder>, Error> {
        self.shared.guard(|| {
            let txn = self.read()?;
            let routes = txn.open_table(ROUTES).map_err(storage)?;
            let reserved = txn.open_table(RESERVED_HOSTNAMES).map_err(storage)?;
            let domains = txn.open_table(DOMAINS).map_err(storage)?;
            holder_of(&routes, &reserved, &domains, fqdn)
        })
    }

    /// Fixed routes, schedules and unfinished deployments of one project.
    pub fn project_snapshot(&self, project: &ProjectId) -> Result<ProjectSnapshot, Error> {
        self.shared.guard(|| {
            let txn = self.read()?;
            let mut fixed_routes = BTreeMap::new();
            let index = txn.open_table(PROJECT_ROUTE_KINDS).map_err(storage)?;
            let routes = txn.open_table(ROUTES).map_err(storage)?;
            let p = project.as_str();
            for kind in [RouteKind::Environment, RouteKind::Live] {
                let code = kind.code();
                for entry in index
                    .range((p, code, "")..(p, code + 1, ""))
                    .map_err(storage)?
                {
                    let (key, _) = entry.map_err(storage)?;
                    if let Some(bytes) = routes.get(key.value().2).map_err(storage)? {
                        let route: Route = decode(bytes.value())?;
                        fixed_routes.insert(route.fqdn.clone(), route);
                    }
                }
            }
            let mut schedules = Vec::new();
            let table = txn.open_table(SCHEDULES).map_err(storage)?;
            for entry in table.range((p, "")..).map_err(storage)? {
                let (key, bytes) = entry.map_err(storage)?;
                if key.value().0 != p {
                    break;
                }
                schedules.push(decode(bytes.value())?);
            }
            let mut in_flight = Vec::new();
            let index = txn.open_table(IN_FLIGHT).map_err(storage)?;
            let deployments = txn.open_table(DEPLOYMENTS).map_err(storage)?;
            for entry in index.range((p, "")..).map_err(storage)? {
                let (key, _) = entry.map_err(storage)?;
                let (owner, id) = key.value();
                if owner != p {
                    break;
                }
                if let Some(bytes) = deployments.get(id).map_err(storage)? {
                    let deployment: Deployment = decode(bytes.value())?;
                    if !deployment.status.is_terminal() {
                        in_flight.push(deployment);
                    }
                }
            }
            Ok(ProjectSnapshot {
                fixed_routes,
                schedules,
                in_flight,
            })
        })
    }

    /// Projects with unfinished deployments or pending schedules: the ones
    /// whose actors start right after the daemon does.
    pub fn projects_with_pending_work(&self) -> Result<Vec<ProjectId>, Error> {
        self.shared.guard(|| {
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
        })
    }

    /// Deployments whose workloads the drivers may hold, with the intent
    /// number of the last driver call decided for each.
    pub fn tracked_workloads(&self) -> Result<Vec<(Deployment, u64)>, Error> {
        self.shared.guard(|| {
            let txn = self.read()?;
            let workloads = txn.open_table(WORKLOADS).map_err(storage)?;
            let deployments = txn.open_table(DEPLOYMENTS).map_err(storage)?;
            let mut out = Vec::new();
            for entry in workloads.iter().map_err(storage)? {
                let (id, intent) = entry.map_err(storage)?;
                if let Some(bytes) = deployments.get(id.value()).map_err(storage)? {
                    out.push((decode(bytes.value())?, intent.value()));
                }
            }
            Ok(out)
        })
    }

    /// Overwrites a deployment's stored bytes behind the writer's back, so
    /// tests can see how reads that meet a damaged record behave.
    #[cfg(feature = "fail-points")]
    pub fn overwrite_deployment_bytes(&self, id: &DeploymentId, bytes: &[u8]) -> Result<(), Error> {
        let txn = self.shared.database()?.begin_write().map_err(storage)?;
        txn.open_table(DEPLOYMENTS)
            .map_err(storage)?
            .insert(id.as_str(), bytes)
            .map_err(storage)?;
        txn.commit().map_err(storage)
    }

    /// The live (unexpired) record of an idempotency key.
    pub fn idempotency(
        &self,
        project: &ProjectId,
        key: &IdempotencyKey,
        now: UnixMillis,
    ) -> Result<Option<IdempotencyRecord>, Error> {
        self.shared.guard(|| {
            let txn = self.read()?;
            let table = txn.open_table(IDEMPOTENCY).map_err(storage)?;
            let Some(bytes) = table
                .get((project.as_str(), key.as_str()))
                .map_err(storage)?
            else {
                return Ok(None);
            };
            let record: IdempotencyRecord = decode(bytes.value())?;
            Ok((record.expires_at > now).then_some(record))
        })
    }

    /// The project a custom domain is reserved for, if any.
    pub fn domain_owner(&self, fqdn: &str) -> Result<Option<String>, Error> {
        self.shared.guard(|| {
            let txn = self.read()?;
            let table = txn.open_table(DOMAINS).map_err(storage)?;
            Ok(table
                .get(fqdn)
                .map_err(storage)?
                .map(|g| g.value().to_string()))
        })
    }

    /// Projects whose fixed hostnames are not all reserved under `apex`
    /// (made before reservations existed, or when the apex changed): each
    /// with the names to reserve. Skips the scan when `apex` is the one the
    /// last pass recorded.
    pub fn unreserved_projects(
        &self,
        apex: &str,
        fixed_names: impl Fn(&Project) -> Vec<(String, RouteKind)>,
    ) -> Result<Vec<Mutation>, Error> {
        self.shared.guard(|| {
            let txn = self.read()?;
            let meta = txn.open_table(META).map_err(storage)?;
            if meta
                .get(RESERVED_APEX_KEY)
                .map_err(storage)?
                .is_some_and(|v| v.value() == apex.as_bytes())
            {
                return Ok(Vec::new());
            }
            let projects = txn.open_table(PROJECTS).map_err(storage)?;
            let reserved = txn.open_table(RESERVED_HOSTNAMES).map_err(storage)?;
            let mut out = Vec::new();
            for entry in projects.iter().map_err(storage)? {
                let (_, bytes) = entry.map_err(storage)?;
                let project: Project = decode(bytes.value())?;
                let mut names = Vec::new();
                for (fqdn, kind) in fixed_names(&project) {
                    if reserved.get(fqdn.as_str()).map_err(storage)?.is_none() {
                        names.push((fqdn, kind));
                    }
                }
                if !names.is_empty() {
                    out.push(Mutation::ReserveHostnames {
                        project_id: project.id.clone(),
                        names,
                    });
                }
            }
            out.push(Mutation::RecordReservedApex(apex.to_string()));
            Ok(out)
        })
    }
}

/// Creates every table and checks the schema version, so that reads never
/// meet a missing table and an incompatible file is refused. A schema 1
/// file is migrated in the same transaction (`migrate.rs`).
/// Fills a page of deployments from index entries, newest first, within
/// the scan budget.
struct Pager<'a, T: ReadableTable<&'static str, &'static [u8]>> {
    deployments: &'a T,
    filter: &'a DeploymentFilter,
    limit: usize,
    scanned: usize,
    page: DeploymentPage,
}

impl<T: ReadableTable<&'static str, &'static [u8]>> Pager<'_, T> {
    /// Offers the index entry at `sequence` (`None`: known not to match).
    /// `false` once the page is full or the budget spent; the token then
    /// continues at `sequence`.
    fn offer(&mut self, sequence: u64, id: Option<&str>) -> Result<bool, Error> {
        if self.page.deployments.len() == self.limit || self.scanned == LISTING_SCAN_BUDGET {
            self.page.next_before = Some(sequence + 1);
            return Ok(false);
        }
        self.scanned += 1;
        let Some(id) = id else {
            return Ok(true);
        };
        if let Some(bytes) = self.deployments.get(id).map_err(storage)? {
            let deployment: Deployment = decode(bytes.value())?;
            let wanted = self
                .filter
                .environment
                .as_ref()
                .is_none_or(|e| *e == deployment.environment)
                && self.filter.status.is_none_or(|s| s == deployment.status);
            if wanted {
                self.page.deployments.push(deployment);
            }
        }
        Ok(true)
    }
}

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
        if migrate_from_v1 {
            migrate::from_v1(&txn)?;
        }
    }
    txn.commit().map_err(storage)
}
