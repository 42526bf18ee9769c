//! What this actor has written but the store may not hold yet: reads during
//! a commit window must see the actor's own writes. Only this actor writes
//! its project's deployments, routes and idempotency records, so an entry
//! here is never older than the store's. Each entry shares the
//! [`Settlement`] of the submission that carries it: once that submission
//! committed the store has the value and the entry can go; if it failed,
//! the value never existed and reads must not see it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::io::store::Mutation;
use crate::model::{Deployment, DeploymentId, IdempotencyKey, IdempotencyRecord, Route, RouteKind};

/// How one submission ended, set by its completion.
#[derive(Debug, Default)]
pub struct Settlement(AtomicU8);

const PENDING: u8 = 0;
const COMMITTED: u8 = 1;
const FAILED: u8 = 2;

impl Settlement {
    pub fn settle(&self, committed: bool) {
        self.0.store(
            if committed { COMMITTED } else { FAILED },
            Ordering::Release,
        );
    }

    pub fn is_pending(&self) -> bool {
        self.0.load(Ordering::Acquire) == PENDING
    }

    pub fn failed(&self) -> bool {
        self.0.load(Ordering::Acquire) == FAILED
    }
}

struct Entry<T> {
    value: T,
    settlement: Arc<Settlement>,
}

#[derive(Default)]
pub struct OwnWrites {
    /// Terminal deployments only: unfinished ones live in `in_flight`.
    deployments: HashMap<DeploymentId, Entry<Deployment>>,
    /// Per-push routes; the fixed ones live in the actor's memory.
    routes: HashMap<String, Entry<Route>>,
    keys: HashMap<IdempotencyKey, Entry<IdempotencyRecord>>,
}

impl OwnWrites {
    /// Forgets what settled submissions carried, then remembers what
    /// `mutations` carry until `settlement` is settled.
    pub fn add(&mut self, mutations: &[Mutation], settlement: &Arc<Settlement>) {
        self.deployments.retain(|_, e| e.settlement.is_pending());
        self.routes.retain(|_, e| e.settlement.is_pending());
        self.keys.retain(|_, e| e.settlement.is_pending());
        for mutation in mutations {
            match mutation {
                Mutation::PutDeployment(d) if d.status.is_terminal() => {
                    let entry = Entry {
                        value: d.clone(),
                        settlement: settlement.clone(),
                    };
                    self.deployments.insert(d.id.clone(), entry);
                }
                Mutation::PutRoute(route)
                    if matches!(
                        route.kind,
                        RouteKind::Deployment | RouteKind::Commit | RouteKind::Branch
                    ) =>
                {
                    let entry = Entry {
                        value: route.clone(),
                        settlement: settlement.clone(),
                    };
                    self.routes.insert(route.fqdn.clone(), entry);
                }
                Mutation::PutIdempotency { key, record, .. } => {
                    let entry = Entry {
                        value: record.clone(),
                        settlement: settlement.clone(),
                    };
                    self.keys.insert(key.clone(), entry);
                }
                _ => {}
            }
        }
    }

    pub fn deployment(&self, id: &DeploymentId) -> Option<&Deployment> {
        self.deployments
            .get(id)
            .filter(|e| !e.settlement.failed())
            .map(|e| &e.value)
    }

    pub fn route(&self, fqdn: &str) -> Option<&Route> {
        self.routes
            .get(fqdn)
            .filter(|e| !e.settlement.failed())
            .map(|e| &e.value)
    }

    /// The record of a key and the settlement of the submission carrying
    /// it, which a replay must check before answering from it.
    pub fn key(&self, key: &IdempotencyKey) -> Option<(&IdempotencyRecord, Arc<Settlement>)> {
        self.keys
            .get(key)
            .filter(|e| !e.settlement.failed())
            .map(|e| (&e.value, e.settlement.clone()))
    }
}
