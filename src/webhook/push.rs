//! What a `push` delivery asks for: a deployment of the pushed commit, or
//! nothing (a tag, a deleted branch). Pure; `webhook.rs` looks up the
//! repository and calls the project's actor.

use serde::Deserialize;

use crate::model::GitCommit;
use crate::model::github::{RepositoryName, cut};
use crate::model::validate::{self, MAX_COMMIT_MESSAGE_LEN};

/// The fields of GitHub's push payload that matter here.
#[derive(Debug, Deserialize)]
pub struct PushEvent {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub after: String,
    #[serde(default)]
    pub deleted: bool,
    pub repository: PushRepository,
    #[serde(default)]
    pub head_commit: Option<HeadCommit>,
}

#[derive(Debug, Deserialize)]
pub struct PushRepository {
    pub full_name: String,
    #[serde(default)]
    pub default_branch: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct HeadCommit {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub author: Option<Author>,
}

#[derive(Debug, Deserialize)]
pub struct Author {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
}

/// A push that should become a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushDeploy {
    pub repository: RepositoryName,
    pub branch: String,
    /// `production` for the default branch, `preview` for any other.
    pub environment: &'static str,
    pub sha: String,
    pub commit: GitCommit,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PushAction {
    Deploy(Box<PushDeploy>),
    /// Acknowledged, nothing to do; the reason is the answer's body.
    Ignore(&'static str),
}

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// Decides what `event` asks for; `Err` is a payload that cannot be a
/// push GitHub sent (the answer is 400 with the reason).
pub fn decide(event: &PushEvent) -> Result<PushAction, String> {
    let Some(branch) = event.git_ref.strip_prefix("refs/heads/") else {
        return Ok(PushAction::Ignore("ignored: not a branch push (a tag?)"));
    };
    if event.deleted || event.after == ZERO_SHA {
        return Ok(PushAction::Ignore("ignored: the branch was deleted"));
    }
    let repository = RepositoryName::parse(&event.repository.full_name, "repository.full_name")
        .map_err(|e| e.to_string())?;
    validate::branch(branch).map_err(|e| e.to_string())?;
    validate::commit_sha(&event.after, "after").map_err(|e| e.to_string())?;
    let Some(default_branch) = &event.repository.default_branch else {
        return Err("repository.default_branch is missing".into());
    };
    let environment = if branch == default_branch {
        "production"
    } else {
        "preview"
    };
    let (message, author_name, author_email) = match &event.head_commit {
        Some(head) => {
            let author = head.author.as_ref();
            (
                cut(&head.message, MAX_COMMIT_MESSAGE_LEN),
                cut(author.map_or("", |a| a.name.as_str()), 256),
                cut(author.map_or("", |a| a.email.as_str()), 256),
            )
        }
        None => Default::default(),
    };
    Ok(PushAction::Deploy(Box::new(PushDeploy {
        repository,
        branch: branch.to_string(),
        environment,
        sha: event.after.clone(),
        commit: GitCommit {
            sha: event.after.clone(),
            message,
            author_name,
            author_email,
            committed_at: None,
        },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(git_ref: &str, after: &str, deleted: bool) -> PushEvent {
        serde_json::from_value(serde_json::json!({
            "ref": git_ref,
            "after": after,
            "deleted": deleted,
            "repository": {"full_name": "Acme/Web", "default_branch": "main"},
            "head_commit": {"message": "fix: ü", "author": {"name": "A", "email": "a@example.com"}},
        }))
        .unwrap()
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn the_default_branch_goes_to_production_others_to_preview() {
        let PushAction::Deploy(main) = decide(&event("refs/heads/main", SHA, false)).unwrap()
        else {
            panic!("main was not deployed");
        };
        assert_eq!(main.environment, "production");
        assert_eq!(main.branch, "main");
        assert_eq!(main.sha, SHA);
        assert_eq!(main.repository.key(), "acme/web");
        assert_eq!(main.commit.message, "fix: ü");
        let PushAction::Deploy(feature) =
            decide(&event("refs/heads/feature/x", SHA, false)).unwrap()
        else {
            panic!("feature/x was not deployed");
        };
        assert_eq!(feature.environment, "preview");
        assert_eq!(feature.branch, "feature/x");
    }

    #[test]
    fn tags_and_deletions_are_ignored() {
        assert!(matches!(
            decide(&event("refs/tags/v1", SHA, false)),
            Ok(PushAction::Ignore(_))
        ));
        assert!(matches!(
            decide(&event("refs/heads/main", ZERO_SHA, true)),
            Ok(PushAction::Ignore(_))
        ));
        assert!(matches!(
            decide(&event("refs/heads/main", ZERO_SHA, false)),
            Ok(PushAction::Ignore(_))
        ));
    }

    #[test]
    fn malformed_pushes_are_refused() {
        assert!(decide(&event("refs/heads/main", "not-a-sha", false)).is_err());
        assert!(decide(&event("refs/heads/bad..branch", SHA, false)).is_err());
    }
}
