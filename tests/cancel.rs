//! Build slots, supersede and `CancelDeployment`, with the simulated
//! builder: at most `[builder] slots` builds at once with production first,
//! a queued build says so, a newer deployment of a branch cancels the older
//! one still building, a cancel stops a build or a rollout and what it
//! started, and `CANCELLED` never takes a route. Build output reaches
//! watchers live and stays readable (`GetBuildLog`).

mod common;

use std::time::Duration;

use common::*;
use deployd::pb;
use deployd::pb::DeploymentStatus;
use deployd::pb::watch_deployment_response::Event;
use tokio_stream::StreamExt;

const QUEUED: &str = "queued for a build slot";

/// `fast_config` with one build slot and branches whose builds take ten
/// minutes (in effect: until cancelled).
fn one_slot() -> deployd::Config {
    let mut config = fast_config();
    if let deployd::config::BuilderConfig::Simulated { slots, rules, .. } = &mut config.builder {
        *slots = 1;
        for branch in ["hold", "hold-too"] {
            rules.push(build_rule(Some(branch), None, Some(600_000), false));
        }
    }
    config
}

fn build_detail(d: &pb::Deployment) -> Option<&str> {
    d.steps
        .iter()
        .rev()
        .find(|s| s.name == "build" && s.finished_at.is_none())
        .map(|s| s.detail.as_str())
}

async fn wait_detail(daemon: &TestDaemon, id: &str, detail: &str) {
    eventually(
        &format!("the build step of {id} says {detail:?}"),
        Duration::from_secs(10),
        || async { (build_detail(&daemon.get(id).await) == Some(detail)).then_some(()) },
    )
    .await;
}

async fn cancel(daemon: &TestDaemon, id: &str) -> Result<pb::Deployment, tonic::Status> {
    daemon
        .deployments()
        .await
        .cancel_deployment(pb::CancelDeploymentRequest {
            deployment_id: id.into(),
        })
        .await
        .map(|r| r.into_inner().deployment.expect("deployment"))
}

fn cancelled() -> i32 {
    DeploymentStatus::Cancelled as i32
}

#[tokio::test]
async fn a_cancel_frees_the_slot_and_production_builds_first() {
    let daemon = TestDaemon::start_with(one_slot()).await;
    let project = daemon.project("acme", "web").await;

    let holding = daemon
        .create(git_request(&project.id, "preview", "hold", SHA_A))
        .await;
    daemon
        .wait_status(&holding, DeploymentStatus::Building)
        .await;
    let preview = daemon
        .create(git_request(&project.id, "preview", "hold-too", SHA_A))
        .await;
    wait_detail(&daemon, &preview, QUEUED).await;
    let production = daemon
        .create(git_request(&project.id, "production", "main", SHA_B))
        .await;
    wait_detail(&daemon, &production, QUEUED).await;

    // The running build holds the only slot; cancelling it gives the slot
    // to the production build, queued after the preview one.
    let answer = cancel(&daemon, &holding).await.expect("cancel");
    assert_eq!(answer.status, cancelled());
    assert!(answer.superseded_by.is_empty());
    daemon
        .wait_status(&production, DeploymentStatus::Ready)
        .await;
    daemon.wait_running(&production, 1).await;
    // Only then the preview build (which never ends by itself) gets it.
    wait_detail(&daemon, &preview, "building").await;
    let cancelled_preview = cancel(&daemon, &preview).await.expect("cancel");
    assert_eq!(cancelled_preview.status, cancelled());

    // Cancelling again answers the same; a READY deployment cannot be.
    let again = cancel(&daemon, &holding).await.expect("cancel again");
    assert_eq!(again.status, cancelled());
    assert_eq!(again.updated_at, answer.updated_at, "nothing changed");
    let refused = cancel(&daemon, &production).await.expect_err("READY");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("READY"), "{}", refused.message());
    let unknown = cancel(&daemon, "dep_0000000000000000")
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let malformed = cancel(&daemon, "nope").await.expect_err("malformed");
    assert_eq!(malformed.code(), tonic::Code::InvalidArgument);

    // Cancelled deployments have no route, run nowhere, and are listed
    // under their status.
    let routes = daemon.routes(&project.id).await;
    for id in [&holding, &preview] {
        assert!(
            routes.iter().all(|r| &r.deployment_id != id),
            "{id} took no route"
        );
        assert!(daemon.running(id).values().all(|n| *n == 0));
        let stored = daemon.get(id).await;
        assert_eq!(stored.desired_state, pb::DesiredState::Archived as i32);
        let build = stored
            .steps
            .iter()
            .find(|s| s.name == "build")
            .expect("build step");
        assert_eq!(build.error, "cancelled");
    }
    let listed = daemon
        .deployments()
        .await
        .list_deployments(pb::ListDeploymentsRequest {
            project_id: project.id.clone(),
            status: cancelled(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .deployments;
    let ids: Vec<_> = listed.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, [preview.as_str(), holding.as_str()]);
}

#[tokio::test]
async fn a_newer_deployment_of_the_branch_supersedes_the_building_one() {
    let daemon = TestDaemon::start_with(one_slot()).await;
    let project = daemon.project("acme", "web").await;

    let first = daemon
        .create(git_request(&project.id, "preview", "hold", SHA_A))
        .await;
    daemon.wait_status(&first, DeploymentStatus::Building).await;
    // Same branch, other environment: not the same line of work.
    let production = daemon
        .create(git_request(&project.id, "production", "hold", SHA_A))
        .await;
    wait_detail(&daemon, &production, QUEUED).await;
    let second = daemon
        .create(git_request(&project.id, "preview", "hold", SHA_B))
        .await;

    let superseded = daemon
        .wait_status(&first, DeploymentStatus::Cancelled)
        .await;
    assert_eq!(superseded.superseded_by, second);
    assert!(
        superseded.error_message.contains(&second),
        "{}",
        superseded.error_message
    );
    // The slot went to the production build, queued before `second`.
    wait_detail(&daemon, &production, "building").await;
    wait_detail(&daemon, &second, QUEUED).await;

    // A third one supersedes the queued second one as well.
    let third = daemon
        .create(git_request(&project.id, "preview", "hold", SHA_A))
        .await;
    let queued_superseded = daemon
        .wait_status(&second, DeploymentStatus::Cancelled)
        .await;
    assert_eq!(queued_superseded.superseded_by, third);
    assert_eq!(
        daemon.get(&production).await.status,
        DeploymentStatus::Building as i32
    );
    let routes = daemon.routes(&project.id).await;
    assert!(
        routes
            .iter()
            .all(|r| r.deployment_id != first && r.deployment_id != second)
    );
}

#[tokio::test]
async fn a_cancel_stops_a_rollout_and_scales_down_what_it_started() {
    let daemon = TestDaemon::start_with(config_with_stuck_region()).await;
    let project = daemon.project("acme", "web").await;
    daemon
        .set_regions(
            &project.id,
            "preview",
            &[("us-east-1", 2), (STUCK_REGION, 1)],
        )
        .await;
    let id = daemon
        .create(image_request(&project.id, "preview", "nginx:1.27"))
        .await;
    daemon.wait_status(&id, DeploymentStatus::Deploying).await;
    eventually(
        "us-east-1 runs the deployment",
        Duration::from_secs(10),
        || async { (daemon.running(&id).get("us-east-1") == Some(&2)).then_some(()) },
    )
    .await;

    let answer = cancel(&daemon, &id).await.expect("cancel");
    assert_eq!(answer.status, cancelled());
    let deploy = answer
        .steps
        .iter()
        .find(|s| s.name == "deploy")
        .expect("deploy step");
    assert_eq!(deploy.error, "cancelled");
    daemon.wait_running(&id, 0).await;
    daemon.assert_world_matches(&id).await;
    assert!(
        daemon
            .routes(&project.id)
            .await
            .iter()
            .all(|r| r.deployment_id != id)
    );

    // A watch of a cancelled deployment gets its snapshot and ends.
    let mut stream = daemon
        .deployments()
        .await
        .watch_deployment(pb::WatchDeploymentRequest {
            deployment_id: id.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    let mut events = Vec::new();
    while let Some(message) = stream.next().await {
        events.push(message.expect("event").event.expect("an event"));
    }
    assert!(matches!(&events[..], [Event::Snapshot(d)] if d.status == cancelled()));

    // After a restart it is still cancelled and still runs nowhere.
    let daemon = daemon.stop().await.start().await;
    assert_eq!(daemon.get(&id).await.status, cancelled());
    daemon.wait_running(&id, 0).await;
}

#[tokio::test]
async fn watchers_see_the_queue_and_the_build_output_which_stays_readable() {
    let daemon = TestDaemon::start_with(one_slot()).await;
    let project = daemon.project("acme", "web").await;
    let holding = daemon
        .create(git_request(&project.id, "preview", "hold", SHA_A))
        .await;
    daemon
        .wait_status(&holding, DeploymentStatus::Building)
        .await;
    let queued = daemon
        .create(git_request(&project.id, "production", "main", SHA_B))
        .await;

    let mut stream = daemon
        .deployments()
        .await
        .watch_deployment(pb::WatchDeploymentRequest {
            deployment_id: queued.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    let mut saw_queued = false;
    let mut cancelled_holder = false;
    let mut lines = Vec::new();
    let mut last_status = 0;
    while let Some(message) = stream.next().await {
        match message.expect("event").event.expect("an event") {
            Event::Snapshot(d) => {
                saw_queued |= build_detail(&d) == Some(QUEUED);
                last_status = d.status;
            }
            Event::Step(e) => saw_queued |= e.step.is_some_and(|s| s.detail == QUEUED),
            Event::Status(s) => last_status = s.status,
            Event::BuildLog(l) => lines.push(l.line),
        }
        if saw_queued && !cancelled_holder {
            cancel(&daemon, &holding).await.expect("cancel");
            cancelled_holder = true;
        }
    }
    assert!(saw_queued, "the watch said the build was queued");
    assert_eq!(last_status, DeploymentStatus::Ready as i32);
    let building = "building https://git.example.test/acme/web.git@".to_string() + SHA_B;
    assert_eq!(lines.first(), Some(&building), "{lines:?}");

    let log = daemon
        .deployments()
        .await
        .get_build_log(pb::GetBuildLogRequest {
            deployment_id: queued.clone(),
        })
        .await
        .expect("build log")
        .into_inner();
    assert_eq!(log.lines, lines);
    assert!(!log.truncated);

    // A long build's lines reach a watcher while it runs.
    let long = daemon
        .create(git_request(&project.id, "preview", "hold-too", SHA_A))
        .await;
    let mut stream = daemon
        .deployments()
        .await
        .watch_deployment(pb::WatchDeploymentRequest {
            deployment_id: long.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    let live = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let message = stream.next().await.expect("the watch goes on");
            if let Some(Event::BuildLog(l)) = message.expect("event").event {
                return l.line;
            }
        }
    })
    .await
    .expect("a build line arrives while the build runs");
    assert!(
        live.starts_with("step ") || live.starts_with("building "),
        "{live}"
    );
    cancel(&daemon, &long).await.expect("cancel");

    // An image deployment has no build log.
    let image = daemon
        .deploy_ready(&project.id, "preview", "nginx:1.27")
        .await;
    let none = daemon
        .deployments()
        .await
        .get_build_log(pb::GetBuildLogRequest {
            deployment_id: image,
        })
        .await
        .expect_err("no log");
    assert_eq!(none.code(), tonic::Code::NotFound);
}
