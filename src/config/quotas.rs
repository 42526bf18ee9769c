//! `[quotas]`: how much one workspace may own and how fast one token may
//! call. Both refusals are `RESOURCE_EXHAUSTED` and change nothing.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotasConfig {
    /// Projects one workspace may have; `CreateProject` beyond it is
    /// refused. Checked inside the store writer's transaction, so
    /// concurrent creates cannot pass it together.
    pub max_projects_per_workspace: u32,
    /// Sustained calls per second one workspace token may make (a token
    /// bucket per token id, in memory). Admin tokens are not limited.
    pub requests_per_second_per_token: u32,
    /// Calls one workspace token may make at once before the sustained
    /// rate applies (the bucket's size).
    pub burst_per_token: u32,
}

impl Default for QuotasConfig {
    fn default() -> Self {
        // Generous: far above what one tenant's CI or CLI sends, so only a
        // runaway client meets them.
        Self {
            max_projects_per_workspace: 1_000,
            requests_per_second_per_token: 1_000,
            burst_per_token: 2_000,
        }
    }
}
