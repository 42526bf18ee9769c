//! The project actor's decisions, without a daemon: each test drives the
//! state machine directly and asserts the effects a decision returns (what
//! it stores, the driver calls it asks for, the children it starts, the
//! answers it gives). The store is redb in memory; "running" an effect
//! here means committing its writes and sending its answers, as the
//! executor would after the commit.

use std::collections::BTreeMap;
use std::time::Duration;

use super::core::ProjectCore;
use super::effects::{Child, Effects};
use super::messages::{Created, NewDeployment, Reply};
use super::{deploy, domains, schedule, switch, wake};
use crate::actors::Deps;
use crate::actors::readiness::{RegionFailure, RegionOutcome};
use crate::config::{Config, RegionConfig};
use crate::error::Error;
use crate::io::store::{Mutation, Store, WriterThread};
use crate::model::names::Hostnames;
use crate::model::project::Project;
use crate::model::routes::fixed_hostnames;
use crate::model::{
    Deployment, DeploymentId, DeploymentStatus, DesiredState, GitSource, Idempotency,
    IdempotencyKey, Origin, RouteKind, Source, SwitchOutcome, Workspace, WorkspaceId,
};

struct Harness {
    core: ProjectCore,
    store: Store,
    _writer: WriterThread,
}

fn port<T>() -> (Reply<T>, tokio::sync::oneshot::Receiver<Result<T, Error>>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    (Reply::from(tx), rx)
}

fn config() -> Config {
    let region = || RegionConfig::Simulated {
        ready_after_ms: 0,
        never_ready: false,
        persist: false,
        serve_http: false,
    };
    Config {
        regions: BTreeMap::from([
            ("eu-central-1".to_string(), region()),
            ("us-east-1".to_string(), region()),
        ]),
        standby_delay_ms: 60_000,
        max_wake_waiters: 2,
        ..Config::default()
    }
}

fn image(env: &str, branch: &str) -> NewDeployment {
    NewDeployment {
        environment: env.into(),
        branch: branch.into(),
        source: Source::Image("nginx:1".into()),
        git_commit: None,
        command: Vec::new(),
        port: 8080,
    }
}

fn key(name: &str) -> Idempotency {
    Idempotency {
        key: IdempotencyKey::parse(name).unwrap(),
        fingerprint: 7,
    }
}

impl Harness {
    async fn new() -> Self {
        let (store, writer) = Store::in_memory().unwrap();
        let deps = Deps::new(config(), store.clone());
        let workspace = Workspace {
            id: WorkspaceId::generate(),
            slug: "acme".into(),
            name: "Acme".into(),
            created_at: 0,
        };
        let project = Project::new(&workspace, "web".into(), "Web".into(), 0);
        let names = Hostnames {
            apex: &deps.config.apex_domain,
            project_slug: "web",
            workspace_slug: "acme",
        };
        let reserve = fixed_hostnames(&project, names);
        // A submission's checks run before its writes: the workspace first.
        store
            .commit(vec![Mutation::CreateWorkspace(workspace)])
            .await
            .unwrap();
        store
            .commit(vec![Mutation::CreateProject {
                project: project.clone(),
                reserve,
            }])
            .await
            .unwrap();
        let core = ProjectCore::load(deps, &project.id).unwrap();
        Self {
            core,
            store,
            _writer: writer,
        }
    }

    /// Runs what was decided as the executor would after the commit:
    /// writes committed, answers sent. Returns the effects (answers gone)
    /// for the test to inspect.
    async fn run(&mut self) -> Vec<Effects> {
        let mut ran = Vec::new();
        for mut effects in self.core.take_effects() {
            let settlement = std::sync::Arc::default();
            self.core.remember(&effects.writes, &settlement);
            let result = if effects.writes.is_empty() {
                Ok(())
            } else {
                self.store.commit(effects.writes.clone()).await
            };
            settlement.settle(result.is_ok());
            for answer in std::mem::take(&mut effects.answers) {
                answer.send(&result);
            }
            ran.push(effects);
        }
        ran
    }

    async fn create(&mut self, request: NewDeployment) -> (DeploymentId, Vec<Effects>) {
        let (reply, answer) = port::<Created>();
        deploy::create(&mut self.core, request, Origin::default(), reply).unwrap();
        let effects = self.run().await;
        let created = answer.await.unwrap().unwrap();
        (created.id, effects)
    }

    /// Reports every readiness child in `effects` ready.
    async fn settle_regions(&mut self, effects: &[Effects]) -> Vec<Effects> {
        for (deployment, ticket, region) in watches(effects) {
            let outcome = RegionOutcome::Ready(Vec::new());
            if self.core.wakes.contains_key(&deployment) {
                wake::region_settled(&mut self.core, &deployment, ticket, &region, outcome);
            } else {
                deploy::region_settled(&mut self.core, &deployment, ticket, &region, outcome)
                    .unwrap();
            }
        }
        self.run().await
    }

    async fn deploy_ready(&mut self, env: &str, branch: &str) -> DeploymentId {
        let (id, effects) = self.create(image(env, branch)).await;
        self.settle_regions(&effects).await;
        assert_eq!(self.stored(&id).status, DeploymentStatus::Ready);
        id
    }

    fn stored(&self, id: &DeploymentId) -> crate::model::Deployment {
        self.store.deployment(id).unwrap().unwrap()
    }

    async fn rollback(
        &mut self,
        from: &DeploymentId,
        to: &DeploymentId,
    ) -> tokio::sync::oneshot::Receiver<Result<SwitchOutcome, Error>> {
        let (reply, answer) = port();
        switch::rollback(
            &mut self.core,
            from.clone(),
            to.clone(),
            Origin::default(),
            reply,
        );
        answer
    }

    async fn promote(
        &mut self,
        to: &DeploymentId,
    ) -> tokio::sync::oneshot::Receiver<Result<SwitchOutcome, Error>> {
        let (reply, answer) = port();
        switch::promote(&mut self.core, to.clone(), Origin::default(), reply);
        answer
    }

    /// Fires the schedule of `id` as its timer would.
    async fn fire_schedule(&mut self, id: &DeploymentId) -> Vec<Effects> {
        let generation = self.core.schedules.get(id).expect("scheduled").generation;
        schedule::due(&mut self.core, id, generation);
        self.run().await
    }
}

fn watches(effects: &[Effects]) -> Vec<(DeploymentId, u64, String)> {
    effects
        .iter()
        .flat_map(|e| &e.children)
        .filter_map(|child| match child {
            Child::Readiness {
                deployment,
                ticket,
                region,
                ..
            } => Some((deployment.clone(), *ticket, region.clone())),
            Child::Build { .. } => None,
        })
        .collect()
}

/// (deployment, running) of every region of every driver intent.
fn driver_calls(effects: &[Effects]) -> Vec<(DeploymentId, String, bool)> {
    effects
        .iter()
        .flat_map(|e| &e.drivers)
        .flat_map(|intent| {
            intent
                .regions
                .iter()
                .map(|(region, spec)| (intent.deployment_id.clone(), region.clone(), spec.running))
        })
        .collect()
}

fn tracked(effects: &[Effects]) -> Vec<DeploymentId> {
    effects
        .iter()
        .flat_map(|e| &e.writes)
        .filter_map(|m| match m {
            Mutation::TrackWorkload { deployment_id, .. } => Some(deployment_id.clone()),
            _ => None,
        })
        .collect()
}

/// The statuses of the deployments a submission stores.
fn stored_statuses(effects: &Effects) -> Vec<DeploymentStatus> {
    effects
        .writes
        .iter()
        .filter_map(|m| match m {
            Mutation::PutDeployment(d) => Some(d.status),
            _ => None,
        })
        .collect()
}

/// The statuses watchers hear of without their being stored.
fn snapshot_statuses(effects: &Effects) -> Vec<DeploymentStatus> {
    effects.snapshots.iter().map(|d| d.status).collect()
}

fn both_regions(id: &DeploymentId, running: bool) -> Vec<(DeploymentId, String, bool)> {
    vec![
        (id.clone(), "eu-central-1".into(), running),
        (id.clone(), "us-east-1".into(), running),
    ]
}

#[tokio::test]
async fn a_deploy_stores_its_creation_with_deploying_and_tells_the_drivers_after_that_commit() {
    let mut h = Harness::new().await;
    let (id, effects) = h.create(image("production", "main")).await;
    assert_eq!(
        effects.len(),
        1,
        "the creation and DEPLOYING, in one submission"
    );
    let created = &effects[0];
    // PENDING reaches watchers first; only DEPLOYING is stored, with the
    // project's next sequence number and the answer.
    assert_eq!(snapshot_statuses(created), [DeploymentStatus::Pending]);
    assert_eq!(stored_statuses(created), [DeploymentStatus::Deploying]);
    assert!(
        created
            .writes
            .iter()
            .any(|m| matches!(m, Mutation::PutProject(_)))
    );
    // The intent is stored with the decision, so a crash before the
    // drivers confirm is re-applied at start.
    assert_eq!(tracked(&effects), vec![id.clone()]);
    assert_eq!(driver_calls(&effects), both_regions(&id, true));
    assert_eq!(watches(&effects).len(), 2);
}

#[tokio::test]
async fn all_regions_ready_switches_every_route_and_the_live_pointer_in_one_submission() {
    let mut h = Harness::new().await;
    let (id, effects) = h.create(image("production", "main")).await;
    let settled = h.settle_regions(&effects).await;
    assert_eq!(
        settled.len(),
        1,
        "NETWORK and the switch, in one submission"
    );
    let switch = &settled[0];
    // NETWORK reaches watchers first; only READY is stored.
    assert_eq!(snapshot_statuses(switch), [DeploymentStatus::Network]);
    assert_eq!(stored_statuses(switch), [DeploymentStatus::Ready]);
    let kinds: Vec<_> = switch
        .writes
        .iter()
        .filter_map(|m| match m {
            Mutation::PutRoute(r) => Some(r.kind),
            _ => None,
        })
        .collect();
    // An image without commit metadata has no COMMIT route.
    assert_eq!(
        kinds,
        [
            RouteKind::Deployment,
            RouteKind::Branch,
            RouteKind::Environment,
            RouteKind::Live
        ]
    );
    assert!(
        switch
            .writes
            .iter()
            .any(|m| matches!(m, Mutation::PutProject(p) if p.live_id() == Some(&id)))
    );
    assert!(switch.drivers.is_empty(), "nothing to tell the drivers");
    assert_eq!(h.stored(&id).hostnames.len(), 2);
}

/// The regression the outside review found: a schedule that fell due
/// stored STANDBY and never scaled anything down.
#[tokio::test]
async fn a_due_standby_stores_the_decision_and_scales_every_region_down() {
    let mut h = Harness::new().await;
    let first = h.deploy_ready("production", "main").await;
    let second = h.deploy_ready("production", "main").await;
    assert!(h.core.schedules.contains_key(&first));
    let effects = h.fire_schedule(&first).await;
    assert_eq!(h.stored(&first).desired_state, DesiredState::Standby);
    assert_eq!(driver_calls(&effects), both_regions(&first, false));
    assert_eq!(tracked(&effects), vec![first.clone()]);
    assert!(
        effects[0]
            .writes
            .iter()
            .any(|m| matches!(m, Mutation::DeleteSchedule { .. }))
    );
    assert_eq!(h.stored(&second).desired_state, DesiredState::Running);
}

#[tokio::test]
async fn a_schedule_of_the_live_deployment_is_dropped_without_acting() {
    let mut h = Harness::new().await;
    let first = h.deploy_ready("production", "main").await;
    let _second = h.deploy_ready("production", "main").await;
    h.promote(&first).await;
    h.run().await;
    // `first` is live again; give it a schedule and fire it.
    let (write, _) = schedule::standby_later(&mut h.core, &first);
    let mut effects = Effects::new();
    effects.write(write);
    h.core.push(effects);
    h.run().await;
    let effects = h.fire_schedule(&first).await;
    assert!(driver_calls(&effects).is_empty());
    assert_eq!(h.stored(&first).desired_state, DesiredState::Running);
}

#[tokio::test]
async fn a_region_that_fails_fails_the_deployment_and_stops_what_was_started() {
    let mut h = Harness::new().await;
    let (id, effects) = h.create(image("production", "main")).await;
    let (_, ticket, region) = watches(&effects).remove(0);
    let failure = RegionFailure::Failed {
        region: region.clone(),
        reason: "container exited with code 3".into(),
    };
    deploy::region_settled(
        &mut h.core,
        &id,
        ticket,
        &region,
        RegionOutcome::Failed(failure),
    )
    .unwrap();
    let effects = h.run().await;
    assert_eq!(effects[0].stop_children, vec![id.clone()]);
    assert_eq!(driver_calls(&effects), both_regions(&id, false));
    let stored = h.stored(&id);
    assert_eq!(stored.status, DeploymentStatus::Failed);
    assert_eq!(stored.desired_state, DesiredState::Archived);
    assert!(stored.error_message.unwrap().contains("code 3"));
    assert!(
        !effects[0]
            .writes
            .iter()
            .any(|m| matches!(m, Mutation::PutRoute(_)))
    );
}

async fn standby_pair(h: &mut Harness) -> (DeploymentId, DeploymentId) {
    let first = h.deploy_ready("production", "main").await;
    let second = h.deploy_ready("production", "main").await;
    h.fire_schedule(&first).await;
    (first, second)
}

#[tokio::test]
async fn a_rollback_to_a_standby_target_wakes_it_then_switches() {
    let mut h = Harness::new().await;
    let (first, second) = standby_pair(&mut h).await;
    let mut answer = h.rollback(&second, &first).await;
    let woke = h.run().await;
    assert_eq!(driver_calls(&woke), both_regions(&first, true));
    assert_eq!(tracked(&woke), vec![first.clone()]);
    assert!(
        answer.try_recv().is_err(),
        "no answer before the target runs"
    );
    let switched = h.settle_regions(&woke).await;
    assert!(switched[0].urgent);
    let outcome = answer.await.unwrap().unwrap();
    assert_eq!(outcome.project.live_id(), Some(&first));
    assert!(outcome.project.is_rolled_back);
    assert_eq!(outcome.project.rolled_back_from, vec![second.clone()]);
    assert_eq!(h.stored(&first).desired_state, DesiredState::Running);
    assert!(
        driver_calls(&switched).is_empty(),
        "no scale-down after a switch"
    );
}

#[tokio::test]
async fn a_wake_refused_at_the_recheck_is_aborted_and_scaled_back_down() {
    let mut h = Harness::new().await;
    let (first, second) = standby_pair(&mut h).await;
    let third = h.deploy_ready("production", "main").await;
    // `third` took live; roll back to `second` would be fine, but the
    // rollback of `first` (from third) races a promote of `second`.
    let answer = h.rollback(&third, &first).await;
    let woke = h.run().await;
    let promoted = h.promote(&second).await;
    h.run().await;
    assert!(promoted.await.unwrap().is_ok());
    let settled = h.settle_regions(&woke).await;
    let error = answer.await.unwrap().unwrap_err();
    assert!(matches!(error, Error::Aborted(_)), "{error:?}");
    assert_eq!(driver_calls(&settled), both_regions(&first, false));
    assert_eq!(h.stored(&first).desired_state, DesiredState::Standby);
}

#[tokio::test]
async fn a_failed_wake_answers_failed_precondition_and_scales_back_down() {
    let mut h = Harness::new().await;
    let (first, second) = standby_pair(&mut h).await;
    let answer = h.rollback(&second, &first).await;
    let woke = h.run().await;
    let (_, ticket, region) = watches(&woke).remove(0);
    let failure = RegionFailure::TimedOut {
        region: region.clone(),
        replicas: 1,
        after: Duration::from_secs(1),
        last_error: None,
    };
    wake::region_settled(
        &mut h.core,
        &first,
        ticket,
        &region,
        RegionOutcome::Failed(failure),
    );
    let effects = h.run().await;
    let error = answer.await.unwrap().unwrap_err();
    assert!(matches!(error, Error::FailedPrecondition(_)), "{error:?}");
    assert!(
        effects
            .iter()
            .any(|e| e.stop_children == vec![first.clone()])
    );
    assert_eq!(driver_calls(&effects), both_regions(&first, false));
    assert_eq!(h.core.project().live_id(), Some(&second));
}

#[tokio::test]
async fn waiters_are_bounded_and_one_that_went_away_is_dropped() {
    let mut h = Harness::new().await;
    let (first, second) = standby_pair(&mut h).await;
    let gone = h.rollback(&second, &first).await;
    let woke = h.run().await;
    let waiting = h.promote(&first).await;
    h.run().await;
    // max_wake_waiters is 2 in this config.
    let refused = h.promote(&first).await;
    h.run().await;
    assert!(matches!(
        refused.await.unwrap(),
        Err(Error::ResourceExhausted(_))
    ));
    drop(gone);
    drop(waiting);
    let settled = h.settle_regions(&woke).await;
    assert_eq!(
        h.core.project().live_id(),
        Some(&second),
        "nobody left to switch for"
    );
    assert_eq!(driver_calls(&settled), both_regions(&first, false));
}

#[tokio::test]
async fn confirming_a_rollback_schedules_the_deployment_rolled_back_from() {
    let mut h = Harness::new().await;
    let first = h.deploy_ready("production", "main").await;
    let second = h.deploy_ready("production", "main").await;
    h.rollback(&second, &first).await;
    h.run().await;
    h.core.schedules.clear();
    let answer = h.promote(&first).await;
    let effects = h.run().await;
    let outcome = answer.await.unwrap().unwrap();
    assert!(!outcome.project.is_rolled_back);
    assert!(outcome.project.rolled_back_from.is_empty());
    assert!(h.core.schedules.contains_key(&second));
    assert!(effects[0].writes.iter().any(
        |m| matches!(m, Mutation::PutSchedule { change, .. } if change.deployment_id == second)
    ));
    assert_eq!(effects[0].timers.len(), 1);
}

#[tokio::test]
async fn a_preview_deployment_that_lost_every_sticky_route_is_scheduled() {
    let mut h = Harness::new().await;
    let feature = h.deploy_ready("preview", "feature").await;
    let other = h.deploy_ready("preview", "other").await;
    // `feature` lost ENVIRONMENT but keeps its BRANCH route.
    assert!(!h.core.schedules.contains_key(&feature));
    let newer = h.deploy_ready("preview", "feature").await;
    assert!(h.core.schedules.contains_key(&feature), "lost BRANCH too");
    // `other` lost ENVIRONMENT to `newer` but keeps BRANCH `other`.
    assert!(!h.core.schedules.contains_key(&other));
    assert!(!h.core.schedules.contains_key(&newer));
}

#[tokio::test]
async fn a_replay_from_an_unsettled_write_waits_for_it_and_checks_it_landed() {
    let mut h = Harness::new().await;
    let (reply, _first) = port::<Created>();
    deploy::create(
        &mut h.core,
        image("production", "main"),
        Origin::keyed(key("k")),
        reply,
    )
    .unwrap();
    let decided = h.core.take_effects();
    let settlement = std::sync::Arc::default();
    h.core.remember(&decided[0].writes, &settlement);
    let (reply, _retry) = port::<Created>();
    deploy::create(
        &mut h.core,
        image("production", "main"),
        Origin::keyed(key("k")),
        reply,
    )
    .unwrap();
    let replay = h.core.take_effects();
    assert_eq!(
        replay.len(),
        1,
        "answered from the unsettled write, nothing new"
    );
    assert!(replay[0].after_earlier && replay[0].writes.is_empty());
    let carried = replay[0]
        .unless_failed
        .as_ref()
        .expect("checks the original");
    assert!(std::sync::Arc::ptr_eq(carried, &settlement));
    // Once the original is known to have failed, a retry runs anew.
    settlement.settle(false);
    let (reply, _again) = port::<Created>();
    deploy::create(
        &mut h.core,
        image("production", "main"),
        Origin::keyed(key("k")),
        reply,
    )
    .unwrap();
    assert!(h.core.take_effects().iter().any(|e| !e.writes.is_empty()));
}

#[tokio::test]
async fn a_deploy_beyond_the_unfinished_bound_is_refused() {
    let mut h = Harness::new().await;
    let limit = h.core.deps.config.max_unfinished_per_project;
    for _ in 0..limit {
        h.create(image("preview", "main")).await;
    }
    let (reply, answer) = port::<Created>();
    deploy::create(
        &mut h.core,
        image("preview", "main"),
        Origin::default(),
        reply,
    )
    .unwrap();
    let effects = h.run().await;
    assert!(effects.iter().all(|e| e.writes.is_empty()));
    assert!(matches!(
        answer.await.unwrap(),
        Err(Error::ResourceExhausted(_))
    ));
}

/// A schedule whose deployment cannot be read is kept and tried again; it
/// used to be deleted with only a log line.
#[cfg(feature = "fail-points")]
#[tokio::test]
async fn a_schedule_whose_deployment_cannot_be_read_is_kept_and_retried() {
    let mut h = Harness::new().await;
    let first = h.deploy_ready("production", "main").await;
    let _second = h.deploy_ready("production", "main").await;
    h.store
        .overwrite_deployment_bytes(&first, &[0xff, 1, 2])
        .unwrap();
    let effects = h.fire_schedule(&first).await;
    assert!(
        effects.iter().all(|e| e.writes.is_empty()),
        "nothing deleted"
    );
    assert!(driver_calls(&effects).is_empty());
    let retry = effects
        .iter()
        .flat_map(|e| &e.timers)
        .next()
        .expect("a retry timer");
    assert_eq!(retry.deployment, first);
    let armed = h.core.schedules.get(&first).expect("still scheduled");
    assert_eq!(armed.generation, retry.generation);
}

mod cancel_decisions;
mod domain_decisions;
