//! `deployd bench --flood`: what one project's flood costs the others. The
//! in-process daemon gets a region that never gets ready; one project
//! deploys into it as fast as it can (so its deployments stay unfinished
//! until `max_unfinished_per_project` refuses more), while `--clients`
//! clients deploy to other projects. The same deploy load runs first
//! without the flood, so the two are compared within one run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::client::AuthChannel;

use super::stats::{Percentiles, process_cpu_seconds, rss_mib};
use crate::Config;
use crate::config::RegionConfig;
use crate::pb;
use crate::pb::deployment_service_client::DeploymentServiceClient;
use crate::pb::project_service_client::ProjectServiceClient;
use crate::pb::workspace_service_client::WorkspaceServiceClient;

/// The region the flooded project deploys into.
pub const STUCK_REGION: &str = "stuck-1";

/// The benchmark daemon's config plus a region that never gets ready.
pub fn config(mut config: Config) -> Config {
    config.regions.insert(
        STUCK_REGION.to_string(),
        RegionConfig::Simulated {
            ready_after_ms: 0,
            never_ready: true,
            persist: false,
            serve_http: false,
        },
    );
    config
}

#[derive(Debug, Default, Serialize)]
pub struct FloodReport {
    pub seconds_per_phase: f64,
    pub others_without_flood: Percentiles,
    pub others_during_flood: Percentiles,
    pub others_deploys_per_second_without: f64,
    pub others_deploys_per_second_during: f64,
    /// Deployments the flooded project got in, and refusals it got.
    pub flood_accepted: u64,
    pub flood_refused: u64,
    /// Process CPU seconds per wall second during each phase.
    pub cpu_without_flood: f64,
    pub cpu_during_flood: f64,
    pub rss_after_mib: f64,
}

impl FloodReport {
    pub fn table(&self) -> String {
        format!(
            "flood: one project deploying into a region that never gets ready, {:.1} s per phase\n\
             other projects' deploys, alone       {}  {:.0}/s  cpu {:.2}\n\
             other projects' deploys, with flood  {}  {:.0}/s  cpu {:.2}\n\
             flooded project: accepted {}, refused (RESOURCE_EXHAUSTED) {}\n\
             rss after the run                    {:.1} MiB\n",
            self.seconds_per_phase,
            self.others_without_flood.row(),
            self.others_deploys_per_second_without,
            self.cpu_without_flood,
            self.others_during_flood.row(),
            self.others_deploys_per_second_during,
            self.cpu_during_flood,
            self.flood_accepted,
            self.flood_refused,
            self.rss_after_mib,
        )
    }
}

fn rpc<T>(result: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<T> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))
}

pub async fn run(
    target: &super::Target,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<FloodReport> {
    let channel = target.connect().await?;
    let workspace = rpc(WorkspaceServiceClient::new(channel.clone())
        .create_workspace(pb::CreateWorkspaceRequest {
            slug: format!("flood-{}", crate::model::now_millis()),
            name: "Flood".into(),
        })
        .await)?
    .workspace
    .ok_or_else(|| anyhow::anyhow!("no workspace in the answer"))?;
    let mut projects = ProjectServiceClient::new(channel.clone());
    let healthy: BTreeMap<String, u32> = ["us-east-1", "eu-central-1", "ap-southeast-1"]
        .into_iter()
        .map(|r| (r.to_string(), 1))
        .collect();
    let mut others = Vec::new();
    for i in 0..=clients {
        let project = rpc(projects
            .create_project(pb::CreateProjectRequest {
                workspace_id: workspace.id.clone(),
                slug: format!("p{i}"),
                name: format!("P {i}"),
            })
            .await)?
        .project
        .ok_or_else(|| anyhow::anyhow!("no project in the answer"))?;
        let regions = if i == 0 {
            BTreeMap::from([(STUCK_REGION.to_string(), 1)])
        } else {
            healthy.clone()
        };
        rpc(projects
            .set_environment_regions(pb::SetEnvironmentRegionsRequest {
                project_id: project.id.clone(),
                environment_slug: "preview".into(),
                regions: regions.into_iter().collect(),
                ..Default::default()
            })
            .await)?;
        others.push(project.id);
    }
    let flooded = others.remove(0);
    let phase = Duration::from_secs(seconds);

    let cpu = process_cpu_seconds();
    let (without, rate_without) = deploy_load(&channel, &others, phase).await?;
    let cpu_without_flood = (process_cpu_seconds() - cpu) / phase.as_secs_f64();

    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + phase;
    let mut flooders = Vec::new();
    for _ in 0..8 {
        let mut client = DeploymentServiceClient::new(channel.clone());
        let (flooded, accepted, refused) = (flooded.clone(), accepted.clone(), refused.clone());
        flooders.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match client.create_deployment(request(&flooded)).await {
                    Ok(_) => accepted.fetch_add(1, Ordering::Relaxed),
                    Err(_) => refused.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let cpu = process_cpu_seconds();
    let (during, rate_during) = deploy_load(&channel, &others, phase).await?;
    let cpu_during_flood = (process_cpu_seconds() - cpu) / phase.as_secs_f64();
    for flooder in flooders {
        flooder.await?;
    }
    Ok(FloodReport {
        seconds_per_phase: phase.as_secs_f64(),
        others_without_flood: Percentiles::of(without),
        others_during_flood: Percentiles::of(during),
        others_deploys_per_second_without: rate_without,
        others_deploys_per_second_during: rate_during,
        flood_accepted: accepted.load(Ordering::Relaxed),
        flood_refused: refused.load(Ordering::Relaxed),
        cpu_without_flood,
        cpu_during_flood,
        rss_after_mib: rss_mib().0,
    })
}

fn request(project: &str) -> pb::CreateDeploymentRequest {
    pb::CreateDeploymentRequest {
        project_id: project.to_string(),
        environment_slug: "preview".into(),
        branch: "main".into(),
        source: Some(pb::create_deployment_request::Source::DockerImage(
            pb::DockerImage {
                image: "nginx:1".into(),
            },
        )),
        ..Default::default()
    }
}

/// One client per project deploys and polls until `READY`, for `phase`.
async fn deploy_load(
    channel: &AuthChannel,
    projects: &[String],
    phase: Duration,
) -> anyhow::Result<(Vec<Duration>, f64)> {
    let deadline = Instant::now() + phase;
    let mut tasks = Vec::new();
    for project in projects {
        let mut client = DeploymentServiceClient::new(channel.clone());
        let project = project.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let began = Instant::now();
                let Ok(created) = client.create_deployment(request(&project)).await else {
                    continue;
                };
                let id = created.into_inner().deployment_id;
                loop {
                    let status = client
                        .get_deployment(pb::GetDeploymentRequest {
                            deployment_id: id.clone(),
                        })
                        .await
                        .ok()
                        .and_then(|r| r.into_inner().deployment)
                        .map(|d| d.status);
                    if status == Some(pb::DeploymentStatus::Ready as i32) {
                        latencies.push(began.elapsed());
                        break;
                    }
                    if status == Some(pb::DeploymentStatus::Failed as i32) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await?);
    }
    let rate = all.len() as f64 / phase.as_secs_f64();
    Ok((all, rate))
}
