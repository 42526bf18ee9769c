//! The podman builder, for real: a `file://` git repository becomes an
//! image in a local registry (Debian's `docker-registry`), a podman region
//! runs it by digest and the edge serves the commit's page. A broken
//! Dockerfile fails with its error lines; a daemon killed mid-build builds
//! at most once more. Skipped (with the reason printed) without podman,
//! git or the registry, unless `DEPLOYD_REQUIRE_PODMAN` is set.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::http::get;
use common::process::DaemonProcess;
use common::registry::{Registry, Repo, web_dockerfile};
use common::*;
use deployd::config::{BuilderConfig, RegionConfig};
use deployd::pb;
use deployd::pb::DeploymentStatus;
use deployd::pb::deployment_service_client::DeploymentServiceClient;

const LIVE_HOST: &str = "web-acme.deployd.local";

fn config(registry: &Registry) -> deployd::Config {
    let mut config = fast_config();
    config.regions = BTreeMap::from([(
        "local".to_string(),
        RegionConfig::Podman {
            socket: None,
            podman: "podman".into(),
        },
    )]);
    config.builder = BuilderConfig::Podman {
        slots: 2,
        registry: registry.host(),
        insecure_registry: true,
        allow_file_repositories: true,
        podman: "podman".into(),
        git: "git".into(),
    };
    config.region_timeout_ms = 60_000;
    config.call_timeout_ms = 60_000;
    config.readiness_poll_ms = 50;
    config
}

fn from_git(project: &str, repo: &Repo, branch: &str, sha: &str) -> pb::CreateDeploymentRequest {
    pb::CreateDeploymentRequest {
        project_id: project.into(),
        environment_slug: "production".into(),
        branch: branch.into(),
        source: Some(pb::create_deployment_request::Source::Git(pb::GitSource {
            repository: repo.url(),
            commit_sha: sha.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Removes what a test left in podman (containers, images) however it ends.
struct Cleanup {
    project: String,
    registry: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        podman::remove_project(&self.project);
        registry::remove_images(&self.registry);
    }
}

/// `registry/deployd/PROJECT@sha256:…`, split into name and digest.
fn by_digest<'a>(image: &'a str, registry: &Registry, project: &str) -> (&'a str, &'a str) {
    let prefix = format!("{}/", registry.host());
    let (name, digest) = image
        .strip_prefix(&prefix)
        .and_then(|rest| rest.split_once('@'))
        .unwrap_or_else(|| panic!("{image} is not an image by digest in {prefix}"));
    assert_eq!(name, format!("deployd/{project}"));
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    (name, digest)
}

#[tokio::test]
async fn commits_are_built_pushed_and_served_by_digest() {
    if !registry::available("commits_are_built_pushed_and_served_by_digest") {
        return;
    }
    let registry = Registry::start().await;
    let repo = Repo::new();
    let first_sha = repo.commit("v1", &web_dockerfile(""));
    let daemon = TestDaemon::start_with(config(&registry)).await;
    let project = daemon.project("acme", "web").await;
    let _cleanup = Cleanup {
        project: project.id.clone(),
        registry: registry.host(),
    };

    let first = daemon
        .create(from_git(&project.id, &repo, "main", &first_sha))
        .await;
    let ready = daemon.wait_status(&first, DeploymentStatus::Ready).await;
    let (name, digest) = by_digest(&ready.image, &registry, &project.id);
    assert!(
        registry.has(name, digest).await,
        "the registry has {digest}"
    );
    assert_eq!(registry.tags(name).await, std::slice::from_ref(&first));
    let edge = daemon.edge();
    assert_eq!(get(edge, LIVE_HOST, &[]).await.body, "v1\n");

    // The build's output was kept.
    let log = daemon
        .deployments()
        .await
        .get_build_log(pb::GetBuildLogRequest {
            deployment_id: first.clone(),
        })
        .await
        .expect("build log")
        .into_inner();
    assert!(
        log.lines.iter().any(|l| l.starts_with("==> fetching")),
        "{:?}",
        log.lines
    );
    assert!(
        log.lines.iter().any(|l| l.contains("COPY www /www")),
        "{:?}",
        log.lines
    );

    // A second commit serves its page; rolling back serves the first one
    // again without building anything.
    let second_sha = repo.commit("v2", &web_dockerfile(""));
    let second = daemon
        .create(from_git(&project.id, &repo, "main", &second_sha))
        .await;
    daemon.wait_status(&second, DeploymentStatus::Ready).await;
    assert_eq!(get(edge, LIVE_HOST, &[]).await.body, "v2\n");
    daemon.rollback(&second, &first).await.expect("rollback");
    assert_eq!(get(edge, LIVE_HOST, &[]).await.body, "v1\n");
    let mut both = vec![first.clone(), second.clone()];
    both.sort();
    assert_eq!(registry.tags(name).await, both, "one image per deployment");
    assert_eq!(daemon.get(&first).await.image, ready.image, "no rebuild");
}

#[tokio::test]
async fn hostile_addresses_and_branches_reach_git_as_single_arguments() {
    if !registry::available("hostile_addresses_and_branches_reach_git_as_single_arguments") {
        return;
    }
    let registry = Registry::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().to_path_buf();
    // The repository's path reads as a command substitution that would
    // create `root/pwned` if any shell saw it (its `/`s are directories).
    let trap = root.join("pwned");
    let relative = format!("$(touch${{IFS}}{})/repo", trap.display());
    let repo = Repo::at(dir, &relative);
    let sha = repo.commit("hostile", &web_dockerfile(""));
    let daemon = TestDaemon::start_with(config(&registry)).await;
    let project = daemon.project("acme", "web").await;
    let _cleanup = Cleanup {
        project: project.id.clone(),
        registry: registry.host(),
    };
    // The branch never reaches a program (the commit is fetched by sha);
    // it is stored and shown byte for byte.
    let branch = "main;$(touch${IFS}pwned)".to_string();
    let id = daemon
        .create(from_git(&project.id, &repo, &branch, &sha))
        .await;
    let ready = daemon.wait_status(&id, DeploymentStatus::Ready).await;
    assert_eq!(ready.branch, branch);
    assert_eq!(get(daemon.edge(), LIVE_HOST, &[]).await.body, "hostile\n");
    assert!(
        !trap.exists(),
        "nothing ran a shell on the address or branch"
    );
}

#[tokio::test]
async fn a_broken_dockerfile_fails_with_its_error_lines_and_takes_no_route() {
    if !registry::available("a_broken_dockerfile_fails_with_its_error_lines_and_takes_no_route") {
        return;
    }
    let registry = Registry::start().await;
    let repo = Repo::new();
    let sha = repo.commit("broken", &web_dockerfile("COPY no-such-file /nowhere"));
    let daemon = TestDaemon::start_with(config(&registry)).await;
    let project = daemon.project("acme", "web").await;
    let _cleanup = Cleanup {
        project: project.id.clone(),
        registry: registry.host(),
    };
    let id = daemon
        .create(from_git(&project.id, &repo, "main", &sha))
        .await;
    let failed = daemon.wait_status(&id, DeploymentStatus::Failed).await;
    assert!(
        failed.error_message.starts_with("podman build failed"),
        "{}",
        failed.error_message
    );
    assert!(
        failed.error_message.contains("no-such-file"),
        "the error quotes the build's own line: {}",
        failed.error_message
    );
    let build = failed
        .steps
        .iter()
        .find(|s| s.name == "build")
        .expect("build step");
    assert_eq!(build.error, failed.error_message);
    assert!(
        daemon.routes(&project.id).await.is_empty(),
        "no route taken"
    );
    assert!(
        registry
            .tags(&format!("deployd/{}", project.id))
            .await
            .is_empty()
    );

    // A commit that does not exist fails at the fetch, saying so.
    let missing = daemon
        .create(from_git(&project.id, &repo, "main", &"0".repeat(40)))
        .await;
    let failed = daemon.wait_status(&missing, DeploymentStatus::Failed).await;
    assert!(
        failed.error_message.starts_with("git fetch failed"),
        "{}",
        failed.error_message
    );
}

#[tokio::test]
async fn a_daemon_killed_during_a_build_builds_at_most_once_more() {
    if !registry::available("a_daemon_killed_during_a_build_builds_at_most_once_more") {
        return;
    }
    let registry = Registry::start().await;
    let repo = Repo::new();
    // A build step that takes a moment, so the kill lands inside the build.
    let sha = repo.commit(
        "after crash",
        &web_dockerfile("RUN [\"/bin/busybox\", \"sleep\", \"2\"]"),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    // The test runs the podman service itself: a daemon killed with
    // SIGKILL could not stop one it started.
    let socket = dir.path().join("podman.sock");
    let _service = PodmanService::start(&socket).await;
    let config_path = dir.path().join("deployd.toml");
    std::fs::write(
        &config_path,
        format!(
            "listen = \"127.0.0.1:0\"\n\
             data_dir = \"{data}\"\n\
             region_timeout_ms = 60000\n\
             readiness_poll_ms = 50\n\
             [edge]\n\
             listen = \"127.0.0.1:0\"\n\
             [regions.local]\n\
             driver = \"podman\"\n\
             socket = \"{socket}\"\n\
             [builder]\n\
             driver = \"podman\"\n\
             registry = \"{registry}\"\n\
             insecure_registry = true\n\
             allow_file_repositories = true\n",
            data = dir.path().join("data").display(),
            registry = registry.host(),
            socket = socket.display(),
        ),
    )
    .expect("config");

    let mut daemon = DaemonProcess::spawn(&config_path).await.expect("serving");
    let mut client = DeploymentServiceClient::new(daemon.channel().await);
    let mut projects =
        pb::project_service_client::ProjectServiceClient::new(daemon.channel().await);
    let mut workspaces =
        pb::workspace_service_client::WorkspaceServiceClient::new(daemon.channel().await);
    let workspace = workspaces
        .create_workspace(pb::CreateWorkspaceRequest {
            slug: "acme".into(),
            name: "Acme".into(),
        })
        .await
        .expect("workspace")
        .into_inner()
        .workspace
        .expect("workspace");
    let project = projects
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
    let _cleanup = Cleanup {
        project: project.id.clone(),
        registry: registry.host(),
    };
    let id = client
        .create_deployment(from_git(&project.id, &repo, "main", &sha))
        .await
        .expect("create")
        .into_inner()
        .deployment_id;
    let build_log = |mut client: DeploymentServiceClient<_>| {
        let id = id.clone();
        async move {
            client
                .get_build_log(pb::GetBuildLogRequest { deployment_id: id })
                .await
                .map(|r| r.into_inner().lines)
                .unwrap_or_default()
        }
    };
    // Kill it once podman runs the slow step.
    eventually(
        "the build runs its RUN step",
        Duration::from_secs(60),
        || {
            let log = build_log(client.clone());
            async move { log.await.iter().any(|l| l.contains("RUN")).then_some(()) }
        },
    )
    .await;
    daemon.child.start_kill().expect("SIGKILL");
    let _ = daemon.child.wait().await;

    let daemon = DaemonProcess::spawn(&config_path)
        .await
        .expect("serving again");
    let mut client = DeploymentServiceClient::new(daemon.channel().await);
    let ready = ready_through(&client, &id, Duration::from_secs(120)).await;
    let (name, digest) = by_digest(&ready.image, &registry, &project.id);
    assert!(registry.has(name, digest).await);
    assert_eq!(
        registry.tags(name).await,
        std::slice::from_ref(&id),
        "one image"
    );
    let log = client
        .get_build_log(pb::GetBuildLogRequest {
            deployment_id: id.clone(),
        })
        .await
        .expect("build log")
        .into_inner()
        .lines;
    let builds = log.iter().filter(|l| l.starts_with("==> building")).count();
    let adopted = log.iter().any(|l| l.starts_with("==> adopting"));
    assert!(
        (1..=2).contains(&builds),
        "built {builds} time(s) (adopted: {adopted}): {log:?}"
    );
    daemon.terminate();
    let mut daemon = daemon;
    let _ = daemon.child.wait().await;
}

/// `podman system service` on `socket`, stopped when dropped.
struct PodmanService(tokio::process::Child);

impl Drop for PodmanService {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

impl PodmanService {
    async fn start(socket: &std::path::Path) -> Self {
        let child = tokio::process::Command::new("podman")
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .kill_on_drop(true)
            .spawn()
            .expect("podman system service");
        eventually(
            "the podman service listens",
            Duration::from_secs(20),
            || async { tokio::net::UnixStream::connect(socket).await.ok().map(drop) },
        )
        .await;
        Self(child)
    }
}
