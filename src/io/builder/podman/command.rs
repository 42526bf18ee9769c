//! Runs one program of a build (git, podman) as an argv list, never through
//! a shell: every output line (stdout and stderr, as they come) goes to the
//! build's progress, the last few are kept for the error of a failure, and
//! dropping the future kills the process (a cancelled build stops).

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use crate::io::builder::{BuildError, Progress};

/// Lines of a failed command quoted in the deployment's error.
const ERROR_LINES: usize = 5;

pub struct Run<'a> {
    /// What the command does, for errors ("git fetch").
    pub what: &'a str,
    pub program: &'a Path,
    pub args: Vec<&'a OsStr>,
    pub dir: &'a Path,
}

/// Runs the command to its end; a non-zero exit is an error that quotes
/// the command's last lines.
pub async fn run(command: Run<'_>, progress: Progress<'_>) -> Result<(), BuildError> {
    let mut child = Command::new(command.program)
        .args(&command.args)
        .current_dir(command.dir)
        // Never wait for a password: a repository that needs one fails.
        .env("GIT_TERMINAL_PROMPT", "0")
        // Only the transports the repository forms allow (no ext::).
        .env("GIT_ALLOW_PROTOCOL", "https:ssh:file")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            BuildError(format!(
                "{}: cannot run {}: {e}",
                command.what,
                command.program.display()
            ))
        })?;
    let tail = std::sync::Mutex::new(VecDeque::with_capacity(ERROR_LINES));
    let line = |bytes: Vec<u8>| {
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim_end_matches('\r');
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == ERROR_LINES {
                tail.pop_front();
            }
            tail.push_back(text.to_string());
        }
        progress(text.to_string());
    };
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    tokio::join!(lines(stdout, &line), lines(stderr, &line));
    let status = child
        .wait()
        .await
        .map_err(|e| BuildError(format!("{}: {e}", command.what)))?;
    if status.success() {
        return Ok(());
    }
    let tail: Vec<String> = tail
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    let mut message = format!("{} failed ({status})", command.what);
    for line in tail {
        message.push('\n');
        message.push_str(&line);
    }
    Err(BuildError(message))
}

async fn lines(stream: Option<impl AsyncRead + Unpin>, line: &impl Fn(Vec<u8>)) {
    let Some(stream) = stream else {
        return;
    };
    let mut segments = BufReader::new(stream).split(b'\n');
    while let Ok(Some(bytes)) = segments.next_segment().await {
        line(bytes);
    }
}
