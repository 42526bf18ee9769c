//! Micro-benchmarks of the hot paths: a durable commit through the store
//! writer (alone and with many submissions sharing commits), the route
//! switch of a rollback (plan plus durable transaction), a project actor
//! mailbox round trip, hostname generation, and the bearer token check every
//! gRPC request pays (`auth_check`: what `bench --compare-secure` cannot
//! switch off).
//!
//! `cargo bench --bench hot_paths`. These measure; they assert nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use deployd::Config;
use deployd::actors::{Deps, Projects};
use deployd::io::store::{Mutation, Store};
use deployd::model::names::Hostnames;
use deployd::model::project::{LiveDeployment, Project};
use deployd::model::routes::{Holder, plan_deploy, plan_switch};
use deployd::model::{
    Deployment, DeploymentId, DeploymentStatus, NewDeployment, Route, Source, Workspace,
    WorkspaceId,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn workspace() -> Workspace {
    Workspace {
        id: WorkspaceId::generate(),
        slug: "acme".into(),
        name: "Acme".into(),
        created_at: 0,
    }
}

fn deployment(project: &Project, sequence: u64) -> Deployment {
    let request = NewDeployment {
        environment: "production".into(),
        branch: "main".into(),
        source: Source::Image("nginx:1.27".into()),
        git_commit: None,
        command: Vec::new(),
        port: 8080,
    };
    let mut deployment = Deployment::new(project.id.clone(), sequence, request, 0);
    deployment.status = DeploymentStatus::Ready;
    deployment
}

const NAMES: Hostnames<'static> = Hostnames {
    apex: "deployd.local",
    project_slug: "web",
    workspace_slug: "acme",
};

fn store_commits(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _writer) = Store::open(&dir.path().join("bench.redb")).expect("store");
    let ws = workspace();
    let project = Project::new(&ws, "web".into(), "Web".into(), 0);
    let mut sequence = 0;

    let mut group = c.benchmark_group("store");
    group.bench_function("durable_commit_alone", |b| {
        b.iter_batched(
            || {
                sequence += 1;
                deployment(&project, sequence)
            },
            |d| rt.block_on(store.commit(vec![Mutation::PutDeployment(d)])),
            BatchSize::SmallInput,
        )
    });
    const CONCURRENT: usize = 256;
    group.throughput(Throughput::Elements(CONCURRENT as u64));
    group.bench_function("durable_commits_256_concurrent", |b| {
        b.iter_batched(
            || {
                (0..CONCURRENT)
                    .map(|_| {
                        sequence += 1;
                        deployment(&project, sequence)
                    })
                    .collect::<Vec<_>>()
            },
            |batch| {
                rt.block_on(async {
                    let commits = batch.into_iter().map(|d| {
                        let store = store.clone();
                        tokio::spawn(
                            async move { store.commit(vec![Mutation::PutDeployment(d)]).await },
                        )
                    });
                    for commit in commits.collect::<Vec<_>>() {
                        let _ = commit.await;
                    }
                })
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn rollback_switch(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _writer) = Store::open(&dir.path().join("bench.redb")).expect("store");
    let ws = workspace();
    let mut project = Project::new(&ws, "web".into(), "Web".into(), 0);
    project.custom_domains = vec!["www.example.com".into(), "example.com".into()];
    let old = deployment(&project, 1);
    let live = deployment(&project, 2);
    let mut routes: BTreeMap<String, Route> = BTreeMap::new();
    for d in [&old, &live] {
        let plan = plan_deploy(d, &project, NAMES, |name| {
            routes.get(name).cloned().map(Holder::Route)
        });
        for route in plan.routes {
            routes.insert(route.fqdn.clone(), route);
        }
        project.live = Some(LiveDeployment {
            id: d.id.clone(),
            sequence: d.sequence,
        });
    }
    c.bench_function("rollback_switch_transaction", |b| {
        b.iter(|| {
            let moved = plan_switch(&old, routes.values());
            let mut mutations: Vec<Mutation> = moved.into_iter().map(Mutation::PutRoute).collect();
            project.is_rolled_back = true;
            mutations.push(Mutation::PutProject(project.clone()));
            mutations.push(Mutation::PutDeployment(old.clone()));
            rt.block_on(store.commit(mutations))
        })
    });
}

fn actor_round_trip(c: &mut Criterion) {
    let rt = runtime();
    let (projects, project_id) = rt.block_on(async {
        let (store, _writer) = Store::in_memory().expect("store");
        let ws = workspace();
        let project = Project::new(&ws, "web".into(), "Web".into(), 0);
        // Checks see the state before their own submission, so the project
        // (which checks its workspace) goes in a second one.
        store
            .commit(vec![Mutation::CreateWorkspace(ws)])
            .await
            .expect("seed workspace");
        store
            .commit(vec![Mutation::CreateProject {
                project: project.clone(),
                reserve: Vec::new(),
            }])
            .await
            .expect("seed project");
        let deps = Deps::new(Config::default(), store);
        let projects = Projects::start(deps).await.expect("actors");
        projects.ping(&project.id).await.expect("spawn actor");
        (Arc::new(projects), project.id)
    });
    c.bench_function("project_actor_round_trip", |b| {
        b.iter(|| rt.block_on(projects.ping(&project_id)))
    });
}

fn hostnames(c: &mut Criterion) {
    let id = DeploymentId::generate();
    let long_branch = format!("feature/{}", "Long_Branch-Name".repeat(6));
    c.bench_function("hostnames_of_a_deploy", |b| {
        b.iter(|| {
            [
                NAMES.live(),
                NAMES.environment("production"),
                NAMES.branch(&long_branch),
                NAMES.commit("0123456789abcdef"),
                NAMES.deployment(&id),
            ]
        })
    });
}

/// The authentication layer's work per request: parse the header, SHA-256
/// the secret, look the id up, compare hashes.
fn auth_check(c: &mut Criterion) {
    let tokens = deployd::api::auth::tokens::Tokens::default();
    let token = deployd::model::auth::NewToken::generate();
    tokens.insert(&deployd::model::TokenRecord {
        id: token.id.clone(),
        role: deployd::model::Role::Admin,
        workspace: None,
        description: "bench".into(),
        secret_sha256: token.secret_sha256,
        created_at: 0,
        created_by: None,
        revoked_at: None,
    });
    let header = format!("Bearer {}", token.text);
    c.bench_function("auth_check", |b| {
        b.iter(|| tokens.authenticate(Some(&header)).expect("a valid token"))
    });
}

criterion_group!(
    benches,
    auth_check,
    store_commits,
    rollback_switch,
    actor_round_trip,
    hostnames
);
criterion_main!(benches);
