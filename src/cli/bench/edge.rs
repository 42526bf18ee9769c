//! `deployd bench --edge`: what the built-in edge costs, and whether a
//! rollback under HTTP load loses or misroutes a request. With simulated
//! instances that serve HTTP:
//!
//! 1. `--clients` clients request one instance directly for `--seconds`;
//! 2. the same clients request the same deployment through the edge (by
//!    its `LIVE` hostname) for `--seconds`: the ratio is the edge's cost;
//! 3. through the edge again while one more client rolls back and promotes
//!    in turn; every answer must be 200, and no request sent after a
//!    switch was acknowledged may reach the deployment it switched away
//!    from.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::client::AuthChannel;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::sync::Mutex;

use super::stats::Percentiles;
use super::workload::{create_projects, deploy_and_wait};
use crate::pb;
use crate::pb::deployment_service_client::DeploymentServiceClient;

/// How long each target stays before the next switch.
const SETTLE: Duration = Duration::from_millis(10);

#[derive(Debug, Default, Serialize)]
pub struct EdgeReport {
    pub clients: usize,
    pub seconds_per_phase: f64,
    pub direct: HttpFigures,
    pub through_edge: HttpFigures,
    pub during_switches: HttpFigures,
    pub switches: usize,
    /// Requests that were not answered 200 during the switches.
    pub failed_during_switches: u64,
    /// Requests sent after a switch was acknowledged that the deployment
    /// switched away from served anyway (must be 0).
    pub stale_after_ack: u64,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct HttpFigures {
    pub requests_per_second: f64,
    pub latency: Percentiles,
}

impl EdgeReport {
    pub fn table(&self) -> String {
        let row = |label: &str, f: &HttpFigures| {
            format!(
                "{label:<30} {:>8.0} req/s  {}\n",
                f.requests_per_second,
                f.latency.row()
            )
        };
        let mut out = format!(
            "edge: {} HTTP clients, {:.1} s per phase, simulated instances\n",
            self.clients, self.seconds_per_phase
        );
        out.push_str(&row("direct to the instance", &self.direct));
        out.push_str(&row("through the edge", &self.through_edge));
        out.push_str(&row("through the edge, switching", &self.during_switches));
        let ratio = if self.direct.requests_per_second > 0.0 {
            self.through_edge.requests_per_second / self.direct.requests_per_second * 100.0
        } else {
            0.0
        };
        out.push_str(&format!(
            "edge throughput vs direct          {ratio:.0} %, p50 {:+.3} ms\n",
            self.through_edge.latency.p50_ms - self.direct.latency.p50_ms
        ));
        out.push_str(&format!(
            "switches under HTTP load           {} (rollback + promote), {} failed requests, {} served by the old target after the acknowledgement\n",
            self.switches, self.failed_during_switches, self.stale_after_ack
        ));
        out
    }
}

/// One request's fate.
struct Sample {
    sent: Instant,
    took: Duration,
    ok: bool,
    /// First line of the body: the deployment that answered.
    by: String,
}

pub async fn run(
    target: &super::Target,
    edge: SocketAddr,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<EdgeReport> {
    let channel = target.connect().await?;
    let project = create_projects(&channel, 1)
        .await?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no project was created"))?;
    let old = deploy_and_wait(&channel, &project).await?.1;
    let live = deploy_and_wait(&channel, &project).await?.1;
    let deployment = DeploymentServiceClient::new(channel.clone())
        .get_deployment(pb::GetDeploymentRequest {
            deployment_id: live.clone(),
        })
        .await?
        .into_inner()
        .deployment
        .ok_or_else(|| anyhow::anyhow!("no deployment in the answer"))?;
    let instance: SocketAddr = deployment
        .regions
        .iter()
        .flat_map(|r| &r.instances)
        .find_map(|i| i.address.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the deployment reports no instance address"))?;
    let host = live_host(&channel, &project).await?;
    let phase = Duration::from_secs(seconds);

    let (direct, _) = drive(instance, &host, clients, phase).await?;
    let (through_edge, _) = drive(edge, &host, clients, phase).await?;

    // Switch back and forth while the clients run; remember every
    // acknowledgement and which deployment it left.
    // (started, acknowledged, the deployment it switched away from).
    let acks: Arc<Mutex<Vec<(Instant, Instant, String)>>> = Arc::default();
    let switching = {
        let acks = acks.clone();
        let mut client = DeploymentServiceClient::new(channel.clone());
        let (old, live) = (old.clone(), live.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + phase;
            let mut count = 0;
            while Instant::now() < deadline {
                let started = Instant::now();
                client
                    .rollback(pb::RollbackRequest {
                        source_deployment_id: live.clone(),
                        target_deployment_id: old.clone(),
                        ..Default::default()
                    })
                    .await?;
                acks.lock()
                    .await
                    .push((started, Instant::now(), live.clone()));
                // Leave each target in place a moment, so requests are sent
                // between one acknowledgement and the next switch.
                tokio::time::sleep(SETTLE).await;
                let started = Instant::now();
                client
                    .promote(pb::PromoteRequest {
                        target_deployment_id: live.clone(),
                        ..Default::default()
                    })
                    .await?;
                acks.lock()
                    .await
                    .push((started, Instant::now(), old.clone()));
                count += 1;
                tokio::time::sleep(SETTLE).await;
            }
            Ok::<usize, tonic::Status>(count)
        })
    };
    let (during_switches, samples) = drive(edge, &host, clients, phase).await?;
    let switches = switching.await??;
    let acks = acks.lock().await.clone();
    let failed = samples.iter().filter(|s| !s.ok).count() as u64;
    // A request sent after switch i was acknowledged, and answered before
    // switch i + 1 started, must not be served by the deployment switch i
    // moved away from.
    let stale = samples
        .iter()
        .filter(|s| {
            let Some(i) = acks.iter().rposition(|(_, acked, _)| *acked <= s.sent) else {
                return false;
            };
            let left = &acks[i].2;
            let before_next = acks
                .get(i + 1)
                .is_none_or(|(next, _, _)| s.sent + s.took < *next);
            before_next && &s.by == left
        })
        .count() as u64;
    Ok(EdgeReport {
        clients,
        seconds_per_phase: phase.as_secs_f64(),
        direct,
        through_edge,
        during_switches,
        switches,
        failed_during_switches: failed,
        stale_after_ack: stale,
    })
}

async fn live_host(channel: &AuthChannel, project: &str) -> anyhow::Result<String> {
    let routes = crate::pb::routing_service_client::RoutingServiceClient::new(channel.clone())
        .list_routes(pb::ListRoutesRequest {
            project_id: project.to_string(),
            kind: pb::RouteKind::Live as i32,
            ..Default::default()
        })
        .await?
        .into_inner()
        .routes;
    routes
        .into_iter()
        .next()
        .map(|r| r.fqdn)
        .ok_or_else(|| anyhow::anyhow!("the project has no LIVE route"))
}

/// `clients` keep-alive clients request `target` (with `Host: host`) for
/// `phase`.
async fn drive(
    target: SocketAddr,
    host: &str,
    clients: usize,
    phase: Duration,
) -> anyhow::Result<(HttpFigures, Vec<Sample>)> {
    let began = Instant::now();
    let deadline = began + phase;
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let host = host.to_string();
        tasks.push(tokio::spawn(
            async move { client(target, host, deadline).await },
        ));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await??);
    }
    let elapsed = began.elapsed().as_secs_f64();
    let figures = HttpFigures {
        requests_per_second: samples.len() as f64 / elapsed,
        latency: Percentiles::of(samples.iter().map(|s| s.took).collect()),
    };
    Ok((figures, samples))
}

async fn client(
    target: SocketAddr,
    host: String,
    deadline: Instant,
) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    let mut sender = None;
    while Instant::now() < deadline {
        if sender.is_none() {
            let stream = tokio::net::TcpStream::connect(target).await?;
            stream.set_nodelay(true)?;
            let (s, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            sender = Some(s);
        }
        let Some(s) = sender.as_mut() else { continue };
        let request = hyper::Request::builder()
            .uri("/")
            .header(hyper::header::HOST, &host)
            .body(Empty::<Bytes>::new())?;
        let sent = Instant::now();
        let answer = match s.send_request(request).await {
            Ok(response) => {
                let ok = response.status() == hyper::StatusCode::OK;
                match response.into_body().collect().await {
                    Ok(body) => {
                        let body = body.to_bytes();
                        let text = String::from_utf8_lossy(&body);
                        (ok, text.lines().next().unwrap_or_default().to_string())
                    }
                    Err(e) => (false, e.to_string()),
                }
            }
            Err(e) => {
                sender = None;
                (false, e.to_string())
            }
        };
        samples.push(Sample {
            sent,
            took: sent.elapsed(),
            ok: answer.0,
            by: answer.1,
        });
    }
    Ok(samples)
}
