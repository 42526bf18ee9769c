//! Writes a large data file directly through the store, for measuring start
//! time and per-operation cost against a long history: `projects` projects
//! in one workspace, `deployments` READY deployments spread over them (the
//! newest of each project live and running, with its routes, the older ones
//! in `STANDBY` as their schedules would have left them), and a few
//! unfinished ones that the daemon must resume on start.

use std::collections::BTreeMap;
use std::path::Path;

use crate::io::store::{Mutation, Store};
use crate::model::names::Hostnames;
use crate::model::project::{LiveDeployment, Project};
use crate::model::routes::{Holder, fixed_hostnames, plan_deploy};
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
        let names = Hostnames {
            apex,
            project_slug: &project.slug,
            workspace_slug: &project.workspace_slug,
        };
        let reserve = fixed_hostnames(&project, names);
        commit(
            &store,
            vec![Mutation::CreateProject {
                project: project.clone(),
                reserve,
            }],
        )
        .await?;
        let mut routes: BTreeMap<String, Holder> = BTreeMap::new();
        let mut previous: Option<Deployment> = None;
        for sequence in 1..=per_project {
            let mut deployment = ready_deployment(&project, sequence, regions, now);
            let plan = plan_deploy(&deployment, &project, names, |name| {
                routes.get(name).cloned()
            });
            deployment.hostnames = plan.hostnames.clone();
            for route in plan.routes {
                routes.insert(route.fqdn.clone(), Holder::Route(route));
            }
            project.live = Some(LiveDeployment {
                id: deployment.id.clone(),
                sequence,
            });
            if let Some(mut older) = previous.replace(deployment) {
                older.stand_by(now);
                batch.push(Mutation::PutDeployment(older));
            }
            if batch.len() >= SUBMISSION {
                commit(&store, std::mem::take(&mut batch)).await?;
            }
        }
        if let Some(live) = previous {
            batch.push(Mutation::TrackWorkload {
                deployment_id: live.id.clone(),
                intent: 0,
            });
            batch.push(Mutation::PutDeployment(live));
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
            batch.push(Mutation::TrackWorkload {
                deployment_id: deployment.id.clone(),
                intent: 0,
            });
            batch.push(Mutation::PutDeployment(deployment));
        }
        batch.extend(routes.into_values().filter_map(|holder| match holder {
            Holder::Route(route) => Some(Mutation::PutRoute(route)),
            Holder::Claim { .. } => None,
        }));
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
        port: crate::model::deployment::DEFAULT_PORT,
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
