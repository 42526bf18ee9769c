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

/// A daemon on `config` with project `web` in workspace `acme`, whose
/// containers go when the returned guard does.
async fn started(config: deployd::Config) -> (TestDaemon, pb::Project, Cleanup) {
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    let cleanup = Cleanup(project.id.clone());
    (daemon, project, cleanup)
}

#[tokio::test]
async fn containers_serve_through_the_edge_and_rollback_moves_traffic() {
    if !podman::available("containers_serve_through_the_edge_and_rollback_moves_traffic") {
        return;
    }
    let (v1, v2) = images();
    let (daemon, project, _cleanup) = started(podman_config()).await;
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
    let (daemon, project, _cleanup) = started(config).await;
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
    let (daemon, project, _cleanup) = started(podman_config()).await;
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
    let (daemon, project, _cleanup) = started(podman_config()).await;
    let live = daemon.deploy_ready(&project.id, "production", v1).await;
    let before = podman::containers(&live);
    let daemon = daemon.stop().await.start().await;
    daemon.drivers_settled().await;
    assert_eq!(podman::containers(&live), before, "adopted, not duplicated");
    assert_eq!(get(daemon.edge(), LIVE_HOST, &[]).await.body, "v1\n");
}

fn two_regions_config() -> deployd::Config {
    let mut config = podman_config();
    let podman = || RegionConfig::Podman {
        socket: None,
        podman: "podman".into(),
    };
    config.regions = BTreeMap::from([
        ("local-a".to_string(), podman()),
        ("local-b".to_string(), podman()),
    ]);
    config
}

#[tokio::test]
async fn two_regions_with_two_replicas_each_all_serve() {
    if !podman::available("two_regions_with_two_replicas_each_all_serve") {
        return;
    }
    let (v1, _) = images();
    let (daemon, project, _cleanup) = started(two_regions_config()).await;
    daemon
        .set_regions(&project.id, "production", &[("local-a", 2), ("local-b", 2)])
        .await;
    let live = daemon.deploy_ready(&project.id, "production", v1).await;
    let mut names: Vec<String> = podman::containers(&live)
        .into_iter()
        .map(|(name, state)| {
            assert_eq!(state, "running", "{name}");
            name
        })
        .collect();
    names.sort();
    let expected: Vec<String> = ["local-a-0", "local-a-1", "local-b-0", "local-b-1"]
        .iter()
        .map(|suffix| format!("deployd-{live}-{suffix}"))
        .collect();
    assert_eq!(names, expected);
    let deployment = daemon.get(&live).await;
    let addresses: std::collections::BTreeSet<&str> = deployment
        .regions
        .iter()
        .flat_map(|r| &r.instances)
        .map(|i| i.address.as_str())
        .collect();
    assert_eq!(addresses.len(), 4, "{deployment:?}");
    for _ in 0..8 {
        let answer = get(daemon.edge(), LIVE_HOST, &[]).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "v1\n"));
    }
}

/// Kills what the first daemon left behind: its podman services (which a
/// SIGKILL does not take down) and the project's containers.
struct ProcessCleanup {
    data_dir: std::path::PathBuf,
    project: Option<String>,
}

impl Drop for ProcessCleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill")
            .arg("-f")
            .arg(self.data_dir.join("podman").display().to_string())
            .status();
        if let Some(project) = &self.project {
            podman::remove_project(project);
        }
    }
}

#[tokio::test]
async fn a_daemon_killed_during_deploying_adopts_its_containers_after_restart() {
    use common::process::DaemonProcess;
    use deployd::pb::deployment_service_client::DeploymentServiceClient;
    use deployd::pb::project_service_client::ProjectServiceClient;
    use deployd::pb::workspace_service_client::WorkspaceServiceClient;

    if !podman::available("a_daemon_killed_during_deploying_adopts_its_containers_after_restart") {
        return;
    }
    let (v1, _) = images();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut cleanup = ProcessCleanup {
        data_dir: data_dir.clone(),
        project: None,
    };
    let config_path = dir.path().join("deployd.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"listen = "127.0.0.1:0"
data_dir = "{}"
region_timeout_ms = 60000
call_timeout_ms = 60000
readiness_poll_ms = 50

[edge]
listen = "127.0.0.1:0"

[regions.local-a]
driver = "podman"

[regions.local-b]
driver = "podman"
"#,
            data_dir.display()
        ),
    )
    .unwrap();

    let mut daemon = DaemonProcess::spawn(&config_path).await.expect("starts");
    let channel = daemon.channel().await;
    let workspace = WorkspaceServiceClient::new(channel.clone())
        .create_workspace(pb::CreateWorkspaceRequest {
            slug: "acme".into(),
            name: "Acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .workspace
        .unwrap();
    let mut projects = ProjectServiceClient::new(channel.clone());
    let project = projects
        .create_project(pb::CreateProjectRequest {
            workspace_id: workspace.id,
            slug: "web".into(),
            name: "Web".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .project
        .unwrap();
    cleanup.project = Some(project.id.clone());
    projects
        .set_environment_regions(pb::SetEnvironmentRegionsRequest {
            project_id: project.id.clone(),
            environment_slug: "production".into(),
            regions: [("local-a".to_string(), 2), ("local-b".to_string(), 2)].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Slow to listen, so the deployment is still DEPLOYING when the
    // daemon dies, with its containers created.
    let mut request = image_request(&project.id, "production", v1);
    request.command = [
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox sleep 3; exec /bin/busybox httpd -f -p $PORT -h /www",
    ]
    .map(String::from)
    .to_vec();
    let id = DeploymentServiceClient::new(channel.clone())
        .create_deployment(request)
        .await
        .unwrap()
        .into_inner()
        .deployment_id;
    eventually(
        "containers exist while DEPLOYING",
        std::time::Duration::from_secs(30),
        || async { (podman::containers(&id).len() == 4).then_some(()) },
    )
    .await;
    daemon.child.start_kill().unwrap();
    daemon.child.wait().await.unwrap();
    let before = podman::containers(&id);

    let daemon = DaemonProcess::spawn(&config_path).await.expect("restarts");
    let deployments = DeploymentServiceClient::new(daemon.channel().await);
    let ready = ready_through(&deployments, &id, std::time::Duration::from_secs(60)).await;
    let after = podman::containers(&id);
    let names = |list: &[(String, String)]| {
        let mut names: Vec<String> = list.iter().map(|c| c.0.clone()).collect();
        names.sort();
        names
    };
    assert_eq!(names(&after), names(&before), "adopted, not duplicated");
    assert_eq!(after.len(), 4);
    assert!(after.iter().all(|c| c.1 == "running"), "{after:?}");
    assert_eq!(ready.regions.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_through_containers_follows_each_switch_and_requests_in_flight_finish() {
    if !podman::available(
        "traffic_through_containers_follows_each_switch_and_requests_in_flight_finish",
    ) {
        return;
    }
    let (v1, v2) = images();
    let (daemon, project, _cleanup) = started(podman_config()).await;
    let old = daemon.deploy_ready(&project.id, "production", v1).await;
    let traffic = common::traffic::Traffic::start(daemon.edge(), LIVE_HOST, 16);
    let live = daemon
        .create(image_request(&project.id, "production", v2))
        .await;
    traffic
        .switch("v2", async {
            daemon.wait_status(&live, DeploymentStatus::Ready).await;
        })
        .await;

    // A slow request to v2, in flight while the rollback moves traffic.
    let edge = daemon.edge();
    let slow =
        tokio::spawn(
            async move { common::http::get_path(edge, LIVE_HOST, "/cgi-bin/slow", &[]).await },
        );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    traffic
        .switch("v1", async {
            daemon.rollback(&live, &old).await.expect("rollback");
        })
        .await;
    let slow = slow.await.expect("slow request");
    assert_eq!(slow.status, 200, "{slow:?}");
    assert_eq!(slow.body, "slow v2\n", "finished where it started");

    traffic
        .switch("v2", async {
            daemon.promote(&live).await.expect("promote");
        })
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let requests = traffic.verify().await;
    assert!(requests > 50, "only {requests} requests");
}
