//! Gives memory back to the operating system after many streams close.
//! Freed stream buffers go back to glibc's malloc, which keeps them in its
//! arenas: without this, the daemon's RSS stays at its peak number of
//! watch streams forever. Trimming costs a walk of the heap, so it runs
//! only after the open stream count fell to half a large peak.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::Phase;

const EVERY: Duration = Duration::from_secs(5);
/// Below this peak there is too little to give back to be worth a walk.
const MIN_PEAK: usize = 1024;

/// Runs until the connections' owner is gone.
pub(super) async fn after_streams_fall(streams: Arc<Gauge>, mut phase: watch::Receiver<Phase>) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = phase.changed() => if changed.is_err() { return },
        }
        let open = streams.open.load(Ordering::Relaxed);
        let peak = streams.peak.load(Ordering::Relaxed);
        if peak >= MIN_PEAK && open <= peak / 2 {
            let _ = tokio::task::spawn_blocking(trim).await;
            tracing::debug!(peak, open, "returned freed memory to the system");
            streams.peak.store(open, Ordering::Relaxed);
        }
    }
}

/// Open streams of every connection, and their peak since the last trim
/// (kept exactly, so a burst between two ticks still counts).
#[derive(Debug, Default)]
pub struct Gauge {
    open: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    pub(super) fn opened(&self) {
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(open, Ordering::Relaxed);
    }

    pub(super) fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only releases free memory held by the allocator;
    // it takes the allocator's own locks and touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
