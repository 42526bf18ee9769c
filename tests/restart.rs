//! Stop the daemon, start it on the same file: everything acknowledged is
//! there, unfinished deployments finish, and scheduled changes fire (at once
//! if they fell due while the daemon was down).

mod common;

use std::time::Duration;

use common::*;
use deployd::io::store::Mutation;
use deployd::model::{DeploymentId, ProjectId, ScheduledAction, ScheduledChange, now_millis};
use deployd::pb::{self, DeploymentStatus, DesiredState};

#[tokio::test]
async fn state_survives_a_restart() {
    // An attached custom domain (and its route) without a DNS server; a
    // verified one's restart is in tests/domains.rs.
    let daemon = TestDaemon::start_with(config_without_domain_verification()).await;
    let project = daemon.project("acme", "web").await;
    let (old, live) = daemon.two_production_deploys(&project.id).await;
    daemon.deploy_ready(&project.id, "preview", "nginx:3").await;
    daemon
        .projects()
        .await
        .add_custom_domain(pb::AddCustomDomainRequest {
            project_id: project.id.clone(),
            fqdn: "www.example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    daemon.rollback(&live, &old).await.unwrap();

    let project_before = daemon.get_project(&project.id).await;
    let deployments_before = daemon.list(&project.id).await;
    let routes_before = daemon.routes(&project.id).await;
    let workspace_before = daemon
        .workspaces()
        .await
        .get_workspace(pb::GetWorkspaceRequest {
            workspace_id: project.workspace_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();

    let daemon = daemon.stop().await.start().await;

    let project_after = daemon.get_project(&project.id).await;
    assert_eq!(project_after, project_before);
    assert_eq!(project_after.live_deployment_id, old);
    assert!(project_after.is_rolled_back);
    assert_eq!(daemon.list(&project.id).await, deployments_before);
    assert_eq!(daemon.routes(&project.id).await, routes_before);
    let workspace_after = daemon
        .workspaces()
        .await
        .get_workspace(pb::GetWorkspaceRequest {
            workspace_id: project.workspace_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(workspace_after, workspace_before);
    // The restarted daemon still knows the flag: deploys do not take LIVE.
    daemon
        .deploy_ready(&project.id, "production", "nginx:4")
        .await;
    assert_eq!(
        daemon.get_project(&project.id).await.live_deployment_id,
        old
    );
}

#[tokio::test]
async fn a_schedule_that_fell_due_while_down_fires_right_after_start() {
    let mut config = fast_config();
    config.standby_delay_ms = 500;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let (first, _) = daemon.two_production_deploys(&project.id).await;
    let stopped = daemon.stop().await;

    let mut store_schedules = read_schedules(&stopped, &project.id).await;
    assert_eq!(store_schedules.len(), 1, "the schedule is on disk");
    let schedule = store_schedules.remove(0);
    assert_eq!(schedule.deployment_id.as_str(), first);

    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut config = stopped.config.clone();
    config.standby_delay_ms = 60_000;
    let daemon = stopped.start_with(config).await;
    eventually("first goes to standby", Duration::from_secs(5), || async {
        (daemon.get(&first).await.desired_state == DesiredState::Standby as i32).then_some(())
    })
    .await;
    daemon.wait_running(&first, 0).await;
}

#[tokio::test]
async fn a_pending_schedule_survives_a_restart() {
    let mut config = fast_config();
    config.standby_delay_ms = 1_500;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let (first, _) = daemon.two_production_deploys(&project.id).await;
    let daemon = daemon.stop().await.start().await;
    assert_eq!(
        daemon.get(&first).await.desired_state,
        DesiredState::Running as i32
    );
    eventually("first goes to standby", Duration::from_secs(10), || async {
        (daemon.get(&first).await.desired_state == DesiredState::Standby as i32).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_unfinished_deployment_finishes_after_a_restart() {
    let mut config = fast_config();
    config.builder = deployd::config::BuilderConfig::Simulated {
        slots: 4,
        duration_ms: 10,
        registry: "registry.test".into(),
        rules: vec![build_rule(Some("release"), None, Some(800), false)],
    };
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let id = daemon
        .create(git_request(&project.id, "production", "release", SHA_A))
        .await;
    daemon.wait_status(&id, DeploymentStatus::Building).await;
    let daemon = daemon.stop().await.start().await;
    let ready = daemon.wait_status(&id, DeploymentStatus::Ready).await;
    assert_eq!(daemon.get_project(&project.id).await.live_deployment_id, id);
    assert_eq!(ready.steps.iter().filter(|s| s.name == "build").count(), 1);
    assert!(daemon.wait_running(&id, 1).await.values().all(|r| *r == 1));
}

/// A scheduled change that falls due on the live deployment does nothing
/// and is dropped. No API path leaves a schedule on the live deployment, so
/// the test writes one into the file directly.
#[tokio::test]
async fn a_schedule_never_touches_the_live_deployment() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let live = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    let stopped = daemon.stop().await;

    let project_id = ProjectId::parse(&project.id, "project").unwrap();
    let deployment_id = DeploymentId::parse(&live, "deployment").unwrap();
    stopped
        .write_offline(vec![Mutation::PutSchedule {
            project_id: project_id.clone(),
            change: ScheduledChange {
                deployment_id,
                action: ScheduledAction::Standby,
                due_at: now_millis(),
            },
        }])
        .await;

    let daemon = stopped.start().await;
    // The due schedule fires as the project actor starts; a deploy through
    // the same mailbox afterwards gives it ample time to have run.
    daemon.deploy_ready(&project.id, "preview", "nginx:2").await;
    assert_eq!(
        daemon.get(&live).await.desired_state,
        DesiredState::Running as i32
    );
    let stopped = daemon.stop().await;
    assert!(read_schedules(&stopped, &project.id).await.is_empty());
}

async fn read_schedules(stopped: &StoppedDaemon, project: &str) -> Vec<ScheduledChange> {
    let id = ProjectId::parse(project, "project").unwrap();
    stopped
        .with_store(async |store| store.project_snapshot(&id).unwrap().schedules)
        .await
}
