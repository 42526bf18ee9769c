//! A higher scheduling priority for the few threads that must not wait
//! behind the async workers when the machine is busy: the store writer and
//! the switch lane.

/// Asks the kernel for nice -10 for the calling thread. Without
/// `CAP_SYS_NICE` the thread keeps the default priority (logged at debug).
pub fn raise(thread: &str) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority with PRIO_PROCESS and 0 affects only the
        // calling thread on Linux and takes no pointers.
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) };
        if result != 0 {
            tracing::debug!(thread, "keeps the default priority (no CAP_SYS_NICE)");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = thread;
}
