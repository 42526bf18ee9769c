//! The thread the actor tree runs on: a single-threaded tokio runtime of
//! its own, at raised priority (`io::thread_priority`).
//!
//! Why: under deploy load the main runtime always has a queue of ready
//! tasks (connections, request decoding, watch streams). A message to a
//! project actor used to wake a task that waited its turn in that queue:
//! 1 to 8 ms at the median with 64 to 256 deploying clients, the largest
//! part of a rollback's acknowledgement. Here the queue holds only actor
//! work (decisions of a few microseconds each, and the children's light
//! async I/O), so a rollback reaches its project actor within tens of
//! microseconds whatever the deploy load.

use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

pub(crate) struct ActorThread {
    handle: Handle,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ActorThread {
    pub(crate) fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("deployd-actors".into())
            .spawn(move || {
                crate::io::thread_priority::raise("actors");
                // Returns when told to stop or when the sender is dropped;
                // dropping the runtime then drops every task left on it.
                let _ = runtime.block_on(stopped);
            })?;
        Ok(Self {
            handle,
            stop: Mutex::new(Some(stop)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Where the actors are spawned.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Stops the runtime, dropping whatever still runs on it (the actors
    /// have stopped by then), and waits at most `limit` for the thread.
    pub(crate) async fn stop(&self, limit: Duration) {
        self.signal();
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        let Some(thread) = thread else {
            return;
        };
        let joined = tokio::task::spawn_blocking(move || thread.join());
        match tokio::time::timeout(limit, joined).await {
            Ok(Ok(Ok(()))) => {}
            Ok(_) => tracing::error!("the actor thread panicked"),
            Err(_) => tracing::warn!("the actor thread did not stop in time"),
        }
    }

    fn signal(&self) {
        if let Some(stop) = self.stop.lock().ok().and_then(|mut s| s.take()) {
            let _ = stop.send(());
        }
    }
}

impl Drop for ActorThread {
    fn drop(&mut self) {
        self.signal();
    }
}
