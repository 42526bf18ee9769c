//! Every read of the store: point lookups, paged listings (each bounded by
//! an index or [`LISTING_SCAN_BUDGET`], never by a project's history) and
//! what recovery and the actors load. Each runs in one redb read
//! transaction and goes through the store's guard, so damage met while
//! reading is reported as such.

use std::collections::BTreeMap;

use redb::{ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};

use super::codec::{Record, decode};
use super::holders::holder_of;
use super::tables::*;
use super::{Mutation, Store, storage};
use crate::error::Error;
use crate::model::routes::Holder;
use crate::model::{
    Deployment, DeploymentId, DeploymentStatus, IdempotencyKey, IdempotencyRecord, Project,
    ProjectId, Route, RouteKind, ScheduledChange, UnixMillis, Workspace, WorkspaceId,
};

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
    pub(super) fn read(&self) -> Result<redb::ReadTransaction, Error> {
        self.shared.database()?.begin_read().map_err(storage)
    }

    pub(super) fn get_record<T: Record>(
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
                    let mut unfinished: Vec<Deployment> = unfinished_of(&txn, p)?
                        .into_iter()
                        .filter(|d| d.sequence < upper)
                        .collect();
                    unfinished.sort_unstable_by_key(|d| std::cmp::Reverse(d.sequence));
                    for deployment in unfinished {
                        if !pager.offer(deployment.sequence, Some(deployment.id.as_str()))? {
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
            let in_flight = unfinished_of(&txn, p)?;
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
    /// number of the last driver call decided for each. Ids only, from the
    /// workloads table alone: a file with a hundred thousand running
    /// deployments is read without a lookup (a page read at start) per
    /// deployment. Deployments are never deleted, so every id names a
    /// stored one; callers that read the deployment still handle its
    /// absence (start-up forgets the slot, resync treats it as an orphan).
    pub fn tracked_workloads(&self) -> Result<Vec<(DeploymentId, u64)>, Error> {
        self.shared.guard(|| {
            let txn = self.read()?;
            let workloads = txn.open_table(WORKLOADS).map_err(storage)?;
            let mut out = Vec::new();
            for entry in workloads.iter().map_err(storage)? {
                let (id, intent) = entry.map_err(storage)?;
                let id = DeploymentId::parse(id.value(), "stored deployment id")?;
                out.push((id, intent.value()));
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

/// The project's deployments not yet READY or FAILED, through the in-flight
/// index (small: bounded by `max_unfinished_per_project`).
fn unfinished_of(txn: &ReadTransaction, project: &str) -> Result<Vec<Deployment>, Error> {
    let index = txn.open_table(IN_FLIGHT).map_err(storage)?;
    let deployments = txn.open_table(DEPLOYMENTS).map_err(storage)?;
    let mut unfinished = Vec::new();
    for entry in index.range((project, "")..).map_err(storage)? {
        let (key, _) = entry.map_err(storage)?;
        let (owner, id) = key.value();
        if owner != project {
            break;
        }
        if let Some(bytes) = deployments.get(id).map_err(storage)? {
            let deployment: Deployment = decode(bytes.value())?;
            if !deployment.status.is_terminal() {
                unfinished.push(deployment);
            }
        }
    }
    Ok(unfinished)
}
