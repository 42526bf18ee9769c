//! `deployd bench`: the load generator. It starts a daemon in-process on a
//! temporary data directory (or targets a running one with `--target`),
//! with simulated regions and builder at zero latency, drives it over real
//! gRPC on loopback, and prints one table (or JSON with `--json`).
//!
//! Every run is bounded: each phase stops after its duration or count.
//! Latencies are measured at the client; commit figures come from the
//! daemon's counters (`AdminService.GetStats`).

mod builds;
mod edge;
mod flood;
mod history;
pub mod prepare;
mod secure;
mod stats;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Config;
use crate::config::{BuilderConfig, RegionConfig, ThreadPriority};
pub use stats::{Percentiles, rss_mib};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// With `--target`: the running daemon's switch lane (`switch_listen`),
    /// so the switch latency under load is measured through both listeners
    #[arg(long, value_name = "URL", requires = "target")]
    pub switch_target: Option<String>,
    /// Drive a running daemon at this address instead of starting one.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Projects to create and spread the load over.
    #[arg(long, default_value_t = 100)]
    pub projects: usize,
    /// Concurrent deploying clients. A list (`64,256`) runs the deploy load
    /// once per count, one after the other on the same daemon, so switch
    /// latencies under different loads come from one run.
    #[arg(long, value_delimiter = ',', default_value = "64", num_args = 1..)]
    pub clients: Vec<usize>,
    /// How long each deploy load runs (at most).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Stop the deploy load after this many deployments have been created,
    /// if that comes before `--seconds`.
    #[arg(long, value_name = "N")]
    pub deploys: Option<u64>,
    /// Rollback + promote pairs measured on an otherwise idle daemon.
    #[arg(long, default_value_t = 500)]
    pub switches: usize,
    /// Before the load, write a data file with this many deployments (spread
    /// over `--prepare-projects`) and measure the daemon's start on it.
    #[arg(long, value_name = "N")]
    pub prepare_deployments: Option<u64>,
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub prepare_projects: usize,
    /// redb's page cache of the daemon, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = Config::default().store_cache_mib)]
    pub cache_mib: usize,
    /// Scheduling of the daemon's switch path (`switch_path_priority`):
    /// `nice` or `realtime`.
    #[arg(long, value_name = "POLICY", default_value = "nice", value_parser = parse_priority)]
    pub switch_priority: ThreadPriority,
    /// Keep the data here instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Instead of the usual load: measure what one project flooding the
    /// daemon with deployments that never finish costs `--clients` other
    /// projects (`--seconds` per phase, without and with the flood).
    #[arg(long)]
    pub flood: bool,
    /// Instead of the usual load: compare filtered lists of a project with
    /// this many deployments, and an unrelated project's rollback, against
    /// the same on a file where that project has 100.
    #[arg(long, value_name = "N", conflicts_with = "flood")]
    pub history: Option<u64>,
    /// Instead of the usual load: HTTP through the built-in edge against
    /// the same instance directly (`--clients` HTTP clients, `--seconds`
    /// per phase), then through the edge while rollbacks and promotes run.
    #[arg(long, conflicts_with_all = ["flood", "history"])]
    pub edge: bool,
    /// Instead of the usual load: git deploys through a simulated builder
    /// with few slots and a fixed build time, half of `--clients` to
    /// production and half to preview, for `--seconds`: each one's wait
    /// for a build slot, build time and time to READY.
    #[arg(long, conflicts_with_all = ["flood", "history", "edge", "target"])]
    pub builds: bool,
    /// Run the usual load twice, each on a fresh daemon: plain HTTP/2,
    /// then TLS (a certificate made for the run); both with a bearer token
    /// (auth is always on). Prints the two side by side. Takes one
    /// `--clients` count.
    #[arg(long, conflicts_with_all = ["flood", "history", "edge", "builds", "target", "prepare_deployments"])]
    pub compare_secure: bool,
    /// With `--compare-secure`: pairs of runs, alternating which goes
    /// first; the table shows each figure's median.
    #[arg(long, default_value_t = 1, requires = "compare_secure")]
    pub rounds: usize,
}

/// Everything the run measured.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub projects: usize,
    pub rollback_alone: Percentiles,
    pub promote_alone: Percentiles,
    /// One per `--clients` count, in order.
    pub loads: Vec<workload::LoadFigures>,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
    pub rss_per_project_kib: f64,
    pub data_file_mib: Option<f64>,
    pub startup: Option<Startup>,
    pub flood: Option<flood::FloodReport>,
    pub history: Option<history::HistoryReport>,
    pub edge: Option<edge::EdgeReport>,
    pub builds: Option<builds::BuildsReport>,
    pub secure: Option<secure::SecureReport>,
}

#[derive(Debug, Default, Serialize)]
pub struct Startup {
    pub deployments_on_file: u64,
    pub projects_on_file: usize,
    pub prepare_seconds: f64,
    pub to_serving_ms: f64,
    pub to_resumed_ms: f64,
    pub rss_after_start_mib: f64,
}

/// The daemon settings for benchmarks: three regions and a builder that
/// answer at once, and no standby during the run.
pub fn zero_latency_config() -> Config {
    let region = || RegionConfig::Simulated {
        ready_after_ms: 0,
        never_ready: false,
        persist: false,
        serve_http: false,
    };
    Config {
        listen: ([127, 0, 0, 1], 0).into(),
        switch_listen: Some(([127, 0, 0, 1], 0).into()),
        standby_delay_ms: 60 * 60 * 1000,
        readiness_poll_ms: 1,
        regions: BTreeMap::from([
            ("us-east-1".to_string(), region()),
            ("eu-central-1".to_string(), region()),
            ("ap-southeast-1".to_string(), region()),
        ]),
        builder: BuilderConfig::Simulated {
            slots: 64,
            duration_ms: 0,
            registry: "registry.bench".into(),
            rules: Vec::new(),
        },
        edge: crate::config::EdgeConfig {
            enabled: false,
            ..Default::default()
        },
        // The load puts all its projects in one workspace
        // (`--projects 10000` and more).
        quotas: crate::config::QuotasConfig {
            max_projects_per_workspace: u32::MAX,
            ..Default::default()
        },
        ..Config::default()
    }
}

/// A daemon to drive: its address and the token its calls carry.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: String,
    pub token: Option<String>,
    /// The daemon's switch lane (`switch_listen`), when it has one.
    pub switch_addr: Option<String>,
    /// For `https://` addresses: whom to trust and which client
    /// certificate to show.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Target {
    /// The same daemon reached through its switch lane.
    pub fn switch_lane(&self) -> Option<Target> {
        self.switch_addr.as_ref().map(|addr| Target {
            addr: addr.clone(),
            token: self.token.clone(),
            switch_addr: None,
            tls: self.tls.clone(),
        })
    }

    async fn connect(&self) -> anyhow::Result<crate::cli::AuthChannel> {
        let mut endpoint = tonic::transport::Channel::from_shared(self.addr.clone())?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone())?;
        }
        let channel = endpoint.connect().await?;
        crate::cli::with_token(channel, self.token.as_deref())
    }
}

/// An in-process daemon and how to stop it.
struct Local {
    target: Target,
    /// The edge's address, when it is enabled.
    edge: Option<std::net::SocketAddr>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    serving_after: Duration,
}

/// Starts a daemon with an admin token of its own, minted here and handed
/// over through `[auth] bootstrap_token_file`.
async fn start_local(mut config: Config) -> anyhow::Result<Local> {
    let token = crate::model::auth::NewToken::generate().text;
    std::fs::create_dir_all(&config.data_dir)?;
    let token_file = config.data_dir.join("bench-admin.token");
    std::fs::write(&token_file, &token)?;
    config.auth.bootstrap_token_file = Some(token_file);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let started = Instant::now();
    let task = tokio::spawn(crate::serve_observed(
        listener,
        config,
        async move {
            let _ = stopped.await;
        },
        // Only the moment and the edge's address matter; the handle would
        // hold the store open.
        move |handle| {
            let _ = ready_tx.send((handle.edge, handle.switch_lane));
        },
    ));
    let Ok((edge, switch_lane)) = ready_rx.await else {
        task.await??;
        anyhow::bail!("the daemon stopped before serving");
    };
    Ok(Local {
        target: Target {
            addr,
            token: Some(token),
            switch_addr: switch_lane.map(|lane| format!("http://{lane}")),
            tls: None,
        },
        edge,
        stop,
        task,
        serving_after: started.elapsed(),
    })
}

impl Local {
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

pub async fn run(
    args: BenchArgs,
    token: Option<String>,
    tls: &crate::cli::args::TlsArgs,
) -> anyhow::Result<Report> {
    let dir = data_dir(&args)?;
    let result = run_in(&args, token, tls, &dir).await;
    // A temporary data directory goes with the run; one the user named stays.
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run_in(
    args: &BenchArgs,
    token: Option<String>,
    tls: &crate::cli::args::TlsArgs,
    dir: &std::path::Path,
) -> anyhow::Result<Report> {
    if args.projects == 0 || args.clients.is_empty() || args.clients.contains(&0) {
        anyhow::bail!("--projects and --clients must be at least 1");
    }
    if args.prepare_deployments.is_some() && args.prepare_projects == 0 {
        anyhow::bail!("--prepare-projects must be at least 1");
    }
    let mut config = zero_latency_config();
    config.data_dir = dir.to_path_buf();
    config.store_cache_mib = args.cache_mib;
    config.switch_path_priority = args.switch_priority;
    let mut report = Report {
        projects: args.projects,
        ..Report::default()
    };

    if let Some(target) = &args.target {
        let target = Target {
            addr: target.clone(),
            token,
            switch_addr: args.switch_target.clone(),
            tls: crate::cli::client::tls_towards(target, tls)?,
        };
        return workload::drive(&target, args, report, false).await;
    }

    if args.compare_secure {
        report.secure = Some(secure::run(&config, args, dir).await?);
        return Ok(report);
    }

    if args.flood {
        let local = start_local(flood::config(config.clone())).await?;
        report.flood =
            Some(flood::run(&local.target, args.one_client_count()?, args.seconds).await?);
        local.stop().await?;
        return Ok(report);
    }

    if args.builds {
        let local = start_local(builds::config(config.clone())).await?;
        let result = builds::run(&local.target, args.one_client_count()?, args.seconds).await;
        local.stop().await?;
        report.builds = Some(result?);
        return Ok(report);
    }

    if args.edge {
        let mut config = config.clone();
        config.edge = crate::config::EdgeConfig {
            enabled: true,
            listen: ([127, 0, 0, 1], 0).into(),
            tls: None,
        };
        for region in config.regions.values_mut() {
            if let RegionConfig::Simulated { serve_http, .. } = region {
                *serve_http = true;
            }
        }
        let local = start_local(config).await?;
        let edge_addr = local
            .edge
            .ok_or_else(|| anyhow::anyhow!("the daemon started without its edge"))?;
        let clients = args.one_client_count()?;
        let result = edge::run(&local.target, edge_addr, clients, args.seconds).await;
        local.stop().await?;
        report.edge = Some(result?);
        return Ok(report);
    }

    if let Some(deployments) = args.history {
        if deployments < history::BASELINE {
            anyhow::bail!("--history must be at least {}", history::BASELINE);
        }
        report.history = Some(history::run(&config, deployments).await?);
        return Ok(report);
    }

    if let Some(deployments) = args.prepare_deployments {
        let regions: Vec<String> = config.regions.keys().cloned().collect();
        let began = Instant::now();
        let prepared = prepare::prepare(
            &config.db_path(),
            &config.apex_domain,
            &regions,
            args.prepare_projects,
            deployments,
            100,
        )
        .await?;
        let prepare_seconds = began.elapsed().as_secs_f64();
        let local = start_local(config.clone()).await?;
        let to_resumed = workload::wait_ready(&local.target, &prepared.unfinished).await?;
        report.startup = Some(Startup {
            deployments_on_file: deployments,
            projects_on_file: args.prepare_projects,
            prepare_seconds,
            to_serving_ms: local.serving_after.as_secs_f64() * 1000.0,
            to_resumed_ms: (local.serving_after + to_resumed).as_secs_f64() * 1000.0,
            rss_after_start_mib: rss_mib().0,
        });
        let report = workload::drive(&local.target, args, report, true).await?;
        local.stop().await?;
        return finish(report, &config);
    }

    let local = start_local(config.clone()).await?;
    let report = workload::drive(&local.target, args, report, true).await?;
    local.stop().await?;
    finish(report, &config)
}

fn finish(mut report: Report, config: &Config) -> anyhow::Result<Report> {
    report.data_file_mib = std::fs::metadata(config.db_path())
        .ok()
        .map(|m| m.len() as f64 / (1024.0 * 1024.0));
    Ok(report)
}

fn parse_priority(value: &str) -> Result<ThreadPriority, String> {
    match value {
        "nice" => Ok(ThreadPriority::Nice),
        "realtime" => Ok(ThreadPriority::Realtime),
        other => Err(format!("{other:?}: expected nice or realtime")),
    }
}

fn data_dir(args: &BenchArgs) -> anyhow::Result<PathBuf> {
    match &args.data_dir {
        Some(dir) => Ok(dir.clone()),
        None => {
            let dir = std::env::temp_dir().join(format!(
                "deployd-bench-{}-{}",
                std::process::id(),
                crate::model::now_millis()
            ));
            std::fs::create_dir_all(&dir)?;
            Ok(dir)
        }
    }
}

impl BenchArgs {
    /// The modes other than the deploy load take one client count.
    fn one_client_count(&self) -> anyhow::Result<usize> {
        match self.clients.as_slice() {
            [clients] => Ok(*clients),
            _ => anyhow::bail!("this mode takes one --clients count"),
        }
    }
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        if let Some(flood) = &self.flood {
            return flood.table();
        }
        if let Some(history) = &self.history {
            return history.table();
        }
        if let Some(edge) = &self.edge {
            return edge.table();
        }
        if let Some(builds) = &self.builds {
            return builds.table();
        }
        if let Some(secure) = &self.secure {
            return secure.table();
        }
        let mut out = String::new();
        let mut line = |label: &str, value: String| {
            out.push_str(&format!("{label:<34} {value}\n"));
        };
        line("projects", format!("{}", self.projects));
        line("rollback ack, alone", self.rollback_alone.row());
        line("promote ack, alone", self.promote_alone.row());
        for load in &self.loads {
            load.rows(&mut line);
        }
        line(
            "memory (whole process)",
            format!(
                "RSS {:.1} MiB, peak {:.1} MiB, {:.1} KiB per project",
                self.rss_mib, self.peak_rss_mib, self.rss_per_project_kib
            ),
        );
        if let Some(size) = self.data_file_mib {
            line("data file", format!("{size:.1} MiB"));
        }
        if let Some(s) = &self.startup {
            line(
                "start on a prepared file",
                format!(
                    "{} deployments / {} projects (written in {:.1} s)",
                    s.deployments_on_file, s.projects_on_file, s.prepare_seconds
                ),
            );
            line(
                "  to SERVING / all work resumed",
                format!("{:.1} ms / {:.1} ms", s.to_serving_ms, s.to_resumed_ms),
            );
            line(
                "  RSS after start",
                format!("{:.1} MiB", s.rss_after_start_mib),
            );
        }
        out
    }
}
