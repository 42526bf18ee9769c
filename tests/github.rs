//! GitHub: a project connected to a repository deploys what is pushed to
//! it (signed deliveries to the webhook listener), and GitHub hears each
//! deployment's state as a commit status (a fake GitHub API on 127.0.0.1
//! records them), also when it failed to take one and after a restart.

mod common;

use std::time::Duration;

use common::github::*;
use common::http::get;
use common::*;
use deployd::pb;
use deployd::pb::DeploymentStatus;

const REPO: &str = "Acme/Web";
const CLONE_URL: &str = "https://github.com/Acme/Web.git";
const SHA_SLOW: &str = "5105105105105105105105105105105105105105";
const SHA_C: &str = "ccccccc333333333333333333333333333333333";

/// `fast_config` where `SHA_SLOW` builds for 30 s.
// The simulated builder is the only kind today; the pattern stays
// refutable once there are others.
#[allow(irrefutable_let_patterns)]
fn config() -> deployd::Config {
    let mut config = fast_config();
    if let deployd::config::BuilderConfig::Simulated { rules, .. } = &mut config.builder {
        rules.push(build_rule(None, Some(SHA_SLOW), Some(30_000), false));
    }
    config
}

struct World {
    daemon: TestDaemon,
    fake: FakeGitHub,
    project: pb::Project,
    _files: GithubFiles,
}

/// A daemon with the webhook listener and statuses to a fake GitHub, and
/// project `web` of workspace `acme` connected to `Acme/Web`.
async fn world() -> World {
    let fake = FakeGitHub::start().await;
    let files = GithubFiles::new();
    let daemon = TestDaemon::start_with(files.config(config(), &fake)).await;
    let project = daemon.project("acme", "web").await;
    connect(&daemon, &project.id, REPO).await;
    World {
        daemon,
        fake,
        project,
        _files: files,
    }
}

async fn connect(
    daemon: &TestDaemon,
    project_id: &str,
    repository: &str,
) -> pb::RepositoryConnection {
    daemon
        .github()
        .await
        .connect_repository(pb::ConnectRepositoryRequest {
            project_id: project_id.into(),
            repository: repository.into(),
            ..Default::default()
        })
        .await
        .expect("connect repository")
        .into_inner()
        .connection
        .expect("connection")
}

async fn push_to(world: &World, delivery: &str, git_ref: &str, sha: &str) -> Delivered {
    deliver(
        world.daemon.webhook(),
        "push",
        delivery,
        &push(REPO, git_ref, sha),
        Signature::Good,
    )
    .await
}

/// Waits until GitHub accepted a status of `state` for `sha`.
async fn accepted(fake: &FakeGitHub, sha: &str, state: &str) -> Recorded {
    eventually(
        &format!("GitHub accepts a {state} status for {sha}"),
        Duration::from_secs(10),
        || async {
            fake.accepted(REPO, sha)
                .into_iter()
                .find(|r| r.state() == state)
        },
    )
    .await
}

#[tokio::test]
async fn a_delivery_without_a_good_signature_is_refused_and_changes_nothing() {
    let world = world().await;
    let body = push(REPO, "refs/heads/main", SHA_A);
    let forged = sign_other_body(&body);
    for (signature, what) in [
        (Signature::Missing, "no signature"),
        (Signature::WrongSecret, "another secret"),
        (Signature::Header(forged), "the signature of another body"),
        (Signature::Header("sha256=zz".into()), "not hex"),
        (Signature::Header("sha1=00".into()), "another algorithm"),
    ] {
        let answer = deliver(world.daemon.webhook(), "push", "d-1", &body, signature).await;
        assert_eq!(answer.status, 401, "{what}: {answer:?}");
    }
    let answer = deliver(
        world.daemon.webhook(),
        "ping",
        "d-ping",
        &serde_json::json!({"zen": "Design for failure."}),
        Signature::Missing,
    )
    .await;
    assert_eq!(answer.status, 401, "an unsigned ping: {answer:?}");
    assert!(world.daemon.list(&world.project.id).await.is_empty());
    assert!(world.fake.requests().is_empty());

    // The same push, signed, deploys: the refusals were about the
    // signature alone, and did not use up the delivery id.
    let answer = push_to(&world, "d-1", "refs/heads/main", SHA_A).await;
    assert_eq!(answer.status, 201, "{answer:?}");
}

fn sign_other_body(body: &serde_json::Value) -> String {
    let mut other = body.clone();
    other["after"] = serde_json::Value::String(SHA_B.into());
    deployd::webhook::signature::sign(SECRET, other.to_string().as_bytes())
}

#[tokio::test]
async fn a_signed_ping_is_answered() {
    let world = world().await;
    let answer = deliver(
        world.daemon.webhook(),
        "ping",
        "d-ping",
        &serde_json::json!({"zen": "Design for failure.", "hook_id": 1}),
        Signature::Good,
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body.trim(), "pong");
    assert!(world.daemon.list(&world.project.id).await.is_empty());
}

#[tokio::test]
async fn a_push_deploys_the_default_branch_to_production_and_others_to_preview() {
    let world = world().await;
    let daemon = &world.daemon;

    let answer = push_to(&world, "d-main", "refs/heads/main", SHA_A).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(answer.json()["environment"], "production");
    let production = answer.deployment_id();
    let deployment = daemon
        .wait_status(&production, DeploymentStatus::Ready)
        .await;
    assert_eq!(deployment.environment_slug, "production");
    assert_eq!(deployment.branch, "main");
    let Some(pb::deployment::Source::Git(git)) = &deployment.source else {
        panic!("not a git source: {deployment:?}");
    };
    assert_eq!(git.commit_sha, SHA_A);
    assert_eq!(git.repository, CLONE_URL);
    assert_eq!(
        deployment.git_commit.as_ref().map(|c| c.message.as_str()),
        Some("Update the page")
    );

    let answer = push_to(&world, "d-feature", "refs/heads/feature/login", SHA_B).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let preview = answer.deployment_id();
    let deployment = daemon.wait_status(&preview, DeploymentStatus::Ready).await;
    assert_eq!(deployment.environment_slug, "preview");
    assert_eq!(deployment.branch, "feature/login");

    // The edge serves each where its environment's names point.
    let edge = daemon.edge();
    let live = get(edge, "web-acme.deployd.local", &[]).await;
    assert_eq!(live.status, 200, "{live:?}");
    assert_eq!(live.deployment(), production);
    let branch = get(edge, "web-git-feature-login-acme.deployd.local", &[]).await;
    assert_eq!(branch.deployment(), preview, "{branch:?}");
    assert_eq!(
        get(edge, "web-preview-acme.deployd.local", &[])
            .await
            .deployment(),
        preview
    );
}

#[tokio::test]
async fn tags_deleted_branches_other_events_and_unknown_repositories_are_ignored() {
    let world = world().await;
    let daemon = &world.daemon;

    let tag = push_to(&world, "d-tag", "refs/tags/v1.0.0", SHA_A).await;
    assert_eq!(tag.status, 202, "{tag:?}");
    let mut deleted = push(
        REPO,
        "refs/heads/feature/old",
        "0000000000000000000000000000000000000000",
    );
    deleted["deleted"] = serde_json::Value::Bool(true);
    let answer = deliver(daemon.webhook(), "push", "d-del", &deleted, Signature::Good).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let issue = deliver(
        daemon.webhook(),
        "issues",
        "d-issue",
        &serde_json::json!({"action": "opened"}),
        Signature::Good,
    )
    .await;
    assert_eq!(issue.status, 202, "{issue:?}");
    let elsewhere = deliver(
        daemon.webhook(),
        "push",
        "d-other",
        &push("Acme/Other", "refs/heads/main", SHA_A),
        Signature::Good,
    )
    .await;
    assert_eq!(elsewhere.status, 202, "{elsewhere:?}");
    assert!(daemon.list(&world.project.id).await.is_empty());

    // Disconnected, the repository's pushes are ignored too.
    daemon
        .github()
        .await
        .disconnect_repository(pb::DisconnectRepositoryRequest {
            project_id: world.project.id.clone(),
        })
        .await
        .expect("disconnect");
    let answer = push_to(&world, "d-after", "refs/heads/main", SHA_A).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert!(daemon.list(&world.project.id).await.is_empty());
}

#[tokio::test]
async fn a_redelivery_creates_nothing_new() {
    let world = world().await;
    let first = push_to(
        &world,
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "refs/heads/main",
        SHA_A,
    )
    .await;
    assert_eq!(first.status, 201, "{first:?}");
    let again = push_to(
        &world,
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "refs/heads/main",
        SHA_A,
    )
    .await;
    assert_eq!(again.status, 201, "{again:?}");
    assert_eq!(again.deployment_id(), first.deployment_id());
    let deployments = world.daemon.list(&world.project.id).await;
    assert_eq!(deployments.len(), 1, "{deployments:?}");

    // The same delivery id for another push is refused, not replayed.
    let other = push_to(
        &world,
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "refs/heads/main",
        SHA_B,
    )
    .await;
    assert_eq!(other.status, 422, "{other:?}");
    assert_eq!(world.daemon.list(&world.project.id).await.len(), 1);

    // The push's deployment is in the audit log once, by the webhook.
    let events =
        deployd::pb::audit_service_client::AuditServiceClient::new(world.daemon.channel().await)
            .list_audit_events(pb::ListAuditEventsRequest {
                project_id: world.project.id.clone(),
                ..Default::default()
            })
            .await
            .expect("audit log")
            .into_inner()
            .events;
    let pushes: Vec<_> = events.iter().filter(|e| e.rpc == "GitHubPush").collect();
    assert_eq!(pushes.len(), 1, "{events:?}");
    let push = pushes[0];
    assert_eq!(push.token_id, deployd::webhook::WEBHOOK_TOKEN_ID);
    assert_eq!(push.workspace_id, world.project.workspace_id);
    assert_eq!(push.result, "OK");
    assert!(
        push.ids.contains(&first.deployment_id())
            && push
                .ids
                .contains(&"delivery:72d3162e-cc78-11e3-81ab-4c9367dc0958".to_string()),
        "{push:?}"
    );
}

#[tokio::test]
async fn repository_connections_are_validated_and_unique() {
    let world = world().await;
    let daemon = &world.daemon;
    let mut github = daemon.github().await;

    let connection = github
        .get_repository_connection(pb::GetRepositoryConnectionRequest {
            project_id: world.project.id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .connection
        .expect("connection");
    assert_eq!(connection.repository, REPO);
    assert_eq!(connection.clone_url, CLONE_URL);

    let refused = |request: pb::ConnectRepositoryRequest| {
        let mut github = github.clone();
        async move {
            github
                .connect_repository(request)
                .await
                .expect_err("refused")
        }
    };
    let other = daemon.project("beta", "site").await;
    // Another project cannot take it, whatever the case of the name.
    let status = refused(pb::ConnectRepositoryRequest {
        project_id: other.id.clone(),
        repository: "acme/WEB".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
    for (repository, clone_url) in [
        ("acme", ""),
        ("acme/web/extra", ""),
        ("-acme/web", ""),
        ("acme/web", "https://user:password@github.com/acme/web.git"),
        ("acme/web", "http://169.254.169.254/repo"),
    ] {
        let status = refused(pb::ConnectRepositoryRequest {
            project_id: other.id.clone(),
            repository: repository.into(),
            clone_url: clone_url.into(),
            ..Default::default()
        })
        .await;
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{repository} {clone_url}: {status:?}"
        );
    }
    let status = refused(pb::ConnectRepositoryRequest {
        project_id: "prj_0000000000000000".into(),
        repository: "acme/new".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");

    // Reconnecting the project to another repository frees the first.
    connect(daemon, &world.project.id, "Acme/Web2").await;
    let taken = connect(daemon, &other.id, "Acme/Web").await;
    assert_eq!(taken.project_id, other.id);
    let answer = push_to(&world, "d-1", "refs/heads/main", SHA_A).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(answer.json()["project_id"], other.id.as_str());

    github
        .disconnect_repository(pb::DisconnectRepositoryRequest {
            project_id: world.project.id.clone(),
        })
        .await
        .expect("disconnect");
    let status = github
        .disconnect_repository(pb::DisconnectRepositoryRequest {
            project_id: world.project.id.clone(),
        })
        .await
        .expect_err("nothing left to disconnect");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn github_hears_pending_while_building_then_success_with_the_deployments_hostname() {
    let world = world().await;
    let fake = &world.fake;

    // A build that takes 30 s: GitHub shows it pending meanwhile.
    let slow = push_to(&world, "d-slow", "refs/heads/main", SHA_SLOW).await;
    assert_eq!(slow.status, 201, "{slow:?}");
    let pending = accepted(fake, SHA_SLOW, "pending").await;
    assert_eq!(pending.method, "POST");
    assert_eq!(pending.authorization, format!("Bearer {TOKEN}"));
    assert_eq!(pending.body["context"], "deployd/production");
    assert!(pending.body.get("target_url").is_none(), "{pending:?}");
    assert_eq!(
        world.daemon.get(&slow.deployment_id()).await.status,
        DeploymentStatus::Building as i32
    );

    // A quick one ends in success, linking to its own hostname.
    let quick = push_to(&world, "d-quick", "refs/heads/feature/x", SHA_A).await;
    let id = quick.deployment_id();
    world.daemon.wait_status(&id, DeploymentStatus::Ready).await;
    let success = accepted(fake, SHA_A, "success").await;
    let host = format!(
        "web-dep-{}-acme.deployd.local",
        id.trim_start_matches("dep_")
    );
    assert_eq!(success.body["target_url"], format!("https://{host}"));
    assert_eq!(success.body["context"], "deployd/preview");
    // That hostname serves the deployment.
    assert_eq!(get(world.daemon.edge(), &host, &[]).await.deployment(), id);
    // Everything before the success was pending, nothing came after.
    let states: Vec<String> = fake
        .statuses(REPO, SHA_A)
        .iter()
        .map(|r| r.state().to_string())
        .collect();
    assert_eq!(
        states.last().map(String::as_str),
        Some("success"),
        "{states:?}"
    );
    assert!(
        states[..states.len() - 1].iter().all(|s| s == "pending"),
        "{states:?}"
    );
}

#[tokio::test]
async fn a_failed_build_is_a_failure_on_github() {
    let world = world().await;
    // `fast_config` fails every build of a branch named `broken`.
    let answer = push_to(&world, "d-broken", "refs/heads/broken", SHA_C).await;
    let id = answer.deployment_id();
    let failed = world
        .daemon
        .wait_status(&id, DeploymentStatus::Failed)
        .await;
    let failure = accepted(&world.fake, SHA_C, "failure").await;
    assert_eq!(failure.body["context"], "deployd/preview");
    let description = failure.body["description"].as_str().unwrap_or_default();
    assert!(description.starts_with("Failed: "), "{description}");
    assert!(!failed.error_message.is_empty());
    assert!(failure.body.get("target_url").is_none(), "{failure:?}");
}

#[tokio::test]
async fn a_status_github_answers_500_is_sent_again() {
    let world = world().await;
    world.fake.answer_next(&[500, 502]);
    let answer = push_to(&world, "d-1", "refs/heads/main", SHA_A).await;
    world
        .daemon
        .wait_status(&answer.deployment_id(), DeploymentStatus::Ready)
        .await;
    accepted(&world.fake, SHA_A, "success").await;
    let answered: Vec<u16> = world
        .fake
        .statuses(REPO, SHA_A)
        .iter()
        .map(|r| r.answered)
        .collect();
    assert_eq!(&answered[..2], &[500, 502], "{answered:?}");
    // The refused status was sent again: GitHub ends up with both states.
    let states: Vec<String> = world
        .fake
        .accepted(REPO, SHA_A)
        .iter()
        .map(|r| r.state().to_string())
        .collect();
    assert_eq!(
        states.last().map(String::as_str),
        Some("success"),
        "{states:?}"
    );
}

#[tokio::test]
async fn a_status_not_delivered_before_a_restart_is_sent_after_it() {
    let fake = FakeGitHub::start().await;
    let files = GithubFiles::new();
    let mut config = files.config(config(), &fake);
    // Never give up within this test.
    config.github.status_max_attempts = 1_000_000;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    connect(&daemon, &project.id, REPO).await;
    fake.answer_always(503);

    let answer = deliver(
        daemon.webhook(),
        "push",
        "d-1",
        &push(REPO, "refs/heads/main", SHA_A),
        Signature::Good,
    )
    .await;
    let id = answer.deployment_id();
    daemon.wait_status(&id, DeploymentStatus::Ready).await;
    eventually(
        "the success status is tried",
        Duration::from_secs(10),
        || async {
            fake.statuses(REPO, SHA_A)
                .iter()
                .any(|r| r.state() == "success")
                .then_some(())
        },
    )
    .await;
    assert!(fake.accepted(REPO, SHA_A).is_empty());

    let stopped = daemon.stop().await;
    fake.answer_always(201);
    let daemon = stopped.start().await;
    let success = accepted(&fake, SHA_A, "success").await;
    assert!(
        success.body["target_url"]
            .as_str()
            .is_some_and(|url| url.starts_with("https://web-dep-")),
        "{success:?}"
    );
    assert_eq!(daemon.get(&id).await.status, DeploymentStatus::Ready as i32);
}

#[tokio::test]
async fn a_delivery_larger_than_the_bound_is_refused_unread() {
    let fake = FakeGitHub::start().await;
    let files = GithubFiles::new();
    let mut config = files.config(config(), &fake);
    config.github.max_body_bytes = 2048;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    connect(&daemon, &project.id, REPO).await;

    let mut body = push(REPO, "refs/heads/main", SHA_A);
    body["head_commit"]["message"] = serde_json::Value::String("x".repeat(4096));
    let answer = deliver(daemon.webhook(), "push", "d-big", &body, Signature::Good).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(daemon.list(&project.id).await.is_empty());
    // Within the bound, the same push deploys.
    let body = push(REPO, "refs/heads/main", SHA_A);
    let answer = deliver(daemon.webhook(), "push", "d-big", &body, Signature::Good).await;
    assert_eq!(answer.status, 201, "{answer:?}");
}

/// `deployd ARGS...` against the daemon: exit success, stdout, stderr.
async fn cli(daemon: &TestDaemon, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_deployd"))
        .arg("--addr")
        .arg(&daemon.addr)
        .arg("--token")
        .arg(&daemon.token)
        .args(args)
        .output()
        .await
        .expect("run the cli");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_connects_shows_and_disconnects_a_repository() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let id = project.id.as_str();

    let (ok, out, err) = cli(
        &daemon,
        &[
            "github",
            "connect",
            "--project",
            id,
            "--repo",
            "acme/web",
            "--context",
            "app",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("acme/web"), "{out}");
    assert!(out.contains("https://github.com/acme/web.git"), "{out}");

    let (ok, out, err) = cli(&daemon, &["--json", "github", "get", "--project", id]).await;
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(json["repository"], "acme/web", "{json}");
    assert_eq!(json["contextPath"], "app", "{json}");

    let (ok, _, err) = cli(&daemon, &["github", "disconnect", "--project", id]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&daemon, &["github", "get", "--project", id]).await;
    assert!(!ok);
    assert!(err.contains("NOT_FOUND"), "{err}");
    let (ok, _, err) = cli(
        &daemon,
        &[
            "github",
            "connect",
            "--project",
            id,
            "--repo",
            "not a repository",
        ],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("INVALID_ARGUMENT"), "{err}");
}

#[tokio::test]
async fn without_a_token_nothing_is_sent_and_nothing_is_kept_for_later() {
    let fake = FakeGitHub::start().await;
    let files = GithubFiles::new();
    let mut config = files.config(config(), &fake);
    config.github.token_file = None;
    let daemon = TestDaemon::start_with(config).await;
    let project = daemon.project("acme", "web").await;
    connect(&daemon, &project.id, REPO).await;
    let answer = deliver(
        daemon.webhook(),
        "push",
        "d-1",
        &push(REPO, "refs/heads/main", SHA_A),
        Signature::Good,
    )
    .await;
    let id = answer.deployment_id();
    daemon.wait_status(&id, DeploymentStatus::Ready).await;
    let store = daemon.handle().store.clone();
    let deployment = deployd::model::DeploymentId::parse(&id, "id").unwrap();
    eventually(
        "the success is settled, unsent",
        Duration::from_secs(10),
        || async {
            let reported = store.reported_status(&deployment).ok().flatten()?;
            (reported.state == deployd::model::github::CommitState::Success
                && store.status_outbox(10).ok()?.is_empty())
            .then_some(reported)
        },
    )
    .await;
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[tokio::test]
async fn deployd_check_verifies_the_github_tables() {
    let world = world().await;
    let answer = push_to(&world, "d-1", "refs/heads/main", SHA_A).await;
    world
        .daemon
        .wait_status(&answer.deployment_id(), DeploymentStatus::Ready)
        .await;
    accepted(&world.fake, SHA_A, "success").await;
    let stopped = world.daemon.stop().await;
    let path = stopped.db_path();
    let report = deployd::io::store::check::check_file(&path).expect("check");
    assert!(report.is_sound(), "{}", report.summary());

    // Behind the daemon's back: an outbox row of no deployment, and an
    // index entry of a repository no project has connected.
    {
        let db = redb::Database::open(&path).expect("open the data file");
        let txn = db.begin_write().unwrap();
        {
            let outbox: redb::TableDefinition<&str, ()> =
                redb::TableDefinition::new("github_outbox");
            txn.open_table(outbox)
                .unwrap()
                .insert("dep_0000000000000000", ())
                .unwrap();
            let index: redb::TableDefinition<&str, &str> =
                redb::TableDefinition::new("github_repositories");
            txn.open_table(index)
                .unwrap()
                .insert("acme/ghost", world.project.id.as_str())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let report = deployd::io::store::check::check_file(&path).expect("check");
    let problems = report.problems.join("\n");
    assert!(
        problems.contains("outbox lists unknown deployment dep_0000000000000000"),
        "{problems}"
    );
    assert!(problems.contains("acme/ghost"), "{problems}");
}
