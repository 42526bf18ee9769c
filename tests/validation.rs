//! Bad input: every malformed, oversize or unknown field gets a clear
//! INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION / ALREADY_EXISTS and
//! changes nothing. One table, one checker.

mod common;

use common::*;
use deployd::pb;
use deployd::pb::create_deployment_request::Source;
use tonic::Code;

#[allow(clippy::large_enum_variant)] // a test table, built once
enum Call {
    Workspace(pb::CreateWorkspaceRequest),
    GetWorkspace(&'static str),
    Project(pb::CreateProjectRequest),
    GetProject(String),
    ListProjects(String),
    Regions(pb::SetEnvironmentRegionsRequest),
    Domain(pb::AddCustomDomainRequest),
    Deploy(pb::CreateDeploymentRequest),
    GetDeployment(String),
    List(pb::ListDeploymentsRequest),
    Watch(String),
    Routes(String),
}

async fn run(daemon: &TestDaemon, call: Call) -> Result<(), tonic::Status> {
    match call {
        Call::Workspace(r) => daemon
            .workspaces()
            .await
            .create_workspace(r)
            .await
            .map(drop),
        Call::GetWorkspace(id) => daemon
            .workspaces()
            .await
            .get_workspace(pb::GetWorkspaceRequest {
                workspace_id: id.into(),
            })
            .await
            .map(drop),
        Call::Project(r) => daemon.projects().await.create_project(r).await.map(drop),
        Call::GetProject(id) => daemon
            .projects()
            .await
            .get_project(pb::GetProjectRequest { project_id: id })
            .await
            .map(drop),
        Call::ListProjects(id) => daemon
            .projects()
            .await
            .list_projects(pb::ListProjectsRequest {
                workspace_id: id,
                ..Default::default()
            })
            .await
            .map(drop),
        Call::Regions(r) => daemon
            .projects()
            .await
            .set_environment_regions(r)
            .await
            .map(drop),
        Call::Domain(r) => daemon.projects().await.add_custom_domain(r).await.map(drop),
        Call::Deploy(r) => daemon
            .deployments()
            .await
            .create_deployment(r)
            .await
            .map(drop),
        Call::GetDeployment(id) => daemon
            .deployments()
            .await
            .get_deployment(pb::GetDeploymentRequest { deployment_id: id })
            .await
            .map(drop),
        Call::List(r) => daemon
            .deployments()
            .await
            .list_deployments(r)
            .await
            .map(drop),
        Call::Watch(id) => daemon
            .deployments()
            .await
            .watch_deployment(pb::WatchDeploymentRequest { deployment_id: id })
            .await
            .map(drop),
        Call::Routes(id) => daemon
            .routing()
            .await
            .list_routes(pb::ListRoutesRequest {
                project_id: id,
                ..Default::default()
            })
            .await
            .map(drop),
    }
}

fn deploy_with(project: &str, edit: impl FnOnce(&mut pb::CreateDeploymentRequest)) -> Call {
    let mut request = git_request(project, "production", "main", SHA_A);
    edit(&mut request);
    Call::Deploy(request)
}

fn git(edit: impl FnOnce(&mut pb::GitSource)) -> impl FnOnce(&mut pb::CreateDeploymentRequest) {
    move |r| {
        if let Some(Source::Git(git)) = &mut r.source {
            edit(git);
        }
    }
}

fn image(image: &str) -> impl FnOnce(&mut pb::CreateDeploymentRequest) + use<> {
    let image = image.to_string();
    move |r| r.source = Some(Source::DockerImage(pb::DockerImage { image }))
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_code_and_changes_nothing() {
    let daemon = TestDaemon::start().await;
    let project = daemon.project("acme", "web").await;
    let other = daemon.project("other", "api").await;
    let live = daemon
        .deploy_ready(&project.id, "production", "nginx:1")
        .await;
    daemon
        .projects()
        .await
        .add_custom_domain(pb::AddCustomDomainRequest {
            project_id: other.id.clone(),
            fqdn: "taken.example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let p = project.id.as_str();
    let unknown_project = "prj_0000000000000000".to_string();
    let unknown_workspace = "ws_0000000000000000";
    let huge = "x".repeat(100_000);

    let cases: Vec<(&str, Call, Code)> = vec![
        // Workspaces
        (
            "workspace: empty slug",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: "".into(),
                name: "n".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "workspace: upper-case slug",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: "Acme".into(),
                name: "n".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "workspace: slug ends with -",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: "acme-".into(),
                name: "n".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "workspace: oversize slug",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: "a".repeat(33),
                name: "n".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "workspace: empty name",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: "new".into(),
                name: " ".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "workspace: oversize name",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: "new".into(),
                name: huge.clone(),
            }),
            Code::InvalidArgument,
        ),
        (
            "workspace: control characters",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: "new".into(),
                name: "a\nb".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "workspace: duplicate slug",
            Call::Workspace(pb::CreateWorkspaceRequest {
                slug: "acme".into(),
                name: "n".into(),
            }),
            Code::AlreadyExists,
        ),
        (
            "workspace: malformed id",
            Call::GetWorkspace("acme"),
            Code::InvalidArgument,
        ),
        (
            "workspace: unknown id",
            Call::GetWorkspace(unknown_workspace),
            Code::NotFound,
        ),
        // Projects
        (
            "project: empty workspace id",
            Call::Project(pb::CreateProjectRequest {
                workspace_id: "".into(),
                slug: "x".into(),
                name: "x".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "project: unknown workspace",
            Call::Project(pb::CreateProjectRequest {
                workspace_id: unknown_workspace.into(),
                slug: "x".into(),
                name: "x".into(),
            }),
            Code::NotFound,
        ),
        (
            "project: bad slug",
            Call::Project(pb::CreateProjectRequest {
                workspace_id: project.workspace_id.clone(),
                slug: "no_underscores".into(),
                name: "x".into(),
            }),
            Code::InvalidArgument,
        ),
        (
            "project: duplicate slug",
            Call::Project(pb::CreateProjectRequest {
                workspace_id: project.workspace_id.clone(),
                slug: "web".into(),
                name: "x".into(),
            }),
            Code::AlreadyExists,
        ),
        (
            "project: malformed id",
            Call::GetProject("web".into()),
            Code::InvalidArgument,
        ),
        (
            "project: unknown id",
            Call::GetProject(unknown_project.clone()),
            Code::NotFound,
        ),
        (
            "projects: unknown workspace",
            Call::ListProjects(unknown_workspace.into()),
            Code::NotFound,
        ),
        (
            "regions: unknown region",
            Call::Regions(pb::SetEnvironmentRegionsRequest {
                project_id: p.into(),
                environment_slug: "production".into(),
                regions: [("mars-1".to_string(), 1)].into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "regions: zero replicas",
            Call::Regions(pb::SetEnvironmentRegionsRequest {
                project_id: p.into(),
                environment_slug: "production".into(),
                regions: [("us-east-1".to_string(), 0)].into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "regions: too many replicas",
            Call::Regions(pb::SetEnvironmentRegionsRequest {
                project_id: p.into(),
                environment_slug: "production".into(),
                regions: [("us-east-1".to_string(), 10_000)].into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "regions: malformed region",
            Call::Regions(pb::SetEnvironmentRegionsRequest {
                project_id: p.into(),
                environment_slug: "production".into(),
                regions: [("US EAST".to_string(), 1)].into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "regions: unknown environment",
            Call::Regions(pb::SetEnvironmentRegionsRequest {
                project_id: p.into(),
                environment_slug: "staging".into(),
                regions: Default::default(),
                ..Default::default()
            }),
            Code::NotFound,
        ),
        (
            "regions: unknown project",
            Call::Regions(pb::SetEnvironmentRegionsRequest {
                project_id: unknown_project.clone(),
                environment_slug: "production".into(),
                regions: Default::default(),
                ..Default::default()
            }),
            Code::NotFound,
        ),
        (
            "domain: not a domain",
            Call::Domain(pb::AddCustomDomainRequest {
                project_id: p.into(),
                fqdn: "localhost".into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "domain: upper case",
            Call::Domain(pb::AddCustomDomainRequest {
                project_id: p.into(),
                fqdn: "WWW.example.com".into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "domain: under the apex",
            Call::Domain(pb::AddCustomDomainRequest {
                project_id: p.into(),
                fqdn: "evil-acme.deployd.local".into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "domain: taken by another project",
            Call::Domain(pb::AddCustomDomainRequest {
                project_id: p.into(),
                fqdn: "taken.example.com".into(),
                ..Default::default()
            }),
            Code::AlreadyExists,
        ),
        (
            "domain: oversize",
            Call::Domain(pb::AddCustomDomainRequest {
                project_id: p.into(),
                fqdn: format!("{}.com", "a.".repeat(200)),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        // Deployments
        (
            "deploy: empty project",
            deploy_with(p, |r| r.project_id.clear()),
            Code::InvalidArgument,
        ),
        (
            "deploy: unknown project",
            deploy_with(p, |r| r.project_id = unknown_project.clone()),
            Code::NotFound,
        ),
        (
            "deploy: empty environment",
            deploy_with(p, |r| r.environment_slug.clear()),
            Code::InvalidArgument,
        ),
        (
            "deploy: unknown environment",
            deploy_with(p, |r| r.environment_slug = "staging".into()),
            Code::NotFound,
        ),
        (
            "deploy: no source",
            deploy_with(p, |r| r.source = None),
            Code::InvalidArgument,
        ),
        (
            "deploy: git without branch",
            deploy_with(p, |r| r.branch.clear()),
            Code::InvalidArgument,
        ),
        (
            "deploy: bad branch",
            deploy_with(p, |r| r.branch = "a..b".into()),
            Code::InvalidArgument,
        ),
        (
            "deploy: branch with a shell",
            deploy_with(p, |r| r.branch = "main; rm -rf /".into()),
            Code::InvalidArgument,
        ),
        (
            "deploy: oversize branch",
            deploy_with(p, |r| r.branch = "b".repeat(300)),
            Code::InvalidArgument,
        ),
        (
            "deploy: short sha",
            deploy_with(p, git(|g| g.commit_sha = "abc".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: non-hex sha",
            deploy_with(p, git(|g| g.commit_sha = "zzzzzzz".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: empty repository",
            deploy_with(p, git(|g| g.repository.clear())),
            Code::InvalidArgument,
        ),
        (
            "deploy: repository with spaces",
            deploy_with(p, git(|g| g.repository = "https://x y".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: local path repository",
            deploy_with(p, git(|g| g.repository = "/etc/passwd".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: context escapes",
            deploy_with(p, git(|g| g.context_path = "../..".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: absolute dockerfile",
            deploy_with(p, git(|g| g.dockerfile_path = "/Dockerfile".into())),
            Code::InvalidArgument,
        ),
        (
            "deploy: empty image",
            deploy_with(p, image("")),
            Code::InvalidArgument,
        ),
        (
            "deploy: malformed image",
            deploy_with(p, image("nginx:latest; curl evil")),
            Code::InvalidArgument,
        ),
        (
            "deploy: upper-case image",
            deploy_with(p, image("NGINX")),
            Code::InvalidArgument,
        ),
        (
            "deploy: oversize image",
            deploy_with(p, image(&format!("nginx:{}", "1".repeat(600)))),
            Code::InvalidArgument,
        ),
        (
            "deploy: bad commit metadata sha",
            deploy_with(p, |r| {
                r.git_commit = Some(pb::GitCommit {
                    sha: "xyz".into(),
                    ..Default::default()
                })
            }),
            Code::InvalidArgument,
        ),
        (
            "deploy: oversize commit message",
            deploy_with(p, |r| {
                r.git_commit = Some(pb::GitCommit {
                    message: huge.clone(),
                    ..Default::default()
                })
            }),
            Code::InvalidArgument,
        ),
        (
            "deploy: negative commit time",
            deploy_with(p, |r| {
                r.git_commit = Some(pb::GitCommit {
                    committed_at: Some(pbjson_types::Timestamp {
                        seconds: -5,
                        nanos: 0,
                    }),
                    ..Default::default()
                })
            }),
            Code::InvalidArgument,
        ),
        (
            "deploy: too many command args",
            deploy_with(p, |r| r.command = vec!["x".into(); 65]),
            Code::InvalidArgument,
        ),
        (
            "deploy: NUL in command",
            deploy_with(p, |r| r.command = vec!["a\0b".into()]),
            Code::InvalidArgument,
        ),
        (
            "get: malformed id",
            Call::GetDeployment("dep_../../etc".into()),
            Code::InvalidArgument,
        ),
        (
            "get: empty id",
            Call::GetDeployment(String::new()),
            Code::InvalidArgument,
        ),
        (
            "get: unknown id",
            Call::GetDeployment("dep_0000000000000000".into()),
            Code::NotFound,
        ),
        (
            "list: unknown status",
            Call::List(pb::ListDeploymentsRequest {
                project_id: p.into(),
                status: 99,
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "list: page too large",
            Call::List(pb::ListDeploymentsRequest {
                project_id: p.into(),
                page_size: 100_000,
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "list: bad page token",
            Call::List(pb::ListDeploymentsRequest {
                project_id: p.into(),
                page_token: "garbage".into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
        ),
        (
            "list: unknown environment",
            Call::List(pb::ListDeploymentsRequest {
                project_id: p.into(),
                environment_slug: "staging".into(),
                ..Default::default()
            }),
            Code::NotFound,
        ),
        (
            "list: unknown project",
            Call::List(pb::ListDeploymentsRequest {
                project_id: unknown_project.clone(),
                ..Default::default()
            }),
            Code::NotFound,
        ),
        (
            "watch: malformed id",
            Call::Watch("nope".into()),
            Code::InvalidArgument,
        ),
        (
            "watch: unknown id",
            Call::Watch("dep_0000000000000000".into()),
            Code::NotFound,
        ),
        (
            "routes: malformed id",
            Call::Routes("".into()),
            Code::InvalidArgument,
        ),
        (
            "routes: unknown project",
            Call::Routes(unknown_project.clone()),
            Code::NotFound,
        ),
    ];

    let project_before = daemon.get_project(p).await;
    let routes_before = daemon.routes(p).await;
    let deployments_before = daemon.list(p).await;
    for (name, call, code) in cases {
        let status = run(&daemon, call).await.expect_err(name);
        assert_eq!(status.code(), code, "{name}: {}", status.message());
        assert!(
            !status.message().is_empty() && status.message().len() < 1_000,
            "{name}: message should be short and say what is wrong: {}",
            status.message()
        );
    }
    assert_eq!(daemon.get_project(p).await, project_before);
    assert_eq!(daemon.routes(p).await, routes_before);
    assert_eq!(daemon.list(p).await, deployments_before);
    assert_eq!(daemon.get_project(p).await.live_deployment_id, live);
    // The daemon is still fine.
    daemon.deploy_ready(p, "preview", "nginx:2").await;
}
