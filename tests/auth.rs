//! Tokens and the audit log over real gRPC: how a token is accepted,
//! refused and revoked, the bootstrap admin token, what is stored of a
//! token (its hash only), and the audit events of changes.

mod common;

use common::*;
use deployd::io::store::Mutation;
use deployd::model::{AuditEvent, AuditEventId, AuditOutcome, Role, TokenId, WorkspaceId};
use deployd::pb;
use deployd::pb::audit_service_client::AuditServiceClient;
use deployd::pb::token_service_client::TokenServiceClient;
use deployd::pb::workspace_service_client::WorkspaceServiceClient;
use tonic::Code;

async fn create_token(daemon: &TestDaemon, role: pb::Role, workspace: &str) -> (String, String) {
    let created = TokenServiceClient::new(daemon.channel().await)
        .create_token(pb::CreateTokenRequest {
            role: role as i32,
            workspace_id: workspace.into(),
            description: "test".into(),
        })
        .await
        .expect("create token")
        .into_inner();
    (created.token.expect("token").id, created.secret)
}

async fn get_workspace(
    daemon: &TestDaemon,
    token: Option<&str>,
    id: &str,
) -> Result<(), tonic::Status> {
    WorkspaceServiceClient::new(daemon.channel_with(token).await)
        .get_workspace(pb::GetWorkspaceRequest {
            workspace_id: id.into(),
        })
        .await
        .map(drop)
}

async fn audit(
    daemon: &TestDaemon,
    token: &str,
    request: pb::ListAuditEventsRequest,
) -> Result<pb::ListAuditEventsResponse, tonic::Status> {
    AuditServiceClient::new(daemon.channel_with(Some(token)).await)
        .list_audit_events(request)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_revoked_token_is_refused_from_the_answer_on_and_bad_headers_say_unauthenticated() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let ws = project.workspace_id.clone();
    let (id, secret) = create_token(&daemon, pb::Role::Viewer, &ws).await;
    get_workspace(&daemon, Some(&secret), &ws)
        .await
        .expect("a fresh token works");

    TokenServiceClient::new(daemon.channel().await)
        .revoke_token(pb::RevokeTokenRequest {
            token_id: id.clone(),
        })
        .await
        .expect("revoke");
    let refused = get_workspace(&daemon, Some(&secret), &ws)
        .await
        .expect_err("revoked");
    assert_eq!(refused.code(), Code::Unauthenticated);
    // Revoking again is not an error, and the list shows when it happened.
    let again = TokenServiceClient::new(daemon.channel().await)
        .revoke_token(pb::RevokeTokenRequest { token_id: id })
        .await
        .expect("revoke again")
        .into_inner();
    assert!(again.token.expect("token").revoked_at.is_some());

    let (_, good) = create_token(&daemon, pb::Role::Viewer, &ws).await;
    let (good_id, good_secret) = good.split_once('.').expect("id.secret");
    let flipped: String = good_secret
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    for bad in [
        format!("{good_id}.{flipped}"),
        good_id.to_string(),
        "Bearer".to_string(),
        String::new(),
    ] {
        let refused = get_workspace(&daemon, Some(&bad), &ws)
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Code::Unauthenticated, "{bad:?}");
    }
    let refused = get_workspace(&daemon, None, &ws)
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().contains("Bearer"),
        "{}",
        refused.message()
    );
    // The scheme is case-insensitive.
    let mut client = WorkspaceServiceClient::new(daemon.channel_with(None).await);
    let mut request = tonic::Request::new(pb::GetWorkspaceRequest {
        workspace_id: ws.clone(),
    });
    request
        .metadata_mut()
        .insert("authorization", format!("bearer {good}").parse().unwrap());
    client
        .get_workspace(request)
        .await
        .expect("lower-case scheme");
}

#[tokio::test]
async fn health_is_open_and_reflection_needs_a_token_unless_configured_open() {
    use tonic_reflection::pb::v1;
    let list = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let daemon = TestDaemon::start().await;
    assert_eq!(
        common::storage::health(&daemon.addr).await,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let refused =
        v1::server_reflection_client::ServerReflectionClient::new(daemon.channel_with(None).await)
            .server_reflection_info(tokio_stream::iter(vec![list.clone()]))
            .await
            .expect_err("reflection without a token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    v1::server_reflection_client::ServerReflectionClient::new(daemon.channel().await)
        .server_reflection_info(tokio_stream::iter(vec![list.clone()]))
        .await
        .expect("reflection with a token");
    drop(daemon);

    let mut config = fast_config();
    config.auth.open_reflection = true;
    let daemon = TestDaemon::start_with(config).await;
    v1::server_reflection_client::ServerReflectionClient::new(daemon.channel_with(None).await)
        .server_reflection_info(tokio_stream::iter(vec![list]))
        .await
        .expect("open reflection");
}

#[tokio::test]
async fn the_first_start_prints_an_admin_token_that_is_stored_only_as_a_hash() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_config();
    config.data_dir = dir.path().to_path_buf();
    let start = |config: deployd::Config| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (observed, handle) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(deployd::serve_observed(
            listener,
            config,
            async move {
                let _ = stopped.await;
            },
            move |handle| {
                let _ = observed.send(handle.bootstrap_token);
            },
        ));
        (addr, handle.await.expect("serving"), stop, task)
    };
    let (addr, token, stop, task) = start(config.clone()).await;
    let token = token.expect("a first start prints a token");
    let channel = tonic::transport::Channel::from_shared(addr)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let channel = deployd::cli::with_token(channel, Some(&token)).unwrap();
    let workspace = WorkspaceServiceClient::new(channel)
        .create_workspace(pb::CreateWorkspaceRequest {
            slug: "acme".into(),
            name: "Acme".into(),
        })
        .await
        .expect("the printed token is an admin's")
        .into_inner();
    assert!(workspace.workspace.is_some());
    let _ = stop.send(());
    task.await.unwrap().unwrap();

    let (addr, again, stop, task) = start(config.clone()).await;
    assert_eq!(again, None, "only the first start makes one");
    let channel = tonic::transport::Channel::from_shared(addr)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let channel = deployd::cli::with_token(channel, Some(&token)).unwrap();
    TokenServiceClient::new(channel)
        .list_tokens(pb::ListTokensRequest::default())
        .await
        .expect("the token still works after a restart");
    let _ = stop.send(());
    task.await.unwrap().unwrap();

    let file = std::fs::read(config.db_path()).unwrap();
    let (_, secret) = token.split_once('.').unwrap();
    assert!(
        !file.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the secret is in the data file"
    );
}

#[tokio::test]
async fn a_bootstrap_file_without_a_token_stops_the_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin.token");
    std::fs::write(&file, "hunter2").unwrap();
    let mut config = fast_config();
    config.data_dir = dir.path().join("data");
    config.auth.bootstrap_token_file = Some(file);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = deployd::serve(listener, config, std::future::pending())
        .await
        .expect_err("refused")
        .to_string();
    assert!(error.contains("does not hold a token"), "{error}");
}

#[tokio::test]
async fn changes_are_audited_with_who_what_and_result_and_workspace_tokens_see_their_own() {
    let daemon = TestDaemon::start().await;
    let web = daemon.project("acme", "web").await;
    let other = daemon.project("other", "api").await;
    let (deployer_id, deployer) =
        create_token(&daemon, pb::Role::Deployer, &web.workspace_id).await;
    let id = deploy_as(&daemon, &deployer, &web.id).await;
    daemon.wait_status(&id, pb::DeploymentStatus::Ready).await;
    // Refused by the store: the slug is taken. Audited with its code.
    let taken = WorkspaceServiceClient::new(daemon.channel().await)
        .create_workspace(pb::CreateWorkspaceRequest {
            slug: "acme".into(),
            name: "again".into(),
        })
        .await
        .expect_err("slug taken");
    assert_eq!(taken.code(), Code::AlreadyExists);

    let all = audit(
        &daemon,
        &daemon.token,
        pb::ListAuditEventsRequest::default(),
    )
    .await
    .expect("admin lists all")
    .events;
    let deploy = all
        .iter()
        .find(|e| e.rpc == "CreateDeployment")
        .expect("the deploy is audited");
    assert_eq!(deploy.token_id, deployer_id);
    assert_eq!(deploy.role, pb::Role::Deployer as i32);
    assert_eq!(deploy.workspace_id, web.workspace_id);
    assert_eq!(deploy.project_id, web.id);
    assert_eq!(deploy.ids, std::slice::from_ref(&id));
    assert_eq!(deploy.result, "OK");
    let refused = all
        .iter()
        .find(|e| e.rpc == "CreateWorkspace" && e.result != "OK")
        .expect("the refused workspace is audited");
    assert_eq!(refused.result, "ALREADY_EXISTS");
    // Newest first.
    let times: Vec<_> = all.iter().map(|e| e.at.unwrap().seconds).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    // A workspace token sees its own workspace only, whatever it asks.
    let own = audit(&daemon, &deployer, pb::ListAuditEventsRequest::default())
        .await
        .expect("own events")
        .events;
    assert!(!own.is_empty());
    assert!(
        own.iter().all(|e| e.workspace_id == web.workspace_id),
        "{own:?}"
    );
    for request in [
        pb::ListAuditEventsRequest {
            workspace_id: other.workspace_id.clone(),
            ..Default::default()
        },
        pb::ListAuditEventsRequest {
            project_id: other.id.clone(),
            ..Default::default()
        },
    ] {
        let refused = audit(&daemon, &deployer, request)
            .await
            .expect_err("other workspace");
        assert_eq!(refused.code(), Code::NotFound);
    }
    let by_project = audit(
        &daemon,
        &daemon.token,
        pb::ListAuditEventsRequest {
            project_id: other.id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .events;
    assert_eq!(
        by_project
            .iter()
            .map(|e| e.rpc.as_str())
            .collect::<Vec<_>>(),
        ["CreateProject"]
    );

    // Paged: one at a time, the same events in the same order.
    let mut paged = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = audit(
            &daemon,
            &daemon.token,
            pb::ListAuditEventsRequest {
                page_size: 1,
                page_token,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        paged.extend(page.events);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(paged, all);
}

#[tokio::test]
async fn audit_events_older_than_the_retention_are_pruned() {
    let daemon = TestDaemon::start().await;
    daemon.project("acme", "web").await;
    let stopped = daemon.stop().await;
    let day = 24 * 3600 * 1000;
    let now = deployd::model::now_millis();
    let event = |age_days: u64| AuditEvent {
        id: AuditEventId::generate(),
        at: now - age_days * day,
        token_id: TokenId::generate(),
        role: Role::Admin,
        workspace_id: Some(WorkspaceId::generate()),
        project_id: None,
        rpc: "CreateWorkspace".into(),
        ids: Vec::new(),
        outcome: AuditOutcome::Ok,
    };
    let old = event(10);
    let recent = event(2);
    stopped
        .write_offline(vec![
            Mutation::Audit(Box::new(old.clone())),
            Mutation::Audit(Box::new(recent.clone())),
        ])
        .await;
    let mut config = stopped.config.clone();
    config.audit.retention_days = 5;
    let daemon = stopped.start_with(config).await;
    // The pruner runs once at start.
    let events = eventually(
        "the old event is pruned",
        std::time::Duration::from_secs(10),
        || async {
            let events = audit(
                &daemon,
                &daemon.token,
                pb::ListAuditEventsRequest::default(),
            )
            .await
            .unwrap()
            .events;
            (!events.iter().any(|e| e.id == old.id.as_str())).then_some(events)
        },
    )
    .await;
    assert!(events.iter().any(|e| e.id == recent.id.as_str()));
    assert!(events.iter().any(|e| e.rpc == "CreateProject"));
}

async fn deploy_as(daemon: &TestDaemon, token: &str, project: &str) -> String {
    deployd::pb::deployment_service_client::DeploymentServiceClient::new(
        daemon.channel_with(Some(token)).await,
    )
    .create_deployment(image_request(project, "production", "nginx:1"))
    .await
    .expect("deploy")
    .into_inner()
    .deployment_id
}

/// Runs the CLI against `daemon` with `token`; returns its stdout as JSON.
async fn cli(daemon: &TestDaemon, token: &str, args: &[&str]) -> serde_json::Value {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_deployd"))
        .args(["--addr", &daemon.addr, "--token", token, "--json"])
        .args(args)
        .output()
        .await
        .expect("run the cli");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json")
}

#[tokio::test]
async fn the_cli_creates_lists_and_revokes_tokens_and_reads_the_audit_log() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let ws = project.workspace_id.as_str();
    let created = cli(
        &daemon,
        &daemon.token,
        &["token", "create", "--workspace", ws, "--role", "viewer"],
    )
    .await;
    let secret = created["secret"].as_str().expect("secret").to_string();
    let id = created["token"]["id"].as_str().expect("id").to_string();
    let listed = cli(
        &daemon,
        &daemon.token,
        &["token", "list", "--workspace", ws],
    )
    .await;
    assert_eq!(
        listed["tokens"][0]["id"].as_str(),
        Some(id.as_str()),
        "{listed}"
    );
    assert!(
        !listed.to_string().contains(&secret),
        "a list shows no secret"
    );

    // The viewer reads its workspace's audit log.
    let events = cli(&daemon, &secret, &["audit"]).await;
    let rpcs: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["rpc"].as_str())
        .collect();
    assert!(
        rpcs.contains(&"CreateToken") && rpcs.contains(&"CreateProject"),
        "{rpcs:?}"
    );

    cli(&daemon, &daemon.token, &["token", "revoke", &id]).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_deployd"))
        .args(["--addr", &daemon.addr, "--token", &secret, "audit"])
        .output()
        .await
        .expect("run the cli");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("UNAUTHENTICATED"), "{stderr}");
}
