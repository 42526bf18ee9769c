//! The storage backends under redb.
//!
//! [`GuardedBackend`] is the daemon's: redb's own file backend, plus a
//! switch (`DiskFaults`) that tests flip to make every write fail as a full
//! disk would, because a real full disk cannot be arranged in a test.
//!
//! [`ReadOnlyOverlay`] is `deployd check`'s: reads come from the file,
//! writes (redb's bookkeeping on open, a repair) land in memory and are
//! thrown away, so checking a file can never change it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// Faults injected into every write of a [`GuardedBackend`]. Shared by the
/// backends a store opens over its life (it reopens after a failed write),
/// so one switch covers them all.
#[derive(Debug, Default)]
pub struct DiskFaults {
    no_space: AtomicBool,
}

impl DiskFaults {
    /// While set, every write, resize and sync fails with `ENOSPC`.
    pub fn set_no_space(&self, on: bool) {
        self.no_space.store(on, Ordering::SeqCst);
    }

    fn check(&self) -> io::Result<()> {
        if self.no_space.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct GuardedBackend {
    inner: FileBackend,
    faults: std::sync::Arc<DiskFaults>,
}

impl GuardedBackend {
    pub fn new(
        file: File,
        faults: std::sync::Arc<DiskFaults>,
    ) -> Result<Self, redb::DatabaseError> {
        Ok(Self {
            inner: FileBackend::new(file)?,
            faults,
        })
    }
}

impl StorageBackend for GuardedBackend {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.faults.check()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.faults.check()?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.faults.check()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// Bytes written to a [`ReadOnlyOverlay`], by page-aligned block.
const BLOCK: u64 = 4096;

/// A file seen through a copy-on-write layer kept in memory: redb may write
/// (it marks a file open, and repairs one that needs it), but nothing ever
/// reaches the file. Only the blocks written are held, so checking a large
/// file costs little memory.
#[derive(Debug)]
pub struct ReadOnlyOverlay<B = FileBackend> {
    file: B,
    state: Mutex<Overlay>,
}

#[derive(Debug)]
struct Overlay {
    len: u64,
    blocks: BTreeMap<u64, Box<[u8]>>,
}

impl ReadOnlyOverlay {
    /// `file` may be opened read-only.
    pub fn new(file: File) -> Result<Self, redb::DatabaseError> {
        Self::over(FileBackend::new(file)?)
    }
}

impl<B: StorageBackend> ReadOnlyOverlay<B> {
    /// An overlay over any backend; only its reads and locks are used.
    pub fn over(file: B) -> Result<Self, redb::DatabaseError> {
        let len = file.len()?;
        Ok(Self {
            file,
            state: Mutex::new(Overlay {
                len,
                blocks: BTreeMap::new(),
            }),
        })
    }

    /// Blocks written so far (for tests: the file itself never changes).
    pub fn written_blocks(&self) -> usize {
        self.state.lock().map_or(0, |s| s.blocks.len())
    }

    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, Overlay>> {
        self.state
            .lock()
            .map_err(|_| io::Error::other("overlay lock poisoned"))
    }

    /// The block at `index`, from the overlay or else the file (zeros past
    /// the file's end, as a grown file reads).
    fn block(&self, overlay: &Overlay, index: u64) -> io::Result<Box<[u8]>> {
        if let Some(block) = overlay.blocks.get(&index) {
            return Ok(block.clone());
        }
        let mut block = vec![0u8; BLOCK as usize].into_boxed_slice();
        let file_len = self.file.len()?;
        let start = index * BLOCK;
        if start < file_len {
            let n = (file_len - start).min(BLOCK) as usize;
            self.file.read(start, &mut block[..n])?;
        }
        Ok(block)
    }
}

impl<B: StorageBackend> StorageBackend for ReadOnlyOverlay<B> {
    fn len(&self) -> io::Result<u64> {
        Ok(self.lock()?.len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let overlay = self.lock()?;
        let end = offset + out.len() as u64;
        if end > overlay.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the file",
            ));
        }
        let first = offset / BLOCK;
        let last = end.div_ceil(BLOCK);
        let untouched = overlay.blocks.range(first..last).next().is_none();
        let file_len = self.file.len()?;
        if untouched && end <= file_len {
            return self.file.read(offset, out);
        }
        let mut pos = offset;
        while pos < end {
            let index = pos / BLOCK;
            let within = (pos % BLOCK) as usize;
            let n = ((BLOCK as usize) - within).min((end - pos) as usize);
            let block = self.block(&overlay, index)?;
            let at = (pos - offset) as usize;
            out[at..at + n].copy_from_slice(&block[within..within + n]);
            pos += n as u64;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut overlay = self.lock()?;
        if len < overlay.len {
            // Bytes past the new end must read as zeros if it grows again.
            let keep = len.div_ceil(BLOCK);
            overlay.blocks.retain(|index, _| *index < keep);
            if !len.is_multiple_of(BLOCK) {
                let index = len / BLOCK;
                let mut block = self.block(&overlay, index)?;
                block[(len % BLOCK) as usize..].fill(0);
                overlay.blocks.insert(index, block);
            }
        }
        overlay.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut overlay = self.lock()?;
        let end = offset + data.len() as u64;
        let mut pos = offset;
        while pos < end {
            let index = pos / BLOCK;
            let within = (pos % BLOCK) as usize;
            let n = ((BLOCK as usize) - within).min((end - pos) as usize);
            let mut block = self.block(&overlay, index)?;
            let at = (pos - offset) as usize;
            block[within..within + n].copy_from_slice(&data[at..at + n]);
            overlay.blocks.insert(index, block);
            pos += n as u64;
        }
        overlay.len = overlay.len.max(end);
        Ok(())
    }

    fn close(&self) -> io::Result<()> {
        self.file.close()
    }

    // An exclusive lock is taken as a shared one on the file: that works on
    // a read-only descriptor, still conflicts with a daemon holding the
    // file, and lets two checks run side by side.
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}

/// A backend that refuses every write, resize and sync: put under a
/// [`ReadOnlyOverlay`] it proves the overlay never writes through, even
/// where permissions would not stop it (tests run as root).
#[derive(Debug)]
pub struct WritesForbidden(pub FileBackend);

impl StorageBackend for WritesForbidden {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read(offset, out)
    }

    fn set_len(&self, _len: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "set_len is forbidden",
        ))
    }

    fn sync_data(&self) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "sync is forbidden",
        ))
    }

    fn write(&self, _offset: u64, _data: &[u8]) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "write is forbidden",
        ))
    }

    fn close(&self) -> io::Result<()> {
        self.0.close()
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.0.try_lock_shared_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.query_lock_range(start, end)
    }
}
