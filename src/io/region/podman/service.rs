//! The podman API service the driver talks to: either one the operator
//! runs (a configured socket), or one the daemon starts itself on a socket
//! under its data directory, reusing one that already answers there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use super::libpod::Libpod;
use crate::io::region::DriverError;

/// How long a freshly started service may take to answer.
const START_LIMIT: Duration = Duration::from_secs(15);

pub struct Service {
    libpod: Libpod,
    /// `None`: the socket is the operator's; never start anything.
    podman: Option<PathBuf>,
    child: Mutex<Option<Child>>,
}

impl Service {
    /// A service the operator runs at `socket`.
    pub fn external(socket: &Path) -> Self {
        Self {
            libpod: Libpod::new(socket),
            podman: None,
            child: Mutex::new(None),
        }
    }

    /// A service this daemon starts (with the `podman` binary) at `socket`
    /// when nothing answers there.
    pub fn owned(socket: &Path, podman: &Path) -> Self {
        Self {
            libpod: Libpod::new(socket),
            podman: Some(podman.to_path_buf()),
            child: Mutex::new(None),
        }
    }

    /// The client, once a service answers.
    pub async fn client(&self) -> Result<&Libpod, DriverError> {
        if self.libpod.ping().await {
            return Ok(&self.libpod);
        }
        let Some(podman) = &self.podman else {
            return Err(DriverError::transient(format!(
                "podman does not answer at {}",
                self.libpod.socket().display()
            )));
        };
        let mut child = self.child.lock().await;
        // Another call may have started it while this one waited.
        if self.libpod.ping().await {
            return Ok(&self.libpod);
        }
        let socket = self.libpod.socket();
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                DriverError::transient(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        // A stale socket file from a service that died blocks the bind.
        let _ = std::fs::remove_file(socket);
        let started = Command::new(podman)
            .arg("system")
            .arg("service")
            .arg("--time=0")
            .arg(format!("unix://{}", socket.display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                DriverError::transient(format!("cannot start {}: {e}", podman.display()))
            })?;
        *child = Some(started);
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        while tokio::time::Instant::now() < deadline {
            if self.libpod.ping().await {
                tracing::info!(socket = %socket.display(), "started the podman API service");
                return Ok(&self.libpod);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(DriverError::transient(format!(
            "the podman service started at {} does not answer",
            socket.display()
        )))
    }
}
