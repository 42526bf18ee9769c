//! GitHub: a project's connected repository, what a push becomes, and the
//! commit status a deployment should show on GitHub. Pure rules; the
//! webhook listener (`crate::webhook`), the store and the status reporter
//! (`actors::github`) apply them.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::quote::quoted;
use crate::model::{Deployment, DeploymentStatus, ProjectId, Source, UnixMillis};

/// GitHub's limits: an owner (user or organisation) is 1 to 39 characters
/// of `A-Z a-z 0-9 -`, a repository 1 to 100 of `A-Z a-z 0-9 . _ -`.
const MAX_OWNER_LEN: usize = 39;
const MAX_REPO_LEN: usize = 100;
/// GitHub refuses a status description longer than this.
pub const MAX_DESCRIPTION_LEN: usize = 140;

/// `owner/name` as GitHub spells it. GitHub matches names without regard
/// to case, so [`RepositoryName::key`] (lower case) is what is unique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryName {
    pub owner: String,
    pub name: String,
}

impl RepositoryName {
    /// Parses `owner/name` (what GitHub calls the repository's full name).
    pub fn parse(value: &str, field: &str) -> Result<Self, Error> {
        let invalid = |why: &str| {
            Error::invalid(format!(
                "{field} {} is not a GitHub repository: {why}",
                quoted(value)
            ))
        };
        let Some((owner, name)) = value.split_once('/') else {
            return Err(invalid("give it as owner/name"));
        };
        let owner_ok = (1..=MAX_OWNER_LEN).contains(&owner.len())
            && owner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !owner.starts_with('-');
        if !owner_ok {
            return Err(invalid(
                "the owner must be 1 to 39 of A-Z, a-z, 0-9 and '-', not starting with '-'",
            ));
        }
        let name_ok = (1..=MAX_REPO_LEN).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && name != "."
            && name != ".."
            && !name.starts_with('-');
        if !name_ok {
            return Err(invalid(
                "the name must be 1 to 100 of A-Z, a-z, 0-9, '.', '_' and '-'",
            ));
        }
        Ok(Self {
            owner: owner.to_string(),
            name: name.to_string(),
        })
    }

    /// The unique, case-folded form: `owner/name` in lower case.
    pub fn key(&self) -> String {
        format!("{}/{}", self.owner, self.name).to_ascii_lowercase()
    }

    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

/// A project's GitHub repository. A repository is connected to at most one
/// project and a project to at most one repository (the store enforces
/// both), so a push names exactly one project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryConnection {
    pub project_id: ProjectId,
    pub repository: RepositoryName,
    /// What the builder fetches pushed commits from.
    pub clone_url: String,
    pub context_path: String,
    pub dockerfile_path: String,
    pub connected_at: UnixMillis,
}

impl RepositoryConnection {
    /// Whether GitHub should show `deployment`'s state on its commit: a
    /// git deployment of this project built from this repository's clone
    /// address (a deployment from elsewhere has no commit there).
    pub fn reports(&self, deployment: &Deployment) -> bool {
        deployment.project_id == self.project_id
            && matches!(&deployment.source, Source::Git(git) if git.repository == self.clone_url)
    }
}

/// The state of a GitHub commit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommitState {
    Pending,
    Success,
    Failure,
    Error,
}

impl CommitState {
    /// The value of GitHub's `state` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Error => "error",
        }
    }

    /// The state GitHub should show for a deployment with `status`:
    /// pending while it builds and deploys, then its outcome.
    pub fn of(status: DeploymentStatus) -> Self {
        match status {
            DeploymentStatus::Pending
            | DeploymentStatus::Building
            | DeploymentStatus::Deploying
            | DeploymentStatus::Network => Self::Pending,
            DeploymentStatus::Ready => Self::Success,
            DeploymentStatus::Failed => Self::Failure,
            // Not a verdict on the commit: it was stopped, or a newer
            // push of the branch superseded it.
            DeploymentStatus::Cancelled => Self::Error,
        }
    }
}

/// The last commit status GitHub accepted for a deployment (or that was
/// given up on: reporting is best effort), so a status is sent once per
/// state, also across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedStatus {
    pub state: CommitState,
    /// False when GitHub refused it for good (a 4xx) and it was dropped.
    pub accepted: bool,
    pub at: UnixMillis,
}

/// One commit status to send, as GitHub's API takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    pub repository: RepositoryName,
    pub sha: String,
    pub state: CommitState,
    pub target_url: Option<String>,
    pub description: String,
    /// `deployd/{environment}`: one line per environment on the commit.
    pub context: String,
}

impl CommitStatus {
    /// The status `deployment` should show now, with `target_url` for a
    /// `READY` one (its own hostname).
    pub fn of(
        connection: &RepositoryConnection,
        deployment: &Deployment,
        target_url: Option<String>,
    ) -> Option<Self> {
        let Source::Git(git) = &deployment.source else {
            return None;
        };
        let state = CommitState::of(deployment.status);
        let description = match deployment.status {
            DeploymentStatus::Pending => "Queued".to_string(),
            DeploymentStatus::Building => "Building".to_string(),
            DeploymentStatus::Deploying | DeploymentStatus::Network => "Deploying".to_string(),
            DeploymentStatus::Ready => format!("Deployed {}", deployment.id),
            DeploymentStatus::Failed => format!(
                "Failed: {}",
                deployment
                    .error_message
                    .as_deref()
                    .unwrap_or("unknown error")
            ),
            DeploymentStatus::Cancelled => match &deployment.superseded_by {
                Some(newer) => format!("Cancelled: superseded by {newer}"),
                None => "Cancelled".to_string(),
            },
        };
        Some(Self {
            repository: connection.repository.clone(),
            sha: git.commit_sha.clone(),
            state,
            target_url: target_url.filter(|_| state == CommitState::Success),
            description: cut(&description, MAX_DESCRIPTION_LEN),
            context: format!("deployd/{}", deployment.environment),
        })
    }
}

/// `value` cut to at most `max` bytes on a character boundary.
pub fn cut(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_string();
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_github_rules() {
        let name = RepositoryName::parse("Acme-Inc/web.site_2", "repository").unwrap();
        assert_eq!(name.key(), "acme-inc/web.site_2");
        assert_eq!(name.full_name(), "Acme-Inc/web.site_2");
        for bad in [
            "",
            "acme",
            "/web",
            "acme/",
            "-acme/web",
            "acme/..",
            "acme/web/x",
            "ac me/web",
            "acme/we$b",
            &format!("{}/web", "a".repeat(40)),
        ] {
            assert!(
                RepositoryName::parse(bad, "repository").is_err(),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn states_follow_the_deployment() {
        assert_eq!(
            CommitState::of(DeploymentStatus::Building),
            CommitState::Pending
        );
        assert_eq!(
            CommitState::of(DeploymentStatus::Network),
            CommitState::Pending
        );
        assert_eq!(
            CommitState::of(DeploymentStatus::Ready),
            CommitState::Success
        );
        assert_eq!(
            CommitState::of(DeploymentStatus::Failed),
            CommitState::Failure
        );
    }

    #[test]
    fn cut_keeps_characters_whole() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
    }
}
