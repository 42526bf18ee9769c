//! Deploy, end to end over gRPC: statuses and steps, watch streams, the
//! routes a deploy takes, DNS-valid names, sticky routes that only move
//! forward, and failures that leave routes alone.

mod common;

use common::*;
use deployd::pb;
use deployd::pb::watch_deployment_response::Event;
use deployd::pb::{DeploymentStatus, RouteKind};
use tokio_stream::StreamExt;

fn step_names(d: &pb::Deployment) -> Vec<&str> {
    d.steps.iter().map(|s| s.name.as_str()).collect()
}

#[tokio::test]
async fn git_deploy_goes_through_every_status_and_step() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let created = daemon
        .deployments()
        .await
        .create_deployment(git_request(&project.id, "production", "main", SHA_A))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.status, DeploymentStatus::Pending as i32);

    // Watch from the start and record every status the stream reports.
    let mut stream = daemon
        .deployments()
        .await
        .watch_deployment(pb::WatchDeploymentRequest {
            deployment_id: created.deployment_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut statuses = Vec::new();
    let mut first = true;
    while let Some(message) = stream.next().await {
        match message.unwrap().event.unwrap() {
            Event::Snapshot(d) => {
                assert!(first, "the snapshot comes first");
                statuses.push(d.status);
            }
            Event::Status(s) => statuses.push(s.status),
            Event::Step(_) | Event::BuildLog(_) => {}
        }
        first = false;
    }
    assert_eq!(
        statuses.last(),
        Some(&(DeploymentStatus::Ready as i32)),
        "stream ends at READY"
    );
    // Whatever the snapshot caught, the statuses seen are in lifecycle order.
    let order = [
        DeploymentStatus::Pending,
        DeploymentStatus::Building,
        DeploymentStatus::Deploying,
        DeploymentStatus::Network,
        DeploymentStatus::Ready,
    ]
    .map(|s| s as i32);
    let positions: Vec<usize> = statuses
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{statuses:?}");

    let deployment = daemon.get(&created.deployment_id).await;
    assert_eq!(step_names(&deployment), ["build", "deploy", "network"]);
    assert!(
        deployment
            .steps
            .iter()
            .all(|s| s.finished_at.is_some() && s.error.is_empty())
    );
    assert!(
        deployment.image.starts_with("registry.test/"),
        "{}",
        deployment.image
    );
    assert!(!deployment.build_id.is_empty());
    assert_eq!(deployment.sequence, 1);
    assert_eq!(deployment.desired_state, pb::DesiredState::Running as i32);
    let regions: Vec<&str> = deployment
        .regions
        .iter()
        .map(|r| r.region.as_str())
        .collect();
    assert_eq!(
        regions, HEALTHY_REGIONS,
        "empty settings mean every configured region"
    );
    for region in &deployment.regions {
        assert!(region.ready);
        assert_eq!(region.desired_replicas, 1);
        assert_eq!(region.desired_status, "running");
        assert_eq!(region.instances.len(), 1);
        assert!(region.instances.iter().all(|i| i.status == "running"));
    }
}

#[tokio::test]
async fn image_deploy_skips_the_build_and_uses_environment_regions() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    daemon
        .projects()
        .await
        .set_environment_regions(pb::SetEnvironmentRegionsRequest {
            project_id: project.id.clone(),
            environment_slug: "preview".into(),
            regions: [("us-east-1".to_string(), 3)].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let id = daemon
        .deploy_ready(&project.id, "preview", "nginx:1.27")
        .await;
    let deployment = daemon.get(&id).await;
    assert_eq!(step_names(&deployment), ["deploy", "network"]);
    assert_eq!(deployment.image, "nginx:1.27");
    assert!(deployment.build_id.is_empty());
    assert_eq!(deployment.regions.len(), 1);
    assert_eq!(deployment.regions[0].region, "us-east-1");
    assert_eq!(deployment.regions[0].desired_replicas, 3);
    assert_eq!(deployment.regions[0].instances.len(), 3);
}

#[tokio::test]
async fn a_late_watcher_gets_the_current_state_first() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let id = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    let mut stream = daemon
        .deployments()
        .await
        .watch_deployment(pb::WatchDeploymentRequest {
            deployment_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap().event.unwrap();
    let Event::Snapshot(snapshot) = first else {
        panic!("expected a snapshot, got {first:?}");
    };
    assert_eq!(snapshot.status, DeploymentStatus::Ready as i32);
    assert_eq!(snapshot.steps.len(), 2);
    assert!(
        stream.next().await.is_none(),
        "a terminal deployment ends the stream"
    );
}

#[tokio::test]
async fn watch_reports_each_step_as_it_happens() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let id = daemon
        .create(git_request(&project.id, "preview", "feature/x", SHA_B))
        .await;
    let mut stream = daemon
        .deployments()
        .await
        .watch_deployment(pb::WatchDeploymentRequest {
            deployment_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut finished_steps = Vec::new();
    let mut last_status = 0;
    while let Some(message) = stream.next().await {
        match message.unwrap().event.unwrap() {
            Event::Snapshot(d) => {
                last_status = d.status;
                finished_steps.extend(
                    d.steps
                        .iter()
                        .filter(|s| s.finished_at.is_some())
                        .map(|s| s.name.clone()),
                );
            }
            Event::Step(e) => {
                let step = e.step.unwrap();
                if step.finished_at.is_some() {
                    finished_steps.push(step.name);
                }
            }
            Event::Status(s) => last_status = s.status,
            Event::BuildLog(_) => {}
        }
    }
    assert_eq!(last_status, DeploymentStatus::Ready as i32);
    assert_eq!(finished_steps, ["build", "deploy", "network"]);
}

#[tokio::test]
async fn production_deploy_takes_every_route_kind_with_dns_valid_names() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let long_branch = format!("feature/{}", "Very_Long-Branch-Name".repeat(4));
    let id = daemon
        .create(git_request(&project.id, "production", &long_branch, SHA_A))
        .await;
    daemon.wait_status(&id, DeploymentStatus::Ready).await;
    let deployment = daemon.get(&id).await;
    let short = id.trim_start_matches("dep_");

    let routes = daemon.routes(&project.id).await;
    let by_name = route_map(&routes);
    let apex = "deployd.local";
    let expect = [
        (format!("web-acme.{apex}"), RouteKind::Live),
        (
            format!("web-production-acme.{apex}"),
            RouteKind::Environment,
        ),
        (format!("web-git-aaaaaaa-acme.{apex}"), RouteKind::Commit),
        (
            format!("web-dep-{short}-acme.{apex}"),
            RouteKind::Deployment,
        ),
    ];
    for (fqdn, kind) in &expect {
        assert_eq!(
            by_name.get(fqdn),
            Some(&(*kind as i32, id.clone())),
            "{fqdn} in {by_name:?}"
        );
    }
    let branch_routes = routes_of_kind(&routes, RouteKind::Branch);
    assert_eq!(branch_routes.len(), 1);
    assert_eq!(routes.len(), 5);
    for route in &routes {
        assert!(route.fqdn.len() <= 253);
        for label in route.fqdn.split('.') {
            assert!((1..=63).contains(&label.len()), "{}", route.fqdn);
            assert!(
                label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{}",
                route.fqdn
            );
            assert!(
                !label.starts_with('-') && !label.ends_with('-'),
                "{}",
                route.fqdn
            );
        }
        assert_eq!(route.environment_slug, "production");
    }
    let mut hostnames = deployment.hostnames.clone();
    hostnames.sort();
    let mut all: Vec<String> = routes.iter().map(|r| r.fqdn.clone()).collect();
    all.sort();
    assert_eq!(hostnames, all, "GetDeployment lists its hostnames");
    assert_eq!(daemon.get_project(&project.id).await.live_deployment_id, id);
    // READY means it runs: one replica in each configured region, with its
    // environment's sentinel and its network policies.
    let running = daemon.wait_running(&id, 1).await;
    assert_eq!(running.len(), 2);
    let deployment_id = deployd::model::DeploymentId::parse(&id, "id").unwrap();
    for region in HEALTHY_REGIONS {
        let held = daemon.region(region).snapshot();
        assert_eq!(held.sentinels[&format!("{}/production", project.id)], 3);
        assert!(held.network_policies.contains(deployment_id.as_str()));
    }
}

#[tokio::test]
async fn two_long_branch_names_never_share_a_hostname() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let base = "x".repeat(70);
    let one = daemon
        .create(git_request(
            &project.id,
            "preview",
            &format!("{base}-one"),
            SHA_A,
        ))
        .await;
    let two = daemon
        .create(git_request(
            &project.id,
            "preview",
            &format!("{base}-two"),
            SHA_B,
        ))
        .await;
    daemon.wait_status(&one, DeploymentStatus::Ready).await;
    daemon.wait_status(&two, DeploymentStatus::Ready).await;
    let routes = daemon.routes(&project.id).await;
    let branches = routes_of_kind(&routes, RouteKind::Branch);
    assert_eq!(branches.len(), 2, "{branches:?}");
    assert_ne!(branches[0].fqdn, branches[1].fqdn);
}

#[tokio::test]
async fn preview_deploys_never_take_live() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    daemon.deploy_ready(&project.id, "preview", "nginx:1").await;
    let routes = daemon.routes(&project.id).await;
    assert!(routes_of_kind(&routes, RouteKind::Live).is_empty());
    assert!(
        daemon
            .get_project(&project.id)
            .await
            .live_deployment_id
            .is_empty()
    );
}

/// Two racing deploys of the same branch: the newer one ends up holding the
/// sticky routes and the live pointer, whichever finishes first.
#[tokio::test]
async fn racing_deploys_the_newer_wins_whichever_finishes_first() {
    for newer_is_slow in [false, true] {
        let mut config = fast_config();
        let slow_sha = if newer_is_slow { SHA_B } else { SHA_A };
        config.builder = deployd::config::BuilderConfig::Simulated {
            slots: 4,
            duration_ms: 10,
            registry: "registry.test".into(),
            rules: vec![build_rule(None, Some(slow_sha), Some(600), false)],
        };
        let daemon = TestDaemon::start_with(config).await;
        let project = daemon.project("acme", "web").await;
        let older = daemon
            .create(git_request(&project.id, "production", "main", SHA_A))
            .await;
        // Another branch: a newer build of the same branch would cancel
        // the older one while it builds (supersede, tests/cancel.rs).
        let newer = daemon
            .create(git_request(&project.id, "production", "release", SHA_B))
            .await;
        let (first, second) = if newer_is_slow {
            (&older, &newer)
        } else {
            (&newer, &older)
        };
        daemon.wait_status(first, DeploymentStatus::Ready).await;
        daemon.wait_status(second, DeploymentStatus::Ready).await;

        let routes = daemon.routes(&project.id).await;
        for kind in [RouteKind::Live, RouteKind::Environment] {
            let sticky = routes_of_kind(&routes, kind);
            assert_eq!(sticky.len(), 1, "{kind:?}");
            assert_eq!(
                sticky[0].deployment_id, newer,
                "{kind:?} (newer_is_slow={newer_is_slow})"
            );
        }
        let mut branches: Vec<&str> = routes_of_kind(&routes, RouteKind::Branch)
            .iter()
            .map(|r| r.deployment_id.as_str())
            .collect();
        branches.sort();
        let mut both = [older.as_str(), newer.as_str()];
        both.sort();
        assert_eq!(branches, both, "each branch keeps its own");
        assert_eq!(
            daemon.get_project(&project.id).await.live_deployment_id,
            newer
        );
        // Each still has its own COMMIT and DEPLOYMENT hostnames.
        assert_eq!(routes_of_kind(&routes, RouteKind::Commit).len(), 2);
        assert_eq!(routes_of_kind(&routes, RouteKind::Deployment).len(), 2);
    }
}

#[tokio::test]
async fn a_failed_build_fails_the_deployment_and_touches_no_route() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let live = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    let before = daemon.routes(&project.id).await;

    let id = daemon
        .create(git_request(&project.id, "production", "broken", SHA_B))
        .await;
    let failed = daemon.wait_status(&id, DeploymentStatus::Failed).await;
    assert!(
        failed.error_message.contains("build"),
        "{}",
        failed.error_message
    );
    let build = failed.steps.iter().find(|s| s.name == "build").unwrap();
    assert!(!build.error.is_empty() && build.finished_at.is_some());
    assert_eq!(failed.desired_state, pb::DesiredState::Archived as i32);
    assert!(failed.hostnames.is_empty());
    // It never got to run anywhere, and the live one still runs.
    daemon.drivers_settled().await;
    assert!(daemon.running(&id).values().all(|r| *r == 0));
    daemon.assert_world_matches(&live).await;

    assert_eq!(
        route_map(&daemon.routes(&project.id).await),
        route_map(&before)
    );
    assert_eq!(
        daemon.get_project(&project.id).await.live_deployment_id,
        live
    );
}

#[tokio::test]
async fn a_region_that_never_gets_ready_fails_the_deployment_and_touches_no_route() {
    let mut config = config_with_stuck_region();
    config.region_timeout_ms = 300;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    daemon
        .set_regions(&project.id, "production", &[("us-east-1", 1)])
        .await;
    let live = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    let before = daemon.routes(&project.id).await;
    daemon
        .set_regions(
            &project.id,
            "production",
            &[("us-east-1", 1), (STUCK_REGION, 2)],
        )
        .await;

    let id = daemon
        .create(image_request(&project.id, "production", "nginx:2"))
        .await;
    let failed = daemon.wait_status(&id, DeploymentStatus::Failed).await;
    assert!(
        failed.error_message.contains(STUCK_REGION),
        "{}",
        failed.error_message
    );
    let deploy = failed.steps.iter().find(|s| s.name == "deploy").unwrap();
    assert!(deploy.error.contains(STUCK_REGION));
    // Resources created for it are set to stop, and they do stop: in the
    // region that ran it and in the one that never got it ready.
    assert!(failed.regions.iter().all(|r| r.desired_status == "stopped"));
    assert_eq!(daemon.wait_running(&id, 0).await["us-east-1"], 0);
    assert_eq!(daemon.running(&id)[STUCK_REGION], 0);
    daemon.assert_world_matches(&live).await;
    assert_eq!(
        route_map(&daemon.routes(&project.id).await),
        route_map(&before)
    );
    assert_eq!(
        daemon.get_project(&project.id).await.live_deployment_id,
        live
    );
}

#[tokio::test]
async fn deployments_list_newest_first_with_filters_and_pages() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let mut ids = Vec::new();
    for (i, env) in [
        "production",
        "preview",
        "production",
        "preview",
        "production",
    ]
    .iter()
    .enumerate()
    {
        ids.push(
            daemon
                .deploy_ready(&project.id, env, &format!("nginx:{i}"))
                .await,
        );
    }
    let mut client = daemon.deployments().await;
    let list = |env: &str, page_size: u32, page_token: String| pb::ListDeploymentsRequest {
        project_id: project.id.clone(),
        environment_slug: env.into(),
        page_size,
        page_token,
        ..Default::default()
    };
    let all = client
        .list_deployments(list("", 0, String::new()))
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<String> = all.deployments.iter().map(|d| d.id.clone()).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    assert!(all.next_page_token.is_empty());

    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_deployments(list("production", 2, token))
            .await
            .unwrap()
            .into_inner();
        paged.extend(page.deployments.iter().map(|d| d.id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, vec![ids[4].clone(), ids[2].clone(), ids[0].clone()]);

    let ready = client
        .list_deployments(pb::ListDeploymentsRequest {
            project_id: project.id.clone(),
            status: DeploymentStatus::Failed as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ready.deployments.is_empty());
}
