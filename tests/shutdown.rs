//! SIGTERM on the real binary: with a deployment stuck in a region that
//! never gets ready and a client watching it, the daemon stops accepting,
//! ends the stream, exits 0 well within its shutdown timeout, and the
//! unfinished deployment is resumed by the next start.

mod common;

use std::time::{Duration, Instant};

use common::process::DaemonProcess;
use deployd::pb;
use deployd::pb::deployment_service_client::DeploymentServiceClient;
use deployd::pb::project_service_client::ProjectServiceClient;
use deployd::pb::workspace_service_client::WorkspaceServiceClient;
use tokio_stream::StreamExt;

fn config(data_dir: &std::path::Path) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
data_dir = "{}"
region_timeout_ms = 600000
readiness_poll_ms = 20
shutdown_timeout_ms = 3000

[edge]
listen = "127.0.0.1:0"

[regions.stuck-1]
driver = "simulated"
never_ready = true
"#,
        data_dir.display()
    )
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero_and_the_next_start_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("deployd.toml");
    std::fs::write(&config_path, config(&dir.path().join("data"))).unwrap();
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
    let project = ProjectServiceClient::new(channel.clone())
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
    let mut deployments = DeploymentServiceClient::new(channel.clone());
    let id = deployments
        .create_deployment(common::image_request(&project.id, "production", "nginx:1"))
        .await
        .unwrap()
        .into_inner()
        .deployment_id;
    let mut watch = deployments
        .watch_deployment(pb::WatchDeploymentRequest {
            deployment_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.expect("snapshot").unwrap();
    assert!(matches!(
        first.event,
        Some(pb::watch_deployment_response::Event::Snapshot(_))
    ));

    let began = Instant::now();
    daemon.terminate();
    let status = tokio::time::timeout(Duration::from_secs(10), daemon.child.wait())
        .await
        .expect("exits within 10 s")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "took {:?}",
        began.elapsed()
    );
    // The watch ended instead of hanging.
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = watch.next().await {}
    })
    .await;
    assert!(rest.is_ok(), "the watch stream ended");

    // The next start resumes the unfinished deployment.
    let daemon = DaemonProcess::spawn(&config_path).await.expect("restarts");
    let mut deployments = DeploymentServiceClient::new(daemon.channel().await);
    let deployment = deployments
        .get_deployment(pb::GetDeploymentRequest {
            deployment_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    assert_eq!(deployment.status, pb::DeploymentStatus::Deploying as i32);
    daemon.terminate();
}
