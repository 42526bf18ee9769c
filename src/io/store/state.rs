//! Whether the data file can be used, and the open database behind it.
//!
//! A store is `Writable`, `Unwritable` (a write failed: redb refuses every
//! later one on that handle, so the writer thread drops it and reopens the
//! file until a write goes through again) or `Damaged` (bytes that are not
//! what was written: the store never writes again and an operator must
//! look). Every redb error passes through [`storage`], which says which of
//! these it means.

use std::sync::{Arc, RwLock};

use redb::Database;
use tokio::sync::watch;

use crate::error::{Error, StorageFault};

/// What a store can do now. `None` in [`StoreState::fault`]: everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreState {
    pub fault: Option<StorageFault>,
}

impl StoreState {
    pub fn is_writable(&self) -> bool {
        self.fault.is_none()
    }

    pub fn is_damaged(&self) -> bool {
        matches!(self.fault, Some(StorageFault::Damaged(_)))
    }
}

/// Converts any redb error: damage and failed I/O become
/// [`Error::Storage`], anything else an internal error.
pub(crate) fn storage(e: impl Into<redb::Error>) -> Error {
    match e.into() {
        redb::Error::Corrupted(what) => Error::Storage(StorageFault::Damaged(what)),
        // A panic inside redb while it held a lock: most likely it met
        // bytes it could not make sense of.
        redb::Error::LockPoisoned(at) => Error::Storage(StorageFault::Damaged(format!(
            "the storage engine failed inside a lock ({at})"
        ))),
        redb::Error::Io(e) => Error::Storage(StorageFault::Unwritable(io_reason(&e))),
        redb::Error::PreviousIo | redb::Error::DatabaseClosed => Error::Storage(
            StorageFault::Unwritable("an earlier write to it failed".into()),
        ),
        other => Error::internal(format!("storage: {other}")),
    }
}

/// The words an operator searches for ("no space left on device").
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => "no space left on device".into(),
        Some(libc::EDQUOT) => "disk quota exceeded".into(),
        _ => format!("I/O error: {e}"),
    }
}

/// What every clone of a store shares with its writer thread.
pub(crate) struct Shared {
    /// `None` while the writer reopens the file after a failed write.
    db: RwLock<Option<Arc<Database>>>,
    state: watch::Sender<StoreState>,
}

impl Shared {
    pub(crate) fn new(db: Database) -> Self {
        Self {
            db: RwLock::new(Some(Arc::new(db))),
            state: watch::Sender::new(StoreState::default()),
        }
    }

    /// The open database, or why there is none.
    pub(crate) fn database(&self) -> Result<Arc<Database>, Error> {
        let slot = self
            .db
            .read()
            .map_err(|_| Error::internal("store handle lock poisoned"))?;
        match slot.as_ref() {
            Some(db) => Ok(db.clone()),
            None => Err(Error::Storage(self.fault().unwrap_or_else(|| {
                StorageFault::Unwritable("the data file is being reopened".into())
            }))),
        }
    }

    /// Takes the database out (to close it before reopening).
    pub(crate) fn take(&self) -> Option<Arc<Database>> {
        self.db.write().ok().and_then(|mut slot| slot.take())
    }

    pub(crate) fn put(&self, db: Database) {
        if let Ok(mut slot) = self.db.write() {
            *slot = Some(Arc::new(db));
        }
    }

    pub(crate) fn fault(&self) -> Option<StorageFault> {
        self.state.borrow().fault.clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<StoreState> {
        self.state.subscribe()
    }

    /// Records what an error says about the file. Damage is final; a
    /// failed write holds until the writer recovers.
    pub(crate) fn observe(&self, error: &Error) {
        let Error::Storage(fault) = error else {
            return;
        };
        self.state.send_if_modified(|state| {
            if state.is_damaged() || state.fault.as_ref() == Some(fault) {
                return false;
            }
            match fault {
                StorageFault::Damaged(what) => {
                    tracing::error!(damage = %what, "the data file is damaged; no more writes until it is checked (`deployd check`)");
                }
                StorageFault::Unwritable(reason) => {
                    tracing::error!(%reason, "the data file cannot be written; refusing changes until a write succeeds");
                }
            }
            state.fault = Some(fault.clone());
            true
        });
    }

    /// The writer wrote again after a failure.
    pub(crate) fn recovered(&self) {
        self.state.send_if_modified(|state| {
            if !matches!(state.fault, Some(StorageFault::Unwritable(_))) {
                return false;
            }
            tracing::info!("the data file can be written again");
            state.fault = None;
            true
        });
    }

    /// Runs a read, turning a panic (redb asserts on some damaged pages)
    /// into a damaged store rather than a dead handler, and noting damage.
    /// Only the writer decides the file is unwritable: it alone can tell
    /// when that ends.
    pub(crate) fn guard<T>(&self, read: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)) {
            Ok(result) => result,
            Err(panic) => Err(Error::Storage(StorageFault::Damaged(format!(
                "reading it panicked: {}",
                panic_message(panic.as_ref())
            )))),
        };
        if let Err(e @ Error::Storage(StorageFault::Damaged(_))) = &result {
            self.observe(e);
        }
        result
    }
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}
