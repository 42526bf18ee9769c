//! The real `deployd` binary as a child process, for tests that kill it or
//! send it signals.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use deployd::cli::AuthChannel;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

pub struct DaemonProcess {
    pub child: Child,
    pub addr: String,
    /// The admin token the config names (see [`admin_token_for`]).
    pub token: String,
}

impl DaemonProcess {
    /// Runs `deployd serve --config CONFIG` and waits until it serves.
    /// `None` if it died first (a fail point armed for recovery, say).
    pub async fn spawn(config: &Path) -> Option<Self> {
        let token = admin_token_for(config);
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
        if !serving(&addr).await {
            // A fail point armed for this run may kill the daemon as soon
            // as resumed work reaches it: that is a crash at start, as
            // above. A daemon still running must be SERVING.
            if let Ok(Some(status)) = child.try_wait() {
                assert!(!status.success(), "deployd exited after listening");
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(Some(status)) = child.try_wait() {
                assert!(!status.success(), "deployd exited after listening");
                return None;
            }
            panic!("deployd printed its address but is not SERVING");
        }
        Some(Self { child, addr, token })
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

    /// A connection whose calls carry the admin token.
    pub async fn channel(&self) -> AuthChannel {
        let channel = Channel::from_shared(self.addr.clone())
            .expect("address")
            .connect()
            .await
            .expect("connect");
        deployd::cli::with_token(channel, Some(&self.token)).expect("token")
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

/// Gives the config file at `config` an admin token: unless it names a
/// bootstrap token file already, one is made beside it (kept across
/// restarts) and an `[auth]` table naming it is appended. Returns the token.
pub fn admin_token_for(config: &Path) -> String {
    let text = std::fs::read_to_string(config).expect("read config");
    if let Some(line) = text
        .lines()
        .find(|l| l.trim_start().starts_with("bootstrap_token_file"))
    {
        let path = line.split('"').nth(1).expect("a quoted path");
        return std::fs::read_to_string(path)
            .expect("bootstrap token file")
            .trim()
            .to_string();
    }
    let path = config.with_extension("admin-token");
    if !path.exists() {
        let token = deployd::model::auth::NewToken::generate().text;
        std::fs::write(&path, token).expect("write token file");
    }
    let appended = format!(
        "{text}\n[auth]\nbootstrap_token_file = \"{}\"\n",
        path.display()
    );
    std::fs::write(config, appended).expect("write config");
    std::fs::read_to_string(&path)
        .expect("token file")
        .trim()
        .to_string()
}
