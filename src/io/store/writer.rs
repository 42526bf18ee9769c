//! The single writer: one OS thread owns every redb write transaction.
//!
//! Actors hand over a submission (mutations plus a completion callback) and
//! go on at once; they never wait on the disk. The thread takes everything
//! queued, applies it in one transaction and commits it durably (group
//! commit). Only then does it run the callbacks, which is where replies to
//! gRPC callers and watch events are sent: nothing is acknowledged before the
//! commit that holds it is on disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::Database;

use crate::error::Error;
use crate::io::store::mutation::{Applied, Mutation, apply};

/// Called on the writer thread after the commit (or its failure), with the
/// submission's mutations handed back so callers can publish what was
/// stored without cloning it first. Keep it short: send on a channel, never
/// block.
pub type Completion = Box<dyn FnOnce(Result<(), Error>, Vec<Mutation>) + Send>;

pub(crate) struct Submission {
    /// Position in the writer's queue; ids are handed out in queue order.
    pub(crate) id: u64,
    pub(crate) mutations: Vec<Mutation>,
    pub(crate) done: Completion,
    /// Committed ahead of the ordinary submissions queued with it (see
    /// [`run`]).
    pub(crate) urgent: bool,
}

/// Upper bound on submissions per commit, so one commit's latency stays
/// bounded under a flood.
const MAX_SUBMISSIONS_PER_COMMIT: usize = 1024;

/// Counters for the group commit: how many submissions share a commit.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Every submission with an id up to this one is durable (or failed).
    pub settled_through: AtomicU64,
    pub commits: AtomicU64,
    pub submissions: AtomicU64,
    pub failed_commits: AtomicU64,
}

impl WriterStats {
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.commits.load(Ordering::Relaxed),
            self.submissions.load(Ordering::Relaxed),
            self.failed_commits.load(Ordering::Relaxed),
        )
    }
}

pub(crate) fn spawn(
    db: Arc<Database>,
    stats: Arc<WriterStats>,
) -> std::io::Result<(mpsc::Sender<Submission>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<Submission>();
    let handle = std::thread::Builder::new()
        .name("deployd-store-writer".into())
        .spawn(move || {
            raise_priority();
            run(&db, &rx, &stats)
        })?;
    Ok((tx, handle))
}

/// Runs until every sender is dropped and the queue is drained.
///
/// Urgent submissions (rollback, promote) are committed first, in a short
/// commit of their own, instead of waiting inside a commit of hundreds of
/// deploy steps. That reorders only between different senders: a sender
/// marks a submission urgent only when none of its earlier ones is still
/// queued (`Store::submit_urgent`).
fn run(db: &Database, rx: &mpsc::Receiver<Submission>, stats: &WriterStats) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_SUBMISSIONS_PER_COMMIT {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let last_id = batch.last().map_or(0, |s| s.id);
        let (urgent, ordinary): (Vec<_>, Vec<_>) = batch.into_iter().partition(|s| s.urgent);
        if !urgent.is_empty() {
            // Ids below `last_id` may still be queued in `ordinary`, so the
            // settled mark only moves once they are committed too.
            let settle = ordinary.is_empty().then_some(last_id);
            commit_batch(db, urgent, stats, settle);
        }
        if !ordinary.is_empty() {
            commit_batch(db, ordinary, stats, Some(last_id));
        }
    }
}

fn commit_batch(db: &Database, batch: Vec<Submission>, stats: &WriterStats, settle: Option<u64>) {
    let count = batch.len() as u64;
    let outcome = apply_batch(db, &batch);
    if let Some(last_id) = settle {
        stats.settled_through.store(last_id, Ordering::Release);
    }
    match outcome {
        Ok(outcomes) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.submissions.fetch_add(count, Ordering::Relaxed);
            for (submission, outcome) in batch.into_iter().zip(outcomes) {
                complete(
                    submission,
                    match outcome {
                        Applied::Done => Ok(()),
                        Applied::Rejected(e) => Err(e),
                    },
                );
            }
        }
        Err(e) => {
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, submissions = count, "commit failed");
            for submission in batch {
                complete(
                    submission,
                    Err(Error::Unavailable(
                        "the change could not be stored; retry".into(),
                    )),
                );
            }
        }
    }
}

fn apply_batch(db: &Database, batch: &[Submission]) -> Result<Vec<Applied>, Error> {
    let storage = |e: &dyn std::fmt::Display| Error::internal(format!("storage: {e}"));
    let txn = db.begin_write().map_err(|e| storage(&e))?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for submission in batch {
        outcomes.push(apply(&txn, &submission.mutations)?);
    }
    txn.commit().map_err(|e| storage(&e))?;
    Ok(outcomes)
}

/// A panicking callback must not take the writer thread (and with it every
/// future commit) down.
fn complete(submission: Submission, result: Result<(), Error>) {
    let Submission {
        mutations, done, ..
    } = submission;
    let call = std::panic::AssertUnwindSafe(move || done(result, mutations));
    if std::panic::catch_unwind(call).is_err() {
        tracing::error!("a commit completion panicked");
    }
}

/// Every acknowledgement waits for this thread, so under CPU saturation it
/// should not queue behind request handling. Linux applies nice values per
/// thread; raising priority needs CAP_SYS_NICE, and without it the thread
/// simply keeps the default.
fn raise_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority has no memory effects; `who = 0` names the
        // calling thread.
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) };
        if result != 0 {
            tracing::debug!("store writer keeps the default priority (no CAP_SYS_NICE)");
        }
    }
}
