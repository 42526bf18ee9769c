//! `--compare-secure`: what TLS costs. The usual load (projects,
//! rollback/promote pairs alone, then deploying clients with a switching
//! client beside them) runs twice in one invocation, each time on a fresh
//! in-process daemon with its own data directory: first plain HTTP/2, then
//! TLS (`[tls]` with a certificate made for the run, ring provider). Both
//! runs carry a bearer token on every call: authentication cannot be
//! turned off in deployd, so this measures TLS on top of auth, and
//! `benches/hot_paths.rs` (`auth_check`) measures the token check itself.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde::Serialize;

use super::stats::Percentiles;
use super::workload::{self, LoadFigures};
use super::{BenchArgs, Report, start_local};
use crate::Config;
use crate::config::TlsConfig;

/// One of the two runs.
#[derive(Debug, Default, Serialize)]
pub struct SecureRun {
    pub rollback_alone: Percentiles,
    pub promote_alone: Percentiles,
    pub load: LoadFigures,
}

/// Both runs, plain text first.
#[derive(Debug, Default, Serialize)]
pub struct SecureReport {
    pub clients: usize,
    pub plain: SecureRun,
    pub tls: SecureRun,
}

pub async fn run(config: &Config, args: &BenchArgs, dir: &Path) -> anyhow::Result<SecureReport> {
    let clients = args.one_client_count()?;
    let plain = one_run(config, args, &dir.join("plain"), None).await?;
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir)?;
    let (tls, ca) = certificates(&tls_dir)?;
    let secure = one_run(config, args, &tls_dir, Some((tls, ca))).await?;
    Ok(SecureReport {
        clients,
        plain,
        tls: secure,
    })
}

async fn one_run(
    config: &Config,
    args: &BenchArgs,
    dir: &Path,
    tls: Option<(TlsConfig, String)>,
) -> anyhow::Result<SecureRun> {
    let mut config = config.clone();
    config.data_dir = dir.to_path_buf();
    let ca = tls.as_ref().map(|(_, ca)| ca.clone());
    config.tls = tls.map(|(files, _)| files);
    let mut local = start_local(config).await?;
    if let Some(ca) = ca {
        local.target.addr = local.target.addr.replacen("http://", "https://", 1);
        local.target.ca_pem = Some(ca);
    }
    let report = workload::drive(&local.target, args, Report::default(), true).await;
    local.stop().await?;
    let mut report = report?;
    Ok(SecureRun {
        rollback_alone: report.rollback_alone,
        promote_alone: report.promote_alone,
        load: report.loads.pop().unwrap_or_default(),
    })
}

/// A CA and a server certificate for `localhost` signed by it, written to
/// `dir`; returns the daemon's `[tls]` and the CA (PEM) clients trust.
fn certificates(dir: &Path) -> anyhow::Result<(TlsConfig, String)> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let cert = params.signed_by(&key, &ca)?;
    let files = TlsConfig {
        cert_file: dir.join("server.pem"),
        key_file: dir.join("server.key"),
        client_ca_file: None,
        reload_poll_ms: 60_000,
    };
    std::fs::write(&files.cert_file, cert.pem())?;
    std::fs::write(&files.key_file, key.serialize_pem())?;
    Ok((files, ca.pem()))
}

impl SecureReport {
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<34} {:>14} {:>14} {:>10}\n",
            "both with a bearer token", "plain text", "TLS", "change"
        );
        let mut ms = |label: &str, plain: f64, tls: f64| {
            out.push_str(&format!(
                "{label:<34} {plain:>11.3} ms {tls:>11.3} ms {:>+7.3} ms\n",
                tls - plain
            ));
        };
        let (p, t) = (&self.plain, &self.tls);
        ms(
            "rollback ack alone, p50",
            p.rollback_alone.p50_ms,
            t.rollback_alone.p50_ms,
        );
        ms(
            "rollback ack alone, p99",
            p.rollback_alone.p99_ms,
            t.rollback_alone.p99_ms,
        );
        ms(
            "promote ack alone, p99",
            p.promote_alone.p99_ms,
            t.promote_alone.p99_ms,
        );
        ms(
            "rollback ack under load, p99",
            p.load.rollback_under_load.p99_ms,
            t.load.rollback_under_load.p99_ms,
        );
        ms(
            "deploy latency, p99",
            p.load.deploy_latency.p99_ms,
            t.load.deploy_latency.p99_ms,
        );
        let (plain, tls) = (p.load.deploys_per_second, t.load.deploys_per_second);
        let change = if plain > 0.0 {
            (tls - plain) / plain * 100.0
        } else {
            0.0
        };
        out.push_str(&format!(
            "{:<34} {plain:>12.0}/s {tls:>12.0}/s {change:>+8.1} %\n",
            format!("deploys to READY ({} clients)", self.clients)
        ));
        out.push_str(&format!(
            "{:<34} {:>14.3} {:>14.3}\n",
            "CPU ms per deploy (whole process)", p.load.cpu_ms_per_deploy, t.load.cpu_ms_per_deploy
        ));
        out
    }
}
