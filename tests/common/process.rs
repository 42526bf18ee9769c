//! The real `deployd` binary as a child process, for tests that kill it or
//! send it signals.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

pub struct DaemonProcess {
    pub child: Child,
    pub addr: String,
}

impl DaemonProcess {
    /// Runs `deployd serve --config CONFIG` and waits until it serves.
    /// `None` if it died first (a fail point armed for recovery, say).
    pub async fn spawn(config: &Path) -> Option<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_deployd"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("DEPLOYD_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn deployd");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // `serve` prints this line once the daemon reports SERVING.
        let addr = loop {
            match tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    if let Some(addr) = line.split("listening on ").nth(1) {
                        break format!("http://{}", addr.trim());
                    }
                }
                _ => {
                    let status = child.wait().await.expect("wait");
                    assert!(!status.success(), "deployd exited before listening");
                    return None;
                }
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        assert!(
            serving(&addr).await,
            "deployd printed its address but is not SERVING"
        );
        Some(Self { child, addr })
    }

    /// SIGTERM through the `kill` program: an argv list, no shell.
    pub fn terminate(&self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.addr.clone())
            .expect("address")
            .connect()
            .await
            .expect("connect")
    }
}

pub async fn serving(addr: &str) -> bool {
    let Ok(channel) = Channel::from_shared(addr.to_string()) else {
        return false;
    };
    let Ok(channel) = channel.connect().await else {
        return false;
    };
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    matches!(
        health.check(tonic_health::pb::HealthCheckRequest::default()).await,
        Ok(r) if r.get_ref().status
            == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    )
}
