//! GitHub's REST API, for commit statuses: `POST
//! /repos/{owner}/{repo}/statuses/{sha}` with a token. Behind
//! [`CommitStatuses`] so the reporter can be driven by anything; the real
//! client is [`GitHubApi`] (reqwest over rustls with the ring provider).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Error;
use crate::model::github::CommitStatus;

/// Why a status did not reach GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostError {
    /// Worth another try later: no connection, a timeout, a 5xx, a rate
    /// limit.
    Transient(String),
    /// GitHub refused it on its merits (a bad token, an unknown commit):
    /// sending it again cannot help.
    Permanent(String),
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transient(why) | Self::Permanent(why) => f.write_str(why),
        }
    }
}

#[async_trait]
pub trait CommitStatuses: Send + Sync {
    async fn post(&self, status: &CommitStatus) -> Result<(), PostError>;
}

/// The REST API at `base` (`https://api.github.com`, a GitHub Enterprise
/// server's `/api/v3`, or a fake in tests).
pub struct GitHubApi {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl GitHubApi {
    pub fn new(base: &str, token: String, timeout: Duration) -> Result<Arc<Self>, Error> {
        // reqwest is built without a crypto provider of its own (so that
        // aws-lc-rs is not compiled in); rustls takes the process default,
        // which is ring. Installing it again is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("deployd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(format!("cannot build the GitHub client: {e}")))?;
        Ok(Arc::new(Self {
            client,
            base: base.trim_end_matches('/').to_string(),
            token,
        }))
    }
}

#[async_trait]
impl CommitStatuses for GitHubApi {
    async fn post(&self, status: &CommitStatus) -> Result<(), PostError> {
        // Owner, name and sha were validated to URL-safe characters.
        let url = format!(
            "{}/repos/{}/{}/statuses/{}",
            self.base, status.repository.owner, status.repository.name, status.sha
        );
        let mut body = serde_json::json!({
            "state": status.state.as_str(),
            "description": status.description,
            "context": status.context,
        });
        if let Some(target) = &status.target_url {
            body["target_url"] = serde_json::Value::String(target.clone());
        }
        let mut authorization =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", self.token)).map_err(
                |_| PostError::Permanent("the GitHub token is not a valid header value".into()),
            )?;
        authorization.set_sensitive(true);
        let response = self
            .client
            .post(&url)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| PostError::Transient(format!("cannot reach GitHub: {e}")))?;
        let code = response.status();
        if code.is_success() {
            return Ok(());
        }
        let rate_limited = response
            .headers()
            .get("x-ratelimit-remaining")
            .is_some_and(|v| v.as_bytes() == b"0")
            || response
                .headers()
                .contains_key(reqwest::header::RETRY_AFTER);
        let why = format!("GitHub answered {code} for {url}");
        if code.is_server_error() || code.as_u16() == 408 || code.as_u16() == 429 || rate_limited {
            Err(PostError::Transient(why))
        } else {
            Err(PostError::Permanent(why))
        }
    }
}
