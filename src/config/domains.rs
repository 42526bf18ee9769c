//! `[domains]`: how a custom domain is proven before it takes traffic.
//!
//! With `verification = "dns"` (the default) `AddCustomDomain` only records
//! a pending claim; the domain becomes a `LIVE` name once
//! `VerifyCustomDomain` finds the project's token in the TXT record
//! `_deployd-challenge.<domain>`, asked of `resolver`. `"none"` attaches a
//! domain at once, as deployd did before: only for a daemon whose every
//! token holder is trusted with every domain (single-tenant self-hosting).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainsConfig {
    pub verification: DomainVerification,
    /// The nameserver TXT records are asked of (`ip:port`). Without it,
    /// the first `nameserver` of `/etc/resolv.conf`, port 53, read at each
    /// verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolver: Option<SocketAddr>,
    /// How long one DNS query may take (each is tried twice over UDP).
    pub lookup_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainVerification {
    /// A claimed domain waits for its TXT record.
    #[default]
    Dns,
    /// A claimed domain is attached at once, unproven.
    None,
}

impl Default for DomainsConfig {
    fn default() -> Self {
        Self {
            verification: DomainVerification::Dns,
            resolver: None,
            lookup_timeout_ms: 2_000,
        }
    }
}

impl DomainsConfig {
    pub fn lookup_timeout(&self) -> Duration {
        Duration::from_millis(self.lookup_timeout_ms)
    }
}
