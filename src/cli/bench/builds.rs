//! `deployd bench --builds`: build time and queue wait with the simulated
//! builder and few build slots. Half of `--clients` deploy git sources to
//! `production`, half to `preview`, each client to a project of its own
//! (so no deployment supersedes another), for `--seconds`. Each deployment
//! is followed with `WatchDeployment`, and split into the wait for a build
//! slot, the build, and the whole way to `READY`, per environment: the
//! slots serve production first, so production's wait should stay near
//! zero however many previews queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::stats::Percentiles;
use crate::Config;
use crate::actors::project::QUEUED_FOR_SLOT;
use crate::cli::client::AuthChannel;
use crate::config::BuilderConfig;
use crate::pb;
use crate::pb::deployment_service_client::DeploymentServiceClient;
use crate::pb::watch_deployment_response::Event;

/// Few slots, so the load queues and the order of the queue shows.
pub const SLOTS: usize = 2;
/// Long enough against the rest of a deploy (a few milliseconds at zero
/// region latency) that slots, not the daemon, are what clients wait for.
pub const BUILD_MS: u64 = 20;
/// How long in-flight deployments may take to end after `--seconds`, so a
/// run stays bounded even if something never finishes.
const DRAIN: Duration = Duration::from_secs(30);

/// The benchmark daemon's config with a slow, narrow simulated builder.
pub fn config(mut config: Config) -> Config {
    config.builder = BuilderConfig::Simulated {
        slots: SLOTS,
        duration_ms: BUILD_MS,
        registry: "registry.bench".into(),
        rules: Vec::new(),
    };
    config
}

#[derive(Debug, Default, Serialize)]
pub struct BuildsReport {
    pub seconds: f64,
    pub build_slots: usize,
    pub build_ms: u64,
    pub production: EnvironmentFigures,
    pub preview: EnvironmentFigures,
}

/// One environment's deployments.
#[derive(Debug, Default, Serialize)]
pub struct EnvironmentFigures {
    pub clients: usize,
    pub ready: u64,
    /// Failed, cancelled, or not ended within the drain time.
    pub failed: u64,
    /// READY, but the watch missed when the build got its slot (it lagged
    /// and skipped states), so only `to_ready` counts them.
    pub unmeasured: u64,
    /// Create to the build's start.
    pub queue_wait: Percentiles,
    /// The build's start to its end.
    pub build: Percentiles,
    /// The create call to the `READY` event.
    pub to_ready: Percentiles,
}

impl BuildsReport {
    pub fn table(&self) -> String {
        let mut out = format!(
            "builds: simulated builder, {} slots (production first), {} ms per build, {:.1} s\n",
            self.build_slots, self.build_ms, self.seconds
        );
        for (name, env) in [("production", &self.production), ("preview", &self.preview)] {
            out.push_str(&format!(
                "{name} ({} clients): {} READY, {} failed, {} without a slot time\n",
                env.clients, env.ready, env.failed, env.unmeasured
            ));
            out.push_str(&format!("  queue wait   {}\n", env.queue_wait.row()));
            out.push_str(&format!("  build        {}\n", env.build.row()));
            out.push_str(&format!("  to READY     {}\n", env.to_ready.row()));
        }
        out.push_str(&format!(
            "queue wait p50 / p99: production {:.1} / {:.1} ms, preview {:.1} / {:.1} ms\n",
            self.production.queue_wait.p50_ms,
            self.production.queue_wait.p99_ms,
            self.preview.queue_wait.p50_ms,
            self.preview.queue_wait.p99_ms,
        ));
        out
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
) -> anyhow::Result<BuildsReport> {
    if clients < 2 {
        anyhow::bail!("--builds needs at least 2 --clients (half production, half preview)");
    }
    let channel = target.connect().await?;
    let projects = super::workload::create_projects(&channel, clients).await?;
    let began = Instant::now();
    let deadline = began + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (c, project) in projects.into_iter().enumerate() {
        let production = c % 2 == 0;
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            let outcome = client(&channel, &project, production, c, deadline).await;
            (production, outcome)
        }));
    }
    let mut report = BuildsReport {
        build_slots: SLOTS,
        build_ms: BUILD_MS,
        ..BuildsReport::default()
    };
    let (mut production, mut preview) = (Samples::default(), Samples::default());
    for task in tasks {
        let (is_production, outcome) = task.await?;
        let (env, samples) = if is_production {
            (&mut report.production, &mut production)
        } else {
            (&mut report.preview, &mut preview)
        };
        env.clients += 1;
        samples.extend(outcome);
    }
    report.seconds = began.elapsed().as_secs_f64();
    production.into_figures(&mut report.production);
    preview.into_figures(&mut report.preview);
    Ok(report)
}

/// What one client (or one environment) measured.
#[derive(Debug, Default)]
struct Samples {
    queue_wait: Vec<Duration>,
    build: Vec<Duration>,
    to_ready: Vec<Duration>,
    failed: u64,
    unmeasured: u64,
}

impl Samples {
    fn extend(&mut self, other: Samples) {
        self.queue_wait.extend(other.queue_wait);
        self.build.extend(other.build);
        self.to_ready.extend(other.to_ready);
        self.failed += other.failed;
        self.unmeasured += other.unmeasured;
    }

    fn into_figures(self, env: &mut EnvironmentFigures) {
        env.ready = self.to_ready.len() as u64;
        env.failed = self.failed;
        env.unmeasured = self.unmeasured;
        env.queue_wait = Percentiles::of(self.queue_wait);
        env.build = Percentiles::of(self.build);
        env.to_ready = Percentiles::of(self.to_ready);
    }
}

/// Deploys to its project until `deadline`, one deployment at a time.
async fn client(
    channel: &AuthChannel,
    project: &str,
    production: bool,
    index: usize,
    deadline: Instant,
) -> Samples {
    static FAILED_LOGGED: AtomicU64 = AtomicU64::new(0);
    let mut client = DeploymentServiceClient::new(channel.clone());
    let mut samples = Samples::default();
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        // Unique per deployment, 40 hex digits like a real commit.
        let sha = format!("{index:08x}{n:032x}");
        let run = deploy(&mut client, project, production, sha);
        let outcome = match tokio::time::timeout_at((deadline + DRAIN).into(), run).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow::anyhow!("did not end within the drain time")),
        };
        match outcome {
            Ok(Deployed::Ready { total, phases }) => {
                samples.to_ready.push(total);
                match phases {
                    Some((wait, build)) => {
                        samples.queue_wait.push(wait);
                        samples.build.push(build);
                    }
                    None => samples.unmeasured += 1,
                }
            }
            Ok(Deployed::Failed) => samples.failed += 1,
            Err(error) => {
                samples.failed += 1;
                // One line is enough to tell why; the count is in the table.
                if FAILED_LOGGED.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("bench --builds: a deployment failed: {error:#}");
                }
            }
        }
    }
    samples
}

enum Deployed {
    Ready {
        total: Duration,
        phases: Option<(Duration, Duration)>,
    },
    Failed,
}

async fn deploy(
    client: &mut DeploymentServiceClient<AuthChannel>,
    project: &str,
    production: bool,
    sha: String,
) -> anyhow::Result<Deployed> {
    let environment = if production { "production" } else { "preview" };
    let began = Instant::now();
    let created = rpc(client
        .create_deployment(pb::CreateDeploymentRequest {
            project_id: project.into(),
            environment_slug: environment.into(),
            branch: "main".into(),
            source: Some(pb::create_deployment_request::Source::Git(pb::GitSource {
                repository: "https://git.example.test/bench/app.git".into(),
                commit_sha: sha,
                context_path: String::new(),
                dockerfile_path: String::new(),
            })),
            ..Default::default()
        })
        .await)?;
    let mut stream = rpc(client
        .watch_deployment(pb::WatchDeploymentRequest {
            deployment_id: created.deployment_id,
        })
        .await)?;
    let mut created_at = None;
    let mut watch = BuildWatch::default();
    while let Some(message) = stream.message().await? {
        let seen = crate::model::now_millis();
        let status = match message.event {
            Some(Event::Snapshot(d)) => {
                created_at = d.created_at.as_ref().map(millis);
                for step in &d.steps {
                    watch.step(step, seen);
                }
                d.status
            }
            Some(Event::Step(s)) => {
                if let Some(step) = &s.step {
                    watch.step(step, seen);
                }
                continue;
            }
            Some(Event::BuildLog(_)) => {
                watch.output(seen);
                continue;
            }
            Some(Event::Status(s)) => s.status,
            None => continue,
        };
        if status == pb::DeploymentStatus::Ready as i32 {
            let total = began.elapsed();
            let phases = created_at.and_then(|c| watch.phases(c));
            return Ok(Deployed::Ready { total, phases });
        }
        if status == pb::DeploymentStatus::Failed as i32
            || status == pb::DeploymentStatus::Cancelled as i32
        {
            return Ok(Deployed::Failed);
        }
    }
    anyhow::bail!("the watch ended before the deployment did")
}

fn millis(t: &pbjson_types::Timestamp) -> u64 {
    let ms = t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000);
    u64::try_from(ms).unwrap_or(0)
}

/// What a watcher saw of one deployment's build, in Unix milliseconds.
/// The build step starts when the deployment asks for a slot; the moment
/// it gets one is not stored as a time, so it is when the watch first
/// showed the build running: its first output line, or the step's detail
/// turning from `queued for a build slot` to `building` (whichever came
/// first). A build that got a slot at once never says either (its detail
/// stays empty), and then the step's start is the slot's. The daemon runs
/// in this process, so its clock and the watcher's are the same.
#[derive(Debug, Default)]
struct BuildWatch {
    asked: Option<u64>,
    granted: Option<u64>,
    finished: Option<u64>,
    /// The detail the step ended with.
    final_detail: Option<String>,
}

impl BuildWatch {
    fn step(&mut self, step: &pb::Step, seen: u64) {
        if step.name != "build" {
            return;
        }
        self.asked = self.asked.or(step.started_at.as_ref().map(millis));
        if let Some(finished) = &step.finished_at {
            self.finished = Some(millis(finished));
            self.final_detail = Some(step.detail.clone());
        } else if !step.detail.is_empty() && step.detail != QUEUED_FOR_SLOT {
            self.granted = self.granted.or(Some(seen));
        }
    }

    /// Build output is printed only once the build holds a slot.
    fn output(&mut self, seen: u64) {
        if self.finished.is_none() {
            self.granted = self.granted.or(Some(seen));
        }
    }

    /// (queue wait from `created`, build time), or None when the watch
    /// missed the moment the slot was granted.
    fn phases(&self, created: u64) -> Option<(Duration, Duration)> {
        let finished = self.finished?;
        let granted = match (self.granted, self.final_detail.as_deref()) {
            (Some(granted), _) => granted,
            // Never queued: it had a slot from the step's start.
            (None, Some("")) => self.asked?,
            (None, _) => return None,
        };
        let ms = Duration::from_millis;
        Some((
            ms(granted.saturating_sub(created)),
            ms(finished.saturating_sub(granted)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> pbjson_types::Timestamp {
        pbjson_types::Timestamp {
            seconds: (ms / 1000) as i64,
            nanos: ((ms % 1000) * 1_000_000) as i32,
        }
    }

    fn step(started: u64, finished: Option<u64>, detail: &str) -> pb::Step {
        pb::Step {
            name: "build".into(),
            started_at: Some(at(started)),
            finished_at: finished.map(at),
            error: String::new(),
            detail: detail.into(),
        }
    }

    #[test]
    fn a_queued_build_waits_until_it_is_seen_building() {
        let mut watch = BuildWatch::default();
        watch.step(&step(1_000, None, ""), 1_001);
        watch.step(&step(1_000, None, QUEUED_FOR_SLOT), 1_002);
        watch.step(&step(1_000, None, "building"), 1_050);
        // Output after the detail does not move the start.
        watch.output(1_060);
        watch.step(&step(1_000, Some(1_070), "building"), 1_071);
        let ms = Duration::from_millis;
        assert_eq!(watch.phases(999), Some((ms(51), ms(20))));
    }

    #[test]
    fn output_before_the_detail_is_the_start() {
        let mut watch = BuildWatch::default();
        watch.step(&step(1_000, None, QUEUED_FOR_SLOT), 1_002);
        watch.output(1_040);
        watch.step(&step(1_000, None, "building"), 1_045);
        watch.step(&step(1_000, Some(1_060), "building"), 1_061);
        let ms = Duration::from_millis;
        assert_eq!(watch.phases(1_000), Some((ms(40), ms(20))));
    }

    #[test]
    fn a_build_that_never_queued_starts_with_its_step() {
        let mut watch = BuildWatch::default();
        watch.step(&step(1_000, None, ""), 1_001);
        watch.step(&step(1_000, Some(1_020), ""), 1_021);
        let ms = Duration::from_millis;
        assert_eq!(watch.phases(1_000), Some((ms(0), ms(20))));
    }

    #[test]
    fn a_missed_slot_is_unmeasured() {
        let mut watch = BuildWatch::default();
        // Lagged: the only build state seen is the finished one, which
        // says it had queued.
        watch.step(&step(1_000, Some(1_090), "building"), 1_091);
        assert_eq!(watch.phases(1_000), None);
        assert_eq!(BuildWatch::default().phases(1_000), None);
    }
}
