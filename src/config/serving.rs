//! What the daemon serves besides its gRPC API and how: `[edge]`, the TLS
//! files of `[tls]` and `[edge.tls]`, `[metrics]` and the log format.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[edge]`: an HTTP/1.1 reverse proxy in the daemon. A request's `Host`
/// header picks the route, the route its deployment, and the request goes
/// to one of that deployment's running instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Serve HTTPS instead of HTTP (`[edge.tls]`; `client_ca_file` is not
    /// accepted here: the edge serves the public).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
        }
    }
}

/// A certificate chain and its key (and the client CAs), PEM files read at
/// start and again on SIGHUP or when one of them changes (checked every
/// `reload_poll_ms`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// PEM file of the CAs whose client certificates the gRPC API accepts;
    /// when set, a client without such a certificate is refused during the
    /// handshake. Reloaded with the certificate; setting or removing it
    /// takes a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    #[serde(default = "default_reload_poll_ms")]
    pub reload_poll_ms: u64,
}

fn default_reload_poll_ms() -> u64 {
    2_000
}

impl TlsConfig {
    pub fn reload_poll(&self) -> Duration {
        Duration::from_millis(self.reload_poll_ms)
    }
}

/// `[metrics]`: where Prometheus scrapes `GET /metrics` (plain HTTP).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}
