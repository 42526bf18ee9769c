//! `deploy` and `watch`: create a deployment, then (with `--wait`, or for
//! `watch`) follow its event stream, printing each step as it starts and
//! ends. The exit code tells scripts the outcome: 0 ready, 2 failed.

use std::collections::HashMap;
use std::process::ExitCode;

use crate::cli::args::DeployArgs;
use crate::cli::client::{Clients, RpcError, rpc};
use crate::cli::output::{self, emit};
use crate::pb;
use crate::pb::create_deployment_request::Source;
use crate::pb::watch_deployment_response::Event;

/// The exit code of a deployment that ended FAILED, distinct from 1 (the
/// command itself failed) so scripts can tell the two apart.
const EXIT_FAILED: u8 = 2;

/// Width of the step-name column; the longest step name is `network`.
const STEP_COLUMN: usize = 10;

pub async fn deploy(clients: &Clients, json: bool, args: DeployArgs) -> anyhow::Result<ExitCode> {
    let wait = args.wait;
    let request = request(args);
    let response = rpc(clients.deployments().create_deployment(request).await)?;
    match (json, wait) {
        (true, false) => output::json_pretty(&response)?,
        // With --wait the stream follows, so every object is one line.
        (true, true) => output::json_line(&response)?,
        (false, _) => emit(&format!(
            "{}  {}",
            response.deployment_id,
            output::status(response.status)
        ))?,
    }
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    follow(clients, json, response.deployment_id).await
}

fn request(args: DeployArgs) -> pb::CreateDeploymentRequest {
    // clap guarantees exactly one of --image / --repo (with --sha).
    let source = match args.image {
        Some(image) => Source::DockerImage(pb::DockerImage { image }),
        None => Source::Git(pb::GitSource {
            repository: args.repo.unwrap_or_default(),
            commit_sha: args.sha.clone().unwrap_or_default(),
            context_path: args.context.unwrap_or_default(),
            dockerfile_path: args.dockerfile.unwrap_or_default(),
        }),
    };
    let has_commit_info =
        args.commit_message.is_some() || args.author_name.is_some() || args.author_email.is_some();
    let git_commit = has_commit_info.then(|| pb::GitCommit {
        sha: args.sha.unwrap_or_default(),
        message: args.commit_message.unwrap_or_default(),
        author_name: args.author_name.unwrap_or_default(),
        author_email: args.author_email.unwrap_or_default(),
        committed_at: None,
    });
    pb::CreateDeploymentRequest {
        project_id: args.project,
        environment_slug: args.env,
        branch: args.branch.unwrap_or_default(),
        source: Some(source),
        git_commit,
        command: args.command,
        idempotency_key: args.idempotency_key.unwrap_or_default(),
        port: args.port.map_or(0, u32::from),
    }
}

pub async fn watch(clients: &Clients, json: bool, id: String) -> anyhow::Result<ExitCode> {
    follow(clients, json, id).await
}

/// Streams the deployment's events until the daemon ends the stream, then
/// turns the last status seen into the exit code.
async fn follow(clients: &Clients, json: bool, id: String) -> anyhow::Result<ExitCode> {
    let request = pb::WatchDeploymentRequest {
        deployment_id: id.clone(),
    };
    let mut stream = rpc(clients.deployments().watch_deployment(request).await)?;
    let mut steps = StepPrinter::default();
    let mut status = pb::DeploymentStatus::Unspecified as i32;
    let mut error = String::new();
    while let Some(message) = stream.message().await.map_err(RpcError)? {
        if json {
            output::json_line(&message)?;
        }
        let lines = match message.event {
            Some(Event::Snapshot(d)) => {
                status = d.status;
                error = d.error_message;
                d.steps.iter().flat_map(|s| steps.lines(s)).collect()
            }
            Some(Event::Step(event)) => event.step.map(|s| steps.lines(&s)).unwrap_or_default(),
            Some(Event::Status(event)) => {
                status = event.status;
                error = event.error_message;
                Vec::new()
            }
            Some(Event::BuildLog(event)) => vec![step_line("build", &format!("| {}", event.line))],
            None => Vec::new(),
        };
        if !json {
            for line in lines {
                emit(&line)?;
            }
        }
    }
    match pb::DeploymentStatus::try_from(status) {
        Ok(pb::DeploymentStatus::Ready) => {
            if !json {
                emit(&step_line("status", "ready"))?;
                print_hostnames(clients, &id).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(pb::DeploymentStatus::Failed) => {
            if !json {
                let text = if error.is_empty() {
                    "failed".to_string()
                } else {
                    format!("failed: {error}")
                };
                emit(&step_line("status", &text))?;
            }
            Ok(ExitCode::from(EXIT_FAILED))
        }
        Ok(pb::DeploymentStatus::Cancelled) => {
            if !json {
                emit(&step_line("status", &error))?;
            }
            Ok(ExitCode::from(EXIT_FAILED))
        }
        _ => anyhow::bail!(
            "the daemon ended the watch while deployment {id} was still {}",
            output::status(status)
        ),
    }
}

/// Where a ready deployment can be reached. Best effort: the deployment
/// already succeeded, so a failed lookup must not turn into a failed exit.
async fn print_hostnames(clients: &Clients, id: &str) -> std::io::Result<()> {
    let request = pb::GetDeploymentRequest {
        deployment_id: id.to_string(),
    };
    if let Ok(response) = clients.deployments().get_deployment(request).await
        && let Some(deployment) = response.into_inner().deployment
    {
        for hostname in &deployment.hostnames {
            emit(&step_line("route", hostname))?;
        }
    }
    Ok(())
}

fn step_line(name: &str, text: &str) -> String {
    format!("{name:<STEP_COLUMN$} {text}")
}

/// Turns step updates into lines, printing each transition once: the
/// snapshot and later events repeat steps already shown, and a step that
/// started and ended between two updates arrives already finished.
#[derive(Default)]
struct StepPrinter {
    seen: HashMap<StepKey, Seen>,
}

/// A step is identified by name and start time: `wake` can recur, but
/// never twice at the same instant.
type StepKey = (String, i64, i32);

#[derive(Default)]
struct Seen {
    finished: bool,
    detail: String,
}

impl StepPrinter {
    fn lines(&mut self, step: &pb::Step) -> Vec<String> {
        let key = step
            .started_at
            .as_ref()
            .map_or((step.name.clone(), 0, 0), |t| {
                (step.name.clone(), t.seconds, t.nanos)
            });
        let mut lines = Vec::new();
        let seen = match self.seen.get_mut(&key) {
            Some(seen) => seen,
            None => {
                if step.finished_at.is_none() {
                    lines.push(step_line(&step.name, "started"));
                }
                self.seen.entry(key).or_default()
            }
        };
        if seen.finished {
            return lines;
        }
        match &step.finished_at {
            None => {
                if !step.detail.is_empty() && step.detail != seen.detail {
                    lines.push(step_line(&step.name, &step.detail));
                    seen.detail.clone_from(&step.detail);
                }
            }
            Some(end) => {
                seen.finished = true;
                let took = step
                    .started_at
                    .as_ref()
                    .map(|start| format!(" ({})", output::elapsed(start, end)))
                    .unwrap_or_default();
                let text = if step.error.is_empty() {
                    format!("done{took}")
                } else {
                    format!("failed: {}", step.error)
                };
                lines.push(step_line(&step.name, &text));
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use pbjson_types::Timestamp;

    use super::*;

    fn step(name: &str, finished: Option<i64>, error: &str, detail: &str) -> pb::Step {
        pb::Step {
            name: name.to_string(),
            started_at: Some(Timestamp {
                seconds: 100,
                nanos: 0,
            }),
            finished_at: finished.map(|seconds| Timestamp { seconds, nanos: 0 }),
            error: error.to_string(),
            detail: detail.to_string(),
        }
    }

    #[test]
    fn each_transition_prints_once() {
        let mut printer = StepPrinter::default();
        assert_eq!(
            printer.lines(&step("build", None, "", "")),
            ["build      started"]
        );
        assert!(printer.lines(&step("build", None, "", "")).is_empty());
        assert_eq!(
            printer.lines(&step("build", None, "", "layer 1/3")),
            ["build      layer 1/3"]
        );
        assert_eq!(
            printer.lines(&step("build", Some(101), "", "layer 1/3")),
            ["build      done (1.0s)"]
        );
        assert!(printer.lines(&step("build", Some(101), "", "")).is_empty());
    }

    #[test]
    fn a_step_seen_only_finished_prints_its_end() {
        let mut printer = StepPrinter::default();
        assert_eq!(
            printer.lines(&step("deploy", Some(102), "region us-east-1 timed out", "")),
            ["deploy     failed: region us-east-1 timed out"]
        );
    }
}
