//! The changes an actor hands to the store writer. A submission is a list of
//! mutations applied atomically: first every check runs against the open
//! transaction (which already holds earlier submissions of the same commit,
//! but not this submission's own writes), then every write. A failed check rejects the whole submission and writes
//! nothing; the rest of the commit is unaffected.

use redb::{ReadableTable, WriteTransaction};

use crate::error::Error;
use crate::io::store::codec::{decode, encode};
use crate::io::store::tables::*;
use crate::model::{
    Deployment, DeploymentId, IdempotencyKey, IdempotencyRecord, Project, ProjectId, Route,
    ScheduledChange, UnixMillis, Workspace,
};

// Mutations live briefly in small Vecs on their way to the writer; boxing the
// most common one (PutDeployment) would cost an allocation per write.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Fails with `ALREADY_EXISTS` if the slug is taken.
    CreateWorkspace(Workspace),
    /// Fails with `NOT_FOUND` if the workspace is unknown and with
    /// `ALREADY_EXISTS` if the slug is taken in it.
    CreateProject(Project),
    PutProject(Project),
    /// Also keeps the per-project listing and the in-flight index in step
    /// with the deployment's status.
    PutDeployment(Deployment),
    /// Creates or reassigns a route. A hostname owned by another project is
    /// left alone: projects never take each other's traffic.
    PutRoute(Route),
    /// Reserves a custom domain for a project; fails with `ALREADY_EXISTS`
    /// if another project holds it.
    ClaimDomain {
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
}

/// Outcome of one submission inside a commit.
pub(crate) enum Applied {
    Done,
    Rejected(Error),
}

/// Applies one submission. `Err` means storage itself failed and the whole
/// transaction must be abandoned.
pub(crate) fn apply(txn: &WriteTransaction, mutations: &[Mutation]) -> Result<Applied, Error> {
    for mutation in mutations {
        if let Err(rejection) = check(txn, mutation)? {
            return Ok(Applied::Rejected(rejection));
        }
    }
    for mutation in mutations {
        write(txn, mutation)?;
    }
    Ok(Applied::Done)
}

fn storage(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("storage: {e}"))
}

/// Outer `Err`: storage failure. Inner `Err`: the submission is rejected.
fn check(txn: &WriteTransaction, mutation: &Mutation) -> Result<Result<(), Error>, Error> {
    match mutation {
        Mutation::CreateWorkspace(ws) => {
            let slugs = txn.open_table(WORKSPACE_SLUGS).map_err(storage)?;
            if slugs.get(ws.slug.as_str()).map_err(storage)?.is_some() {
                return Ok(Err(Error::AlreadyExists(format!(
                    "a workspace with slug {:?} already exists",
                    ws.slug
                ))));
            }
        }
        Mutation::CreateProject(project) => {
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
                    "workspace {} already has a project with slug {:?}",
                    project.workspace_id, project.slug
                ))));
            }
        }
        Mutation::ClaimDomain { project_id, fqdn } => {
            let domains = txn.open_table(DOMAINS).map_err(storage)?;
            let owner = domains
                .get(fqdn.as_str())
                .map_err(storage)?
                .map(|g| g.value().to_string());
            let routes = txn.open_table(ROUTES).map_err(storage)?;
            let route_owner = match routes.get(fqdn.as_str()).map_err(storage)? {
                Some(bytes) => Some(decode::<Route>(bytes.value(), "route")?.project_id),
                None => None,
            };
            let taken = owner.is_some_and(|o| o != project_id.as_str())
                || route_owner.is_some_and(|o| &o != project_id);
            if taken {
                return Ok(Err(Error::AlreadyExists(format!(
                    "domain {fqdn} is already in use by another project"
                ))));
            }
        }
        _ => {}
    }
    Ok(Ok(()))
}

fn write(txn: &WriteTransaction, mutation: &Mutation) -> Result<(), Error> {
    match mutation {
        Mutation::CreateWorkspace(ws) => {
            txn.open_table(WORKSPACES)
                .map_err(storage)?
                .insert(ws.id.as_str(), encode(ws, "workspace")?.as_slice())
                .map_err(storage)?;
            txn.open_table(WORKSPACE_SLUGS)
                .map_err(storage)?
                .insert(ws.slug.as_str(), ws.id.as_str())
                .map_err(storage)?;
        }
        Mutation::CreateProject(project) => {
            put_project(txn, project)?;
            txn.open_table(PROJECT_SLUGS)
                .map_err(storage)?
                .insert(
                    (project.workspace_id.as_str(), project.slug.as_str()),
                    project.id.as_str(),
                )
                .map_err(storage)?;
        }
        Mutation::PutProject(project) => put_project(txn, project)?,
        Mutation::PutDeployment(deployment) => {
            let project = deployment.project_id.as_str();
            let id = deployment.id.as_str();
            txn.open_table(DEPLOYMENTS)
                .map_err(storage)?
                .insert(id, encode(deployment, "deployment")?.as_slice())
                .map_err(storage)?;
            // The indexes change twice in a deployment's life; a read is much
            // cheaper than rewriting a page that would not change.
            let mut listing = txn.open_table(PROJECT_DEPLOYMENTS).map_err(storage)?;
            let key = (project, deployment.sequence);
            if listing.get(key).map_err(storage)?.is_none() {
                listing.insert(key, id).map_err(storage)?;
            }
            let mut in_flight = txn.open_table(IN_FLIGHT).map_err(storage)?;
            let listed = in_flight.get((project, id)).map_err(storage)?.is_some();
            if deployment.status.is_terminal() && listed {
                in_flight.remove((project, id)).map_err(storage)?;
            } else if !deployment.status.is_terminal() && !listed {
                in_flight.insert((project, id), ()).map_err(storage)?;
            }
        }
        Mutation::PutRoute(route) => {
            let mut routes = txn.open_table(ROUTES).map_err(storage)?;
            let owner = match routes.get(route.fqdn.as_str()).map_err(storage)? {
                Some(bytes) => Some(decode::<Route>(bytes.value(), "route")?.project_id),
                None => None,
            };
            if owner.as_ref().is_some_and(|o| o != &route.project_id) {
                tracing::warn!(
                    fqdn = %route.fqdn,
                    project = %route.project_id,
                    "hostname belongs to another project; route not taken"
                );
                return Ok(());
            }
            routes
                .insert(route.fqdn.as_str(), encode(route, "route")?.as_slice())
                .map_err(storage)?;
            let mut index = txn.open_table(PROJECT_ROUTES).map_err(storage)?;
            let key = (route.project_id.as_str(), route.fqdn.as_str());
            if index.get(key).map_err(storage)?.is_none() {
                index.insert(key, ()).map_err(storage)?;
            }
        }
        Mutation::ClaimDomain { project_id, fqdn } => {
            txn.open_table(DOMAINS)
                .map_err(storage)?
                .insert(fqdn.as_str(), project_id.as_str())
                .map_err(storage)?;
        }
        Mutation::PutSchedule { project_id, change } => {
            txn.open_table(SCHEDULES)
                .map_err(storage)?
                .insert(
                    (project_id.as_str(), change.deployment_id.as_str()),
                    encode(change, "schedule")?.as_slice(),
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
                .insert(
                    (project, key.as_str()),
                    encode(record, "idempotency")?.as_slice(),
                )
                .map_err(storage)?;
            txn.open_table(IDEMPOTENCY_EXPIRY)
                .map_err(storage)?
                .insert((record.expires_at, project, key.as_str()), ())
                .map_err(storage)?;
        }
        Mutation::ExpireIdempotency { now } => expire_idempotency(txn, *now)?,
    }
    Ok(())
}

fn expire_idempotency(txn: &WriteTransaction, now: UnixMillis) -> Result<(), Error> {
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
            Some(bytes) => Some(decode::<IdempotencyRecord>(bytes.value(), "idempotency")?),
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

fn put_project(txn: &WriteTransaction, project: &Project) -> Result<(), Error> {
    txn.open_table(PROJECTS)
        .map_err(storage)?
        .insert(project.id.as_str(), encode(project, "project")?.as_slice())
        .map_err(storage)?;
    Ok(())
}
