//! Offline verification of a data file (`deployd check`): redb's own
//! integrity check, then the spec's invariants over every stored record.
//! The daemon must not be running: redb allows one process per file.
//!
//! The check never writes: the file is opened read-only and seen through a
//! [`ReadOnlyOverlay`], so what redb writes on open, or while repairing a
//! damaged file, stays in memory. It works on a read-only copy.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, StorageBackend};

use super::codec::decode;
use super::guarded::ReadOnlyOverlay;
use super::open::VERIFYING_CACHE_BYTES;
use super::state::panic_message;
use super::tables::*;
use super::{SCHEMA_KEY, SCHEMA_VERSION, storage};
use crate::error::Error;
use crate::model::project::Project;
use crate::model::{Deployment, DeploymentStatus, DesiredState, Route, RouteKind, ScheduledChange};

/// What `check_file` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub projects: usize,
    pub deployments: usize,
    pub unfinished: usize,
    pub routes: usize,
    pub schedules: usize,
    /// Every violation, in words; empty means the file is sound.
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut out = format!(
            "projects: {}\ndeployments: {} ({} not yet READY or FAILED)\nroutes: {}\nscheduled changes: {}\n",
            self.projects, self.deployments, self.unfinished, self.routes, self.schedules
        );
        if self.problems.is_empty() {
            out.push_str("integrity and invariants: ok\n");
        } else {
            let _ = writeln!(out, "problems: {}", self.problems.len());
            for problem in &self.problems {
                let _ = writeln!(out, "- {problem}");
            }
        }
        out
    }
}

/// Opens `path` read-only (never creating or changing it), runs redb's
/// integrity check and then checks invariants 1, 2 (including a live
/// project without a `LIVE` route) and 5's bookkeeping over the stored
/// records.
pub fn check_file(path: &Path) -> Result<CheckReport, Error> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::not_found(format!(
                "no data file at {}",
                path.display()
            )));
        }
        Err(e) => {
            return Err(Error::Unavailable(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let empty = file.metadata().is_ok_and(|m| m.len() == 0);
    if empty {
        return Err(Error::FailedPrecondition(format!(
            "{} is empty (0 bytes): it is not a deployd database",
            path.display()
        )));
    }
    let backend = redb::backends::FileBackend::new(file)
        .map_err(|e| Error::Unavailable(format!("cannot read {}: {e}", path.display())))?;
    check_backend(backend).map_err(|e| match e {
        Error::Unavailable(m) => Error::Unavailable(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// [`check_file`] over any backend, which it only reads through a
/// [`ReadOnlyOverlay`] (tests pass one that refuses every write).
pub fn check_backend(backend: impl StorageBackend) -> Result<CheckReport, Error> {
    let overlay = ReadOnlyOverlay::over(backend)
        .map_err(|e| Error::Unavailable(format!("cannot read the file: {e}")))?;
    let mut report = CheckReport::default();
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Database::builder()
            .set_cache_size(VERIFYING_CACHE_BYTES)
            .create_with_backend(overlay)
    }));
    let mut db = match opened {
        Ok(Ok(db)) => db,
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
            return Err(Error::Unavailable(
                "the file is in use; is a daemon still running on it?".into(),
            ));
        }
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(what)))) => {
            report
                .problems
                .push(format!("redb cannot open the file: {what}"));
            return Ok(report);
        }
        Ok(Err(e)) => {
            return Err(Error::Unavailable(format!(
                "cannot open it as a redb database ({e})"
            )));
        }
        Err(panic) => {
            report.problems.push(format!(
                "redb panicked opening the file: {}",
                panic_message(panic.as_ref())
            ));
            return Ok(report);
        }
    };
    let integrity = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.check_integrity()));
    match integrity {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => report.problems.push(
            "redb integrity check failed (repaired in memory only; the file is unchanged)".into(),
        ),
        Ok(Err(e)) => {
            report.problems.push(format!("redb integrity check: {e}"));
            return Ok(report);
        }
        Err(panic) => {
            report.problems.push(format!(
                "redb integrity check panicked: {}",
                panic_message(panic.as_ref())
            ));
            return Ok(report);
        }
    }
    let records = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_records(&db, &mut report)
    }));
    match records {
        Ok(Ok(())) => {}
        Ok(Err(e)) => report.problems.push(format!("reading the records: {e}")),
        Err(panic) => report.problems.push(format!(
            "reading the records panicked: {}",
            panic_message(panic.as_ref())
        )),
    }
    Ok(report)
}

/// What the checks of routes and schedules need of a deployment.
struct DeploymentFacts {
    status: DeploymentStatus,
    project_id: String,
    environment: String,
}

/// A deployment's own bookkeeping: the in-flight index, its project,
/// invariant 17 and supersede.
fn check_deployment(
    deployment: &Deployment,
    projects: &HashMap<String, Project>,
    in_flight: &BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    let unfinished = !deployment.status.is_terminal();
    if unfinished != in_flight.contains(deployment.id.as_str()) {
        problems.push(format!(
            "deployment {} is {} but the in-flight index {} it",
            deployment.id,
            deployment.status,
            if unfinished { "misses" } else { "still lists" }
        ));
    }
    if !projects.contains_key(deployment.project_id.as_str()) {
        problems.push(format!(
            "deployment {} belongs to unknown project {}",
            deployment.id, deployment.project_id
        ));
    }
    // Invariant 17: a cancelled deployment never runs again.
    if deployment.status == DeploymentStatus::Cancelled
        && (deployment.desired_state != DesiredState::Archived || deployment.runs_anywhere())
    {
        problems.push(format!(
            "deployment {} is CANCELLED but still meant to run",
            deployment.id
        ));
    }
    if let Some(newer) = &deployment.superseded_by
        && deployment.status != DeploymentStatus::Cancelled
    {
        problems.push(format!(
            "deployment {} names {newer} as superseding it but is {}",
            deployment.id, deployment.status
        ));
    }
}

/// Invariant 1 for one route (COMMIT and DEPLOYMENT routes are immutable
/// and need no check).
fn check_route(
    route: &Route,
    deployments: &HashMap<String, DeploymentFacts>,
    problems: &mut Vec<String>,
) {
    if route.kind == RouteKind::Commit || route.kind == RouteKind::Deployment {
        return;
    }
    let Some(d) = deployments.get(route.deployment_id.as_str()) else {
        problems.push(format!(
            "{:?} route {} points at unknown deployment {}",
            route.kind, route.fqdn, route.deployment_id
        ));
        return;
    };
    if d.status != DeploymentStatus::Ready {
        problems.push(format!(
            "{:?} route {} points at {} which is {}",
            route.kind, route.fqdn, route.deployment_id, d.status
        ));
    }
    if d.project_id != route.project_id.as_str() {
        problems.push(format!(
            "route {} points at {} of another project",
            route.fqdn, route.deployment_id
        ));
    }
    let same_env = matches!(route.kind, RouteKind::Environment | RouteKind::Live);
    if same_env && d.environment != route.environment {
        problems.push(format!(
            "{:?} route {} ({}) points at {} in {}",
            route.kind, route.fqdn, route.environment, route.deployment_id, d.environment
        ));
    }
}

fn check_records(db: &Database, report: &mut CheckReport) -> Result<(), Error> {
    let txn = db.begin_read().map_err(storage)?;
    let meta = txn.open_table(META).map_err(storage)?;
    match meta.get(SCHEMA_KEY).map_err(storage)? {
        Some(v) if v.value() == SCHEMA_VERSION.to_le_bytes() => {}
        other => {
            report.problems.push(format!(
                "schema version is {:?}, expected {SCHEMA_VERSION}",
                other.map(|v| v.value().to_vec())
            ));
            return Ok(());
        }
    }

    let mut projects: HashMap<String, Project> = HashMap::new();
    for entry in txn
        .open_table(PROJECTS)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (_, bytes) = entry.map_err(storage)?;
        let project: Project = decode(bytes.value())?;
        projects.insert(project.id.to_string(), project);
    }
    let mut in_flight = BTreeSet::new();
    for entry in txn
        .open_table(IN_FLIGHT)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (key, _) = entry.map_err(storage)?;
        in_flight.insert(key.value().1.to_string());
    }

    // Each deployment is checked as it is read, and only what the checks
    // of other records need is kept: a file of a million deployments is
    // checked in a few hundred MiB, not in the size of every record.
    let problems = &mut report.problems;
    let mut deployments: HashMap<String, DeploymentFacts> = HashMap::new();
    for entry in txn
        .open_table(DEPLOYMENTS)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (_, bytes) = entry.map_err(storage)?;
        let deployment: Deployment = decode(bytes.value())?;
        let unfinished = !deployment.status.is_terminal();
        report.unfinished += usize::from(unfinished);
        check_deployment(&deployment, &projects, &in_flight, problems);
        deployments.insert(
            deployment.id.to_string(),
            DeploymentFacts {
                status: deployment.status,
                project_id: deployment.project_id.to_string(),
                environment: deployment.environment,
            },
        );
    }
    for id in &in_flight {
        if !deployments.contains_key(id) {
            problems.push(format!("the in-flight index lists unknown deployment {id}"));
        }
    }

    // Invariant 1: sticky routes point at READY deployments of the same
    // project (and environment, for ENVIRONMENT and LIVE). LIVE routes are
    // kept by project for invariant 2.
    let mut live_routes: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for entry in txn
        .open_table(ROUTES)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (_, bytes) = entry.map_err(storage)?;
        let route = decode::<Route>(bytes.value())?;
        report.routes += 1;
        check_route(&route, &deployments, problems);
        if route.kind == RouteKind::Live {
            live_routes
                .entry(route.project_id.to_string())
                .or_default()
                .push((route.fqdn.to_string(), route.deployment_id.to_string()));
        }
    }

    // Invariant 2: with a live deployment, every LIVE route points at it.
    for project in projects.values() {
        let Some(live) = project.live_id() else {
            continue;
        };
        match deployments.get(live.as_str()) {
            Some(d) if d.status == DeploymentStatus::Ready => {}
            Some(d) => problems.push(format!(
                "project {} has live deployment {} which is {}",
                project.id, live, d.status
            )),
            None => problems.push(format!(
                "project {} has unknown live deployment {live}",
                project.id
            )),
        }
        // A live project whose LIVE hostname is gone serves nothing under
        // its own name: a lost write, which the spec says must be reported.
        let routes = live_routes
            .get(project.id.as_str())
            .map_or(&[][..], Vec::as_slice);
        if routes.is_empty() {
            problems.push(format!(
                "project {} is live on {live} but has no LIVE route",
                project.id
            ));
        }
        for (fqdn, deployment_id) in routes {
            if deployment_id != live.as_str() {
                problems.push(format!(
                    "LIVE route {fqdn} points at {deployment_id} but project {} is live on {live}",
                    project.id
                ));
            }
        }
    }

    for entry in txn
        .open_table(SCHEDULES)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (key, bytes) = entry.map_err(storage)?;
        let project = key.value().0;
        let change = decode::<ScheduledChange>(bytes.value())?;
        report.schedules += 1;
        match deployments.get(change.deployment_id.as_str()) {
            Some(d) if d.project_id == project => {}
            _ => problems.push(format!(
                "project {project} has a schedule for unknown deployment {}",
                change.deployment_id
            )),
        }
    }
    report.projects = projects.len();
    report.deployments = deployments.len();
    super::github::check_tables(&txn, &projects, &deployments, problems)
}
