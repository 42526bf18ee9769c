//! `[github]`: the webhook listener that turns pushes into deployments, and
//! the commit statuses sent back to GitHub. Both are off unless configured:
//! no `listen`, no listener; no `token_file`, no statuses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GithubConfig {
    /// Where the webhook listener serves HTTP/1.1. Requires
    /// `webhook_secret_file`.
    pub listen: Option<SocketAddr>,
    /// The webhook's secret (the whole file, without a final newline):
    /// every delivery must be signed with it.
    pub webhook_secret_file: Option<PathBuf>,
    /// A delivery with a larger body is refused (413) unread.
    pub max_body_bytes: usize,
    /// GitHub's REST API; a GitHub Enterprise server's, or a fake in tests.
    pub api_base: String,
    /// A token allowed to write commit statuses. Without it no status is
    /// sent.
    pub token_file: Option<PathBuf>,
    /// The scheme of a ready deployment's link on GitHub (`https` when the
    /// edge is behind a TLS terminator).
    pub target_url_scheme: String,
    /// A status GitHub did not take is sent again after this long,
    /// doubling up to `status_retry_max_ms`, at most `status_max_attempts`
    /// times (then dropped: statuses are best effort).
    pub status_retry_ms: u64,
    pub status_retry_max_ms: u64,
    pub status_max_attempts: u32,
    /// Bound on one call to GitHub's API.
    pub api_timeout_ms: u64,
}

impl Default for GithubConfig {
    fn default() -> Self {
        Self {
            listen: None,
            webhook_secret_file: None,
            max_body_bytes: 5 * 1024 * 1024,
            api_base: "https://api.github.com".to_string(),
            token_file: None,
            target_url_scheme: "https".to_string(),
            status_retry_ms: 500,
            status_retry_max_ms: 5 * 60 * 1000,
            status_max_attempts: 20,
            api_timeout_ms: 10_000,
        }
    }
}

impl GithubConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.listen.is_some() && self.webhook_secret_file.is_none() {
            anyhow::bail!(
                "config: github.listen needs github.webhook_secret_file: unsigned deliveries are never accepted"
            );
        }
        if !(self.api_base.starts_with("https://") || self.api_base.starts_with("http://")) {
            anyhow::bail!("config: github.api_base must start with https:// or http://");
        }
        if !matches!(self.target_url_scheme.as_str(), "http" | "https") {
            anyhow::bail!("config: github.target_url_scheme must be http or https");
        }
        for (name, value) in [
            ("github.max_body_bytes", self.max_body_bytes as u64),
            ("github.status_retry_ms", self.status_retry_ms),
            ("github.status_retry_max_ms", self.status_retry_max_ms),
            (
                "github.status_max_attempts",
                u64::from(self.status_max_attempts),
            ),
            ("github.api_timeout_ms", self.api_timeout_ms),
        ] {
            if value == 0 {
                anyhow::bail!("config: {name} must be greater than 0");
            }
        }
        Ok(())
    }

    pub fn status_retry(&self) -> Duration {
        Duration::from_millis(self.status_retry_ms)
    }

    pub fn status_retry_max(&self) -> Duration {
        Duration::from_millis(self.status_retry_max_ms)
    }

    pub fn api_timeout(&self) -> Duration {
        Duration::from_millis(self.api_timeout_ms)
    }
}

/// Reads a secret file: its whole content without one final newline
/// (`echo secret > file` writes one). Empty is refused.
pub fn read_secret(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", path.display()))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        anyhow::bail!("{what} {} is empty", path.display());
    }
    Ok(bytes)
}
