//! The single writer: one OS thread owns every redb write transaction.
//!
//! Actors hand over a submission (mutations plus a completion callback) and
//! go on at once; they never wait on the disk. The thread takes everything
//! queued, applies it in one transaction and commits it durably (group
//! commit). Only then does it run the callbacks, which is where replies to
//! gRPC callers and watch events are sent: nothing is acknowledged before the
//! commit that holds it is on disk.
//!
//! A commit that fails for I/O (a full disk) leaves redb's handle refusing
//! every later write, so the thread closes it and reopens the file, first
//! after 100 ms, then backing off to once a second, until a write goes
//! through; meanwhile every submission is refused at once with the reason.
//! Damage (a corrupt page, a record that does not decode, a panic while
//! applying) stops writing for good: nothing more goes into that file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::Database;

use crate::error::{Error, StorageFault};
use crate::io::store::commit_tables::CommitTables;
use crate::io::store::mutation::{Applied, Mutation, apply};
use crate::io::store::state::{Shared, panic_message, storage};

/// Called on the writer thread after the commit (or its failure), with the
/// submission's mutations handed back so callers can publish what was
/// stored without cloning it first. Keep it short: send on a channel, never
/// block.
pub type Completion = Box<dyn FnOnce(Result<(), Error>, Vec<Mutation>) + Send>;

pub(crate) struct Submission {
    /// Position in the writer's queues; ids are handed out in the order
    /// submissions are queued, across both queues.
    pub(crate) id: u64,
    pub(crate) mutations: Vec<Mutation>,
    pub(crate) done: Completion,
}

/// What the ordinary queue carries: a submission, or word that an urgent
/// one with that id waits in the urgent queue. The word wakes a writer
/// blocked on the ordinary queue, and its place in that queue tells the
/// writer when every id up to it has been taken.
pub(crate) enum Queued {
    Ordinary(Submission),
    UrgentWaiting(u64),
}

impl Queued {
    fn id(&self) -> u64 {
        match self {
            Queued::Ordinary(submission) => submission.id,
            Queued::UrgentWaiting(id) => *id,
        }
    }
}

/// The sending side of the writer's two queues. Urgent submissions
/// (rollback, promote) go into a queue of their own that the writer empties
/// before every commit, so a switch never waits behind the deploy steps
/// queued before it, only for the commit already under way.
pub(crate) struct Queues {
    last_id: u64,
    ordinary: mpsc::Sender<Queued>,
    urgent: mpsc::Sender<Submission>,
}

impl Queues {
    /// Queues a submission and returns its id, or hands it back when the
    /// writer is gone.
    pub(crate) fn send(
        &mut self,
        mutations: Vec<Mutation>,
        done: Completion,
        urgent: bool,
    ) -> Result<u64, Submission> {
        self.last_id += 1;
        let id = self.last_id;
        let submission = Submission {
            id,
            mutations,
            done,
        };
        if !urgent {
            return match self.ordinary.send(Queued::Ordinary(submission)) {
                Ok(()) => Ok(id),
                Err(mpsc::SendError(Queued::Ordinary(submission))) => Err(submission),
                // Only ordinary submissions were sent just above.
                Err(mpsc::SendError(Queued::UrgentWaiting(_))) => Ok(id),
            };
        }
        // The submission first, then the word: a writer that sees the word
        // finds the submission.
        self.urgent.send(submission).map_err(|e| e.0)?;
        // The writer holds both receivers until it exits, so this fails only
        // if it died, and with it whatever it had queued.
        let _ = self.ordinary.send(Queued::UrgentWaiting(id));
        Ok(id)
    }
}

/// Upper bound on ordinary submissions per commit. It bounds how long an
/// urgent submission waits for the commit under way, which grows with the
/// pages the commit writes and syncs: at 256 deploying clients, commits of
/// about 35 steps (no bound) kept a switch waiting 3.6 ms at the median and
/// 14 ms at p99 for the commit ahead of it; at most 32 steps, 3.3 and
/// 7.4 ms. The price is more commits when the queue is long: about 20 %
/// fewer deploys per second at 256 clients, none at 64 (README,
/// Performance).
const MAX_ORDINARY_PER_COMMIT: usize = 32;

/// Counters for the group commit: how many submissions share a commit.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Every submission with an id up to this one is durable (or failed).
    pub settled_through: AtomicU64,
    pub commits: AtomicU64,
    pub submissions: AtomicU64,
    pub failed_commits: AtomicU64,
    /// Submissions a commit carried but refused on their merits
    /// (`ALREADY_EXISTS`, ...): they wrote nothing.
    pub rejected: AtomicU64,
    /// Commit latency and operations per commit, for Prometheus.
    pub metrics: crate::metrics::StoreMetrics,
}

impl WriterStats {
    /// Submissions whose writes landed (committed and not rejected).
    pub fn landed(&self) -> u64 {
        self.submissions.load(Ordering::Relaxed) - self.rejected.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.commits.load(Ordering::Relaxed),
            self.submissions.load(Ordering::Relaxed),
            self.failed_commits.load(Ordering::Relaxed),
        )
    }
}

/// Opens the data file again after a failed write (`None`: a store in
/// memory, which has nothing to reopen).
pub(crate) type Reopen = Box<dyn Fn() -> Result<Database, Error> + Send>;

/// The first retry after a failed write, and the longest wait between two.
const FIRST_PROBE: Duration = Duration::from_millis(100);
const MAX_PROBE: Duration = Duration::from_secs(1);

pub(crate) fn spawn(
    shared: Arc<Shared>,
    reopen: Option<Reopen>,
    stats: Arc<WriterStats>,
) -> std::io::Result<(Queues, JoinHandle<()>)> {
    let (ordinary, ordinary_rx) = mpsc::channel::<Queued>();
    let (urgent, urgent_rx) = mpsc::channel::<Submission>();
    let handle = std::thread::Builder::new()
        .name("deployd-store-writer".into())
        .spawn(move || {
            crate::io::thread_priority::raise("store writer");
            let mut writer = Writer {
                shared: &shared,
                reopen,
                stats: &stats,
                next_probe: Instant::now(),
                probe_wait: FIRST_PROBE,
            };
            writer.run(&ordinary_rx, &urgent_rx);
        })?;
    let queues = Queues {
        last_id: 0,
        ordinary,
        urgent,
    };
    Ok((queues, handle))
}

struct Writer<'a> {
    shared: &'a Shared,
    reopen: Option<Reopen>,
    stats: &'a WriterStats,
    /// While unwritable: when to try the file again, and the wait after.
    next_probe: Instant,
    probe_wait: Duration,
}

impl Writer<'_> {
    /// Runs until every sender is dropped and the queues are drained.
    ///
    /// Urgent submissions (rollback, promote) are committed first, in a short
    /// commit of their own, ahead of every ordinary submission still queued.
    /// That reorders only between different senders: a sender marks a
    /// submission urgent only when none of its earlier ones is still queued
    /// (`Store::submit_urgent`).
    fn run(&mut self, ordinary: &mpsc::Receiver<Queued>, urgent: &mpsc::Receiver<Submission>) {
        loop {
            let first = if self.recovering() {
                let wait = self.next_probe.saturating_duration_since(Instant::now());
                match ordinary.recv_timeout(wait) {
                    Ok(first) => Some(first),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match ordinary.recv() {
                    Ok(first) => Some(first),
                    Err(_) => break,
                }
            };
            if self.recovering() && Instant::now() >= self.next_probe {
                self.try_recover();
            }
            let Some(first) = first else {
                continue;
            };
            let mut last_id = 0;
            let mut batch = Vec::new();
            let mut next = Some(first);
            while let Some(queued) = next {
                last_id = queued.id();
                if let Queued::Ordinary(submission) = queued {
                    batch.push(submission);
                }
                next = if batch.len() < MAX_ORDINARY_PER_COMMIT {
                    ordinary.try_recv().ok()
                } else {
                    None
                };
            }
            // After the ordinary queue: every urgent submission with an id
            // below `last_id` was queued before it and is found now, so once
            // both batches are committed, every id up to `last_id` is.
            let urgent: Vec<Submission> = urgent.try_iter().collect();
            if let Some(fault) = self.shared.fault() {
                self.refuse(urgent.into_iter().chain(batch), &fault, last_id);
                continue;
            }
            if !urgent.is_empty() {
                let settle = batch.is_empty().then_some(last_id);
                self.commit_batch(urgent, settle);
            }
            if batch.is_empty() {
                // Only word of urgent submissions committed before.
                self.stats.settled_through.store(last_id, Ordering::Release);
                continue;
            }
            match self.shared.fault() {
                None => self.commit_batch(batch, Some(last_id)),
                Some(fault) => self.refuse(batch, &fault, last_id),
            }
        }
    }

    /// Whether the file is waiting to be written again (damage never is).
    fn recovering(&self) -> bool {
        self.reopen.is_some() && matches!(self.shared.fault(), Some(StorageFault::Unwritable(_)))
    }

    /// Closes the handle redb poisoned, opens the file again (redb repairs
    /// what the failed commit left) and commits an empty transaction to
    /// prove writes go through. On failure, waits longer before the next
    /// try.
    fn try_recover(&mut self) {
        let Some(reopen) = &self.reopen else {
            return;
        };
        // The old handle must be closed first: the file's lock allows one.
        // A read still running on it keeps it open; the next try then
        // succeeds.
        drop(self.shared.take());
        let outcome = reopen().and_then(|db| {
            let txn = db.begin_write().map_err(storage)?;
            txn.commit().map_err(storage)?;
            Ok(db)
        });
        match outcome {
            Ok(db) => {
                self.shared.put(db);
                self.shared.recovered();
                self.probe_wait = FIRST_PROBE;
            }
            Err(e) => {
                tracing::debug!(error = %e, "the data file still cannot be written");
                self.probe_wait = (self.probe_wait * 2).min(MAX_PROBE);
                self.next_probe = Instant::now() + self.probe_wait;
            }
        }
    }

    fn refuse(
        &self,
        batch: impl IntoIterator<Item = Submission>,
        fault: &StorageFault,
        last_id: u64,
    ) {
        self.stats.settled_through.store(last_id, Ordering::Release);
        for submission in batch {
            complete(submission, Err(Error::Storage(fault.clone())));
        }
    }

    fn commit_batch(&mut self, batch: Vec<Submission>, settle: Option<u64>) {
        let count = batch.len() as u64;
        let started = Instant::now();
        let outcome = match self.shared.database() {
            Ok(db) => apply_batch(&db, &batch),
            Err(e) => Err(e),
        };
        if let Some(last_id) = settle {
            self.stats.settled_through.store(last_id, Ordering::Release);
        }
        match outcome {
            Ok(outcomes) => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.stats.submissions.fetch_add(count, Ordering::Relaxed);
                let metrics = &self.stats.metrics;
                metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                metrics.operations_per_commit.observe(count as f64);
                for (submission, outcome) in batch.into_iter().zip(outcomes) {
                    complete(
                        submission,
                        match outcome {
                            Applied::Done => Ok(()),
                            Applied::Rejected(e) => {
                                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                                Err(e)
                            }
                        },
                    );
                }
            }
            Err(e) => {
                self.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, submissions = count, "commit failed");
                self.shared.observe(&e);
                if self.recovering() {
                    self.next_probe = Instant::now() + FIRST_PROBE;
                    self.probe_wait = FIRST_PROBE;
                }
                let answer = match e {
                    Error::Storage(fault) => Error::Storage(fault),
                    _ => Error::Unavailable("the change could not be stored; retry".into()),
                };
                for submission in batch {
                    complete(submission, Err(answer.clone()));
                }
            }
        }
    }
}

/// Applies and commits a batch. A panic inside (redb asserts on some
/// damaged pages) is damage, not a dead writer thread.
fn apply_batch(db: &Database, batch: &[Submission]) -> Result<Vec<Applied>, Error> {
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let txn = db.begin_write().map_err(storage)?;
        let tables = CommitTables::new(&txn);
        let mut outcomes = Vec::with_capacity(batch.len());
        for submission in batch {
            outcomes.push(apply(&tables, &submission.mutations)?);
        }
        tables.close();
        txn.commit().map_err(storage)?;
        Ok(outcomes)
    }));
    attempt.unwrap_or_else(|panic| {
        Err(Error::Storage(StorageFault::Damaged(format!(
            "writing to it panicked: {}",
            panic_message(panic.as_ref())
        ))))
    })
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex, mpsc};
    use std::time::{Duration, Instant};

    use super::MAX_ORDINARY_PER_COMMIT;
    use crate::io::store::Store;

    /// Which submissions completed, in order (`None`: the urgent one).
    type Completed = Arc<Mutex<Vec<Option<usize>>>>;

    fn record(completed: &Completed, which: Option<usize>) -> super::Completion {
        let completed = Arc::clone(completed);
        Box::new(move |result, _| {
            assert!(result.is_ok(), "{result:?}");
            completed.lock().unwrap().push(which);
        })
    }

    /// The writer is held inside the completion of a first commit while
    /// more than a commit's worth of deploy steps and then one switch are
    /// queued behind it.
    #[test]
    fn an_urgent_submission_overtakes_every_ordinary_one_queued_before_it() {
        let (store, writer) = Store::in_memory().unwrap();
        let (held_tx, held) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        store.submit(
            Vec::new(),
            Box::new(move |_, _| {
                held_tx.send(()).unwrap();
                released.recv().unwrap();
            }),
        );
        held.recv().unwrap();
        let completed = Completed::default();
        let ordinary = 2 * MAX_ORDINARY_PER_COMMIT + 1;
        for i in 0..ordinary {
            store.submit(Vec::new(), record(&completed, Some(i)));
        }
        let urgent_id = store.submit_urgent(Vec::new(), record(&completed, None));
        let commits_before = store.stats().commits.load(Ordering::Relaxed);
        release.send(()).unwrap();
        let waited = Instant::now();
        while completed.lock().unwrap().len() < ordinary + 1 {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "the writer stalled"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // The switch alone, then the steps in commits of at most MAX each.
        let commits = store.stats().commits.load(Ordering::Relaxed);
        assert_eq!(commits - commits_before, 4);
        assert_eq!(store.settled_through(), urgent_id);
        drop(store);
        writer.join();
        let completed = completed.lock().unwrap();
        assert_eq!(completed.len(), ordinary + 1);
        assert_eq!(completed[0], None, "the switch committed first");
        let steps: Vec<usize> = completed[1..].iter().map(|c| c.unwrap()).collect();
        assert_eq!(
            steps,
            (0..ordinary).collect::<Vec<_>>(),
            "steps keep their order"
        );
    }
}
