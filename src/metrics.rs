//! The daemon's Prometheus metrics: every family is defined here (name,
//! help, buckets), one [`Metrics`] per daemon owns them in its own
//! registry, and the parts that count hold handles resolved once, so the
//! hot paths pay an atomic add, never a label lookup or a lock. Figures
//! that already exist as counters elsewhere (actors running, mailbox
//! depth) are read when Prometheus scrapes, not kept twice.
//!
//! Beside `model` and `config` in the layering: every layer may count, and
//! this module imports nothing above `model`. The endpoint that serves the
//! text format is `api::metrics`.

use std::collections::BTreeMap;

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::model::{DeploymentStatus, deployment::StepName};

/// Latency buckets from 100 µs to 60 s: a commit or a switch is sub-ms on
/// a quiet disk, a deployment step may take minutes.
const SECONDS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];
/// Steps: from 10 ms (a simulated region) to 30 minutes (a long build).
const STEP_SECONDS: [f64; 14] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0,
];
/// Operations sharing one commit (group commit), up to the writer's 1,024.
const PER_COMMIT: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

const STATUSES: [DeploymentStatus; 7] = [
    DeploymentStatus::Pending,
    DeploymentStatus::Building,
    DeploymentStatus::Deploying,
    DeploymentStatus::Network,
    DeploymentStatus::Ready,
    DeploymentStatus::Failed,
    DeploymentStatus::Cancelled,
];
const STEPS: [StepName; 4] = [
    StepName::Build,
    StepName::Deploy,
    StepName::Network,
    StepName::Wake,
];

/// Every metric of one daemon.
pub struct Metrics {
    registry: Registry,
    /// Transitions into each status (`PENDING` counts creations).
    statuses: Vec<(DeploymentStatus, IntCounter)>,
    /// Step durations by step and outcome (`ok`, `failed`).
    steps: Vec<(StepName, Histogram, Histogram)>,
    pub rollback_seconds: Histogram,
    pub promote_seconds: Histogram,
    pub store: StoreMetrics,
    pub project_actors_running: IntGauge,
    pub project_actors_broken: IntGauge,
    pub mailbox_depth: IntGauge,
    pub mailbox_depth_max: IntGauge,
    pub mailbox_refusals: IntCounter,
    /// Failed driver calls by region, resolved for every configured region.
    pub driver_errors: BTreeMap<String, IntCounter>,
    pub edge: EdgeMetrics,
}

/// The store writer's figures, handed to it at open (`io::store`).
#[derive(Clone)]
pub struct StoreMetrics {
    pub commit_seconds: Histogram,
    pub operations_per_commit: Histogram,
}

/// The edge's figures: requests by status class (`2xx` ... `5xx`), each a
/// latency histogram whose `_count` is the number of requests.
#[derive(Clone)]
pub struct EdgeMetrics {
    classes: [Histogram; 5],
}

impl EdgeMetrics {
    /// One request answered with `status` after `seconds`.
    pub fn observe(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.classes[class].observe(seconds);
    }
}

impl StoreMetrics {
    /// Created with the store (its writer records into them from the
    /// first commit); a daemon registers them in [`Metrics::new`].
    pub fn new() -> Self {
        Self {
            commit_seconds: histogram(
                "deployd_store_commit_seconds",
                "Durable commits of the store writer: apply and fsync",
                &SECONDS,
            ),
            operations_per_commit: histogram(
                "deployd_store_operations_per_commit",
                "Submissions sharing one durable commit (group commit)",
                &PER_COMMIT,
            ),
        }
    }
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreMetrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates every family in a new registry; `regions` are the
    /// configured regions (the label values of driver errors), `store` the
    /// figures of the daemon's store writer.
    pub fn new<'a>(regions: impl IntoIterator<Item = &'a str>, store: StoreMetrics) -> Self {
        let registry = Registry::new();
        let status_vec = counter_vec(
            "deployd_deployment_status_total",
            "Deployments that entered each status (pending: created)",
            "status",
        );
        let statuses = STATUSES
            .iter()
            .map(|s| {
                let label = s.as_str().to_ascii_lowercase();
                (*s, status_vec.with_label_values(&[label.as_str()]))
            })
            .collect();
        let step_vec = histogram_vec(
            "deployd_deployment_step_seconds",
            "Duration of finished deployment steps, by step and outcome",
            &["step", "outcome"],
            &STEP_SECONDS,
        );
        let steps = STEPS
            .iter()
            .map(|s| {
                (
                    *s,
                    step_vec.with_label_values(&[s.as_str(), "ok"]),
                    step_vec.with_label_values(&[s.as_str(), "failed"]),
                )
            })
            .collect();
        let switch_vec = histogram_vec(
            "deployd_switch_seconds",
            "Rollback and promote latency as the API answers them (successful calls)",
            &["operation"],
            &SECONDS,
        );
        let actors = gauge_vec(
            "deployd_project_actors",
            "Project actors running, and projects paused after failing too often",
            "state",
        );
        let mailbox_depth = gauge(
            "deployd_mailbox_depth",
            "API calls waiting on project actors, all projects",
        );
        let mailbox_depth_max = gauge(
            "deployd_mailbox_depth_max",
            "API calls waiting on the busiest project actor",
        );
        let mailbox_refusals = counter(
            "deployd_mailbox_refusals_total",
            "Calls refused with RESOURCE_EXHAUSTED because a project's queue was full",
        );
        let driver_vec = counter_vec(
            "deployd_driver_errors_total",
            "Region driver calls that failed (and were retried), by region",
            "region",
        );
        let driver_errors = regions
            .into_iter()
            .map(|r| (r.to_string(), driver_vec.with_label_values(&[r])))
            .collect();
        let edge_vec = histogram_vec(
            "deployd_edge_request_seconds",
            "Requests through the edge by status class, and their latency",
            &["class"],
            &SECONDS,
        );
        let edge = EdgeMetrics {
            classes: ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|c| edge_vec.with_label_values(&[c])),
        };
        let metrics = Self {
            statuses,
            steps,
            rollback_seconds: switch_vec.with_label_values(&["rollback"]),
            promote_seconds: switch_vec.with_label_values(&["promote"]),
            project_actors_running: actors.with_label_values(&["running"]),
            project_actors_broken: actors.with_label_values(&["broken"]),
            mailbox_depth: mailbox_depth.clone(),
            mailbox_depth_max: mailbox_depth_max.clone(),
            mailbox_refusals: mailbox_refusals.clone(),
            driver_errors,
            edge,
            store: store.clone(),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(status_vec),
            Box::new(step_vec),
            Box::new(switch_vec),
            Box::new(store.commit_seconds),
            Box::new(store.operations_per_commit),
            Box::new(actors),
            Box::new(mailbox_depth),
            Box::new(mailbox_depth_max),
            Box::new(mailbox_refusals),
            Box::new(driver_vec),
            Box::new(edge_vec),
        ];
        for collector in collectors {
            // Names are constants of this file and unique: a clash is a
            // bug a test would show, not something to stop a daemon for.
            if let Err(e) = metrics.registry.register(collector) {
                tracing::error!(error = %e, "a metric could not be registered");
            }
        }
        metrics
    }

    /// A deployment entered `status`.
    pub fn status(&self, status: DeploymentStatus) {
        if let Some((_, counter)) = self.statuses.iter().find(|(s, _)| *s == status) {
            counter.inc();
        }
    }

    /// A step ended after `millis`.
    pub fn step(&self, step: StepName, millis: u64, failed: bool) {
        if let Some((_, ok, bad)) = self.steps.iter().find(|(s, _, _)| *s == step) {
            let histogram = if failed { bad } else { ok };
            histogram.observe(millis as f64 / 1000.0);
        }
    }

    /// A driver call to `region` failed.
    pub fn driver_error(&self, region: &str) {
        if let Some(counter) = self.driver_errors.get(region) {
            counter.inc();
        }
    }

    /// Every family in Prometheus' text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text)?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }
}

// The constructors below only fail on a malformed name or bucket list, all
// of which are constants above; unit tests build every family.

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
}

fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::with_opts(Opts::new(name, help))
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
}

fn counter_vec(name: &str, help: &str, label: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), &[label])
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::with_opts(Opts::new(name, help))
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
}

fn gauge_vec(name: &str, help: &str, label: &str) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), &[label])
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_registered_and_rendered() {
        let metrics = Metrics::new(["us-east-1"], StoreMetrics::new());
        metrics.status(DeploymentStatus::Ready);
        metrics.step(StepName::Deploy, 1500, false);
        metrics.driver_error("us-east-1");
        metrics.driver_error("not-configured");
        metrics.edge.observe(503, 0.002);
        let text = metrics.render().expect("render");
        for line in [
            "deployd_deployment_status_total{status=\"ready\"} 1",
            "deployd_deployment_step_seconds_count{outcome=\"ok\",step=\"deploy\"} 1",
            "deployd_driver_errors_total{region=\"us-east-1\"} 1",
            "deployd_edge_request_seconds_count{class=\"5xx\"} 1",
            "deployd_mailbox_refusals_total 0",
            "deployd_store_commit_seconds_count 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
    }
}
