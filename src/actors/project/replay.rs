//! Idempotent requests: before a keyed mutation runs, its key is looked up
//! among this actor's not yet settled submissions, the wakes in progress
//! and the store. A known key with the same request gets the original
//! answer, rebuilt from what the record identifies (sent only after every
//! earlier submission has settled, and only if the one that stored the
//! record committed); a known key with another request is refused.

use crate::actors::project::core::ProjectCore;
use crate::actors::project::effects::{Answerable, Effects};
use crate::actors::project::messages::Reply;
use crate::error::Error;
use crate::io::store::Mutation;
use crate::model::quote::quoted;
use crate::model::{AuditEvent, Idempotency, IdempotencyRecord, Origin, StoredReply, now_millis};

/// Looks `idempotency` up. A new key (or none) hands `reply` back: run the
/// request. A known key answers `reply` (with `rebuild` applied to what was
/// stored) and returns `None`.
pub(super) fn check<T: Answerable>(
    core: &mut ProjectCore,
    idempotency: Option<&Idempotency>,
    reply: Reply<T>,
    rebuild: impl FnOnce(&ProjectCore, StoredReply) -> Option<T>,
) -> Option<Reply<T>> {
    let Some(idempotency) = idempotency else {
        return Some(reply);
    };
    let in_wake = core.wakes.values().any(|wake| {
        wake.waiters
            .iter()
            .any(|w| w.idempotency().is_some_and(|i| i.key == idempotency.key))
    });
    if in_wake {
        core.answer(
            reply,
            Err(Error::Unavailable(format!(
                "a request with idempotency key {} is still in progress; retry shortly",
                quoted(idempotency.key.as_str())
            ))),
        );
        return None;
    }
    let (record, settlement) = match core.idempotency_record(&idempotency.key) {
        Ok(Some(found)) => found,
        Ok(None) => return Some(reply),
        Err(e) => {
            core.answer(reply, Err(e));
            return None;
        }
    };
    if record.fingerprint != idempotency.fingerprint {
        core.answer(
            reply,
            Err(Error::invalid(format!(
                "idempotency key {} was already used for a different request",
                quoted(idempotency.key.as_str())
            ))),
        );
        return None;
    }
    match rebuild(core, record.reply) {
        Some(value) => {
            let mut effects = Effects::new();
            effects.after_earlier = true;
            effects.unless_failed = settlement;
            effects.answer(reply, Ok(value));
            core.push(effects);
        }
        None => core.answer(
            reply,
            Err(Error::invalid(format!(
                "idempotency key {} was already used for another kind of request",
                quoted(idempotency.key.as_str())
            ))),
        ),
    }
    None
}

/// The mutations that go with a request's change, once it is decided:
/// `reply` recorded as the answer to its idempotency key, and its audit
/// event (naming a deployment it created). Both land in the change's own
/// submission, so neither exists without the change.
/// The audit write of a request that has no reply to remember (a cancel).
pub(super) fn audit(core: &ProjectCore, origin: &Origin) -> Option<Mutation> {
    audit_event(core, origin).map(Mutation::Audit)
}

/// The request's audit event, completed with this project's ids.
fn audit_event(core: &ProjectCore, origin: &Origin) -> Option<Box<AuditEvent>> {
    let mut event = origin.audit.clone()?;
    event.project_id = Some(core.project.id.clone());
    event.workspace_id = Some(core.project.workspace_id.clone());
    Some(event)
}

pub(super) fn record(core: &ProjectCore, origin: &Origin, reply: StoredReply) -> Vec<Mutation> {
    let mut writes = Vec::new();
    if let Some(mut event) = audit_event(core, origin) {
        if let StoredReply::Deployment { id, .. } = &reply
            && !event.ids.contains(&id.to_string())
        {
            event.ids.push(id.to_string());
        }
        writes.push(Mutation::Audit(event));
    }
    if let Some(idempotency) = &origin.idempotency {
        writes.push(Mutation::PutIdempotency {
            project_id: core.project.id.clone(),
            key: idempotency.key.clone(),
            record: IdempotencyRecord {
                fingerprint: idempotency.fingerprint,
                reply,
                expires_at: now_millis() + core.deps.config.idempotency_ttl_ms,
            },
        });
    }
    writes
}
