//! Writes a large data file directly through the store, for measuring start
//! time and per-operation cost against a long history: `projects` projects
//! in one workspace, `deployments` READY deployments spread over them (the
//! newest of each project live, with its routes), and a few unfinished ones
//! that the daemon must resume on start.

use std::collections::BTreeMap;
use std::path::Path;

use crate::io::store::{Mutation, Store};
use crate::model::names::Hostnames;
use crate::model::project::{LiveDeployment, Project};
use crate::model::routes::plan_deploy;
use crate::model::{
    Deployment, DeploymentId, DeploymentStatus, NewDeployment, RegionTopology, Source, Workspace,
    WorkspaceId, now_millis,
};

/// What was written.
pub struct Prepared {
    pub projects: Vec<Project>,
    /// Deployments left `DEPLOYING`, to be resumed by the daemon.
    pub unfinished: Vec<DeploymentId>,
}

const SUBMISSION: usize = 5_000;

pub async fn prepare(
    path: &Path,
    apex: &str,
    regions: &[String],
    projects: usize,
    deployments: u64,
    unfinished: usize,
) -> anyhow::Result<Prepared> {
    let (store, writer) = Store::open(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = now_millis();
    let workspace = Workspace {
        id: WorkspaceId::generate(),
        slug: "bench".into(),
        name: "Bench".into(),
        created_at: now,
    };
    commit(&store, vec![Mutation::CreateWorkspace(workspace.clone())]).await?;
    let per_project = (deployments / projects.max(1) as u64).max(1);
    let mut prepared = Prepared {
        projects: Vec::with_capacity(projects),
        unfinished: Vec::new(),
    };
    let mut batch = Vec::with_capacity(SUBMISSION);
    for p in 0..projects {
        let mut project = Project::new(&workspace, format!("p{p}"), format!("Project {p}"), now);
        commit(&store, vec![Mutation::CreateProject(project.clone())]).await?;
        let mut routes = BTreeMap::new();
        for sequence in 1..=per_project {
            let deployment = ready_deployment(&project, sequence, regions, now);
            let names = Hostnames {
                apex,
                project_slug: &project.slug,
                workspace_slug: &project.workspace_slug,
            };
            let plan = plan_deploy(&deployment, &project, &routes, names);
            for route in plan.routes {
                routes.insert(route.fqdn.clone(), route);
            }
            project.live = Some(LiveDeployment {
                id: deployment.id.clone(),
                sequence,
            });
            batch.push(Mutation::PutDeployment(deployment));
            if batch.len() >= SUBMISSION {
                commit(&store, std::mem::take(&mut batch)).await?;
            }
        }
        project.next_sequence = per_project + 1;
        if prepared.unfinished.len() < unfinished {
            let mut deployment = ready_deployment(&project, per_project + 1, regions, now);
            deployment.status = DeploymentStatus::Deploying;
            for topology in deployment.regions.values_mut() {
                topology.ready = false;
            }
            project.next_sequence += 1;
            prepared.unfinished.push(deployment.id.clone());
            batch.push(Mutation::PutDeployment(deployment));
        }
        batch.extend(routes.into_values().map(Mutation::PutRoute));
        batch.push(Mutation::PutProject(project.clone()));
        prepared.projects.push(project);
        if batch.len() >= SUBMISSION {
            commit(&store, std::mem::take(&mut batch)).await?;
        }
    }
    commit(&store, batch).await?;
    drop(store);
    tokio::task::spawn_blocking(move || writer.join()).await?;
    Ok(prepared)
}

async fn commit(store: &Store, mutations: Vec<Mutation>) -> anyhow::Result<()> {
    if mutations.is_empty() {
        return Ok(());
    }
    store
        .commit(mutations)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn ready_deployment(project: &Project, sequence: u64, regions: &[String], now: u64) -> Deployment {
    let image = format!("nginx:1.{sequence}");
    let request = NewDeployment {
        environment: "production".into(),
        branch: "main".into(),
        source: Source::Image(image),
        git_commit: None,
        command: Vec::new(),
    };
    let mut deployment = Deployment::new(project.id.clone(), sequence, request, now);
    deployment.status = DeploymentStatus::Ready;
    deployment.regions = regions
        .iter()
        .map(|r| {
            let topology = RegionTopology {
                desired_replicas: 1,
                running: true,
                ready: true,
                instances: Vec::new(),
            };
            (r.clone(), topology)
        })
        .collect();
    deployment
}
