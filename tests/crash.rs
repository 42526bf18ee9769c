//! The crash harness: the real `deployd` binary, a seeded random workload of
//! deploys, rollbacks and promotes over several projects, and SIGKILL (or an
//! abort at a named fail point) at the worst moments. After every kill it
//! checks the file offline (`deployd check`: redb integrity and invariants),
//! restarts the daemon and checks through the API that:
//!
//! - every acknowledged operation is still there: its retry with the same
//!   idempotency key returns the original answer;
//! - an operation whose answer was lost either landed or not, and its retry
//!   does not duplicate it (the deployments listed are exactly the ones the
//!   ledger knows of);
//! - every deployment reaches READY or FAILED (invariant 5);
//! - sticky routes point at READY deployments of the project and LIVE routes
//!   at the live one (invariants 1 and 2), and no reader ever saw LIVE routes
//!   of one project disagree mid-switch (invariant 3);
//! - what the regions run matches what is stored: every RUNNING deployment
//!   runs its replicas in each of its regions and nothing else runs. The
//!   simulated regions keep their state in files, so like a real cluster
//!   they remember what they were told before the kill.
//!
//! `DEPLOYD_CRASH_SEEDS` (default 3) sets how many seeds run; every named
//! fail point is used at least once per seed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::process::DaemonProcess;
use deployd::cli::AuthChannel;
use deployd::pb;
use deployd::pb::deployment_service_client::DeploymentServiceClient;
use deployd::pb::project_service_client::ProjectServiceClient;
use deployd::pb::routing_service_client::RoutingServiceClient;
use deployd::pb::workspace_service_client::WorkspaceServiceClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;

const FAIL_POINTS: [&str; 8] = [
    "build.started",
    "readiness.polling",
    "deploy.before_route_switch",
    "deploy.after_route_switch_commit",
    "project.rollback",
    "project.promote",
    "switch.before_commit",
    "switch.after_commit",
];
const PROJECTS: usize = 3;
const CLIENTS: usize = 4;
const OPS_PER_CLIENT: usize = 25;

#[allow(clippy::large_enum_variant)] // a test ledger entry
#[derive(Clone, Debug)]
enum Request {
    Deploy(pb::CreateDeploymentRequest),
    Rollback(pb::RollbackRequest),
    Promote(pb::PromoteRequest),
}

#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Deployed(String),
    // Boxed: a project is much larger than a deployment id.
    Switched(Box<pb::Project>, Vec<pb::Route>),
}

#[allow(clippy::large_enum_variant)] // a test ledger entry
#[derive(Clone, Debug)]
enum Outcome {
    Ok(Answer),
    /// Refused: changed nothing.
    Refused,
    /// The answer was lost (the daemon died, or could not say).
    Unknown,
}

#[derive(Clone, Debug)]
struct Op {
    project: usize,
    request: Request,
    outcome: Outcome,
}

type Ledger = Arc<Mutex<Vec<Op>>>;

type Daemon = DaemonProcess;

struct Harness {
    bin: PathBuf,
    dir: tempfile::TempDir,
    projects: Vec<String>,
    ledger: Ledger,
    /// Set by readers that saw LIVE routes of one project disagree.
    torn_reads: Arc<Mutex<Vec<String>>>,
}

fn config_text(data_dir: &Path, fail_points: &[(&str, u32)]) -> String {
    let mut text = format!(
        r#"listen = "127.0.0.1:0"
data_dir = "{}"
standby_delay_ms = 300
region_timeout_ms = 5000
readiness_poll_ms = 5
call_timeout_ms = 5000
shutdown_timeout_ms = 2000

[edge]
listen = "127.0.0.1:0"

[regions.us-east-1]
driver = "simulated"
ready_after_ms = 5
persist = true

[regions.eu-central-1]
driver = "simulated"
ready_after_ms = 15
persist = true

[builder]
driver = "simulated"
duration_ms = 30
"#,
        data_dir.display()
    );
    if !fail_points.is_empty() {
        text.push_str("\n[fail_points]\n");
        for (name, after) in fail_points {
            text.push_str(&format!(
                "\"{name}\" = {{ abort = {{ after = {after} }} }}\n"
            ));
        }
    }
    text
}

impl Harness {
    fn new() -> Self {
        Self {
            bin: PathBuf::from(env!("CARGO_BIN_EXE_deployd")),
            dir: tempfile::tempdir().expect("temp dir"),
            projects: Vec::new(),
            ledger: Arc::default(),
            torn_reads: Arc::default(),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the binary; `None` if it died before serving (a fail point
    /// armed for recovery).
    async fn start(&self, fail_points: &[(&str, u32)]) -> Option<Daemon> {
        let config = self.dir.path().join("deployd.toml");
        std::fs::write(&config, config_text(&self.data_dir(), fail_points)).expect("config");
        DaemonProcess::spawn(&config).await
    }

    fn check_file(&self) {
        let output = std::process::Command::new(&self.bin)
            .arg("check")
            .arg("--data-dir")
            .arg(self.data_dir())
            .output()
            .expect("run deployd check");
        assert!(
            output.status.success(),
            "deployd check failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn setup(&mut self, daemon: &Daemon) {
        let channel = daemon.channel().await;
        let workspace = WorkspaceServiceClient::new(channel.clone())
            .create_workspace(pb::CreateWorkspaceRequest {
                slug: "crash".into(),
                name: "Crash".into(),
            })
            .await
            .expect("workspace")
            .into_inner()
            .workspace
            .expect("workspace");
        for i in 0..PROJECTS {
            let project = ProjectServiceClient::new(channel.clone())
                .create_project(pb::CreateProjectRequest {
                    workspace_id: workspace.id.clone(),
                    slug: format!("app{i}"),
                    name: format!("App {i}"),
                })
                .await
                .expect("project")
                .into_inner()
                .project
                .expect("project");
            self.projects.push(project.id);
        }
    }

    /// Runs clients against `daemon` until it dies: by itself at an armed
    /// fail point, or by SIGKILL after `kill_after`.
    async fn round(&self, mut daemon: Daemon, seed: u64, round: u64, kill_after: Option<Duration>) {
        let channel = daemon.channel().await;
        let mut clients = Vec::new();
        for task in 0..CLIENTS {
            let rng = StdRng::seed_from_u64(seed * 1_000_003 + round * 101 + task as u64);
            let worker = Worker {
                channel: channel.clone(),
                projects: self.projects.clone(),
                ledger: self.ledger.clone(),
                key_prefix: format!("s{seed}-r{round}-t{task}"),
                rng,
            };
            clients.push(tokio::spawn(worker.run()));
        }
        let reader = tokio::spawn(read_routes_until_error(
            channel.clone(),
            self.projects.clone(),
            self.torn_reads.clone(),
        ));
        match kill_after {
            Some(delay) => {
                tokio::time::sleep(delay).await;
                let _ = daemon.child.start_kill();
            }
            None => {
                // Wait for the fail point; if the workload never reached
                // it this round, kill anyway.
                if tokio::time::timeout(Duration::from_secs(5), daemon.child.wait())
                    .await
                    .is_err()
                {
                    let _ = daemon.child.start_kill();
                }
            }
        }
        let _ = daemon.child.wait().await;
        for client in clients {
            let _ = client.await;
        }
        reader.abort();
    }

    fn log_round(
        &self,
        seed: u64,
        round: u64,
        point: Option<&str>,
        kill_after: Option<Duration>,
        before: usize,
    ) {
        let ledger = self.ledger.lock().expect("ledger");
        let ops = &ledger[before..];
        let count = |f: fn(&Outcome) -> bool| ops.iter().filter(|op| f(&op.outcome)).count();
        eprintln!(
            "seed {seed} round {round:2}: kill {:<36} ops {:3}: ok {:3}, refused {:3}, answer lost {}",
            match (point, kill_after) {
                (Some(point), _) => format!("at {point}"),
                (None, Some(after)) => format!("SIGKILL after {} ms", after.as_millis()),
                (None, None) => String::new(),
            },
            ops.len(),
            count(|o| matches!(o, Outcome::Ok(_))),
            count(|o| matches!(o, Outcome::Refused)),
            count(|o| matches!(o, Outcome::Unknown)),
        );
    }

    /// Everything the API must say after a restart.
    async fn verify(&self, daemon: &Daemon) {
        let channel = daemon.channel().await;
        let mut deployments = DeploymentServiceClient::new(channel.clone());
        let ops: Vec<Op> = self.ledger.lock().expect("ledger").clone();
        let mut resolved = Vec::with_capacity(ops.len());
        for mut op in ops {
            match &op.outcome {
                Outcome::Refused => {}
                Outcome::Ok(answer) => {
                    let again = send(&mut deployments, &op.request).await;
                    match again {
                        Outcome::Ok(retried) => assert_eq!(
                            &retried, answer,
                            "an acknowledged operation answered differently on retry: {:?}",
                            op.request
                        ),
                        other => panic!(
                            "an acknowledged operation was lost: {:?} now gives {other:?}",
                            op.request
                        ),
                    }
                }
                Outcome::Unknown => {
                    op.outcome = send(&mut deployments, &op.request).await;
                }
            }
            resolved.push(op);
        }
        *self.ledger.lock().expect("ledger") = resolved;

        // Invariant 5: every deployment ends.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut unfinished = 0;
            for project in &self.projects {
                unfinished += list_all(&mut deployments, project)
                    .await
                    .iter()
                    .filter(|d| !is_terminal(d.status))
                    .count();
            }
            if unfinished == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{unfinished} deployments never reached READY, FAILED or CANCELLED"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let ledger = self.ledger.lock().expect("ledger").clone();
        let mut routing = RoutingServiceClient::new(channel.clone());
        let mut projects = ProjectServiceClient::new(channel.clone());
        for (index, project_id) in self.projects.iter().enumerate() {
            let listed: BTreeMap<String, pb::Deployment> = list_all(&mut deployments, project_id)
                .await
                .into_iter()
                .map(|d| (d.id.clone(), d))
                .collect();
            // Nothing lost, nothing duplicated.
            let known: BTreeSet<String> = ledger
                .iter()
                .filter(|op| op.project == index)
                .filter_map(|op| match &op.outcome {
                    Outcome::Ok(Answer::Deployed(id)) => Some(id.clone()),
                    _ => None,
                })
                .collect();
            let unresolved_deploys = ledger
                .iter()
                .filter(|op| op.project == index)
                .filter(|op| matches!(op.request, Request::Deploy(_)))
                .filter(|op| matches!(op.outcome, Outcome::Unknown))
                .count();
            let listed_ids: BTreeSet<String> = listed.keys().cloned().collect();
            assert!(
                known.is_subset(&listed_ids),
                "acknowledged deployments missing"
            );
            assert!(
                listed_ids.len() <= known.len() + unresolved_deploys,
                "project {index}: {} deployments listed, {} known, {unresolved_deploys} unresolved",
                listed_ids.len(),
                known.len()
            );

            // Invariants 1 and 2.
            let project = projects
                .get_project(pb::GetProjectRequest {
                    project_id: project_id.clone(),
                })
                .await
                .expect("project")
                .into_inner()
                .project
                .expect("project");
            let routes = all_routes(&mut routing, project_id).await;
            for route in &routes {
                let sticky = [
                    pb::RouteKind::Branch,
                    pb::RouteKind::Environment,
                    pb::RouteKind::Live,
                ]
                .map(|k| k as i32)
                .contains(&route.kind);
                if !sticky {
                    continue;
                }
                let target = listed
                    .get(&route.deployment_id)
                    .unwrap_or_else(|| panic!("route {} points outside its project", route.fqdn));
                assert_eq!(
                    target.status,
                    pb::DeploymentStatus::Ready as i32,
                    "{}",
                    route.fqdn
                );
                if route.kind != pb::RouteKind::Branch as i32 {
                    assert_eq!(
                        target.environment_slug, route.environment_slug,
                        "{}",
                        route.fqdn
                    );
                }
                if route.kind == pb::RouteKind::Live as i32 {
                    assert_eq!(
                        route.deployment_id, project.live_deployment_id,
                        "{}",
                        route.fqdn
                    );
                }
            }
        }
        let torn = self.torn_reads.lock().expect("torn").clone();
        assert!(torn.is_empty(), "readers saw half-done switches: {torn:?}");
        self.check_regions(&mut deployments).await;
    }

    /// The regions run exactly what the stored desired states say, once
    /// the restarted daemon has re-applied them. Both are read afresh on
    /// every look: schedules keep firing meanwhile.
    async fn check_regions(&self, client: &mut DeploymentServiceClient<AuthChannel>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let mut deployments = BTreeMap::new();
            for project in &self.projects {
                for deployment in list_all(client, project).await {
                    deployments.insert(deployment.id.clone(), deployment);
                }
            }
            let mut expected: BTreeMap<(String, String), u32> = BTreeMap::new();
            for deployment in deployments.values() {
                for region in &deployment.regions {
                    let replicas = if region.desired_status == "running" {
                        region.desired_replicas
                    } else {
                        0
                    };
                    expected.insert((region.region.clone(), deployment.id.clone()), replicas);
                }
            }
            let mut held: BTreeMap<(String, String), u32> = BTreeMap::new();
            for region in ["us-east-1", "eu-central-1"] {
                let file = deployd::io::region::simulated::state_file(&self.data_dir(), region);
                let state = deployd::io::region::simulated::read_state_file(&file)
                    .expect("region state file");
                for (deployment, workload) in state.workloads {
                    held.insert((region.to_string(), deployment), workload.replicas);
                }
            }
            let mismatches: Vec<String> = expected
                .iter()
                .filter(|(key, replicas)| held.get(*key).copied().unwrap_or(0) != **replicas)
                .map(|((region, id), replicas)| {
                    let stored = &deployments[id];
                    format!(
                        "{id} in {region}: stored {replicas} ({:?}, {:?}), region runs {}",
                        pb::DeploymentStatus::try_from(stored.status),
                        pb::DesiredState::try_from(stored.desired_state),
                        held.get(&(region.clone(), id.clone()))
                            .copied()
                            .unwrap_or(0)
                    )
                })
                .chain(
                    held.iter()
                        .filter(|(key, replicas)| **replicas > 0 && !expected.contains_key(*key))
                        .map(|((region, id), replicas)| {
                            format!("{id} in {region}: runs {replicas}, unknown to the store")
                        }),
                )
                .collect();
            if mismatches.is_empty() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "driver state does not match stored state: {mismatches:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

struct Worker {
    channel: AuthChannel,
    projects: Vec<String>,
    ledger: Ledger,
    key_prefix: String,
    rng: StdRng,
}

impl Worker {
    async fn run(mut self) {
        let mut client = DeploymentServiceClient::new(self.channel.clone());
        let mut projects = ProjectServiceClient::new(self.channel.clone());
        for n in 0..OPS_PER_CLIENT {
            let project = self.rng.random_range(0..self.projects.len());
            let project_id = self.projects[project].clone();
            let key = format!("{}-{n}", self.key_prefix);
            let request = match self.rng.random_range(0..10) {
                0..6 => Request::Deploy(self.deploy_request(&project_id, key)),
                kind => {
                    let Some((live, ready)) =
                        production_state(&mut client, &mut projects, &project_id).await
                    else {
                        return;
                    };
                    if ready.is_empty() {
                        Request::Deploy(self.deploy_request(&project_id, key))
                    } else {
                        let target = ready[self.rng.random_range(0..ready.len())].clone();
                        if kind < 8 && !live.is_empty() {
                            Request::Rollback(pb::RollbackRequest {
                                source_deployment_id: live,
                                target_deployment_id: target,
                                idempotency_key: key,
                            })
                        } else {
                            Request::Promote(pb::PromoteRequest {
                                target_deployment_id: target,
                                idempotency_key: key,
                            })
                        }
                    }
                }
            };
            let outcome = send(&mut client, &request).await;
            let died = matches!(outcome, Outcome::Unknown);
            self.ledger.lock().expect("ledger").push(Op {
                project,
                request,
                outcome,
            });
            if died {
                return;
            }
        }
    }

    fn deploy_request(&mut self, project_id: &str, key: String) -> pb::CreateDeploymentRequest {
        let environment = if self.rng.random_range(0..5) == 0 {
            "preview"
        } else {
            "production"
        };
        let branch = ["main", "feature-a", "feature-b"][self.rng.random_range(0..3)];
        let source = if self.rng.random_bool(0.5) {
            let sha: String = (0..40)
                .map(|_| char::from(b"0123456789abcdef"[self.rng.random_range(0..16)]))
                .collect();
            pb::create_deployment_request::Source::Git(pb::GitSource {
                repository: "https://git.example.test/app.git".into(),
                commit_sha: sha,
                context_path: String::new(),
                dockerfile_path: String::new(),
            })
        } else {
            pb::create_deployment_request::Source::DockerImage(pb::DockerImage {
                image: format!("nginx:1.{}", self.rng.random_range(0..30)),
            })
        };
        pb::CreateDeploymentRequest {
            project_id: project_id.into(),
            environment_slug: environment.into(),
            branch: branch.into(),
            source: Some(source),
            idempotency_key: key,
            ..Default::default()
        }
    }
}

/// The live deployment and the READY production deployments of a project;
/// `None` once the daemon is gone.
async fn production_state(
    client: &mut DeploymentServiceClient<AuthChannel>,
    projects: &mut ProjectServiceClient<AuthChannel>,
    project_id: &str,
) -> Option<(String, Vec<String>)> {
    let project = projects
        .get_project(pb::GetProjectRequest {
            project_id: project_id.into(),
        })
        .await
        .ok()?
        .into_inner()
        .project?;
    let ready = client
        .list_deployments(pb::ListDeploymentsRequest {
            project_id: project_id.into(),
            environment_slug: "production".into(),
            status: pb::DeploymentStatus::Ready as i32,
            page_size: 20,
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner()
        .deployments
        .into_iter()
        .map(|d| d.id)
        .collect();
    Some((project.live_deployment_id, ready))
}

async fn send(client: &mut DeploymentServiceClient<AuthChannel>, request: &Request) -> Outcome {
    let result = match request {
        Request::Deploy(r) => client
            .create_deployment(r.clone())
            .await
            .map(|r| Answer::Deployed(r.into_inner().deployment_id)),
        Request::Rollback(r) => client.rollback(r.clone()).await.map(|r| {
            let r = r.into_inner();
            Answer::Switched(Box::new(r.project.unwrap_or_default()), r.routes)
        }),
        Request::Promote(r) => client.promote(r.clone()).await.map(|r| {
            let r = r.into_inner();
            Answer::Switched(Box::new(r.project.unwrap_or_default()), r.routes)
        }),
    };
    match result {
        Ok(answer) => Outcome::Ok(answer),
        Err(status) => match status.code() {
            Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::AlreadyExists => Outcome::Refused,
            _ => Outcome::Unknown,
        },
    }
}

/// Invariant 3, from the outside: every read of a project's routes shows
/// all its LIVE routes on one deployment.
async fn read_routes_until_error(
    channel: AuthChannel,
    projects: Vec<String>,
    torn: Arc<Mutex<Vec<String>>>,
) {
    let mut routing = RoutingServiceClient::new(channel);
    loop {
        for project in &projects {
            let Ok(response) = routing
                .list_routes(pb::ListRoutesRequest {
                    project_id: project.clone(),
                    ..Default::default()
                })
                .await
            else {
                return;
            };
            let live: BTreeSet<String> = response
                .into_inner()
                .routes
                .into_iter()
                .filter(|r| r.kind == pb::RouteKind::Live as i32)
                .map(|r| r.deployment_id)
                .collect();
            if live.len() > 1 {
                torn.lock()
                    .expect("torn")
                    .push(format!("{project}: {live:?}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn list_all(
    client: &mut DeploymentServiceClient<AuthChannel>,
    project: &str,
) -> Vec<pb::Deployment> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_deployments(pb::ListDeploymentsRequest {
                project_id: project.into(),
                page_size: 500,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("list deployments")
            .into_inner();
        all.extend(page.deployments);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

async fn all_routes(
    client: &mut RoutingServiceClient<AuthChannel>,
    project_id: &str,
) -> Vec<pb::Route> {
    let mut routes = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_routes(pb::ListRoutesRequest {
                project_id: project_id.to_string(),
                page_token,
                ..Default::default()
            })
            .await
            .expect("routes")
            .into_inner();
        routes.extend(page.routes);
        if page.next_page_token.is_empty() {
            return routes;
        }
        page_token = page.next_page_token;
    }
}

/// Final statuses. `CANCELLED` comes from supersede: the workload deploys
/// git commits on a few branches, so a newer build cancels an older one.
fn is_terminal(status: i32) -> bool {
    [
        pb::DeploymentStatus::Ready,
        pb::DeploymentStatus::Failed,
        pb::DeploymentStatus::Cancelled,
    ]
    .map(|s| s as i32)
    .contains(&status)
}

async fn run_seed(seed: u64) {
    let mut harness = Harness::new();
    let daemon = harness.start(&[]).await.expect("first start");
    harness.setup(&daemon).await;
    let mut daemon = Some(daemon);
    let mut rng = StdRng::seed_from_u64(seed);
    // Every named point once, in a seeded order, with random kills between.
    let mut plan: Vec<Option<&str>> = FAIL_POINTS.iter().map(|p| Some(*p)).collect();
    plan.extend([None, None, None]);
    for i in (1..plan.len()).rev() {
        plan.swap(i, rng.random_range(0..=i));
    }
    for (round, point) in plan.into_iter().enumerate() {
        let round = round as u64;
        // Arm the point for this round (the daemon restarts to pick it up).
        let current = match (daemon.take(), point) {
            (Some(running), None) => running,
            (Some(mut running), Some(point)) => {
                running.terminate();
                let _ = running.child.wait().await;
                let after = rng.random_range(1..=3);
                harness
                    .start(&[(point, after)])
                    .await
                    .expect("start with a fail point")
            }
            (None, _) => unreachable!("a daemon runs between rounds"),
        };
        let kill_after = point
            .is_none()
            .then(|| Duration::from_millis(rng.random_range(50..600)));
        let before = harness.ledger.lock().expect("ledger").len();
        harness.round(current, seed, round, kill_after).await;
        harness.log_round(seed, round, point, kill_after, before);
        harness.check_file();

        // A second kill while recovering from the first, every third round.
        if round.is_multiple_of(3)
            && let Some(mut recovering) = harness.start(&[("recovery.resume", 1)]).await
        {
            // Nothing was unfinished, so recovery had nothing to resume:
            // end it like a crash anyway.
            let _ = recovering.child.start_kill();
            let _ = recovering.child.wait().await;
        }
        harness.check_file();

        let restarted = harness.start(&[]).await.expect("restart");
        harness.verify(&restarted).await;
        daemon = Some(restarted);
    }

    // SIGTERM: a clean exit, well within the shutdown timeout.
    let mut last = daemon.expect("running");
    last.terminate();
    let status = tokio::time::timeout(Duration::from_secs(10), last.child.wait())
        .await
        .expect("exits within 10 s of SIGTERM")
        .expect("wait");
    assert!(status.success(), "SIGTERM exit status {status:?}");
    harness.check_file();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_at_the_worst_moments_loses_nothing() {
    let seeds: u64 = std::env::var("DEPLOYD_CRASH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for seed in 1..=seeds {
        eprintln!("crash harness: seed {seed}");
        run_seed(seed).await;
    }
}
