//! A builder that only waits (printing a line now and then): the default,
//! so the daemon runs with nothing else installed. Rules (by branch) make builds slow or failing for tests
//! and demos.

use std::time::Duration;

use async_trait::async_trait;

use super::{BuildError, BuildOutput, BuildRequest, Builder, Progress};
use crate::config::SimulatedBuildRule;

const PROGRESS_EVERY: Duration = Duration::from_millis(200);

pub struct SimulatedBuilder {
    duration: Duration,
    registry: String,
    rules: Vec<SimulatedBuildRule>,
}

impl SimulatedBuilder {
    pub fn new(duration: Duration, registry: String, rules: Vec<SimulatedBuildRule>) -> Self {
        Self {
            duration,
            registry,
            rules,
        }
    }
}

#[async_trait]
impl Builder for SimulatedBuilder {
    async fn build(
        &self,
        request: &BuildRequest,
        progress: Progress<'_>,
    ) -> Result<BuildOutput, BuildError> {
        let rule = self.rules.iter().find(|r| {
            r.branch.as_ref().is_none_or(|b| *b == request.branch)
                && r.commit_sha
                    .as_ref()
                    .is_none_or(|sha| *sha == request.source.commit_sha)
        });
        let duration = rule
            .and_then(|r| r.duration_ms)
            .map_or(self.duration, Duration::from_millis);
        progress(format!(
            "building {}@{}",
            request.source.repository, request.source.commit_sha
        ));
        // A line now and then, like a real build's output, so watchers of a
        // long build see it live.
        let end = tokio::time::Instant::now() + duration;
        let mut lines = 0u64;
        while tokio::time::Instant::now() < end {
            tokio::time::sleep_until(end.min(tokio::time::Instant::now() + PROGRESS_EVERY)).await;
            lines += 1;
            if tokio::time::Instant::now() < end {
                progress(format!("step {lines}"));
            }
        }
        if rule.is_some_and(|r| r.fail) {
            return Err(BuildError(format!(
                "build of branch {} failed (simulated)",
                request.branch
            )));
        }
        let sha7 = request
            .source
            .commit_sha
            .get(..7)
            .unwrap_or(&request.source.commit_sha);
        Ok(BuildOutput {
            build_id: format!("bld_{}", request.deployment_id.short()),
            image: format!(
                "{}/{}/{}:{sha7}",
                self.registry,
                request.project_id.short(),
                request.deployment_id.short()
            ),
        })
    }
}
