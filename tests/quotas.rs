//! `[quotas]` over real gRPC: projects per workspace (also against
//! concurrent creates) and requests per second per token, both refused
//! with `RESOURCE_EXHAUSTED` and changing nothing; plus the token buckets
//! themselves with a clock the test holds.

mod common;

use std::time::{Duration, Instant};

use common::*;
use deployd::api::auth::rate::RateLimits;
use deployd::config::QuotasConfig;
use deployd::model::{Caller, Role, TokenId, WorkspaceId};
use deployd::pb;
use deployd::pb::audit_service_client::AuditServiceClient;
use deployd::pb::project_service_client::ProjectServiceClient;
use deployd::pb::token_service_client::TokenServiceClient;
use deployd::pb::workspace_service_client::WorkspaceServiceClient;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn create_project(
    daemon: &TestDaemon,
    token: &str,
    workspace_id: &str,
    slug: &str,
) -> Result<pb::Project, tonic::Status> {
    ProjectServiceClient::new(daemon.channel_with(Some(token)).await)
        .create_project(pb::CreateProjectRequest {
            workspace_id: workspace_id.into(),
            slug: slug.into(),
            name: slug.into(),
        })
        .await
        .map(|r| r.into_inner().project.expect("project"))
}

async fn project_slugs(daemon: &TestDaemon, workspace_id: &str) -> Vec<String> {
    daemon
        .projects()
        .await
        .list_projects(pb::ListProjectsRequest {
            workspace_id: workspace_id.into(),
            ..Default::default()
        })
        .await
        .expect("list projects")
        .into_inner()
        .projects
        .into_iter()
        .map(|p| p.slug)
        .collect()
}

/// A deployer token of `workspace_id`: (its id, its text).
async fn deployer_token(daemon: &TestDaemon, workspace_id: &str) -> (String, String) {
    let created = TokenServiceClient::new(daemon.channel().await)
        .create_token(pb::CreateTokenRequest {
            role: pb::Role::Deployer as i32,
            workspace_id: workspace_id.into(),
            description: "quotas test".into(),
        })
        .await
        .expect("create token")
        .into_inner();
    (created.token.expect("token").id, created.secret)
}

async fn get_workspace(daemon: &TestDaemon, token: &str, id: &str) -> Result<(), tonic::Status> {
    WorkspaceServiceClient::new(daemon.channel_with(Some(token)).await)
        .get_workspace(pb::GetWorkspaceRequest {
            workspace_id: id.into(),
        })
        .await
        .map(drop)
}

fn with_project_quota(max: u32) -> deployd::Config {
    let mut config = fast_config();
    config.quotas.max_projects_per_workspace = max;
    config
}

#[tokio::test]
async fn the_project_quota_refuses_the_next_project_with_its_code_and_changes_nothing() {
    let daemon = TestDaemon::start_with(with_project_quota(3)).await;
    let ws = daemon.workspace("acme").await;
    let (_, deployer) = deployer_token(&daemon, &ws).await;
    for slug in ["one", "two", "three"] {
        create_project(&daemon, &deployer, &ws, slug)
            .await
            .expect("within the quota");
    }

    let refused = create_project(&daemon, &deployer, &ws, "four")
        .await
        .expect_err("over the quota");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let message = refused.message();
    assert!(message.contains(&ws), "{message}");
    assert!(message.contains("limit of 3 projects"), "{message}");
    assert!(message.contains("max_projects_per_workspace"), "{message}");
    // Admins meet the same quota: it is the workspace's, not the token's.
    let refused = create_project(&daemon, &daemon.token, &ws, "four")
        .await
        .expect_err("over the quota for an admin too");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    // A taken slug is still answered as such in a full workspace.
    let taken = create_project(&daemon, &deployer, &ws, "one")
        .await
        .expect_err("slug taken");
    assert_eq!(taken.code(), Code::AlreadyExists);
    assert_eq!(project_slugs(&daemon, &ws).await, ["one", "three", "two"]);

    // The refusal is audited with its code; nothing else was written.
    let events = AuditServiceClient::new(daemon.channel().await)
        .list_audit_events(pb::ListAuditEventsRequest {
            workspace_id: ws.clone(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .events;
    let results: Vec<&str> = events
        .iter()
        .filter(|e| e.rpc == "CreateProject")
        .map(|e| e.result.as_str())
        .collect();
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == "RESOURCE_EXHAUSTED")
            .count(),
        2,
        "{results:?}"
    );
    assert_eq!(results.iter().filter(|r| **r == "OK").count(), 3);

    // Another workspace has its own count.
    let other = daemon.workspace("other").await;
    create_project(&daemon, &daemon.token, &other, "one")
        .await
        .expect("another workspace is not full");
}

#[tokio::test]
async fn concurrent_creates_cannot_pass_the_project_quota_together() {
    let daemon = TestDaemon::start_with(with_project_quota(3)).await;
    let ws = daemon.workspace("acme").await;
    // Connections first, so the creates leave at nearly the same moment
    // and land in the same or adjacent commits of the writer.
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(ProjectServiceClient::new(daemon.channel().await));
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(clients.len()));
    let creates: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let (ws, start) = (ws.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                client
                    .create_project(pb::CreateProjectRequest {
                        workspace_id: ws,
                        slug: format!("p{i}"),
                        name: format!("p{i}"),
                    })
                    .await
                    .map(drop)
            })
        })
        .collect();
    let mut created = 0;
    for create in creates {
        match create.await.expect("task") {
            Ok(()) => created += 1,
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
        }
    }
    assert_eq!(created, 3);
    assert_eq!(project_slugs(&daemon, &ws).await.len(), 3);
}

#[tokio::test]
async fn a_token_over_its_rate_is_refused_while_other_tokens_admins_and_health_are_not() {
    let mut config = fast_config();
    config.quotas.requests_per_second_per_token = 1;
    config.quotas.burst_per_token = 3;
    let daemon = TestDaemon::start_with(config).await;
    let acme = daemon.workspace("acme").await;
    let other = daemon.workspace("other").await;
    let (busy_id, busy) = deployer_token(&daemon, &acme).await;
    let (_, calm) = deployer_token(&daemon, &other).await;

    // Creates until the first refusal: the burst passes, then the rate
    // applies. (Bounded: at one request per second, 50 calls outrun it.)
    let mut passed = 0;
    let refused = loop {
        match create_project(&daemon, &busy, &acme, &format!("p{passed}")).await {
            Ok(_) => passed += 1,
            Err(status) => break status,
        }
        assert!(passed < 50, "no call was refused");
    };
    assert!(passed >= 3, "the burst of 3 passed: {passed}");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let message = refused.message();
    assert!(
        message.contains(&format!(
            "rate limit of 1 requests per second for token {busy_id} exceeded; retry after"
        )),
        "{message}"
    );
    // The refused create changed nothing: exactly the passed ones exist.
    assert_eq!(project_slugs(&daemon, &acme).await.len(), passed);

    // Another token's bucket is its own, admins are not limited, and
    // health answers also on the busy token's connection.
    for _ in 0..3 {
        get_workspace(&daemon, &calm, &other)
            .await
            .expect("another token is unaffected");
    }
    for _ in 0..10 {
        get_workspace(&daemon, &daemon.token, &acme)
            .await
            .expect("admins are not limited");
    }
    let mut health = HealthClient::new(daemon.channel_with(Some(&busy)).await);
    for _ in 0..10 {
        let status = health
            .check(HealthCheckRequest::default())
            .await
            .expect("health is never limited")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32);
    }

    // At one request per second, a request's worth has accrued after this
    // long, whatever happened meanwhile: the busy token is served again.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    get_workspace(&daemon, &busy, &acme)
        .await
        .expect("served again after the refill");
}

fn caller(id: &str, role: Role) -> Caller {
    Caller {
        token_id: TokenId::parse(id, "token").expect("token id"),
        role,
        workspace: (role != Role::Admin)
            .then(|| WorkspaceId::parse("ws_aaaaaaaaaaaaaaaa", "ws").expect("workspace id")),
    }
}

#[test]
fn buckets_refill_idle_ones_are_dropped_and_admins_have_none() {
    let t0 = Instant::now();
    let quotas = QuotasConfig {
        requests_per_second_per_token: 10,
        burst_per_token: 5,
        ..QuotasConfig::default()
    };
    let limits = RateLimits::starting_at(&quotas, t0);
    let admin = caller("tok_aaaaaaaaaaaaaaaa", Role::Admin);
    let busy = caller("tok_bbbbbbbbbbbbbbbb", Role::Deployer);
    let late = caller("tok_cccccccccccccccc", Role::Viewer);

    for _ in 0..100 {
        limits.admit_at(&admin, t0).expect("admins are not limited");
    }
    assert_eq!(limits.buckets(), 0, "admins get no bucket");

    for _ in 0..5 {
        limits.admit_at(&busy, t0).expect("the burst");
    }
    let refused = limits.admit_at(&busy, t0).expect_err("over the burst");
    assert_eq!(refused.code_name(), "RESOURCE_EXHAUSTED");
    assert!(
        refused.to_string().contains("retry after 100 ms"),
        "{refused}"
    );
    // A tenth of a second later, one request's worth has accrued.
    let later = t0 + Duration::from_millis(100);
    limits.admit_at(&busy, later).expect("refilled by one");
    limits.admit_at(&busy, later).expect_err("by one only");
    assert_eq!(limits.buckets(), 1);

    // Long after, the idle bucket (full again, so no different from none)
    // is dropped by the next sweep; the new caller's bucket stays.
    let much_later = t0 + Duration::from_secs(60);
    limits.admit_at(&late, much_later).expect("a fresh bucket");
    assert_eq!(limits.buckets(), 1);
    for _ in 0..5 {
        limits
            .admit_at(&busy, much_later)
            .expect("a dropped bucket starts full");
    }
}

#[test]
fn the_quota_keys_are_read_from_the_config_file_and_zero_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("deployd.toml");
    std::fs::write(
        &path,
        "[quotas]\nmax_projects_per_workspace = 7\nrequests_per_second_per_token = 5\nburst_per_token = 9\n",
    )
    .expect("write config");
    let config = deployd::Config::from_file(&path).expect("valid config");
    assert_eq!(config.quotas.max_projects_per_workspace, 7);
    assert_eq!(config.quotas.requests_per_second_per_token, 5);
    assert_eq!(config.quotas.burst_per_token, 9);

    for key in [
        "max_projects_per_workspace",
        "requests_per_second_per_token",
        "burst_per_token",
    ] {
        std::fs::write(&path, format!("[quotas]\n{key} = 0\n")).expect("write config");
        let refused = deployd::Config::from_file(&path).expect_err("zero is refused");
        assert!(
            refused
                .to_string()
                .contains(&format!("quotas.{key} must be greater than 0")),
            "{refused:#}"
        );
    }
}
