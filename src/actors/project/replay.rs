//! Idempotent requests: before a keyed mutation runs, its key is looked up
//! among this actor's not yet settled submissions, the wakes in progress
//! and the store. A known key with the same request gets the stored answer
//! (sent only after every earlier submission has settled, so it is never
//! acknowledged before the original commit); a known key with another
//! request is refused.

use crate::actors::project::messages::Reply;
use crate::actors::project::state::{PendingSwitch, ProjectState};
use crate::error::Error;
use crate::io::store::Mutation;
use crate::model::{Idempotency, IdempotencyRecord, StoredReply, now_millis};

/// Looks `idempotency` up. A new key (or none) hands `reply` back: run the
/// request. A known key answers `reply` here, with `pick` applied to the
/// stored answer, and returns `None`.
pub fn check<T: Send + 'static>(
    state: &mut ProjectState,
    idempotency: Option<&Idempotency>,
    reply: Reply<T>,
    pick: impl FnOnce(StoredReply) -> Option<T>,
) -> Option<Reply<T>> {
    let Some(idempotency) = idempotency else {
        return Some(reply);
    };
    let in_wake = state.wakes.values().any(|wake| {
        wake.waiters
            .iter()
            .any(|w| w.idempotency().is_some_and(|i| i.key == idempotency.key))
    });
    if in_wake {
        let _ = reply.send(Err(Error::Unavailable(format!(
            "a request with idempotency key {:?} is still in progress; retry shortly",
            idempotency.key.as_str()
        ))));
        return None;
    }
    let record = match state.idempotency_record(&idempotency.key) {
        Ok(record) => record,
        Err(e) => {
            let _ = reply.send(Err(e));
            return None;
        }
    };
    let Some(record) = record else {
        return Some(reply);
    };
    if record.fingerprint != idempotency.fingerprint {
        let _ = reply.send(Err(Error::invalid(format!(
            "idempotency key {:?} was already used for a different request",
            idempotency.key.as_str()
        ))));
        return None;
    }
    match pick(record.reply) {
        // An empty submission settles after every earlier one, including
        // the one that stored the original answer.
        Some(value) => state.submit_and_reply(Vec::new(), reply, value),
        None => {
            let _ = reply.send(Err(Error::invalid(format!(
                "idempotency key {:?} was already used for another kind of request",
                idempotency.key.as_str()
            ))));
        }
    }
    None
}

/// The mutation that records `reply` as the answer for `idempotency`.
pub fn record(
    state: &ProjectState,
    idempotency: Option<&Idempotency>,
    reply: StoredReply,
) -> Option<Mutation> {
    let idempotency = idempotency?;
    Some(Mutation::PutIdempotency {
        project_id: state.project.id.clone(),
        key: idempotency.key.clone(),
        record: IdempotencyRecord {
            fingerprint: idempotency.fingerprint,
            reply,
            expires_at: now_millis() + state.deps.config.idempotency_ttl_ms,
        },
    })
}

impl PendingSwitch {
    pub fn idempotency(&self) -> Option<&Idempotency> {
        match self {
            PendingSwitch::Rollback { idempotency, .. }
            | PendingSwitch::Promote { idempotency, .. } => idempotency.as_ref(),
        }
    }
}
