//! Opening the data file: created only where no file exists, verified
//! page by page at start, and refused (never recreated, never written) when
//! it is empty, not a redb database, or damaged.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, DatabaseError};

use super::guarded::{DiskFaults, GuardedBackend};
use super::state::panic_message;
use crate::error::Error;

/// The read cache of the opens that verify the file (at start, and
/// `deployd check`'s). The verification
/// reads every committed page once, so a cache only costs it: evicting from
/// the configured 64 MiB doubled the open's time (2.0-2.4 s against
/// 1.0-1.2 s with 1 MiB for a file of 1,000,000 deployments).
pub(super) const VERIFYING_CACHE_BYTES: usize = 1 << 20;

/// Opens `path` through a [`GuardedBackend`]. With `verify`, redb checks
/// the checksum of every committed page first (its cost grows with the
/// file: see README, "Damaged data file"), in an open of its own with a
/// small cache, closed before the file is opened for serving.
pub(crate) fn open_file(
    path: &Path,
    cache_bytes: usize,
    faults: &Arc<DiskFaults>,
    verify: bool,
) -> Result<Database, Error> {
    if verify {
        let began = std::time::Instant::now();
        let verified = open_once(path, VERIFYING_CACHE_BYTES, faults, true)?;
        // A clean close records the allocator state the verification
        // rebuilt, so the open below starts without walking the file again.
        verified.close().map_err(|e| {
            Error::internal(format!(
                "cannot close the data file {} after verifying it: {e}",
                path.display()
            ))
        })?;
        tracing::info!(
            file = %path.display(),
            verified_in_ms = began.elapsed().as_millis() as u64,
            "every page of the data file verified"
        );
    }
    open_once(path, cache_bytes, faults, false)
}

fn open_once(
    path: &Path,
    cache_bytes: usize,
    faults: &Arc<DiskFaults>,
    verify: bool,
) -> Result<Database, Error> {
    let cannot_open = |e: &dyn std::fmt::Display| {
        Error::internal(format!("cannot open the data file {}: {e}", path.display()))
    };
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => {
            let len = file.metadata().map_err(|e| cannot_open(&e))?.len();
            if len == 0 {
                return Err(Error::FailedPrecondition(format!(
                    "the data file {} is empty (0 bytes), so it is not a deployd database (a failed copy?); deployd creates a data file only where none exists: restore it from a backup, or remove it to start afresh",
                    path.display()
                )));
            }
            file
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| cannot_open(&e))?,
        Err(e) => return Err(cannot_open(&e)),
    };
    let backend = GuardedBackend::new(file, faults.clone()).map_err(|e| cannot_open(&e))?;
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Database::builder()
            .set_cache_size(cache_bytes)
            .set_check_integrity_on_open(verify)
            .create_with_backend(backend)
    }));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(DatabaseError::Storage(redb::StorageError::Corrupted(what)))) => {
            Err(damaged_file(path, &what))
        }
        Ok(Err(e)) => Err(cannot_open(&e)),
        Err(panic) => Err(damaged_file(
            path,
            &format!("opening it panicked: {}", panic_message(panic.as_ref())),
        )),
    }
}

/// The refusal to start on a damaged file: names the file and the next step.
pub(crate) fn damaged_file(path: &Path, what: &str) -> Error {
    let dir = path
        .parent()
        .map_or_else(|| ".".into(), |d| d.display().to_string());
    Error::FailedPrecondition(format!(
        "the data file {} is damaged ({what}); refusing to start. Run `deployd check --data-dir {dir}` (it never writes to the file) and restore a backup",
        path.display()
    ))
}
