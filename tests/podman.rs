//! The podman region driver, for real: containers on this machine built
//! from tiny local images, served through the edge. Skipped (with the
//! reason printed) where podman cannot run containers, unless
//! `DEPLOYD_REQUIRE_PODMAN` is set.

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use common::http::get;
use common::*;
use deployd::config::RegionConfig;
use deployd::pb;
use deployd::pb::{DeploymentStatus, DesiredState};

const LIVE_HOST: &str = "web-acme.deployd.local";

fn podman_config() -> deployd::Config {
    let mut config = fast_config();
    config.regions = BTreeMap::from([(
        "local".to_string(),
        RegionConfig::Podman {
            socket: None,
            podman: "podman".into(),
        },
    )]);
    config.region_timeout_ms = 60_000;
    config.call_timeout_ms = 60_000;
    config.readiness_poll_ms = 50;
    config
}

/// The two images, built once per test binary.
fn images() -> &'static (String, String) {
    static IMAGES: OnceLock<(String, String)> = OnceLock::new();
    IMAGES.get_or_init(|| (podman::build_image("v1"), podman::build_image("v2")))
}

/// Removes the project's containers when the test ends, however it ends.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        podman::remove_project(&self.0);
    }
}

#[tokio::test]
async fn containers_serve_through_the_edge_and_rollback_moves_traffic() {
    if !podman::available("containers_serve_through_the_edge_and_rollback_moves_traffic") {
        return;
    }
    let (v1, v2) = images();
    let daemon = TestDaemon::start_with(podman_config()).await;
    let project = daemon.project("acme", "web").await;
    let _cleanup = Cleanup(project.id.clone());
    let old = daemon.deploy_ready(&project.id, "production", v1).await;
    let edge = daemon.edge();
    assert_eq!(get(edge, LIVE_HOST, &[]).await.body, "v1\n");
    let live = daemon.deploy_ready(&project.id, "production", v2).await;
    assert_eq!(get(edge, LIVE_HOST, &[]).await.body, "v2\n");

    let deployment = daemon.get(&live).await;
    let instances: Vec<&pb::Instance> = deployment
        .regions
        .iter()
        .flat_map(|r| &r.instances)
        .collect();
    assert_eq!(instances.len(), 1, "{deployment:?}");
    assert!(
        instances[0].address.starts_with("127.0.0.1:"),
        "{:?}",
        instances[0]
    );
    assert_eq!(
        podman::containers(&live),
        [(format!("deployd-{live}-local-0"), "running".to_string())]
    );

    daemon.rollback(&live, &old).await.expect("rollback");
    assert_eq!(get(edge, LIVE_HOST, &[]).await.body, "v1\n");
    daemon.promote(&live).await.expect("promote");
    assert_eq!(get(edge, LIVE_HOST, &[]).await.body, "v2\n");
}

#[tokio::test]
async fn standby_stops_the_containers_and_a_wake_starts_them_again() {
    if !podman::available("standby_stops_the_containers_and_a_wake_starts_them_again") {
        return;
    }
    let (v1, v2) = images();
    let mut config = podman_config();
    config.standby_delay_ms = 100;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let _cleanup = Cleanup(project.id.clone());
    let old = daemon.deploy_ready(&project.id, "production", v1).await;
    let live = daemon.deploy_ready(&project.id, "production", v2).await;

    daemon.wait_desired(&old, DesiredState::Standby).await;
    daemon.drivers_settled().await;
    let states: Vec<String> = podman::containers(&old).into_iter().map(|c| c.1).collect();
    assert_eq!(states, ["exited"], "stopped, kept for a wake");

    daemon
        .rollback(&live, &old)
        .await
        .expect("rollback wakes it");
    let states: Vec<String> = podman::containers(&old).into_iter().map(|c| c.1).collect();
    assert_eq!(states, ["running"]);
    let answer = get(daemon.edge(), LIVE_HOST, &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, "v1\n");
}

#[tokio::test]
async fn a_container_that_exits_fails_the_deployment_with_its_exit_code() {
    if !podman::available("a_container_that_exits_fails_the_deployment_with_its_exit_code") {
        return;
    }
    let (v1, _) = images();
    let daemon = TestDaemon::start_with(podman_config()).await;
    let project = daemon.project("acme", "web").await;
    let _cleanup = Cleanup(project.id.clone());
    let mut request = image_request(&project.id, "production", v1);
    request.command = vec![
        "/bin/busybox".into(),
        "sh".into(),
        "-c".into(),
        "exit 3".into(),
    ];
    let id = daemon.create(request).await;
    let failed = daemon.wait_status(&id, DeploymentStatus::Failed).await;
    assert!(
        failed.error_message.contains("exited with code 3"),
        "{}",
        failed.error_message
    );
    daemon.drivers_settled().await;
    let states: Vec<String> = podman::containers(&id).into_iter().map(|c| c.1).collect();
    assert!(states.iter().all(|s| s != "running"), "{states:?}");
}

#[tokio::test]
async fn a_restarted_daemon_adopts_its_containers() {
    if !podman::available("a_restarted_daemon_adopts_its_containers") {
        return;
    }
    let (v1, _) = images();
    let daemon = TestDaemon::start_with(podman_config()).await;
    let project = daemon.project("acme", "web").await;
    let _cleanup = Cleanup(project.id.clone());
    let live = daemon.deploy_ready(&project.id, "production", v1).await;
    let before = podman::containers(&live);
    let daemon = daemon.stop().await.start().await;
    daemon.drivers_settled().await;
    assert_eq!(podman::containers(&live), before, "adopted, not duplicated");
    assert_eq!(get(daemon.edge(), LIVE_HOST, &[]).await.body, "v1\n");
}
