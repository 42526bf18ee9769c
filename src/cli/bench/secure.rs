//! `--compare-secure`: what TLS costs. The usual load (projects,
//! rollback/promote pairs alone, then deploying clients with a switching
//! client beside them) runs twice in one invocation, each time on a fresh
//! in-process daemon with its own data directory: first plain HTTP/2, then
//! TLS (`[tls]` with a certificate made for the run, ring provider). Both
//! runs carry a bearer token on every call: authentication cannot be
//! turned off in deployd, so this measures TLS on top of auth, and
//! `benches/hot_paths.rs` (`auth_check`) measures the token check itself.
//!
//! On a shared machine one pair of runs says little, so `--rounds N` runs
//! N pairs, alternating which goes first, and reports each figure's median
//! over the rounds.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde::Serialize;

use super::stats::Percentiles;
use super::workload::{self, LoadFigures};
use super::{BenchArgs, Report, start_local};
use crate::Config;
use crate::config::TlsConfig;

/// One run: plain text or TLS.
#[derive(Debug, Default, Serialize)]
pub struct SecureRun {
    pub rollback_alone: Percentiles,
    pub promote_alone: Percentiles,
    pub load: LoadFigures,
}

/// Every round's two runs.
#[derive(Debug, Default, Serialize)]
pub struct SecureReport {
    pub clients: usize,
    pub plain: Vec<SecureRun>,
    pub tls: Vec<SecureRun>,
}

pub async fn run(config: &Config, args: &BenchArgs, dir: &Path) -> anyhow::Result<SecureReport> {
    if args.rounds == 0 {
        anyhow::bail!("--rounds must be at least 1");
    }
    let mut report = SecureReport {
        clients: args.one_client_count()?,
        ..SecureReport::default()
    };
    for round in 0..args.rounds {
        let round_dir = dir.join(format!("round-{round}"));
        let tls_dir = round_dir.join("tls");
        std::fs::create_dir_all(&tls_dir)?;
        let tls = certificates(&tls_dir)?;
        let plain_dir = round_dir.join("plain");
        // Alternate the order, so a machine that gets busier or quieter
        // during the run favours neither side.
        if round % 2 == 0 {
            report
                .plain
                .push(one_run(config, args, &plain_dir, None).await?);
            report
                .tls
                .push(one_run(config, args, &tls_dir, Some(tls)).await?);
        } else {
            report
                .tls
                .push(one_run(config, args, &tls_dir, Some(tls)).await?);
            report
                .plain
                .push(one_run(config, args, &plain_dir, None).await?);
        }
    }
    Ok(report)
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
        // The switch lane serves the same TLS as the API.
        local.target.addr = local.target.addr.replacen("http://", "https://", 1);
        local.target.switch_addr = local
            .target
            .switch_addr
            .map(|lane| lane.replacen("http://", "https://", 1));
        local.target.tls = Some(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                .domain_name("localhost"),
        );
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

/// How a figure is read from a run.
type Figure = fn(&SecureRun) -> f64;

/// The median of one figure over the rounds.
fn median(runs: &[SecureRun], figure: impl Fn(&SecureRun) -> f64) -> f64 {
    let mut values: Vec<f64> = runs.iter().map(figure).collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

impl SecureReport {
    pub fn table(&self) -> String {
        let (p, t) = (&self.plain, &self.tls);
        let mut out = format!(
            "{:<34} {:>14} {:>14} {:>10}\n",
            format!("median of {} round(s), tokens", p.len()),
            "plain text",
            "TLS",
            "change"
        );
        let latencies: [(&str, Figure); 5] = [
            ("rollback ack alone, p50", |r| r.rollback_alone.p50_ms),
            ("rollback ack alone, p99", |r| r.rollback_alone.p99_ms),
            ("promote ack alone, p99", |r| r.promote_alone.p99_ms),
            ("rollback ack under load, p99", |r| {
                r.load.rollback_under_load.p99_ms
            }),
            ("deploy latency, p99", |r| r.load.deploy_latency.p99_ms),
        ];
        for (label, figure) in latencies {
            let (plain, tls) = (median(p, figure), median(t, figure));
            out.push_str(&format!(
                "{label:<34} {plain:>11.3} ms {tls:>11.3} ms {:>+7.3} ms\n",
                tls - plain
            ));
        }
        let deploys = |r: &SecureRun| r.load.deploys_per_second;
        let (plain, tls) = (median(p, deploys), median(t, deploys));
        let change = if plain > 0.0 {
            (tls - plain) / plain * 100.0
        } else {
            0.0
        };
        out.push_str(&format!(
            "{:<34} {plain:>12.0}/s {tls:>12.0}/s {change:>+8.1} %\n",
            format!("deploys to READY ({} clients)", self.clients)
        ));
        let cpu = |r: &SecureRun| r.load.cpu_ms_per_deploy;
        out.push_str(&format!(
            "{:<34} {:>14.3} {:>14.3}\n",
            "CPU ms per deploy (whole process)",
            median(p, cpu),
            median(t, cpu)
        ));
        if p.len() > 1 {
            let each = |runs: &[SecureRun]| {
                let rates: Vec<String> = runs
                    .iter()
                    .map(|r| format!("{:.0}", r.load.deploys_per_second))
                    .collect();
                rates.join(", ")
            };
            out.push_str(&format!(
                "deploys/s by round: plain {}; TLS {}\n",
                each(p),
                each(t)
            ));
        }
        out
    }
}
