//! Decisions of `CancelDeployment` and of supersede.

use super::*;
use crate::actors::project::cancel;

fn git(branch: &str) -> NewDeployment {
    NewDeployment {
        source: Source::Git(GitSource {
            repository: "https://git.example.test/web.git".into(),
            commit_sha: "a".repeat(40),
            context_path: String::new(),
            dockerfile_path: String::new(),
        }),
        ..image("preview", branch)
    }
}

async fn cancel(h: &mut Harness, id: &DeploymentId) -> (Vec<Effects>, Result<Deployment, Error>) {
    let (reply, answer) = port();
    cancel::cancel(&mut h.core, id, &Origin::default(), reply);
    let effects = h.run().await;
    (effects, answer.await.unwrap())
}

#[tokio::test]
async fn a_cancel_stops_the_children_and_scales_down_what_was_started() {
    let mut h = Harness::new().await;
    let (id, _) = h.create(image("preview", "main")).await;
    let (effects, answer) = cancel(&mut h, &id).await;
    assert_eq!(effects.len(), 1, "one submission");
    assert_eq!(effects[0].stop_children, vec![id.clone()]);
    assert_eq!(driver_calls(&effects), both_regions(&id, false));
    assert_eq!(tracked(&effects), vec![id.clone()]);
    assert_eq!(answer.unwrap().status, DeploymentStatus::Cancelled);
    let stored = h.stored(&id);
    assert_eq!(stored.status, DeploymentStatus::Cancelled);
    assert_eq!(stored.desired_state, DesiredState::Archived);
    assert!(h.core.in_flight.is_empty());

    // Again: the same answer, nothing decided.
    let (effects, answer) = cancel(&mut h, &id).await;
    assert!(
        effects
            .iter()
            .all(|e| e.writes.is_empty() && e.drivers.is_empty())
    );
    assert_eq!(answer.unwrap().status, DeploymentStatus::Cancelled);
    // A READY deployment cannot be cancelled.
    let ready = h.deploy_ready("production", "main").await;
    let (effects, answer) = cancel(&mut h, &ready).await;
    assert!(effects.iter().all(|e| e.writes.is_empty()));
    assert!(
        matches!(answer, Err(Error::FailedPrecondition(_))),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_newer_build_of_the_branch_supersedes_the_older_one() {
    let mut h = Harness::new().await;
    let (older, effects) = h.create(git("feature")).await;
    assert!(effects.iter().any(|e| matches!(
        e.children.as_slice(),
        [Child::Build { deployment, .. }] if *deployment == older
    )));
    let (other_branch, _) = h.create(git("other")).await;
    let (newer, effects) = h.create(git("feature")).await;
    assert!(
        effects
            .iter()
            .any(|e| e.stop_children == vec![older.clone()])
    );
    let stored = h.stored(&older);
    assert_eq!(stored.status, DeploymentStatus::Cancelled);
    assert_eq!(stored.superseded_by, Some(newer.clone()));
    assert_eq!(h.stored(&other_branch).status, DeploymentStatus::Building);
    assert_eq!(h.stored(&newer).status, DeploymentStatus::Building);
}
