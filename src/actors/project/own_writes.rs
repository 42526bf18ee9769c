//! What this actor has written but the store may not hold yet: reads during
//! a commit window must see the actor's own writes. Only this actor writes
//! its project's deployments and idempotency records, so an entry here is
//! never older than the store's; it is dropped once the submission that
//! carries it has settled.

use std::collections::HashMap;

use crate::io::store::Mutation;
use crate::model::{Deployment, DeploymentId, IdempotencyKey, IdempotencyRecord};

#[derive(Default)]
pub struct OwnWrites {
    /// Terminal deployments only: unfinished ones live in `in_flight`.
    deployments: HashMap<DeploymentId, (u64, Deployment)>,
    keys: HashMap<IdempotencyKey, (u64, IdempotencyRecord)>,
}

/// The part of a submission worth remembering, taken before the mutations
/// are handed to the writer (which assigns the submission's id).
pub struct Pending {
    deployments: Vec<Deployment>,
    keys: Vec<(IdempotencyKey, IdempotencyRecord)>,
}

impl Pending {
    pub fn of(mutations: &[Mutation]) -> Self {
        let mut pending = Self {
            deployments: Vec::new(),
            keys: Vec::new(),
        };
        for mutation in mutations {
            match mutation {
                Mutation::PutDeployment(d) if d.status.is_terminal() => {
                    pending.deployments.push(d.clone());
                }
                Mutation::PutIdempotency { key, record, .. } => {
                    pending.keys.push((key.clone(), record.clone()));
                }
                _ => {}
            }
        }
        pending
    }
}

impl OwnWrites {
    /// Forgets what submissions up to `settled` carried, then remembers
    /// what submission `id` carries.
    pub fn add(&mut self, id: u64, pending: Pending, settled: u64) {
        self.deployments
            .retain(|_, (submission, _)| *submission > settled);
        self.keys.retain(|_, (submission, _)| *submission > settled);
        for deployment in pending.deployments {
            self.deployments
                .insert(deployment.id.clone(), (id, deployment));
        }
        for (key, record) in pending.keys {
            self.keys.insert(key, (id, record));
        }
    }

    pub fn deployment(&self, id: &DeploymentId) -> Option<&Deployment> {
        self.deployments.get(id).map(|(_, d)| d)
    }

    pub fn key(&self, key: &IdempotencyKey) -> Option<&IdempotencyRecord> {
        self.keys.get(key).map(|(_, r)| r)
    }
}
