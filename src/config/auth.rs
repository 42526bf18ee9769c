//! `[auth]` and `[audit]`: who may call the API, and how long the audit log
//! keeps what they did.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// A file holding an admin token (`deployd token generate` prints one).
    /// It is accepted while configured and stored nowhere else. Without it,
    /// the first start of a data file generates an admin token, stores its
    /// hash and prints it once.
    pub bootstrap_token_file: Option<PathBuf>,
    /// Serve gRPC reflection without a token (it needs one by default).
    pub open_reflection: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Audit events older than this are deleted (checked every hour).
    pub retention_days: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { retention_days: 90 }
    }
}

impl AuditConfig {
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_days.saturating_mul(24 * 3600))
    }
}
