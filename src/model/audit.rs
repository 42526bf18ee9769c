//! The audit log's record: who changed what, when, and how it ended. An
//! event is written in the same store transaction as the change it
//! describes, so the log and the state never disagree.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::auth::{Caller, Role};
use crate::model::{AuditEventId, Idempotency, ProjectId, TokenId, UnixMillis, WorkspaceId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: AuditEventId,
    /// When the daemon accepted the request.
    pub at: UnixMillis,
    pub token_id: TokenId,
    pub role: Role,
    /// The workspace the change concerns (for a workspace token, its own);
    /// `None` for changes outside any workspace (an admin token).
    pub workspace_id: Option<WorkspaceId>,
    pub project_id: Option<ProjectId>,
    /// The RPC, e.g. `Rollback`.
    pub rpc: String,
    /// The other ids the request named or created (deployments, tokens).
    pub ids: Vec<String>,
    pub outcome: AuditOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditOutcome {
    Ok,
    /// The store refused the change on its merits (a slug or domain taken).
    Refused {
        code: String,
        message: String,
    },
}

impl AuditEvent {
    /// An event for `rpc` by `caller`, before its outcome is known.
    pub fn new(caller: &Caller, rpc: &str) -> Self {
        Self {
            id: AuditEventId::generate(),
            at: crate::model::now_millis(),
            token_id: caller.token_id.clone(),
            role: caller.role,
            workspace_id: caller.workspace.clone(),
            project_id: None,
            rpc: rpc.to_string(),
            ids: Vec::new(),
            outcome: AuditOutcome::Ok,
        }
    }

    pub fn workspace(mut self, workspace: &WorkspaceId) -> Self {
        self.workspace_id = Some(workspace.clone());
        self
    }

    pub fn project(mut self, project: &ProjectId) -> Self {
        self.project_id = Some(project.clone());
        self
    }

    pub fn id(mut self, id: impl ToString) -> Self {
        self.ids.push(id.to_string());
        self
    }

    /// The same event, for a change the store refused.
    pub fn refused(&self, error: &Error) -> Self {
        let mut event = self.clone();
        event.outcome = AuditOutcome::Refused {
            code: error.code_name().to_string(),
            message: error.to_string(),
        };
        event
    }
}

/// What a request to a project actor brings besides its content: its
/// idempotency key, and the audit event to store with the change it makes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub idempotency: Option<Idempotency>,
    pub audit: Option<Box<AuditEvent>>,
}

impl Origin {
    pub fn keyed(idempotency: Idempotency) -> Self {
        Self {
            idempotency: Some(idempotency),
            audit: None,
        }
    }
}
