//! Deploys through the kubernetes driver, against the tests' fake API
//! server at zero latency (its kubelet makes pods ready as soon as it
//! steps): deploys per second, time to `READY`, and the API calls each
//! deploy costs, by verb, the figure a cluster operator cares about. Two
//! loads (one client deploying one after another: latency; 50 projects
//! deploying at once: throughput), each with `readiness = "poll"` and with
//! the watch, each in a fresh daemon and a fresh fake.
//!
//! `cargo bench --bench kube_deploys`. It measures and asserts nothing;
//! without `--bench` (a `cargo test --all-targets` run) it makes one
//! deploy per mode, to show it still works.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::fake_kube::FakeKube;
use common::{TestDaemon, fast_config, image_request};
use deployd::config::{KubernetesReadiness, RegionConfig};
use deployd::pb;
use deployd::pb::watch_deployment_response::Event;

/// The loads: (projects deploying at once, deploys each makes one after
/// another).
const LOADS: [(usize, usize); 2] = [(1, 20), (50, 4)];

struct Run {
    deploys: usize,
    ready: usize,
    elapsed: Duration,
    /// Create to `READY`, of each deploy that got there.
    to_ready: Vec<Duration>,
    calls: BTreeMap<&'static str, usize>,
}

fn main() {
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let loads: &[(usize, usize)] = if measuring { &LOADS } else { &[(1, 1)] };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        for &(projects, deploys) in loads {
            for readiness in [KubernetesReadiness::Poll, KubernetesReadiness::Watch] {
                let run = deploy_through_fake(readiness, projects, deploys).await;
                report(readiness, projects, &run);
            }
        }
    });
}

async fn deploy_through_fake(
    readiness: KubernetesReadiness,
    projects: usize,
    deploys_per_project: usize,
) -> Run {
    let fake = FakeKube::start().await;
    let mut config = fast_config();
    // The shipped poll interval, not the tests' 10 ms: what polling costs
    // a cluster depends on it.
    config.readiness_poll_ms = deployd::Config::default().readiness_poll_ms;
    config.edge.enabled = false;
    config.regions = BTreeMap::from([(
        "k8s-1".to_string(),
        RegionConfig::Kubernetes {
            kubeconfig: Some(fake.kubeconfig()),
            context: Some("fake".into()),
            sentinel_image: "sentinel.test/gateway:1".into(),
            readiness,
        },
    )]);
    let daemon = TestDaemon::start_with(config).await;
    let mut ids = Vec::new();
    for i in 0..projects {
        ids.push(daemon.project(&format!("bench-{i}"), "web").await.id);
    }
    let before = fake.calls();
    let began = Instant::now();
    let mut tasks = Vec::new();
    for project in ids {
        let deployments = daemon.deployments().await;
        tasks.push(tokio::spawn(async move {
            let mut to_ready = Vec::new();
            for i in 0..deploys_per_project {
                let image = format!("registry.test/web:{i}");
                let began = Instant::now();
                if deploy_until_settled(deployments.clone(), &project, &image).await {
                    to_ready.push(began.elapsed());
                }
            }
            to_ready
        }));
    }
    let mut to_ready = Vec::new();
    for task in tasks {
        to_ready.extend(task.await.unwrap_or_default());
    }
    let elapsed = began.elapsed();
    let mut calls = fake.calls();
    for (verb, count) in before {
        if let Some(after) = calls.get_mut(verb) {
            *after -= count;
        }
    }
    daemon.stop().await;
    Run {
        deploys: projects * deploys_per_project,
        ready: to_ready.len(),
        elapsed,
        to_ready,
        calls,
    }
}

/// Creates a deployment and follows it to READY (`true`) or FAILED.
async fn deploy_until_settled(
    mut deployments: pb::deployment_service_client::DeploymentServiceClient<
        deployd::cli::AuthChannel,
    >,
    project: &str,
    image: &str,
) -> bool {
    let Ok(created) = deployments
        .create_deployment(image_request(project, "production", image))
        .await
    else {
        return false;
    };
    let id = created.into_inner().deployment_id;
    let Ok(stream) = deployments
        .watch_deployment(pb::WatchDeploymentRequest { deployment_id: id })
        .await
    else {
        return false;
    };
    let mut stream = stream.into_inner();
    while let Ok(Some(message)) = stream.message().await {
        let status = match message.event {
            Some(Event::Snapshot(deployment)) => deployment.status,
            Some(Event::Status(status)) => status.status,
            _ => continue,
        };
        if status == pb::DeploymentStatus::Ready as i32 {
            return true;
        }
        if status == pb::DeploymentStatus::Failed as i32 {
            return false;
        }
    }
    false
}

fn report(readiness: KubernetesReadiness, projects: usize, run: &Run) {
    let seconds = run.elapsed.as_secs_f64();
    let total: usize = run.calls.values().sum();
    let per_deploy = |count: usize| count as f64 / run.deploys.max(1) as f64;
    let by_verb: Vec<String> = run
        .calls
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(verb, count)| format!("{verb} {:.2}", per_deploy(*count)))
        .collect();
    let mut to_ready = run.to_ready.clone();
    to_ready.sort();
    let millis = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    println!(
        "kube_deploys readiness={readiness:?} projects={projects}: {} deploys ({} READY) in {seconds:.2} s = {:.1} deploys/s; to READY p50 {:.0} ms, max {:.0} ms; API calls per deploy {:.2} ({})",
        run.deploys,
        run.ready,
        run.deploys as f64 / seconds.max(f64::EPSILON),
        millis(to_ready.get(to_ready.len() / 2)),
        millis(to_ready.last()),
        per_deploy(total),
        by_verb.join(", "),
    );
}
