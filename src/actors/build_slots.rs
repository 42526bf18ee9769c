//! Build slots: at most `[builder] slots` builds run at once, across every
//! project. A build child waits here before it calls the builder; waiting
//! builds are served production first, then in arrival order, so a
//! production deploy never waits behind a queue of previews. A slot is a
//! [`Slot`] value: dropping it (the build ended, or its child was stopped
//! by a cancel) hands it to the next waiter, and a waiter that goes away
//! leaves the queue, so neither a cancel nor a crash of a child can leak one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// Who goes first among waiting builds: lower sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Production,
    Other,
}

#[derive(Clone)]
pub struct BuildSlots(Arc<Mutex<Queue>>);

struct Queue {
    free: usize,
    next: u64,
    waiting: BTreeMap<(Priority, u64), oneshot::Sender<()>>,
}

/// A held slot; dropping it gives it to the next waiter.
pub struct Slot(Arc<Mutex<Queue>>);

impl Drop for Slot {
    fn drop(&mut self) {
        release(&self.0);
    }
}

/// A place in the queue. Dropped before its turn it leaves the queue;
/// dropped just after being handed a slot it passes the slot on.
struct Waiter {
    queue: Arc<Mutex<Queue>>,
    key: (Priority, u64),
    turn: oneshot::Receiver<()>,
    /// Set once the slot it was handed became a [`Slot`].
    taken: bool,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        lock(&self.queue).waiting.remove(&self.key);
        self.turn.close();
        if self.turn.try_recv().is_ok() {
            release(&self.queue);
        }
    }
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // The queue is consistent after every statement, so a panic elsewhere
    // while it was held leaves nothing half done.
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hands a slot to the first waiter still there, or frees it.
fn release(queue: &Mutex<Queue>) {
    let mut queue = lock(queue);
    while let Some((_, turn)) = queue.waiting.pop_first() {
        if turn.send(()).is_ok() {
            return;
        }
    }
    queue.free += 1;
}

impl BuildSlots {
    pub fn new(slots: usize) -> Self {
        Self(Arc::new(Mutex::new(Queue {
            free: slots,
            next: 0,
            waiting: BTreeMap::new(),
        })))
    }

    /// A slot at once if one is free and nobody waits for one, else a
    /// place in the queue to wait in ([`Queued::wait`]).
    pub fn try_acquire(&self, priority: Priority) -> Result<Slot, Queued> {
        let mut queue = lock(&self.0);
        if queue.free > 0 && queue.waiting.is_empty() {
            queue.free -= 1;
            return Ok(Slot(self.0.clone()));
        }
        queue.next += 1;
        let key = (priority, queue.next);
        let (tx, rx) = oneshot::channel();
        queue.waiting.insert(key, tx);
        Err(Queued(Waiter {
            queue: self.0.clone(),
            key,
            turn: rx,
            taken: false,
        }))
    }

    /// Builds waiting for a slot now.
    pub fn waiting(&self) -> usize {
        lock(&self.0).waiting.len()
    }
}

/// A build waiting for a slot.
pub struct Queued(Waiter);

impl Queued {
    /// Waits for this build's turn. Dropping the future leaves the queue.
    pub async fn wait(mut self) -> Slot {
        // The sender stays in the queue until it is used (a waiter removes
        // it only when dropped), so this ends by being handed the slot.
        let _ = (&mut self.0.turn).await;
        self.0.taken = true;
        Slot(self.0.queue.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn production_goes_before_earlier_previews() {
        let slots = BuildSlots::new(1);
        let first = slots
            .try_acquire(Priority::Other)
            .ok()
            .expect("a free slot");
        let preview = slots.try_acquire(Priority::Other).err().expect("queued");
        let production = slots
            .try_acquire(Priority::Production)
            .err()
            .expect("queued");
        assert_eq!(slots.waiting(), 2);
        let preview = tokio::spawn(preview.wait());
        let production = tokio::spawn(production.wait());
        tokio::task::yield_now().await;
        drop(first);
        let held = production.await.expect("production gets the slot");
        assert!(!preview.is_finished());
        drop(held);
        let _held = preview.await.expect("then the preview");
        assert_eq!(slots.waiting(), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_leaks_no_slot() {
        let slots = BuildSlots::new(1);
        let first = slots
            .try_acquire(Priority::Other)
            .ok()
            .expect("a free slot");
        let gone = slots.try_acquire(Priority::Other).err().expect("queued");
        drop(gone);
        drop(first);
        let again = slots.try_acquire(Priority::Other);
        assert!(again.is_ok(), "the slot is free again");
    }

    #[tokio::test]
    async fn a_slot_handed_to_a_waiter_that_left_is_passed_on() {
        let slots = BuildSlots::new(1);
        let first = slots
            .try_acquire(Priority::Other)
            .ok()
            .expect("a free slot");
        let leaving = slots
            .try_acquire(Priority::Production)
            .err()
            .expect("queued");
        let next = slots.try_acquire(Priority::Other).err().expect("queued");
        drop(first); // handed to `leaving`, which never takes it
        drop(leaving);
        let _held = next.wait().await;
    }
}
