//! Build logs on disk: `data_dir/builds/DEPLOYMENT.log`, one per build,
//! bounded in size (a log that grows past [`MAX_LOG_BYTES`] rotates into
//! `.old`, so the newest lines are kept) and in number (opening a log
//! removes the oldest beyond [`LOGS_KEPT`]; deployment ids sort by time).
//! `GetBuildLog` reads them back.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::model::DeploymentId;

/// Bytes one log file holds before it rotates; a build keeps at most twice
/// this.
pub const MAX_LOG_BYTES: u64 = 1 << 20;
/// Builds whose logs are kept.
pub const LOGS_KEPT: usize = 500;
/// Longer lines are cut (a build printing a minified file).
const MAX_LINE_BYTES: usize = 4096;

#[derive(Clone)]
pub struct BuildLogs {
    dir: PathBuf,
}

/// A build log being written. Writing is best effort: a full disk must not
/// fail the build, so errors are logged once and the lines still reach
/// watchers.
pub struct BuildLog {
    path: PathBuf,
    file: Option<File>,
    written: u64,
}

/// What [`BuildLogs::read`] found.
pub struct LogText {
    pub lines: Vec<String>,
    /// Older lines were dropped to keep the log bounded.
    pub truncated: bool,
}

impl BuildLogs {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("builds"),
        }
    }

    fn path(&self, id: &DeploymentId) -> PathBuf {
        self.dir.join(format!("{id}.log"))
    }

    /// Opens (appending: a build run again after a restart goes on in the
    /// same log) the log of `id`'s build, and removes the oldest logs
    /// beyond [`LOGS_KEPT`].
    pub fn open(&self, id: &DeploymentId) -> BuildLog {
        let path = self.path(id);
        let file = std::fs::create_dir_all(&self.dir)
            .and_then(|()| OpenOptions::new().create(true).append(true).open(&path));
        let file = match file {
            Ok(file) => Some(file),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write a build log");
                None
            }
        };
        let written = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        if let Err(e) = self.prune() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove old build logs");
        }
        BuildLog {
            path,
            file,
            written,
        }
    }

    fn prune(&self) -> std::io::Result<()> {
        let mut builds = BTreeSet::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.split('.').next()) {
                builds.insert(id.to_string());
            }
        }
        let excess = builds.len().saturating_sub(LOGS_KEPT);
        for id in builds.into_iter().take(excess) {
            for suffix in ["log", "log.old", "log.dropped"] {
                let _ = std::fs::remove_file(self.dir.join(format!("{id}.{suffix}")));
            }
        }
        Ok(())
    }

    /// The kept log of `id`'s build, or `None` if there is none.
    pub fn read(&self, id: &DeploymentId) -> Result<Option<LogText>, Error> {
        let path = self.path(id);
        let read = |path: &Path| match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::internal(format!(
                "cannot read the build log {}: {e}",
                path.display()
            ))),
        };
        let old = read(&path.with_extension("log.old"))?;
        let Some(current) = read(&path)? else {
            return Ok(None);
        };
        let mut lines = Vec::new();
        for bytes in old.iter().chain([&current]) {
            lines.extend(String::from_utf8_lossy(bytes).lines().map(str::to_string));
        }
        Ok(Some(LogText {
            lines,
            truncated: path.with_extension("log.dropped").exists(),
        }))
    }
}

impl BuildLog {
    pub fn line(&mut self, line: &str) {
        let line = cut(line);
        if self.written + line.len() as u64 + 1 > MAX_LOG_BYTES {
            self.rotate();
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        match file.write_all(&bytes) {
            Ok(()) => self.written += bytes.len() as u64,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "build log write failed; not writing it further");
                self.file = None;
            }
        }
    }

    fn rotate(&mut self) {
        let old = self.path.with_extension("log.old");
        if old.exists() {
            let _ = File::create(self.path.with_extension("log.dropped"));
        }
        let reopened = std::fs::rename(&self.path, &old).and_then(|()| {
            OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&self.path)
        });
        self.written = 0;
        self.file = reopened.ok();
    }
}

/// At most [`MAX_LINE_BYTES`], cut on a character boundary.
fn cut(line: &str) -> &str {
    if line.len() <= MAX_LINE_BYTES {
        return line;
    }
    let mut end = MAX_LINE_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_is_read_back_and_stays_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let logs = BuildLogs::new(dir.path());
        let id = DeploymentId::generate();
        let mut log = logs.open(&id);
        log.line("step 1");
        log.line("step 2");
        let text = logs.read(&id).expect("read").expect("a log");
        assert_eq!(text.lines, ["step 1", "step 2"]);
        assert!(!text.truncated);

        let long = "x".repeat(MAX_LINE_BYTES);
        for _ in 0..(3 * MAX_LOG_BYTES as usize / MAX_LINE_BYTES) {
            log.line(&long);
        }
        log.line("last");
        let text = logs.read(&id).expect("read").expect("a log");
        assert!(text.truncated);
        assert_eq!(text.lines.last().map(String::as_str), Some("last"));
        let kept: usize = text.lines.iter().map(|l| l.len() + 1).sum();
        assert!(kept as u64 <= 2 * MAX_LOG_BYTES, "{kept} bytes kept");
    }

    #[test]
    fn only_the_newest_logs_are_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let logs = BuildLogs::new(dir.path());
        // Ids sort by creation time; these are made in order.
        let id = |n: usize| DeploymentId::parse(&format!("dep_{n:016}"), "id").expect("an id");
        let first = id(0);
        logs.open(&first).line("first");
        let last = id(LOGS_KEPT);
        for n in 1..=LOGS_KEPT {
            logs.open(&id(n)).line("later");
        }
        assert!(logs.read(&first).expect("read").is_none());
        assert!(logs.read(&last).expect("read").is_some());
    }
}
