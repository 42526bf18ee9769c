//! `deployd.v1.AuditService`: the audit log, newest first, and the task
//! that keeps it bounded by age. Events are written by the mutations
//! themselves, in their own transactions (see `io/store/audit.rs`).

use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::api::auth;
use crate::api::tokens::role_to_pb;
use crate::api::{Context, convert};
use crate::error::Error;
use crate::io::store::{AuditFilter, Mutation, Store};
use crate::model::{AuditEvent, AuditOutcome, ProjectId, Role, WorkspaceId, now_millis};
use crate::pb;
use crate::pb::audit_service_server::AuditService;

pub struct Audit(pub Context);

const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 500;

fn event_to_pb(event: &AuditEvent) -> pb::AuditEvent {
    let (result, message) = match &event.outcome {
        AuditOutcome::Ok => ("OK".to_string(), String::new()),
        AuditOutcome::Refused { code, message } => (code.clone(), message.clone()),
    };
    pb::AuditEvent {
        id: event.id.to_string(),
        at: Some(convert::timestamp(event.at)),
        token_id: event.token_id.to_string(),
        role: role_to_pb(event.role) as i32,
        workspace_id: event
            .workspace_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        project_id: event
            .project_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        rpc: event.rpc.clone(),
        ids: event.ids.clone(),
        result,
        message,
    }
}

/// `AT:EVENT_ID`, as `list_audit_events` hands it out.
fn parse_token(token: &str) -> Result<Option<(u64, String)>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid("page_token is not one this server returned");
    let (at, id) = token.split_once(':').ok_or_else(invalid)?;
    let at = at.parse::<u64>().map_err(|_| invalid())?;
    let id = crate::model::AuditEventId::parse(id, "page_token").map_err(|_| invalid())?;
    Ok(Some((at, id.to_string())))
}

#[tonic::async_trait]
impl AuditService for Audit {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let request = request.into_inner();
        let workspace = if request.workspace_id.is_empty() {
            None
        } else {
            Some(WorkspaceId::parse(&request.workspace_id, "workspace_id")?)
        };
        let project = if request.project_id.is_empty() {
            None
        } else {
            Some(ProjectId::parse(&request.project_id, "project_id")?)
        };
        let page_size = convert::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let before = parse_token(&request.page_token)?;
        let page = self
            .0
            .blocking(move |context| {
                if let Some(workspace) = &workspace {
                    context.workspace_for(&caller, workspace)?;
                }
                if let Some(project) = &project {
                    let found = context.project_for(&caller, project)?;
                    if workspace.as_ref().is_some_and(|w| *w != found.workspace_id) {
                        return Err(Error::not_found(format!(
                            "project {project} not found in that workspace"
                        )));
                    }
                }
                // A workspace token sees its own workspace's events only.
                let workspace = match caller.role {
                    Role::Admin => workspace,
                    _ => caller.workspace.clone(),
                };
                let filter = AuditFilter { workspace, project };
                context.deps.store.audit_events(&filter, before, page_size)
            })
            .await?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: page.events.iter().map(event_to_pb).collect(),
            next_page_token: page
                .next_before
                .map(|(at, id)| format!("{at}:{id}"))
                .unwrap_or_default(),
        }))
    }
}

/// Events deleted per commit while pruning: each batch is a short commit,
/// so a large backlog never holds up the writer for long.
const PRUNE_BATCH: usize = 1_000;
/// How often the log is pruned (and once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Deletes events older than `retention` every hour until shutdown.
pub async fn prune_periodically(
    store: Store,
    retention: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = prune(&store, retention).await {
            tracing::warn!(error = %e, "could not prune the audit log; trying again later");
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// One pass: batches until no event older than `retention` is left.
pub async fn prune(store: &Store, retention: Duration) -> Result<(), Error> {
    let before = now_millis().saturating_sub(retention.as_millis() as u64);
    loop {
        let reader = store.clone();
        let oldest = tokio::task::spawn_blocking(move || {
            reader.audit_events(&AuditFilter::default(), Some((before, String::new())), 1)
        })
        .await
        .map_err(|e| Error::internal(format!("a read task failed: {e}")))??;
        if oldest.events.is_empty() {
            return Ok(());
        }
        let mutation = Mutation::PruneAudit {
            before,
            limit: PRUNE_BATCH,
        };
        store.commit(vec![mutation]).await?;
    }
}
