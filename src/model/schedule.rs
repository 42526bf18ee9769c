//! Scheduled state changes: at most one per deployment (last writer wins).

use serde::{Deserialize, Serialize};

use crate::model::{DeploymentId, UnixMillis};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledChange {
    pub deployment_id: DeploymentId,
    /// Today the only scheduled change is going to `STANDBY`.
    pub action: ScheduledAction,
    pub due_at: UnixMillis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScheduledAction {
    Standby,
}
