//! The changes an actor hands to the store writer. A submission is a list of
//! mutations applied atomically: first every check runs against the open
//! transaction (which already holds earlier submissions of the same commit,
//! but not this submission's own writes), then every write. A failed check
//! rejects the whole submission and writes nothing; the rest of the commit
//! is unaffected. No mutation is ever skipped quietly: what cannot be
//! written is a rejection the submitter hears about.

use redb::ReadableTable;

use crate::io::store::commit_tables::CommitTables;

use crate::error::Error;
use crate::io::store::audit;
use crate::io::store::codec::{decode, encode};
use crate::io::store::github;
use crate::io::store::holders::holder_of;
use crate::io::store::state::storage;
use crate::io::store::tables::*;
use crate::model::github::{ReportedStatus, RepositoryConnection};
use crate::model::quote::quoted;
use crate::model::routes::Holder;
use crate::model::{
    AuditEvent, Deployment, DeploymentId, IdempotencyKey, IdempotencyRecord, Project, ProjectId,
    Route, RouteKind, ScheduledChange, TokenRecord, UnixMillis, Workspace, WorkspaceId,
};

// Mutations live briefly in small Vecs on their way to the writer; boxing the
// most common one (PutDeployment) would cost an allocation per write.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Fails with `ALREADY_EXISTS` if the slug is taken.
    CreateWorkspace(Workspace),
    /// Fails with `NOT_FOUND` if the workspace is unknown, with
    /// `ALREADY_EXISTS` if the slug is taken in it or if any of `reserve`
    /// (the project's fixed hostnames) is held by another project.
    CreateProject {
        project: Project,
        reserve: Vec<(String, RouteKind)>,
    },
    /// Writes nothing: rejected with `RESOURCE_EXHAUSTED` if the workspace
    /// already has `max` projects. It goes in the submission of a
    /// `CreateProject`; the writer counts inside its transaction, which
    /// holds the projects of earlier submissions of the same commit, so
    /// concurrent creates cannot pass the limit together.
    ProjectQuota {
        workspace_id: WorkspaceId,
        max: u32,
    },
    /// Reserves those of `names` that nobody holds (projects created before
    /// reservations existed, or after the apex domain changed). Never
    /// rejected: `deployd check` reports a live project without its `LIVE`
    /// route.
    ReserveHostnames {
        project_id: ProjectId,
        names: Vec<(String, RouteKind)>,
    },
    /// Records that every project's fixed names are reserved under this
    /// apex domain, so the next start skips the scan.
    RecordReservedApex(String),
    PutProject(Project),
    /// Also keeps the listings (per project, per environment, per terminal
    /// status) and the in-flight index in step with the deployment.
    PutDeployment(Deployment),
    /// Creates or reassigns a route. Rejected with `ALREADY_EXISTS` if the
    /// hostname is held by another project, or by another kind of route.
    PutRoute(Route),
    /// Reserves a custom domain for a project; fails with `ALREADY_EXISTS`
    /// if another project holds the name in any way.
    ClaimDomain {
        project_id: ProjectId,
        fqdn: String,
    },
    /// Gives up a custom domain: deletes its claim and its `LIVE` route
    /// (with the route's index row), each only while `project_id` holds
    /// it, so a release can never take a name from another project. Never
    /// rejected: releasing what is already gone writes nothing.
    ReleaseDomain {
        project_id: ProjectId,
        fqdn: String,
    },
    PutSchedule {
        project_id: ProjectId,
        change: ScheduledChange,
    },
    DeleteSchedule {
        project_id: ProjectId,
        deployment_id: DeploymentId,
    },
    /// Records the answer to a request that carried an idempotency key.
    PutIdempotency {
        project_id: ProjectId,
        key: IdempotencyKey,
        record: IdempotencyRecord,
    },
    /// Deletes every idempotency record that expired before `now`.
    ExpireIdempotency {
        now: UnixMillis,
    },
    /// The drivers are about to be told something about this deployment
    /// (intent number `intent`): start-up must re-apply its stored state.
    TrackWorkload {
        deployment_id: DeploymentId,
        intent: u64,
    },
    /// The drivers confirmed that `deployment_id` runs nowhere. Removes its
    /// row only if it still holds `intent` (no newer intent, such as a wake,
    /// came since) and the stored deployment runs nowhere.
    ForgetWorkload {
        deployment_id: DeploymentId,
        intent: u64,
    },
    /// Creates a token, or stores its revocation.
    PutToken(TokenRecord),
    /// Records that the generated bootstrap token was issued (and shown).
    MarkBootstrapIssued,
    /// An audit event of the change this submission makes. If the
    /// submission is rejected, the event is still written, with the
    /// rejection as its outcome, and nothing else is.
    Audit(Box<AuditEvent>),
    /// Deletes up to `limit` audit events older than `before`.
    PruneAudit {
        before: UnixMillis,
        limit: usize,
    },
    /// Connects a project to a GitHub repository, replacing the project's
    /// previous one. Rejected with `NOT_FOUND` for an unknown project and
    /// `ALREADY_EXISTS` when another project has the repository.
    ConnectRepository(RepositoryConnection),
    /// Rejected with `NOT_FOUND` when the project has no repository.
    DisconnectRepository {
        project_id: ProjectId,
    },
    /// The status reporter is done with a deployment's outbox row for now:
    /// records what GitHub was given (if anything) and removes the row
    /// unless the stored deployment calls for another state.
    SettleStatus {
        deployment_id: DeploymentId,
        reported: Option<ReportedStatus>,
    },
}

/// Outcome of one submission inside a commit.
pub(crate) enum Applied {
    Done,
    Rejected(Error),
}

/// Applies one submission. `Err` means storage itself failed and the whole
/// transaction must be abandoned.
pub(crate) fn apply(txn: &CommitTables<'_>, mutations: &[Mutation]) -> Result<Applied, Error> {
    for mutation in mutations {
        if let Err(rejection) = check(txn, mutation)? {
            for mutation in mutations {
                if let Mutation::Audit(event) = mutation {
                    audit::put_event(txn, &event.refused(&rejection))?;
                }
            }
            return Ok(Applied::Rejected(rejection));
        }
    }
    for mutation in mutations {
        write(txn, mutation)?;
    }
    Ok(Applied::Done)
}

fn holder(txn: &CommitTables<'_>, fqdn: &str) -> Result<Option<Holder>, Error> {
    let routes = txn.open_table(ROUTES).map_err(storage)?;
    let reserved = txn.open_table(RESERVED_HOSTNAMES).map_err(storage)?;
    let domains = txn.open_table(DOMAINS).map_err(storage)?;
    holder_of(&*routes, &*reserved, &*domains, fqdn)
}

/// Counts the projects of `workspace` through the slug index, stopping at
/// `max`: a create never walks more than the quota's worth of rows.
fn check_project_quota(
    txn: &CommitTables<'_>,
    workspace: &WorkspaceId,
    max: u32,
) -> Result<Result<(), Error>, Error> {
    let slugs = txn.open_table(PROJECT_SLUGS).map_err(storage)?;
    let w = workspace.as_str();
    let mut rows = slugs.range((w, "")..).map_err(storage)?;
    let mut count = 0;
    while count < max {
        let same_workspace = match rows.next() {
            Some(entry) => entry.map_err(storage)?.0.value().0 == w,
            None => false,
        };
        if !same_workspace {
            // The next workspace's rows, or the end: room for one more.
            return Ok(Ok(()));
        }
        count += 1;
    }
    Ok(Err(Error::ResourceExhausted(format!(
        "workspace {workspace} has reached its limit of {max} projects ([quotas] max_projects_per_workspace)"
    ))))
}

/// Outer `Err`: storage failure. Inner `Err`: the submission is rejected.
fn check(txn: &CommitTables<'_>, mutation: &Mutation) -> Result<Result<(), Error>, Error> {
    match mutation {
        Mutation::CreateWorkspace(ws) => {
            let slugs = txn.open_table(WORKSPACE_SLUGS).map_err(storage)?;
            if slugs.get(ws.slug.as_str()).map_err(storage)?.is_some() {
                return Ok(Err(Error::AlreadyExists(format!(
                    "a workspace with slug {} already exists",
                    quoted(&ws.slug)
                ))));
            }
        }
        Mutation::CreateProject { project, reserve } => {
            let workspaces = txn.open_table(WORKSPACES).map_err(storage)?;
            if workspaces
                .get(project.workspace_id.as_str())
                .map_err(storage)?
                .is_none()
            {
                return Ok(Err(Error::not_found(format!(
                    "workspace {} not found",
                    project.workspace_id
                ))));
            }
            let slugs = txn.open_table(PROJECT_SLUGS).map_err(storage)?;
            let key = (project.workspace_id.as_str(), project.slug.as_str());
            if slugs.get(key).map_err(storage)?.is_some() {
                return Ok(Err(Error::AlreadyExists(format!(
                    "workspace {} already has a project with slug {}",
                    project.workspace_id,
                    quoted(&project.slug)
                ))));
            }
            for (fqdn, _) in reserve {
                if holder(txn, fqdn)?.is_some() {
                    return Ok(Err(Error::AlreadyExists(format!(
                        "hostname {fqdn}, which project {} would get, is already used by another project; choose another project slug",
                        quoted(&project.slug)
                    ))));
                }
            }
        }
        Mutation::ProjectQuota { workspace_id, max } => {
            return check_project_quota(txn, workspace_id, *max);
        }
        Mutation::ClaimDomain { project_id, fqdn } => {
            let taken = holder(txn, fqdn)?.is_some_and(|h| h.project_id() != project_id);
            if taken {
                return Ok(Err(Error::AlreadyExists(format!(
                    "domain {fqdn} is already in use by another project"
                ))));
            }
        }
        Mutation::PutRoute(route) => {
            if let Some(current) = holder(txn, &route.fqdn)?
                && (current.project_id() != &route.project_id || current.kind() != route.kind)
            {
                return Ok(Err(Error::AlreadyExists(format!(
                    "hostname {} is held by {}",
                    route.fqdn,
                    if current.project_id() != &route.project_id {
                        "another project".to_string()
                    } else {
                        format!("a {} route", current.kind().as_str())
                    }
                ))));
            }
        }
        Mutation::ConnectRepository(connection) => return github::check_connect(txn, connection),
        Mutation::DisconnectRepository { project_id } => {
            return github::check_disconnect(txn, project_id);
        }
        _ => {}
    }
    Ok(Ok(()))
}

fn write(txn: &CommitTables<'_>, mutation: &Mutation) -> Result<(), Error> {
    match mutation {
        Mutation::CreateWorkspace(ws) => {
            txn.open_table(WORKSPACES)
                .map_err(storage)?
                .insert(ws.id.as_str(), encode(ws)?.as_slice())
                .map_err(storage)?;
            txn.open_table(WORKSPACE_SLUGS)
                .map_err(storage)?
                .insert(ws.slug.as_str(), ws.id.as_str())
                .map_err(storage)?;
        }
        Mutation::CreateProject { project, reserve } => {
            put_project(txn, project)?;
            txn.open_table(PROJECT_SLUGS)
                .map_err(storage)?
                .insert(
                    (project.workspace_id.as_str(), project.slug.as_str()),
                    project.id.as_str(),
                )
                .map_err(storage)?;
            let mut reserved = txn.open_table(RESERVED_HOSTNAMES).map_err(storage)?;
            for (fqdn, kind) in reserve {
                reserved
                    .insert(fqdn.as_str(), (project.id.as_str(), kind.code()))
                    .map_err(storage)?;
            }
        }
        Mutation::ProjectQuota { .. } => {}
        Mutation::ReserveHostnames { project_id, names } => {
            for (fqdn, kind) in names {
                if holder(txn, fqdn)?.is_none() {
                    txn.open_table(RESERVED_HOSTNAMES)
                        .map_err(storage)?
                        .insert(fqdn.as_str(), (project_id.as_str(), kind.code()))
                        .map_err(storage)?;
                }
            }
        }
        Mutation::RecordReservedApex(apex) => {
            txn.open_table(META)
                .map_err(storage)?
                .insert(RESERVED_APEX_KEY, apex.as_bytes())
                .map_err(storage)?;
        }
        Mutation::PutProject(project) => put_project(txn, project)?,
        Mutation::PutDeployment(deployment) => put_deployment(txn, deployment)?,
        Mutation::PutRoute(route) => {
            let mut routes = txn.open_table(ROUTES).map_err(storage)?;
            let existed = routes
                .insert(route.fqdn.as_str(), encode(route)?.as_slice())
                .map_err(storage)?
                .is_some();
            if !existed {
                txn.open_table(PROJECT_ROUTE_KINDS)
                    .map_err(storage)?
                    .insert(
                        (
                            route.project_id.as_str(),
                            route.kind.code(),
                            route.fqdn.as_str(),
                        ),
                        (),
                    )
                    .map_err(storage)?;
            }
        }
        Mutation::ClaimDomain { project_id, fqdn } => {
            txn.open_table(DOMAINS)
                .map_err(storage)?
                .insert(fqdn.as_str(), project_id.as_str())
                .map_err(storage)?;
        }
        Mutation::ReleaseDomain { project_id, fqdn } => release_domain(txn, project_id, fqdn)?,
        Mutation::PutSchedule { project_id, change } => {
            txn.open_table(SCHEDULES)
                .map_err(storage)?
                .insert(
                    (project_id.as_str(), change.deployment_id.as_str()),
                    encode(change)?.as_slice(),
                )
                .map_err(storage)?;
        }
        Mutation::DeleteSchedule {
            project_id,
            deployment_id,
        } => {
            txn.open_table(SCHEDULES)
                .map_err(storage)?
                .remove((project_id.as_str(), deployment_id.as_str()))
                .map_err(storage)?;
        }
        Mutation::PutIdempotency {
            project_id,
            key,
            record,
        } => {
            let project = project_id.as_str();
            txn.open_table(IDEMPOTENCY)
                .map_err(storage)?
                .insert((project, key.as_str()), encode(record)?.as_slice())
                .map_err(storage)?;
            txn.open_table(IDEMPOTENCY_EXPIRY)
                .map_err(storage)?
                .insert((record.expires_at, project, key.as_str()), ())
                .map_err(storage)?;
        }
        Mutation::ExpireIdempotency { now } => expire_idempotency(txn, *now)?,
        Mutation::TrackWorkload {
            deployment_id,
            intent,
        } => {
            txn.open_table(WORKLOADS)
                .map_err(storage)?
                .insert(deployment_id.as_str(), *intent)
                .map_err(storage)?;
        }
        Mutation::PutToken(token) => audit::put_token(txn, token)?,
        Mutation::MarkBootstrapIssued => audit::mark_bootstrap_issued(txn)?,
        Mutation::Audit(event) => audit::put_event(txn, event)?,
        Mutation::PruneAudit { before, limit } => audit::prune(txn, *before, *limit)?,
        Mutation::ForgetWorkload {
            deployment_id,
            intent,
        } => {
            let mut workloads = txn.open_table(WORKLOADS).map_err(storage)?;
            let current = workloads
                .get(deployment_id.as_str())
                .map_err(storage)?
                .map(|g| g.value());
            if current != Some(*intent) {
                return Ok(());
            }
            let runs = match txn
                .open_table(DEPLOYMENTS)
                .map_err(storage)?
                .get(deployment_id.as_str())
                .map_err(storage)?
            {
                Some(bytes) => decode::<Deployment>(bytes.value())?.runs_anywhere(),
                None => false,
            };
            if !runs {
                workloads.remove(deployment_id.as_str()).map_err(storage)?;
            }
        }
        Mutation::ConnectRepository(connection) => github::connect(txn, connection)?,
        Mutation::DisconnectRepository { project_id } => {
            github::disconnect(txn, project_id)?;
        }
        Mutation::SettleStatus {
            deployment_id,
            reported,
        } => github::settle(txn, deployment_id, reported.as_ref())?,
    }
    Ok(())
}

fn put_deployment(txn: &CommitTables<'_>, deployment: &Deployment) -> Result<(), Error> {
    let project = deployment.project_id.as_str();
    let id = deployment.id.as_str();
    txn.open_table(DEPLOYMENTS)
        .map_err(storage)?
        .insert(id, encode(deployment)?.as_slice())
        .map_err(storage)?;
    // The indexes change once or twice in a deployment's life; a read is
    // much cheaper than rewriting a page that would not change.
    let mut listing = txn.open_table(PROJECT_DEPLOYMENTS).map_err(storage)?;
    let key = (project, deployment.sequence);
    if listing.get(key).map_err(storage)?.is_none() {
        listing.insert(key, id).map_err(storage)?;
        txn.open_table(DEPLOYMENTS_BY_ENVIRONMENT)
            .map_err(storage)?
            .insert(
                (
                    project,
                    deployment.environment.as_str(),
                    deployment.sequence,
                ),
                id,
            )
            .map_err(storage)?;
    }
    let mut in_flight = txn.open_table(IN_FLIGHT).map_err(storage)?;
    let listed = in_flight.get((project, id)).map_err(storage)?.is_some();
    if deployment.status.is_terminal() && listed {
        in_flight.remove((project, id)).map_err(storage)?;
    } else if !deployment.status.is_terminal() && !listed {
        in_flight.insert((project, id), ()).map_err(storage)?;
    }
    if deployment.status.is_terminal() {
        let mut by_status = txn.open_table(DEPLOYMENTS_BY_STATUS).map_err(storage)?;
        let key = (project, deployment.status.code(), deployment.sequence);
        if by_status.get(key).map_err(storage)?.is_none() {
            by_status
                .insert(key, (id, deployment.environment.as_str()))
                .map_err(storage)?;
        }
    }
    github::deployment_written(txn, deployment)
}

fn expire_idempotency(txn: &CommitTables<'_>, now: UnixMillis) -> Result<(), Error> {
    let mut expiry = txn.open_table(IDEMPOTENCY_EXPIRY).map_err(storage)?;
    let mut records = txn.open_table(IDEMPOTENCY).map_err(storage)?;
    let mut expired = Vec::new();
    for entry in expiry.range((0, "", "")..(now, "", "")).map_err(storage)? {
        let (key, _) = entry.map_err(storage)?;
        let (at, project, idempotency_key) = key.value();
        expired.push((at, project.to_string(), idempotency_key.to_string()));
    }
    for (at, project, key) in expired {
        expiry
            .remove((at, project.as_str(), key.as_str()))
            .map_err(storage)?;
        // A key re-used after expiry has a newer record; keep that one.
        let current = match records
            .get((project.as_str(), key.as_str()))
            .map_err(storage)?
        {
            Some(bytes) => Some(decode::<IdempotencyRecord>(bytes.value())?),
            None => None,
        };
        if current.is_some_and(|r| r.expires_at <= at) {
            records
                .remove((project.as_str(), key.as_str()))
                .map_err(storage)?;
        }
    }
    Ok(())
}

fn release_domain(txn: &CommitTables<'_>, project_id: &ProjectId, fqdn: &str) -> Result<(), Error> {
    let mut domains = txn.open_table(DOMAINS).map_err(storage)?;
    let claimed = domains
        .get(fqdn)
        .map_err(storage)?
        .is_some_and(|holder| holder.value() == project_id.as_str());
    if claimed {
        domains.remove(fqdn).map_err(storage)?;
    }
    let mut routes = txn.open_table(ROUTES).map_err(storage)?;
    let routed = match routes.get(fqdn).map_err(storage)? {
        Some(bytes) => {
            let route = decode::<Route>(bytes.value())?;
            route.project_id == *project_id && route.kind == RouteKind::Live
        }
        None => false,
    };
    if routed {
        routes.remove(fqdn).map_err(storage)?;
        txn.open_table(PROJECT_ROUTE_KINDS)
            .map_err(storage)?
            .remove((project_id.as_str(), RouteKind::Live.code(), fqdn))
            .map_err(storage)?;
    }
    Ok(())
}

fn put_project(txn: &CommitTables<'_>, project: &Project) -> Result<(), Error> {
    txn.open_table(PROJECTS)
        .map_err(storage)?
        .insert(project.id.as_str(), encode(project)?.as_slice())
        .map_err(storage)?;
    Ok(())
}
