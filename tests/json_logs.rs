//! `log_format = "json"`: the real binary logs one JSON object per line,
//! and what happens in a request carries the request's span (the RPC and
//! the ids it named); a deployment's steps have spans of their own.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::process::serving;
use common::*;
use deployd::pb;
use deployd::pb::deployment_service_client::DeploymentServiceClient;
use deployd::pb::project_service_client::ProjectServiceClient;
use deployd::pb::workspace_service_client::WorkspaceServiceClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tonic::transport::Channel;

const CONFIG: &str = r#"
listen = "127.0.0.1:0"
log_format = "json"
readiness_poll_ms = 10
[edge]
enabled = false
[regions.us-east-1]
driver = "simulated"
ready_after_ms = 5
[builder]
driver = "simulated"
duration_ms = 5
"#;

#[tokio::test]
async fn json_lines_carry_the_request_span_and_the_step_spans() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("deployd.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_deployd"))
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "info,deployd::actors=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn deployd");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // First the bootstrap admin token (none is configured), then the address.
    let (mut token, mut addr) = (None, None);
    while addr.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
            .await
            .expect("in time")
            .expect("read")
            .expect("a line");
        if let Some((_, shown)) = line.split_once("): ") {
            token = Some(shown.trim().to_string());
        }
        if let Some(at) = line.split("listening on ").nth(1) {
            addr = Some(format!("http://{}", at.trim()));
        }
    }
    let addr = addr.expect("address");
    assert!(serving(&addr).await);
    let channel = Channel::from_shared(addr)
        .expect("addr")
        .connect()
        .await
        .expect("connect");
    let channel = deployd::cli::with_token(channel, token.as_deref()).expect("token");
    let workspace = WorkspaceServiceClient::new(channel.clone())
        .create_workspace(pb::CreateWorkspaceRequest {
            slug: "acme".into(),
            name: "Acme".into(),
        })
        .await
        .expect("workspace")
        .into_inner()
        .workspace
        .expect("workspace");
    let project = ProjectServiceClient::new(channel.clone())
        .create_project(pb::CreateProjectRequest {
            workspace_id: workspace.id,
            slug: "web".into(),
            name: "Web".into(),
        })
        .await
        .expect("project")
        .into_inner()
        .project
        .expect("project");
    let mut deployments = DeploymentServiceClient::new(channel);
    let mut ids = Vec::new();
    for branch in ["one", "two"] {
        let id = deployments
            .create_deployment(git_request(&project.id, "production", branch, SHA_A))
            .await
            .expect("deploy")
            .into_inner()
            .deployment_id;
        eventually("ready", Duration::from_secs(20), || {
            let mut deployments = deployments.clone();
            let id = id.clone();
            async move {
                let d = deployments
                    .get_deployment(pb::GetDeploymentRequest { deployment_id: id })
                    .await
                    .ok()?
                    .into_inner()
                    .deployment?;
                (d.status == pb::DeploymentStatus::Ready as i32).then_some(())
            }
        })
        .await;
        ids.push(id);
    }
    deployments
        .rollback(pb::RollbackRequest {
            source_deployment_id: ids[1].clone(),
            target_deployment_id: ids[0].clone(),
            ..Default::default()
        })
        .await
        .expect("rollback");
    child.start_kill().expect("kill");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut lines = Vec::new();
    while let Ok(Some(line)) = stderr.next_line().await {
        lines.push(line);
    }
    let json: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();

    let rollback = json
        .iter()
        .find(|j| j.pointer("/fields/message").and_then(|m| m.as_str()) == Some("rolled back"))
        .unwrap_or_else(|| panic!("no rollback line in {lines:#?}"));
    let span = &rollback["span"];
    assert_eq!(span["name"], "rpc");
    assert_eq!(span["rpc"], "/deployd.v1.DeploymentService/Rollback");
    assert_eq!(span["project_id"], project.id.as_str());
    assert_eq!(span["deployment_id"], ids[0].as_str());
    assert_eq!(span["source_deployment_id"], ids[1].as_str());

    // Every step of the first deployment finished inside its own span.
    for step in ["build", "deploy", "network"] {
        let finished = json.iter().any(|j| {
            j.pointer("/fields/message").and_then(|m| m.as_str()) == Some("step finished")
                && j["span"]["name"] == "step"
                && j["span"]["step"] == step
                && j["span"]["deployment_id"] == ids[0].as_str()
                && j["span"]["project_id"] == project.id.as_str()
        });
        assert!(
            finished,
            "no finished {step} step for {} in {lines:#?}",
            ids[0]
        );
    }
}
