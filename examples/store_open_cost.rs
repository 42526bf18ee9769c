//! What verifying the data file at start costs: writes a data file of
//! `DEPLOYMENTS` deployments (once; kept for later runs), then times a
//! plain redb open, an open that checks every page (what `deployd serve`
//! does), the store's whole open, and `deployd check`.
//!
//! ```text
//! cargo run --release --example store_open_cost -- DIR [DEPLOYMENTS]
//! ```
//!
//! The file was just written or read, so it is in the page cache: the
//! figures are CPU cost; a cold cache adds one sequential read of the file.

use std::path::PathBuf;
use std::time::Instant;

use deployd::io::store::Store;
use deployd::io::store::check::check_file;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "store-open-cost".into()));
    let deployments: u64 = match args.next() {
        Some(n) => n.parse()?,
        None => 200_000,
    };
    let path = dir.join("deployd.redb");
    if !path.exists() {
        let began = Instant::now();
        deployd::cli::bench::prepare::prepare(
            &path,
            "deployd.local",
            &["us-east-1".to_string(), "eu-central-1".to_string()],
            100,
            deployments,
            0,
        )
        .await?;
        println!(
            "prepared {deployments} deployments in {:.1?}",
            began.elapsed()
        );
    }
    let mib = std::fs::metadata(&path)?.len() as f64 / (1024.0 * 1024.0);
    println!("file: {} ({mib:.0} MiB)", path.display());

    let began = Instant::now();
    drop(redb::Database::builder().open(&path)?);
    println!(
        "redb open, no verification:       {:>8.0?}",
        began.elapsed()
    );

    let began = Instant::now();
    drop(
        redb::Database::builder()
            .set_check_integrity_on_open(true)
            .open(&path)?,
    );
    println!(
        "redb open, every page verified:   {:>8.0?}",
        began.elapsed()
    );

    let began = Instant::now();
    let (store, writer) = Store::open(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    drop(store);
    writer.join();
    println!(
        "Store::open (what serve does):    {:>8.0?}",
        began.elapsed()
    );

    let began = Instant::now();
    let report = check_file(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "check_file (deployd check):       {:>8.0?} ({} deployments, sound: {})",
        began.elapsed(),
        report.deployments,
        report.is_sound()
    );
    Ok(())
}
