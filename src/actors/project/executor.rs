//! Runs a decision's [`Effects`], in one place and in one order: the writes
//! go to the store writer as one submission; only once that commit is
//! durable do the answers go out, the watchers hear of the stored
//! deployments, the drivers get their intents, and the actor is told to
//! start its children and arm its timers. A failed commit runs none of it:
//! callers get the error, and the actor rebuilds itself from the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ractor::ActorRef;

use crate::actors::Deps;
use crate::actors::project::core::ProjectCore;
use crate::actors::project::effects::Effects;
use crate::actors::project::messages::{AfterCommit, ProjectMsg};
use crate::actors::project::own_writes::Settlement;
use crate::error::Error;
use crate::io::store::{Completion, Mutation};

pub struct Executor {
    deps: Deps,
    myself: ActorRef<ProjectMsg>,
    /// This actor's submissions not yet settled: a switch may jump the
    /// writer's queue only when none is (its own changes stay in order).
    unsettled: Arc<AtomicUsize>,
}

impl Executor {
    pub fn new(deps: Deps, myself: ActorRef<ProjectMsg>) -> Self {
        Self {
            deps,
            myself,
            unsettled: Arc::default(),
        }
    }

    /// Runs `effects`. With nothing to store (and nothing to wait for),
    /// everything happens now and the actor's part is returned for the
    /// actor to do at once; otherwise it follows the commit, and the
    /// actor's part arrives as a [`ProjectMsg::Committed`].
    pub fn execute(&self, core: &mut ProjectCore, effects: Effects) -> Option<AfterCommit> {
        if !effects.needs_commit() {
            return Some(self.run_now(effects));
        }
        self.submit(core, effects);
        None
    }

    fn submit(&self, core: &mut ProjectCore, effects: Effects) {
        let Effects {
            writes,
            urgent,
            after_earlier: _,
            unless_failed,
            answers,
            drivers,
            children,
            timers,
            stop_children: _,
            follow_up,
            fail_point_after_commit,
            on_reject,
            observations,
            snapshots,
        } = effects;
        let mut after = AfterCommit {
            outcome: Ok(()),
            children,
            timers,
            follow_up,
            on_reject,
        };
        let settlement = Arc::new(Settlement::default());
        core.remember(&writes, &settlement);
        let deps = self.deps.clone();
        let myself = self.myself.clone();
        let unsettled = self.unsettled.clone();
        let urgent = urgent && unsettled.load(Ordering::Acquire) == 0;
        unsettled.fetch_add(1, Ordering::AcqRel);
        let completion: Completion = Box::new(move |result, mutations| {
            unsettled.fetch_sub(1, Ordering::AcqRel);
            settlement.settle(result.is_ok());
            if result.is_ok()
                && let Some(name) = fail_point_after_commit
            {
                deps.fail_point(name);
            }
            let answered = match (&result, &unless_failed) {
                (Ok(()), Some(original)) if original.failed() => Err(Error::Unavailable(
                    "the original request's change was not stored; retry".into(),
                )),
                _ => result.clone(),
            };
            for answer in answers {
                answer.send(&answered);
            }
            if result.is_ok() {
                for snapshot in &snapshots {
                    deps.events.publish(snapshot);
                }
                publish(&deps, &mutations);
                for observation in observations {
                    observation.record(&deps.metrics);
                }
                for intent in drivers {
                    deps.reconciler.apply(intent);
                }
            }
            let has_work = result.is_err()
                || !after.children.is_empty()
                || !after.timers.is_empty()
                || after.follow_up.is_some();
            if has_work {
                after.outcome = result;
                let _ = myself.cast(ProjectMsg::Committed(Box::new(after)));
            }
        });
        // With no writes (`after_earlier`), the empty submission still
        // settles after every earlier one: that is the point of it.
        if urgent {
            self.deps.store.submit_urgent(writes, completion);
        } else {
            self.deps.store.submit(writes, completion);
        }
    }

    fn run_now(&self, effects: Effects) -> AfterCommit {
        for snapshot in &effects.snapshots {
            self.deps.events.publish(snapshot);
        }
        for answer in effects.answers {
            answer.send(&Ok(()));
        }
        for intent in effects.drivers {
            self.deps.reconciler.apply(intent);
        }
        for observation in effects.observations {
            observation.record(&self.deps.metrics);
        }
        AfterCommit {
            outcome: Ok(()),
            children: effects.children,
            timers: effects.timers,
            follow_up: effects.follow_up,
            on_reject: effects.on_reject,
        }
    }
}

/// Watchers see a deployment only once it is stored.
fn publish(deps: &Deps, mutations: &[Mutation]) {
    for mutation in mutations {
        if let Mutation::PutDeployment(deployment) = mutation {
            deps.events.publish(deployment);
        }
    }
}
