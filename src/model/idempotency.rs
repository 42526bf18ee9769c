//! Idempotency keys: a client that lost an answer (the daemon crashed, the
//! connection dropped) retries with the same key and gets the original
//! result instead of a second deployment or switch.
//!
//! Keys are scoped to a project. A record holds a fingerprint of the request
//! it answered, so the same key with a different request is refused. Only
//! successful mutations are recorded: a refused request changed nothing, so
//! running it again is safe.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::project::Project;
use crate::model::{DeploymentId, DeploymentStatus, Route, UnixMillis};

pub const MAX_KEY_LEN: usize = 128;

/// 1 to 128 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<Self, Error> {
        let ok =
            (1..=MAX_KEY_LEN).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(Error::invalid(format!(
                "idempotency key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            )));
        }
        Ok(Self(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The key of a request and the fingerprint of the request itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: IdempotencyKey,
    pub fingerprint: u64,
}

/// The result of a rollback or promote: the project after the switch and
/// the routes that moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchOutcome {
    pub project: Project,
    pub routes: Vec<Route>,
}

/// What identifies the answer to the first request with a key. Only what
/// cannot be read again is stored (a new deployment's id); the rest of a
/// reply is rebuilt from the project when a retry arrives, so a record
/// stays a few dozen bytes whatever the project's size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredReply {
    Deployment {
        id: DeploymentId,
        status: DeploymentStatus,
    },
    /// A rollback or promote to `target`: the answer is the project with
    /// `target` live and `rolled_back` set, and (unless the switch only
    /// confirmed a rollback) the `LIVE` and `ENVIRONMENT` routes of
    /// `environment`, pointing at `target`.
    Switch {
        target: DeploymentId,
        environment: String,
        rolled_back: bool,
        moved_routes: bool,
    },
    /// A change of project settings (regions); the answer is the project.
    Project,
    /// A custom domain attached; the answer is the project and its route.
    Domain { fqdn: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub fingerprint: u64,
    pub reply: StoredReply,
    pub expires_at: UnixMillis,
}
