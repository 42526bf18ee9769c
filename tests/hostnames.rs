//! Hostnames belong to one project and are never lost: fixed names are
//! reserved when a project is created (a conflict is `ALREADY_EXISTS`
//! naming the hostname), per-push names that collide take a suffix, and
//! every reply reports the names actually stored.

mod common;

use common::http::get;
use common::*;
use deployd::pb;
use deployd::pb::{DeploymentStatus, RouteKind};

async fn create_project(
    daemon: &TestDaemon,
    workspace_id: &str,
    slug: &str,
) -> Result<pb::Project, tonic::Status> {
    daemon
        .projects()
        .await
        .create_project(pb::CreateProjectRequest {
            workspace_id: workspace_id.into(),
            slug: slug.into(),
            name: slug.into(),
        })
        .await
        .map(|r| r.into_inner().project.expect("project"))
}

async fn project_count(daemon: &TestDaemon, workspace_id: &str) -> usize {
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
        .len()
}

#[tokio::test]
async fn an_ambiguous_live_hostname_is_refused_at_creation_and_names_the_hostname() {
    let daemon = TestDaemon::start().await;
    // `a` in `b-c` and `a-b` in `c` both want `a-b-c.deployd.local`.
    let first = daemon.workspace("b-c").await;
    let second = daemon.workspace("c").await;
    create_project(&daemon, &first, "a").await.unwrap();
    let refused = create_project(&daemon, &second, "a-b").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists, "{refused:?}");
    assert!(
        refused.message().contains("a-b-c.deployd.local"),
        "{}",
        refused.message()
    );
    assert_eq!(project_count(&daemon, &second).await, 0, "nothing stored");
    // The slug stays free: another slug in the same workspace is fine.
    create_project(&daemon, &second, "other").await.unwrap();
}

#[tokio::test]
async fn an_environment_hostname_cannot_be_taken_by_another_projects_live_name() {
    let daemon = TestDaemon::start().await;
    // `web` in `acme` holds `web-production-acme` as its ENVIRONMENT name;
    // `web` in `production-acme` would have it as its LIVE name.
    let web = daemon.project("acme", "web").await;
    let other = daemon.workspace("production-acme").await;
    let refused = create_project(&daemon, &other, "web").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists);
    assert!(
        refused
            .message()
            .contains("web-production-acme.deployd.local"),
        "{}",
        refused.message()
    );

    // The holder deploys and keeps its name, pointing at its own deployment.
    let live = daemon.deploy_ready(&web.id, "production", "nginx:1").await;
    let routes = daemon.routes(&web.id).await;
    assert_eq!(
        route_map(&routes).get("web-production-acme.deployd.local"),
        Some(&(RouteKind::Environment as i32, live.clone()))
    );
    daemon.wait_running(&live, 1).await;
}

#[tokio::test]
async fn a_per_push_name_held_by_another_project_takes_a_suffix_and_replies_say_so() {
    let daemon = TestDaemon::start().await;
    let ws = daemon.workspace("b").await;
    // `a-git-x` in `b` reserves `a-git-x-b` as its LIVE name, which is also
    // the BRANCH name of branch `x` of project `a` in `b`.
    let holder = create_project(&daemon, &ws, "a-git-x").await.unwrap();
    let pusher = create_project(&daemon, &ws, "a").await.unwrap();
    let holder_live = daemon
        .deploy_ready(&holder.id, "production", "nginx:1")
        .await;

    let id = daemon
        .create(git_request(&pusher.id, "preview", "x", SHA_A))
        .await;
    let deployment = daemon.wait_status(&id, DeploymentStatus::Ready).await;
    let routes = daemon.routes(&pusher.id).await;
    let branch = routes_of_kind(&routes, RouteKind::Branch);
    assert_eq!(branch.len(), 1, "{routes:?}");
    let name = &branch[0].fqdn;
    assert_ne!(name, "a-git-x-b.deployd.local");
    assert!(name.starts_with("a-git-x-b-"), "{name}");
    assert!(
        deployment.hostnames.contains(name),
        "GetDeployment reports the stored name: {:?}",
        deployment.hostnames
    );
    assert!(
        !deployment
            .hostnames
            .contains(&"a-git-x-b.deployd.local".to_string())
    );

    // The holder still has its LIVE name, on its own deployment.
    let held = route_map(&daemon.routes(&holder.id).await);
    assert_eq!(
        held.get("a-git-x-b.deployd.local"),
        Some(&(RouteKind::Live as i32, holder_live.clone()))
    );
    // Both run: a collision never costs anyone their workload, and the edge
    // serves each name from its own project's deployment.
    daemon.wait_running(&id, 1).await;
    let edge = daemon.edge();
    assert_eq!(get(edge, name, &[]).await.deployment(), id);
    assert_eq!(
        get(edge, "a-git-x-b.deployd.local", &[]).await.deployment(),
        holder_live
    );
}

#[tokio::test]
async fn a_branch_named_like_a_short_sha_never_takes_the_commit_name() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    // Commit aaaaaaa... gets `web-git-aaaaaaa-acme`; a branch named
    // `aaaaaaa` would slug to the same name.
    let commit = daemon
        .create(git_request(&project.id, "preview", "main", SHA_A))
        .await;
    daemon.wait_status(&commit, DeploymentStatus::Ready).await;
    let branch = daemon
        .create(git_request(&project.id, "preview", "aaaaaaa", SHA_B))
        .await;
    let deployment = daemon.wait_status(&branch, DeploymentStatus::Ready).await;

    let routes = route_map(&daemon.routes(&project.id).await);
    assert_eq!(
        routes.get("web-git-aaaaaaa-acme.deployd.local"),
        Some(&(RouteKind::Commit as i32, commit)),
        "the commit keeps its plain name"
    );
    let branch_name = deployment
        .hostnames
        .iter()
        .find(|h| h.starts_with("web-git-aaaaaaa-acme-"))
        .unwrap_or_else(|| panic!("suffixed branch name in {:?}", deployment.hostnames));
    assert_eq!(
        routes.get(branch_name),
        Some(&(RouteKind::Branch as i32, branch.clone()))
    );
}

#[tokio::test]
async fn long_branches_that_slug_alike_never_share_a_hostname() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let long = format!("feature/{}", "login-page-".repeat(8));
    let alike = long.replace('/', "_").to_uppercase();
    let one = daemon
        .create(git_request(&project.id, "preview", &long, SHA_A))
        .await;
    daemon.wait_status(&one, DeploymentStatus::Ready).await;
    let two = daemon
        .create(git_request(&project.id, "preview", &alike, SHA_B))
        .await;
    daemon.wait_status(&two, DeploymentStatus::Ready).await;

    let routes = daemon.routes(&project.id).await;
    let branches = routes_of_kind(&routes, RouteKind::Branch);
    assert_eq!(branches.len(), 2, "{branches:?}");
    let targets: Vec<&str> = branches.iter().map(|r| r.deployment_id.as_str()).collect();
    assert!(targets.contains(&one.as_str()) && targets.contains(&two.as_str()));
    daemon.wait_running(&one, 1).await;
    daemon.wait_running(&two, 1).await;
}
