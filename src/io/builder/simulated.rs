//! A builder that only waits: the default, so the daemon runs with nothing
//! else installed. Rules (by branch) make builds slow or failing for tests
//! and demos.

use std::time::Duration;

use async_trait::async_trait;

use super::{BuildError, BuildOutput, BuildRequest, Builder, Progress};
use crate::config::SimulatedBuildRule;

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
        tokio::time::sleep(duration).await;
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
