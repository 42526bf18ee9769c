//! The load itself: projects, rollback/promote pairs alone, then deploying
//! clients with a switching client beside them, all over gRPC. Commit
//! figures come from the daemon's `AdminService.GetStats`, so they are there
//! for a remote daemon too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_stream::StreamExt;

use crate::cli::client::AuthChannel;

use super::stats::{Percentiles, process_cpu_seconds, rss_mib};
use super::{BenchArgs, Report};
use crate::model::DeploymentId;
use crate::pb;
use crate::pb::admin_service_client::AdminServiceClient;
use crate::pb::deployment_service_client::DeploymentServiceClient;
use crate::pb::project_service_client::ProjectServiceClient;
use crate::pb::watch_deployment_response::Event;
use crate::pb::workspace_service_client::WorkspaceServiceClient;

/// Projects reserved for rollback/promote, kept out of the deploy load so
/// their preconditions hold.
const SWITCH_PROJECTS: usize = 8;
/// Clients share this many HTTP/2 connections.
const CONNECTIONS: usize = 8;

fn rpc<T>(result: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<T> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))
}

/// What one deploy load (one `--clients` count) measured.
#[derive(Debug, Default, Serialize)]
pub struct LoadFigures {
    pub clients: usize,
    pub seconds: f64,
    pub deploys_completed: u64,
    pub deploys_failed: u64,
    pub deploys_per_second: f64,
    pub deploy_latency: Percentiles,
    /// Through the main listener.
    pub rollback_under_load: Percentiles,
    pub promote_under_load: Percentiles,
    /// Through the switch lane (`switch_listen`), when the daemon has one.
    pub rollback_under_load_lane: Option<Percentiles>,
    pub promote_under_load_lane: Option<Percentiles>,
    pub commits_per_second: f64,
    pub operations_per_commit: f64,
    /// CPU time of this process during the load, and per deploy that
    /// reached `READY`.
    pub cpu_seconds: f64,
    pub cpu_ms_per_deploy: f64,
    /// Whether that CPU time includes the daemon (it runs in-process) or
    /// only the load generator (`--target`).
    pub cpu_includes_daemon: bool,
}

impl LoadFigures {
    pub(super) fn rows(&self, line: &mut impl FnMut(&str, String)) {
        line(
            &format!("-- {} clients", self.clients),
            format!("{:.1} s", self.seconds),
        );
        line(
            "deploys completed (to READY)",
            format!(
                "{} ({} failed), {:.0}/s",
                self.deploys_completed, self.deploys_failed, self.deploys_per_second
            ),
        );
        line("deploy latency", self.deploy_latency.row());
        line(
            "rollback ack, under deploy load",
            self.rollback_under_load.row(),
        );
        line(
            "promote ack, under deploy load",
            self.promote_under_load.row(),
        );
        if let Some(lane) = &self.rollback_under_load_lane {
            line("rollback ack, loaded, switch lane", lane.row());
        }
        if let Some(lane) = &self.promote_under_load_lane {
            line("promote ack, loaded, switch lane", lane.row());
        }
        line(
            "durable commits",
            format!(
                "{:.0}/s, {:.1} operations per commit",
                self.commits_per_second, self.operations_per_commit
            ),
        );
        let scope = if self.cpu_includes_daemon {
            "whole process: daemon and clients"
        } else {
            "load generator only"
        };
        line(
            "CPU per completed deploy",
            format!(
                "{:.3} ms ({:.1} s of CPU, {scope})",
                self.cpu_ms_per_deploy, self.cpu_seconds
            ),
        );
    }
}

/// `local`: the daemon runs in this process, so its CPU time is counted.
pub async fn drive(
    target: &super::Target,
    args: &BenchArgs,
    mut report: Report,
    local: bool,
) -> anyhow::Result<Report> {
    let mut channels = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        channels.push(target.connect().await?);
    }
    let rss_before = rss_mib().0;
    let projects = create_projects(&channels[0], args.projects + SWITCH_PROJECTS).await?;
    let (switch_projects, deploy_projects) = projects.split_at(SWITCH_PROJECTS);

    // Two READY production deployments per switching project.
    let mut pairs = Vec::new();
    for project in switch_projects {
        let first = deploy_and_wait(&channels[0], project).await?.1;
        let second = deploy_and_wait(&channels[0], project).await?.1;
        pairs.push((first, second));
    }

    let (rollback_alone, promote_alone) =
        switch_pairs(&channels[0], &pairs, Some(args.switches), None).await?;
    report.rollback_alone = Percentiles::of(rollback_alone);
    report.promote_alone = Percentiles::of(promote_alone);

    for &clients in &args.clients {
        let load = deploy_load(
            target,
            &channels,
            args,
            clients,
            deploy_projects,
            &pairs,
            local,
        )
        .await?;
        report.loads.push(load);
    }
    let (rss, peak) = rss_mib();
    report.rss_mib = rss;
    report.peak_rss_mib = peak;
    report.rss_per_project_kib =
        ((rss - rss_before).max(0.0) * 1024.0) / (args.projects + SWITCH_PROJECTS) as f64;
    Ok(report)
}

/// `clients` deploying clients for `--seconds` (or `--deploys`), with one
/// more client switching `pairs` beside them.
async fn deploy_load(
    target: &super::Target,
    channels: &[AuthChannel],
    args: &BenchArgs,
    clients: usize,
    deploy_projects: &[String],
    pairs: &[(String, String)],
    local: bool,
) -> anyhow::Result<LoadFigures> {
    let stats_before = stats(&channels[0]).await?;
    let cpu_before = process_cpu_seconds();
    let began = Instant::now();
    let deadline = began + Duration::from_secs(args.seconds);
    let failed = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicU64::new(0));
    let budget = args.deploys.unwrap_or(u64::MAX);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let channel = channels[c % CONNECTIONS].clone();
        let mine: Vec<String> = deploy_projects
            .iter()
            .skip(c % deploy_projects.len().max(1))
            .step_by(clients)
            .cloned()
            .collect();
        let mine = if mine.is_empty() {
            vec![deploy_projects[c % deploy_projects.len()].clone()]
        } else {
            mine
        };
        let failed = failed.clone();
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut next = 0;
            while Instant::now() < deadline && started.fetch_add(1, Ordering::Relaxed) < budget {
                let project = &mine[next % mine.len()];
                next += 1;
                match deploy_and_wait(&channel, project).await {
                    Ok((latency, _, true)) => latencies.push(latency),
                    Ok((_, _, false)) | Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    // The switching clients stop when the deploying ones do. With a switch
    // lane, half the pairs switch through it and half through the main
    // listener, side by side under the same load.
    let (stop_switching, switching_stopped) = tokio::sync::watch::channel(false);
    let (main_pairs, lane) = match target.switch_lane() {
        Some(lane) => {
            let (through_lane, through_main) = pairs.split_at(pairs.len() / 2);
            let client = isolated_switching_client(
                lane,
                through_lane.to_vec(),
                deadline,
                switching_stopped.clone(),
            )?;
            (through_main, Some(client))
        }
        None => (pairs, None),
    };
    let switching = isolated_switching_client(
        target.clone(),
        main_pairs.to_vec(),
        deadline,
        switching_stopped,
    )?;
    let mut deploy_latencies = Vec::new();
    for task in tasks {
        deploy_latencies.extend(task.await?);
    }
    let _ = stop_switching.send(true);
    let (rollback_loaded, promote_loaded) = joined(switching).await?;
    let through_lane = match lane {
        Some(client) => Some(joined(client).await?),
        None => None,
    };
    let elapsed = began.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds() - cpu_before;
    let stats_after = stats(&channels[0]).await?;
    let commits = stats_after.commits.saturating_sub(stats_before.commits);
    let operations = stats_after
        .committed_operations
        .saturating_sub(stats_before.committed_operations);
    let completed = deploy_latencies.len() as u64;
    Ok(LoadFigures {
        clients,
        seconds: elapsed,
        deploys_completed: completed,
        deploys_failed: failed.load(Ordering::Relaxed),
        deploys_per_second: completed as f64 / elapsed,
        deploy_latency: Percentiles::of(deploy_latencies),
        rollback_under_load: Percentiles::of(rollback_loaded),
        promote_under_load: Percentiles::of(promote_loaded),
        rollback_under_load_lane: through_lane
            .as_ref()
            .map(|(rollbacks, _)| Percentiles::of(rollbacks.clone())),
        promote_under_load_lane: through_lane.map(|(_, promotes)| Percentiles::of(promotes)),
        commits_per_second: commits as f64 / elapsed,
        operations_per_commit: operations as f64 / commits.max(1) as f64,
        cpu_seconds,
        cpu_ms_per_deploy: cpu_seconds * 1000.0 / completed.max(1) as f64,
        cpu_includes_daemon: local,
    })
}

async fn stats(channel: &AuthChannel) -> anyhow::Result<pb::GetStatsResponse> {
    rpc(AdminServiceClient::new(channel.clone())
        .get_stats(pb::GetStatsRequest {})
        .await)
}

pub(super) async fn create_projects(
    channel: &AuthChannel,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let workspace = rpc(WorkspaceServiceClient::new(channel.clone())
        .create_workspace(pb::CreateWorkspaceRequest {
            slug: format!("bench{}", crate::model::now_millis() % 1_000_000),
            name: "Bench".into(),
        })
        .await)?
    .workspace
    .ok_or_else(|| anyhow::anyhow!("no workspace in the answer"))?;
    let mut ids = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(64) {
        let creations = chunk.iter().map(|i| {
            let mut client = ProjectServiceClient::new(channel.clone());
            let workspace_id = workspace.id.clone();
            let i = *i;
            async move {
                rpc(client
                    .create_project(pb::CreateProjectRequest {
                        workspace_id,
                        slug: format!("p{i}"),
                        name: format!("Project {i}"),
                    })
                    .await)
            }
        });
        for created in futures_join(creations).await {
            ids.push(
                created?
                    .project
                    .ok_or_else(|| anyhow::anyhow!("no project in the answer"))?
                    .id,
            );
        }
    }
    Ok(ids)
}

async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        if let Ok(value) = handle.await {
            out.push(value);
        }
    }
    out
}

/// Creates an image deployment and follows it to the end: (latency from
/// the create call to the terminal event, id, whether it became READY).
pub(super) async fn deploy_and_wait(
    channel: &AuthChannel,
    project: &str,
) -> anyhow::Result<(Duration, String, bool)> {
    let mut client = DeploymentServiceClient::new(channel.clone());
    let began = Instant::now();
    let created = rpc(client
        .create_deployment(pb::CreateDeploymentRequest {
            project_id: project.into(),
            environment_slug: "production".into(),
            branch: "main".into(),
            source: Some(pb::create_deployment_request::Source::DockerImage(
                pb::DockerImage {
                    image: "nginx:1.27".into(),
                },
            )),
            ..Default::default()
        })
        .await)?;
    let mut stream = rpc(client
        .watch_deployment(pb::WatchDeploymentRequest {
            deployment_id: created.deployment_id.clone(),
        })
        .await)?;
    let ready = pb::DeploymentStatus::Ready as i32;
    let failed = pb::DeploymentStatus::Failed as i32;
    while let Some(message) = stream.next().await {
        let status = match message?.event {
            Some(Event::Snapshot(d)) => d.status,
            Some(Event::Status(s)) => s.status,
            _ => continue,
        };
        if status == ready || status == failed {
            return Ok((began.elapsed(), created.deployment_id, status == ready));
        }
    }
    anyhow::bail!("the watch ended before the deployment did")
}

/// Rollback to the older deployment, then promote the newer one back, on
/// each pair in turn, `count` times or until `until` (a deadline, or an
/// earlier stop signal). Returns the acknowledgement latencies of each.
async fn joined(
    client: std::thread::JoinHandle<anyhow::Result<SwitchLatencies>>,
) -> anyhow::Result<SwitchLatencies> {
    tokio::task::spawn_blocking(move || client.join())
        .await?
        .map_err(|_| anyhow::anyhow!("a switching client panicked"))?
}

/// Rollback and promote acknowledgement times.
type SwitchLatencies = (Vec<Duration>, Vec<Duration>);

/// The switching client on a thread, runtime and connection of its own, as
/// a separate client process would be: what its rollbacks wait for is the
/// daemon, not the deploying clients' tasks queued on the same runtime.
fn isolated_switching_client(
    target: super::Target,
    pairs: Vec<(String, String)>,
    deadline: Instant,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<SwitchLatencies>>> {
    let thread = std::thread::Builder::new()
        .name("bench-switching".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let channel = target.connect().await?;
                switch_pairs(&channel, &pairs, None, Some((deadline, stop))).await
            })
        })?;
    Ok(thread)
}

pub(super) async fn switch_pairs(
    channel: &AuthChannel,
    pairs: &[(String, String)],
    count: Option<usize>,
    until: Option<(Instant, tokio::sync::watch::Receiver<bool>)>,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let mut client = DeploymentServiceClient::new(channel.clone());
    let (mut rollbacks, mut promotes) = (Vec::new(), Vec::new());
    let mut i = 0;
    loop {
        let stopped = until
            .as_ref()
            .is_some_and(|(deadline, stop)| Instant::now() >= *deadline || *stop.borrow());
        if count.is_some_and(|c| i >= c) || stopped {
            break;
        }
        let (old, live) = &pairs[i % pairs.len()];
        i += 1;
        let began = Instant::now();
        rpc(client
            .rollback(pb::RollbackRequest {
                source_deployment_id: live.clone(),
                target_deployment_id: old.clone(),
                ..Default::default()
            })
            .await)?;
        rollbacks.push(began.elapsed());
        let began = Instant::now();
        rpc(client
            .promote(pb::PromoteRequest {
                target_deployment_id: live.clone(),
                ..Default::default()
            })
            .await)?;
        promotes.push(began.elapsed());
    }
    Ok((rollbacks, promotes))
}

/// Waits until every listed deployment is READY; returns how long it took.
pub async fn wait_ready(target: &super::Target, ids: &[DeploymentId]) -> anyhow::Result<Duration> {
    let began = Instant::now();
    let mut client = DeploymentServiceClient::new(target.connect().await?);
    for id in ids {
        loop {
            let deployment = rpc(client
                .get_deployment(pb::GetDeploymentRequest {
                    deployment_id: id.to_string(),
                })
                .await)?
            .deployment
            .ok_or_else(|| anyhow::anyhow!("no deployment in the answer"))?;
            if deployment.status == pb::DeploymentStatus::Ready as i32 {
                break;
            }
            if began.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("deployment {id} was not resumed within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(began.elapsed())
}
