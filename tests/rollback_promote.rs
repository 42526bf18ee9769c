//! Rollback and promote over gRPC: every precondition and its error code,
//! the atomic switch, the rolled-back flag and how deploys respect it, and
//! waking a `STANDBY` target.

mod common;

use common::*;
use deployd::pb::{DeploymentStatus, DesiredState, RouteKind};
use tonic::Code;

/// A project with two READY production deployments: `old` (sequence 1) and
/// `live` (sequence 2, the live one).
async fn two_live_deploys(daemon: &TestDaemon) -> (String, String, String) {
    let project = daemon.project("acme", "web").await;
    let (old, live) = daemon.two_production_deploys(&project.id).await;
    (project.id, old, live)
}

/// The LIVE and ENVIRONMENT routes of production.
fn sticky_targets(routes: &[deployd::pb::Route]) -> Vec<(i32, String)> {
    routes
        .iter()
        .filter(|r| r.environment_slug == "production")
        .filter(|r| r.kind == RouteKind::Live as i32 || r.kind == RouteKind::Environment as i32)
        .map(|r| (r.kind, r.deployment_id.clone()))
        .collect()
}

#[tokio::test]
async fn rollback_moves_live_and_environment_routes_and_sets_the_flag() {
    // The custom domain is attached at once (its verification is
    // tests/domains.rs): a rollback moves its LIVE route too.
    let daemon = TestDaemon::start_with(config_without_domain_verification()).await;
    let (project, old, live) = two_live_deploys(&daemon).await;
    daemon
        .projects()
        .await
        .add_custom_domain(deployd::pb::AddCustomDomainRequest {
            project_id: project.clone(),
            fqdn: "www.example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let response = daemon.rollback(&live, &old).await.unwrap();
    let project_after = response.project.unwrap();
    assert_eq!(project_after.live_deployment_id, old);
    assert!(project_after.is_rolled_back);
    assert_eq!(response.routes.len(), 3, "live, custom domain, environment");

    let routes = daemon.routes(&project).await;
    let sticky = sticky_targets(&routes);
    assert_eq!(sticky.len(), 3);
    assert!(sticky.iter().all(|(_, d)| *d == old), "{sticky:?}");
    // Branch, commit and deployment hostnames stay where they were.
    let branch = routes_of_kind(&routes, RouteKind::Branch);
    assert_eq!(branch[0].deployment_id, live);
    let stored = daemon.get_project(&project).await;
    assert_eq!(stored.live_deployment_id, old);
    assert!(stored.is_rolled_back);
    // Both keep running: the target serves, the source stays warm for a
    // roll forward.
    daemon.assert_world_matches(&old).await;
    daemon.assert_world_matches(&live).await;
    assert!(daemon.running(&old).values().all(|r| *r == 1));
    assert!(daemon.running(&live).values().all(|r| *r == 1));
}

#[tokio::test]
async fn rollback_preconditions() {
    let daemon = TestDaemon::start().await;
    let (project, old, live) = two_live_deploys(&daemon).await;
    let preview = daemon.deploy_ready(&project, "preview", "nginx:3").await;
    let failed = daemon.failed_deploy(&project).await;
    let other_project = daemon.project("other", "api").await;
    let foreign = daemon
        .deploy_ready(&other_project.id, "production", "nginx:1")
        .await;
    let unknown = "dep_0000000000000000";

    let cases: Vec<(&str, &str, &str, Code)> = vec![
        ("empty source", "", &old, Code::InvalidArgument),
        ("empty target", &live, "", Code::InvalidArgument),
        ("source equals target", &live, &live, Code::InvalidArgument),
        ("malformed id", "dep_NOT-AN-ID", &old, Code::InvalidArgument),
        ("unknown source", unknown, &old, Code::NotFound),
        ("unknown target", &live, unknown, Code::NotFound),
        (
            "different projects",
            &live,
            &foreign,
            Code::FailedPrecondition,
        ),
        (
            "different environments",
            &live,
            &preview,
            Code::FailedPrecondition,
        ),
        ("source is not live", &old, &live, Code::FailedPrecondition),
        (
            "target is not READY",
            &live,
            &failed,
            Code::FailedPrecondition,
        ),
    ];
    let routes_before = route_map(&daemon.routes(&project).await);
    for (name, source, target, code) in cases {
        let error = daemon.rollback(source, target).await.expect_err(name);
        assert_eq!(error.code(), code, "{name}: {}", error.message());
        assert!(!error.message().is_empty());
    }
    // None of them changed anything.
    assert_eq!(route_map(&daemon.routes(&project).await), routes_before);
    let stored = daemon.get_project(&project).await;
    assert_eq!(stored.live_deployment_id, live);
    assert!(!stored.is_rolled_back);
}

#[tokio::test]
async fn a_rolled_back_project_keeps_live_until_promote() {
    let daemon = TestDaemon::start().await;
    let (project, old, live) = two_live_deploys(&daemon).await;
    daemon.rollback(&live, &old).await.unwrap();

    // A deploy while rolled back takes ENVIRONMENT and BRANCH, not LIVE.
    let next = daemon.deploy_ready(&project, "production", "nginx:3").await;
    let routes = daemon.routes(&project).await;
    assert_eq!(
        routes_of_kind(&routes, RouteKind::Live)[0].deployment_id,
        old
    );
    assert_eq!(
        routes_of_kind(&routes, RouteKind::Environment)[0].deployment_id,
        next
    );
    assert_eq!(
        routes_of_kind(&routes, RouteKind::Branch)[0].deployment_id,
        next
    );
    let stored = daemon.get_project(&project).await;
    assert_eq!(stored.live_deployment_id, old);
    assert!(stored.is_rolled_back);

    // Promote ends the rollback; later deploys take LIVE again.
    let promoted = daemon.promote(&next).await.unwrap();
    assert!(!promoted.project.as_ref().unwrap().is_rolled_back);
    assert_eq!(promoted.project.unwrap().live_deployment_id, next);
    let latest = daemon.deploy_ready(&project, "production", "nginx:4").await;
    let routes = daemon.routes(&project).await;
    assert_eq!(
        routes_of_kind(&routes, RouteKind::Live)[0].deployment_id,
        latest
    );
    assert_eq!(
        daemon.get_project(&project).await.live_deployment_id,
        latest
    );
}

/// The rolled-back flag is read when routes switch, not when the deploy
/// started: a rollback that lands during a build is respected by it.
#[tokio::test]
async fn a_rollback_during_a_build_is_respected_by_that_deploy() {
    let mut config = fast_config();
    config.builder = deployd::config::BuilderConfig::Simulated {
        slots: 4,
        duration_ms: 10,
        registry: "registry.test".into(),
        rules: vec![build_rule(Some("release"), None, Some(500), false)],
    };
    let daemon = TestDaemon::start_with(config).await;
    let (project, old, live) = two_live_deploys(&daemon).await;
    let building = daemon
        .create(git_request(&project, "production", "release", SHA_B))
        .await;
    daemon
        .wait_status(&building, DeploymentStatus::Building)
        .await;
    daemon.rollback(&live, &old).await.unwrap();
    daemon.wait_status(&building, DeploymentStatus::Ready).await;
    let routes = daemon.routes(&project).await;
    assert_eq!(
        routes_of_kind(&routes, RouteKind::Live)[0].deployment_id,
        old
    );
    assert_eq!(daemon.get_project(&project).await.live_deployment_id, old);
}

#[tokio::test]
async fn promote_preconditions() {
    let daemon = TestDaemon::start().await;
    let (project, old, live) = two_live_deploys(&daemon).await;
    let preview = daemon.deploy_ready(&project, "preview", "nginx:3").await;
    let failed = daemon.failed_deploy(&project).await;

    let cases: Vec<(&str, &str, Code)> = vec![
        ("empty id", "", Code::InvalidArgument),
        (
            "malformed id",
            "prj_0000000000000000",
            Code::InvalidArgument,
        ),
        ("unknown target", "dep_0000000000000000", Code::NotFound),
        ("target is not READY", &failed, Code::FailedPrecondition),
        ("not production", &preview, Code::FailedPrecondition),
        (
            "already live, not rolled back",
            &live,
            Code::FailedPrecondition,
        ),
    ];
    let routes_before = route_map(&daemon.routes(&project).await);
    for (name, target, code) in cases {
        let error = daemon.promote(target).await.expect_err(name);
        assert_eq!(error.code(), code, "{name}: {}", error.message());
    }
    assert_eq!(route_map(&daemon.routes(&project).await), routes_before);

    // And the happy path: promote the older deployment.
    let response = daemon.promote(&old).await.unwrap();
    assert_eq!(response.project.unwrap().live_deployment_id, old);
    let sticky = sticky_targets(&daemon.routes(&project).await);
    assert!(sticky.iter().all(|(_, d)| *d == old), "{sticky:?}");
}

#[tokio::test]
async fn promoting_the_live_deployment_of_a_rolled_back_project_confirms_the_rollback() {
    let daemon = TestDaemon::start().await;
    let (project, old, live) = two_live_deploys(&daemon).await;
    daemon.rollback(&live, &old).await.unwrap();
    let before = route_map(&daemon.routes(&project).await);

    let response = daemon.promote(&old).await.unwrap();
    assert!(response.routes.is_empty(), "no route moves");
    let stored = daemon.get_project(&project).await;
    assert_eq!(stored.live_deployment_id, old);
    assert!(!stored.is_rolled_back);
    assert_eq!(route_map(&daemon.routes(&project).await), before);
    // Nothing is scheduled: `live` keeps running (the standby delay in this
    // config is a minute, but a confirm would not even schedule it).
    assert_eq!(
        daemon.get(&live).await.desired_state,
        DesiredState::Running as i32
    );

    // A second promote of the same deployment is now refused.
    let error = daemon.promote(&old).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
}
