//! `deployd bench --history N`: does a long history cost anything? Two
//! daemons run one after the other: the first on a file where the "big"
//! project has [`BASELINE`] deployments (two full pages, so both phases
//! read pages of the same size), the second on a file where it has `N`.
//! Against each, the same reads and switches are timed: filtered
//! `ListDeployments` pages of the big project, and rollback/promote pairs
//! of an unrelated project. The two rows are compared within one run.

use std::time::{Duration, Instant};

use crate::cli::client::AuthChannel;
use serde::Serialize;

use super::stats::Percentiles;
use super::workload::{create_projects, deploy_and_wait, switch_pairs};
use super::{Local, prepare, start_local};
use crate::Config;
use crate::pb;
use crate::pb::deployment_service_client::DeploymentServiceClient;

/// Deployments of the big project in the baseline phase.
pub const BASELINE: u64 = 100;
/// Reads timed per filter and phase.
const LIST_SAMPLES: usize = 500;
/// Rollback + promote pairs of the unrelated project per phase.
const SWITCHES: usize = 300;

#[derive(Debug, Default, Serialize)]
pub struct HistoryReport {
    pub deployments_on_file: u64,
    pub prepare_seconds: f64,
    pub empty: HistoryPhase,
    pub history: HistoryPhase,
}

/// What one daemon measured.
#[derive(Debug, Default, Serialize)]
pub struct HistoryPhase {
    pub to_serving_ms: f64,
    /// `environment = production`: the newest page of a long listing.
    pub list_by_environment: Percentiles,
    /// `status = FAILED`: a status the history holds none of.
    pub list_by_status: Percentiles,
    /// `environment = preview`: an environment the history never used.
    pub list_empty_environment: Percentiles,
    pub other_rollback: Percentiles,
    pub other_promote: Percentiles,
}

/// Picks one row's figures out of a phase.
type PickRow = fn(&HistoryPhase) -> &Percentiles;

impl HistoryReport {
    pub fn table(&self) -> String {
        let mut out = format!(
            "history: one project with {BASELINE} deployments, then with {} (written in {:.1} s)\n",
            self.deployments_on_file, self.prepare_seconds
        );
        let rows: [(&str, PickRow); 5] = [
            ("list, environment filter", |p| &p.list_by_environment),
            ("list, status filter", |p| &p.list_by_status),
            ("list, unused environment", |p| &p.list_empty_environment),
            ("other project's rollback", |p| &p.other_rollback),
            ("other project's promote", |p| &p.other_promote),
        ];
        for (label, pick) in rows {
            let (empty, history) = (pick(&self.empty), pick(&self.history));
            out.push_str(&format!(
                "{label:<26} short    {}\n{:<26} long     {}  (p99 {:+.0} %)\n",
                empty.row(),
                "",
                history.row(),
                change_percent(empty.p99_ms, history.p99_ms),
            ));
        }
        out.push_str(&format!(
            "{:<26} {:.1} ms short, {:.1} ms long\n",
            "start to SERVING", self.empty.to_serving_ms, self.history.to_serving_ms
        ));
        out
    }
}

fn change_percent(before: f64, after: f64) -> f64 {
    if before <= 0.0 {
        return 0.0;
    }
    (after - before) / before * 100.0
}

/// Runs both phases, each on its own data file under `config.data_dir`.
pub async fn run(config: &Config, deployments: u64) -> anyhow::Result<HistoryReport> {
    let mut report = HistoryReport {
        deployments_on_file: deployments,
        ..HistoryReport::default()
    };
    report.empty = phase(config, "empty", BASELINE).await?.0;
    let (history, prepare_seconds) = phase(config, "history", deployments).await?;
    report.history = history;
    report.prepare_seconds = prepare_seconds;
    Ok(report)
}

async fn phase(
    config: &Config,
    name: &str,
    deployments: u64,
) -> anyhow::Result<(HistoryPhase, f64)> {
    let mut config = config.clone();
    config.data_dir = config.data_dir.join(name);
    std::fs::create_dir_all(&config.data_dir)?;
    let regions: Vec<String> = config.regions.keys().cloned().collect();
    let began = Instant::now();
    let prepared = prepare::prepare(
        &config.db_path(),
        &config.apex_domain,
        &regions,
        1,
        deployments,
        0,
    )
    .await?;
    let prepare_seconds = began.elapsed().as_secs_f64();
    let big = prepared
        .projects
        .first()
        .map(|p| p.id.to_string())
        .ok_or_else(|| anyhow::anyhow!("nothing was prepared"))?;
    let local = start_local(config).await?;
    let measured = measure(&local, &big).await;
    local.stop().await?;
    Ok((measured?, prepare_seconds))
}

async fn measure(local: &Local, big: &str) -> anyhow::Result<HistoryPhase> {
    let channel = local.target.connect().await?;
    let list = |environment: &str, status: pb::DeploymentStatus| pb::ListDeploymentsRequest {
        project_id: big.to_string(),
        environment_slug: environment.to_string(),
        status: status as i32,
        page_size: 50,
        page_token: String::new(),
    };
    let list_by_environment = time_lists(
        &channel,
        list("production", pb::DeploymentStatus::Unspecified),
    )
    .await?;
    let list_by_status = time_lists(&channel, list("", pb::DeploymentStatus::Failed)).await?;
    let list_empty_environment =
        time_lists(&channel, list("preview", pb::DeploymentStatus::Unspecified)).await?;

    let other = create_projects(&channel, 1).await?;
    let other = other
        .first()
        .ok_or_else(|| anyhow::anyhow!("no project was created"))?;
    let first = deploy_and_wait(&channel, other).await?.1;
    let second = deploy_and_wait(&channel, other).await?.1;
    let (rollbacks, promotes) =
        switch_pairs(&channel, &[(first, second)], Some(SWITCHES), None).await?;
    Ok(HistoryPhase {
        to_serving_ms: local.serving_after.as_secs_f64() * 1000.0,
        list_by_environment,
        list_by_status,
        list_empty_environment,
        other_rollback: Percentiles::of(rollbacks),
        other_promote: Percentiles::of(promotes),
    })
}

async fn time_lists(
    channel: &AuthChannel,
    request: pb::ListDeploymentsRequest,
) -> anyhow::Result<Percentiles> {
    let mut client = DeploymentServiceClient::new(channel.clone());
    let mut samples: Vec<Duration> = Vec::with_capacity(LIST_SAMPLES);
    for _ in 0..LIST_SAMPLES {
        let began = Instant::now();
        client
            .list_deployments(request.clone())
            .await
            .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?;
        samples.push(began.elapsed());
    }
    Ok(Percentiles::of(samples))
}
