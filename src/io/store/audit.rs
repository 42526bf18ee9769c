//! Tokens and the audit log in redb: the writes the writer applies for
//! them, and their reads. An audit event is one row of `audit` plus one row
//! per index (its workspace, its project), all written in the transaction
//! of the change it describes.

use redb::{ReadableDatabase, ReadableTable};

use super::commit_tables::CommitTables;

use super::codec::{decode, encode};
use super::tables::*;
use super::{Store, storage};
use crate::error::Error;
use crate::model::{AuditEvent, ProjectId, TokenRecord, UnixMillis, WorkspaceId};

/// Which events a listing returns.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub workspace: Option<WorkspaceId>,
    pub project: Option<ProjectId>,
}

/// A page of events, newest first.
#[derive(Debug, Default)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// (at, event id) to continue below, if there is more.
    pub next_before: Option<(u64, String)>,
}

pub(super) fn put_token(txn: &CommitTables<'_>, token: &TokenRecord) -> Result<(), Error> {
    txn.open_table(TOKENS)
        .map_err(storage)?
        .insert(token.id.as_str(), encode(token)?.as_slice())
        .map_err(storage)?;
    Ok(())
}

pub(super) fn mark_bootstrap_issued(txn: &CommitTables<'_>) -> Result<(), Error> {
    txn.open_table(META)
        .map_err(storage)?
        .insert(BOOTSTRAP_ISSUED_KEY, [1u8].as_slice())
        .map_err(storage)?;
    Ok(())
}

pub(super) fn put_event(txn: &CommitTables<'_>, event: &AuditEvent) -> Result<(), Error> {
    let (at, id) = (event.at, event.id.as_str());
    txn.open_table(AUDIT)
        .map_err(storage)?
        .insert((at, id), encode(event)?.as_slice())
        .map_err(storage)?;
    if let Some(workspace) = &event.workspace_id {
        txn.open_table(AUDIT_BY_WORKSPACE)
            .map_err(storage)?
            .insert((workspace.as_str(), at, id), ())
            .map_err(storage)?;
    }
    if let Some(project) = &event.project_id {
        txn.open_table(AUDIT_BY_PROJECT)
            .map_err(storage)?
            .insert((project.as_str(), at, id), ())
            .map_err(storage)?;
    }
    Ok(())
}

/// Deletes up to `limit` events older than `before`, with their index
/// rows. A bounded batch keeps the commit that carries it short; the
/// pruner submits another while it finds more.
pub(super) fn prune(txn: &CommitTables<'_>, before: UnixMillis, limit: usize) -> Result<(), Error> {
    let mut audit = txn.open_table(AUDIT).map_err(storage)?;
    let mut old = Vec::new();
    for entry in audit.range(..(before, "")).map_err(storage)?.take(limit) {
        let (_, bytes) = entry.map_err(storage)?;
        old.push(decode::<AuditEvent>(bytes.value())?);
    }
    let mut by_workspace = txn.open_table(AUDIT_BY_WORKSPACE).map_err(storage)?;
    let mut by_project = txn.open_table(AUDIT_BY_PROJECT).map_err(storage)?;
    for event in old {
        let (at, id) = (event.at, event.id.as_str());
        audit.remove((at, id)).map_err(storage)?;
        if let Some(workspace) = &event.workspace_id {
            by_workspace
                .remove((workspace.as_str(), at, id))
                .map_err(storage)?;
        }
        if let Some(project) = &event.project_id {
            by_project
                .remove((project.as_str(), at, id))
                .map_err(storage)?;
        }
    }
    Ok(())
}

impl Store {
    /// Every token, revoked ones included (there are few: they are made by
    /// hand), for the in-memory table the API checks requests against.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, Error> {
        self.shared.guard(|| {
            let txn = self.shared.database()?.begin_read().map_err(storage)?;
            let table = txn.open_table(TOKENS).map_err(storage)?;
            let mut tokens = Vec::new();
            for entry in table.iter().map_err(storage)? {
                let (_, bytes) = entry.map_err(storage)?;
                tokens.push(decode(bytes.value())?);
            }
            Ok(tokens)
        })
    }

    /// Whether a generated bootstrap token was ever issued for this file.
    pub fn bootstrap_issued(&self) -> Result<bool, Error> {
        self.shared.guard(|| {
            let txn = self.shared.database()?.begin_read().map_err(storage)?;
            let meta = txn.open_table(META).map_err(storage)?;
            Ok(meta.get(BOOTSTRAP_ISSUED_KEY).map_err(storage)?.is_some())
        })
    }

    /// A page of events, newest first, below `before`. Each filter reads
    /// its own index, so a page costs `limit` lookups whatever the log's
    /// size.
    pub fn audit_events(
        &self,
        filter: &AuditFilter,
        before: Option<(u64, String)>,
        limit: usize,
    ) -> Result<AuditPage, Error> {
        self.shared.guard(|| {
            let txn = self.shared.database()?.begin_read().map_err(storage)?;
            let audit = txn.open_table(AUDIT).map_err(storage)?;
            let (before_at, before_id) = before.clone().unwrap_or((u64::MAX, String::new()));
            let mut keys: Vec<(u64, String)> = Vec::with_capacity(limit + 1);
            let index = match (&filter.project, &filter.workspace) {
                (Some(project), _) => Some((AUDIT_BY_PROJECT, project.as_str())),
                (None, Some(workspace)) => Some((AUDIT_BY_WORKSPACE, workspace.as_str())),
                (None, None) => None,
            };
            match index {
                Some((table, owner)) => {
                    let table = txn.open_table(table).map_err(storage)?;
                    let range = table
                        .range((owner, 0, "")..(owner, before_at, before_id.as_str()))
                        .map_err(storage)?;
                    for entry in range.rev().take(limit + 1) {
                        let (key, _) = entry.map_err(storage)?;
                        let (_, at, id) = key.value();
                        keys.push((at, id.to_string()));
                    }
                }
                None => {
                    let range = audit
                        .range(..(before_at, before_id.as_str()))
                        .map_err(storage)?;
                    for entry in range.rev().take(limit + 1) {
                        let (key, _) = entry.map_err(storage)?;
                        let (at, id) = key.value();
                        keys.push((at, id.to_string()));
                    }
                }
            }
            let more = keys.len() > limit;
            keys.truncate(limit);
            let mut events = Vec::with_capacity(keys.len());
            for (at, id) in &keys {
                if let Some(bytes) = audit.get((*at, id.as_str())).map_err(storage)? {
                    events.push(decode(bytes.value())?);
                }
            }
            Ok(AuditPage {
                events,
                next_before: if more { keys.pop() } else { None },
            })
        })
    }
}
