//! Who may call what. Authentication, the rate per token and the role
//! check run in a layer in front of every service (`layer.rs`, buckets in
//! `rate.rs`, rules in `rpc.rs`, the token table in `tokens.rs`); the
//! checks of the ids in a request against the caller's workspace run in
//! the handlers, through the `*_for` lookups below, because only they know
//! which ids a request names.
//!
//! **Invariant:** an id of another workspace is answered exactly like an
//! id that does not exist (`NOT_FOUND`, same message), so a token learns
//! nothing about other workspaces.

pub mod layer;
pub mod rate;
pub mod rpc;
pub mod tokens;

use tonic::Request;

use crate::api::Context;
use crate::error::Error;
use crate::model::project::Project;
use crate::model::{
    AuditEvent, Caller, Deployment, DeploymentId, Origin, ProjectId, Role, Workspace, WorkspaceId,
};

pub use rpc::Rpc;

/// The caller the layer authenticated. A request that reached a handler
/// without one came by a path the layer does not guard: refuse it.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Error> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Error::Unauthenticated("this call needs a token".into()))
}

/// The start of the audit event of a mutation.
pub fn audit(caller: &Caller, rpc: Rpc) -> AuditEvent {
    AuditEvent::new(caller, rpc.name())
}

/// What a request to a project actor carries: its key and its audit event.
pub fn origin(idempotency: Option<crate::model::Idempotency>, event: AuditEvent) -> Origin {
    Origin {
        idempotency,
        audit: Some(Box::new(event)),
    }
}

impl Context {
    pub(crate) fn workspace_for(
        &self,
        caller: &Caller,
        id: &WorkspaceId,
    ) -> Result<Workspace, Error> {
        let missing = || Error::not_found(format!("workspace {id} not found"));
        if !caller.reaches(id) {
            return Err(missing());
        }
        self.deps.store.workspace(id)?.ok_or_else(missing)
    }

    pub(crate) fn project_for(&self, caller: &Caller, id: &ProjectId) -> Result<Project, Error> {
        let project = self.project(id)?;
        if !caller.reaches(&project.workspace_id) {
            return Err(Error::not_found(format!("project {id} not found")));
        }
        Ok(project)
    }

    /// Refuses a project of another workspace before a request goes to the
    /// project's actor. An admin's request reads nothing here: the actor
    /// answers `NOT_FOUND` for a project that does not exist.
    pub(crate) fn reach_project(&self, caller: &Caller, id: &ProjectId) -> Result<(), Error> {
        if caller.role == Role::Admin {
            return Ok(());
        }
        self.project_for(caller, id).map(drop)
    }

    /// A deployment the caller may see; `role` names it in the error
    /// ("target deployment dep_... not found"). An admin's call reads no
    /// project: the rollback path stays one lookup per id.
    pub(crate) fn deployment_for(
        &self,
        caller: &Caller,
        id: &DeploymentId,
        role: &str,
    ) -> Result<Deployment, Error> {
        let deployment = self.deployment(id, role)?;
        if caller.role != Role::Admin {
            let reachable = match self.deps.store.project(&deployment.project_id)? {
                Some(project) => caller.reaches(&project.workspace_id),
                None => false,
            };
            if !reachable {
                return Err(Error::not_found(format!("{role} {id} not found")));
            }
        }
        Ok(deployment)
    }
}
