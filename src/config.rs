//! The daemon's configuration: embedded defaults, optionally overridden by a
//! TOML file (`deployd serve --config FILE`) and then by command-line flags.
//!
//! With no file at all the daemon runs self-contained: state in `data/`,
//! three simulated regions and a simulated builder.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::validate;

mod auth;
pub use auth::{AuditConfig, AuthConfig};
mod builder;
pub use builder::{BuilderConfig, SimulatedBuildRule};
mod domains;
pub use domains::{DomainVerification, DomainsConfig};
mod github;
pub use github::{GithubConfig, read_secret};
mod quotas;
pub use quotas::QuotasConfig;
mod regions;
pub use regions::{KubernetesReadiness, RegionConfig};
mod serving;
pub use serving::{EdgeConfig, LogFormat, MetricsConfig, TlsConfig};
mod thread_priority;
pub use thread_priority::ThreadPriority;

/// Everything the daemon can be told. Durations are milliseconds so the file
/// format needs no duration syntax.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the gRPC server listens on.
    pub listen: SocketAddr,
    /// A second gRPC address that serves only `Rollback` and `Promote` (and
    /// health), on a thread and async runtime of its own: a switch sent
    /// there never queues behind deploy traffic on the main listener's
    /// runtime. Same TLS and tokens as `listen`. Off when unset.
    pub switch_listen: Option<SocketAddr>,
    /// Directory holding `deployd.redb`; created if missing.
    pub data_dir: PathBuf,
    /// Parent domain of every generated hostname.
    pub apex_domain: String,
    /// How long a deployment that stopped being live keeps running before it
    /// is scaled to zero (`STANDBY`).
    pub standby_delay_ms: u64,
    /// How long a region may take to run the desired replicas before the
    /// deployment (or the wake of a rollback target) fails.
    pub region_timeout_ms: u64,
    /// How often a readiness child asks its region for instance status.
    pub readiness_poll_ms: u64,
    /// Upper bound on any internal actor call that does not wait for a wake.
    pub call_timeout_ms: u64,
    /// A project actor that fails more often than this within
    /// `restart_window_ms` is paused for one window: its project answers
    /// `UNAVAILABLE` until the window has passed, then starts again.
    pub max_restarts: u32,
    pub restart_window_ms: u64,
    /// Requests waiting for one project's actor beyond this many are refused
    /// at once with `RESOURCE_EXHAUSTED` instead of growing memory.
    pub max_queued_per_project: usize,
    /// Deployments of one project that are not yet READY or FAILED beyond
    /// this many are refused with `RESOURCE_EXHAUSTED`: one project's
    /// backlog cannot grow without bound.
    pub max_unfinished_per_project: usize,
    /// Custom domains one project may attach.
    pub max_custom_domains_per_project: usize,
    /// Rollbacks and promotes that may wait for one `STANDBY` deployment
    /// to wake; more are refused with `RESOURCE_EXHAUSTED`.
    pub max_wake_waiters: usize,
    /// A project actor with nothing in flight and nothing scheduled stops
    /// after this long without requests; it comes back from redb on the
    /// next one. Keeps memory flat with many mostly idle projects.
    pub idle_actor_stop_ms: u64,
    /// Upper bound of redb's page cache, in MiB.
    pub store_cache_mib: usize,
    /// How the threads a rollback or promote passes through (the store
    /// writer, the actor thread, the switch lane) ask the kernel for
    /// priority. Applies to the whole process, once, at start.
    pub switch_path_priority: ThreadPriority,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl_ms: u64,
    /// After SIGTERM, how long in-flight requests may take to finish before
    /// the daemon stops anyway (everything acknowledged is durable already).
    pub shutdown_timeout_ms: u64,
    /// Accept git repositories on link-local and cloud metadata addresses
    /// (169.254.0.0/16, fe80::/10, `metadata.google.internal`, ...). Off by
    /// default: a builder fetching from them reaches the host it runs on.
    pub allow_link_local_repositories: bool,
    /// Open client connections; the next one waits in the kernel's accept
    /// queue until one closes.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams (calls, watches) on one connection.
    pub max_streams_per_connection: u32,
    /// A connection that has not sent the HTTP/2 preface within this long
    /// is closed (a port scanner, a client speaking something else).
    pub handshake_timeout_ms: u64,
    /// A connection with no open stream for this long is closed.
    pub idle_timeout_ms: u64,
    /// HTTP/2 PING every this long; a peer that does not answer within
    /// `keepalive_timeout_ms` loses its connection.
    pub keepalive_interval_ms: u64,
    pub keepalive_timeout_ms: u64,
    /// `WatchDeployment` streams open at once, overall and on one
    /// deployment; beyond either, `RESOURCE_EXHAUSTED`.
    pub max_watchers: usize,
    pub max_watchers_per_deployment: usize,
    /// A watch whose client has not taken the next event for this long is
    /// ended, and its connection closed.
    pub watch_send_timeout_ms: u64,
    /// How often the resync asks regions that keep objects of their own
    /// (kubernetes) what they hold, to remove orphans and re-apply drift.
    pub resync_interval_ms: u64,
    /// How long a workload must have been an orphan (its deployment
    /// unknown, archived or not in that region) before a resync removes it.
    pub orphan_grace_ms: u64,
    /// One entry per region, each with the driver that reaches it.
    pub regions: BTreeMap<String, RegionConfig>,
    pub builder: BuilderConfig,
    /// The built-in HTTP edge that serves every routed hostname.
    pub edge: EdgeConfig,
    /// TLS for the gRPC API (`[tls]`); without it the API speaks plain
    /// HTTP/2, which is allowed on loopback addresses only unless
    /// `allow_plaintext_non_loopback` says otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Lets the API, the edge or the metrics endpoint listen on an address
    /// other than loopback without TLS (a warning is logged). Off by
    /// default: the daemon refuses to start instead.
    pub allow_plaintext_non_loopback: bool,
    /// The Prometheus endpoint (`[metrics]`), off unless `listen` is set.
    pub metrics: MetricsConfig,
    /// `text` (the default) or `json`: one JSON object per log line, with
    /// the fields of the spans it happened in (RPC name, ids, step).
    pub log_format: LogFormat,
    /// The largest gRPC message the API decodes (bytes); a larger one is
    /// refused with `OUT_OF_RANGE` (tonic's code for it) before it is
    /// decoded. The largest
    /// valid request (64 command arguments of 4 KiB, a 16 KiB commit
    /// message and the longest other fields) is about 300 KiB.
    pub max_message_bytes: usize,
    /// Bearer tokens: the bootstrap admin token, open reflection.
    pub auth: AuthConfig,
    /// The audit log's retention.
    pub audit: AuditConfig,
    /// GitHub pushes and commit statuses (off unless configured).
    pub github: GithubConfig,
    /// Projects per workspace, requests per second per token.
    pub quotas: QuotasConfig,
    /// How custom domains are proven (`[domains]`).
    pub domains: DomainsConfig,
    /// Test-only fault injection, compiled in only with the `fail-points`
    /// feature. Keys are fail point names (see `actors::fail_points`).
    #[cfg(feature = "fail-points")]
    pub fail_points: BTreeMap<String, crate::fail_points::FailAction>,
}

impl Default for Config {
    fn default() -> Self {
        let simulated = |ready_after_ms| RegionConfig::Simulated {
            ready_after_ms,
            never_ready: false,
            persist: false,
            serve_http: true,
        };
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            switch_listen: None,
            data_dir: PathBuf::from("data"),
            apex_domain: "deployd.local".to_string(),
            standby_delay_ms: 30 * 60 * 1000,
            region_timeout_ms: 10 * 60 * 1000,
            readiness_poll_ms: 250,
            call_timeout_ms: 10_000,
            max_restarts: 5,
            restart_window_ms: 60_000,
            max_queued_per_project: 1024,
            max_unfinished_per_project: 256,
            max_custom_domains_per_project: 100,
            max_wake_waiters: 64,
            idle_actor_stop_ms: 60_000,
            store_cache_mib: 64,
            switch_path_priority: ThreadPriority::Nice,
            idempotency_ttl_ms: 24 * 60 * 60 * 1000,
            shutdown_timeout_ms: 10_000,
            allow_link_local_repositories: false,
            max_connections: 1024,
            max_streams_per_connection: 256,
            handshake_timeout_ms: 10_000,
            idle_timeout_ms: 300_000,
            keepalive_interval_ms: 30_000,
            keepalive_timeout_ms: 10_000,
            max_watchers: 20_000,
            max_watchers_per_deployment: 1_000,
            watch_send_timeout_ms: 30_000,
            resync_interval_ms: 60_000,
            orphan_grace_ms: 10 * 60 * 1000,
            regions: BTreeMap::from([
                ("us-east-1".to_string(), simulated(300)),
                ("eu-central-1".to_string(), simulated(400)),
                ("ap-southeast-1".to_string(), simulated(500)),
            ]),
            builder: BuilderConfig::default(),
            edge: EdgeConfig::default(),
            tls: None,
            allow_plaintext_non_loopback: false,
            metrics: MetricsConfig::default(),
            log_format: LogFormat::Text,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            auth: AuthConfig::default(),
            audit: AuditConfig::default(),
            github: GithubConfig::default(),
            quotas: QuotasConfig::default(),
            domains: DomainsConfig::default(),
            #[cfg(feature = "fail-points")]
            fail_points: BTreeMap::new(),
        }
    }
}

/// gRPC's usual 4 MiB, stated: far above any valid request (about
/// 300 KiB), and room for an oversize field to get its own clear
/// `INVALID_ARGUMENT` rather than a size refusal.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

impl Config {
    /// Reads a TOML file over the embedded defaults and validates the result.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        let config: Self = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects settings the daemon cannot run with, naming the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.regions.is_empty() {
            anyhow::bail!("config: at least one region is required");
        }
        for name in self.regions.keys() {
            validate::region(name).map_err(|e| anyhow::anyhow!("config: regions: {e}"))?;
        }
        validate::apex_domain(&self.apex_domain)
            .map_err(|e| anyhow::anyhow!("config: apex_domain: {e}"))?;
        if let BuilderConfig::Podman { registry, .. } = &self.builder {
            validate::registry_address(registry)
                .map_err(|e| anyhow::anyhow!("config: builder.registry: {e}"))?;
        }
        for (name, value) in [
            ("region_timeout_ms", self.region_timeout_ms),
            ("readiness_poll_ms", self.readiness_poll_ms),
            ("resync_interval_ms", self.resync_interval_ms),
            ("call_timeout_ms", self.call_timeout_ms),
            ("restart_window_ms", self.restart_window_ms),
            ("max_queued_per_project", self.max_queued_per_project as u64),
            (
                "max_unfinished_per_project",
                self.max_unfinished_per_project as u64,
            ),
            (
                "max_custom_domains_per_project",
                self.max_custom_domains_per_project as u64,
            ),
            ("max_wake_waiters", self.max_wake_waiters as u64),
            ("idempotency_ttl_ms", self.idempotency_ttl_ms),
            ("store_cache_mib", self.store_cache_mib as u64),
            ("max_connections", self.max_connections as u64),
            (
                "max_streams_per_connection",
                u64::from(self.max_streams_per_connection),
            ),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("keepalive_interval_ms", self.keepalive_interval_ms),
            ("keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("max_watchers", self.max_watchers as u64),
            (
                "max_watchers_per_deployment",
                self.max_watchers_per_deployment as u64,
            ),
            ("watch_send_timeout_ms", self.watch_send_timeout_ms),
            ("max_message_bytes", self.max_message_bytes as u64),
            ("audit.retention_days", self.audit.retention_days),
            ("domains.lookup_timeout_ms", self.domains.lookup_timeout_ms),
            ("builder.slots", self.builder.slots() as u64),
            (
                "quotas.max_projects_per_workspace",
                u64::from(self.quotas.max_projects_per_workspace),
            ),
            (
                "quotas.requests_per_second_per_token",
                u64::from(self.quotas.requests_per_second_per_token),
            ),
            (
                "quotas.burst_per_token",
                u64::from(self.quotas.burst_per_token),
            ),
        ] {
            if value == 0 {
                anyhow::bail!("config: {name} must be greater than 0");
            }
        }
        self.github.validate()?;
        for (name, tls) in [("tls", &self.tls), ("edge.tls", &self.edge.tls)] {
            if tls.as_ref().is_some_and(|tls| tls.reload_poll_ms == 0) {
                anyhow::bail!("config: {name}.reload_poll_ms must be greater than 0");
            }
        }
        if self
            .edge
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some())
        {
            anyhow::bail!(
                "config: edge.tls.client_ca_file is not supported: the edge serves the public"
            );
        }
        self.check_plaintext()
    }

    /// Plain text only on loopback, unless the operator opted in: a
    /// control plane reachable from the network without TLS is a mistake
    /// worth stopping for. (`serve` logs a warning for each opted-in one.)
    fn check_plaintext(&self) -> anyhow::Result<()> {
        if self.allow_plaintext_non_loopback {
            return Ok(());
        }
        if let Some((name, address)) = self.plaintext_non_loopback().first() {
            anyhow::bail!(
                "config: {name} = {address} is not a loopback address and would be served without TLS; \
                 configure TLS ([tls] or [edge.tls]) or set allow_plaintext_non_loopback = true"
            );
        }
        Ok(())
    }

    /// The listeners that serve plain text on a non-loopback address.
    pub fn plaintext_non_loopback(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut plain = vec![];
        if self.tls.is_none() {
            plain.push(("listen", self.listen));
            if let Some(listen) = self.switch_listen {
                plain.push(("switch_listen", listen));
            }
        }
        if self.edge.enabled && self.edge.tls.is_none() {
            plain.push(("edge.listen", self.edge.listen));
        }
        if let Some(listen) = self.metrics.listen {
            plain.push(("metrics.listen", listen));
        }
        plain.retain(|(_, address)| !address.ip().is_loopback());
        plain
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("deployd.redb")
    }

    pub fn region_timeout(&self) -> Duration {
        Duration::from_millis(self.region_timeout_ms)
    }

    pub fn readiness_poll(&self) -> Duration {
        Duration::from_millis(self.readiness_poll_ms)
    }

    /// Zero disables stopping idle project actors.
    pub fn idle_actor_stop(&self) -> Duration {
        Duration::from_millis(self.idle_actor_stop_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub fn keepalive_interval(&self) -> Duration {
        Duration::from_millis(self.keepalive_interval_ms)
    }

    pub fn keepalive_timeout(&self) -> Duration {
        Duration::from_millis(self.keepalive_timeout_ms)
    }

    pub fn watch_send_timeout(&self) -> Duration {
        Duration::from_millis(self.watch_send_timeout_ms)
    }

    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    /// Rollback and promote may wait for a `STANDBY` target to wake up.
    pub fn switch_timeout(&self) -> Duration {
        self.region_timeout() + self.call_timeout()
    }

    pub fn repository_rules(&self) -> validate::RepositoryRules {
        validate::RepositoryRules {
            allow_link_local: self.allow_link_local_repositories,
            allow_file: self.builder.allows_file_repositories(),
        }
    }

    pub fn region_names(&self) -> impl Iterator<Item = &str> + Clone {
        self.regions.keys().map(String::as_str)
    }
}
