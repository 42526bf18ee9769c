//! A higher scheduling priority for the few threads that must not wait
//! behind the async workers when the machine is busy: the store writer, the
//! actor thread and the switch lane.
//!
//! The policy is chosen once per process ([`choose`], from the config's
//! `switch_path_priority`, before those threads start): scheduling is a
//! property of the process's threads, not of one request.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::ThreadPriority;

static REALTIME: AtomicBool = AtomicBool::new(false);

/// Sets the policy threads that call [`raise`] from now on get.
pub fn choose(priority: ThreadPriority) {
    REALTIME.store(priority == ThreadPriority::Realtime, Ordering::Relaxed);
}

/// The policy [`raise`] applies now.
pub fn chosen() -> ThreadPriority {
    if REALTIME.load(Ordering::Relaxed) {
        ThreadPriority::Realtime
    } else {
        ThreadPriority::Nice
    }
}

/// Raises the calling thread's priority as chosen. Without `CAP_SYS_NICE`
/// the thread keeps what it can get: realtime falls back to nice -10 (a
/// warning, since it was asked for), nice -10 to the default (debug).
pub fn raise(thread: &str) {
    apply(chosen(), thread);
}

fn apply(priority: ThreadPriority, thread: &str) {
    #[cfg(target_os = "linux")]
    {
        if priority == ThreadPriority::Realtime {
            let param = libc::sched_param { sched_priority: 10 };
            // SAFETY: pid 0 is the calling thread; `param` outlives the call.
            let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
            if result == 0 {
                return;
            }
            tracing::warn!(
                thread,
                "cannot run at realtime priority (no CAP_SYS_NICE); using nice -10"
            );
        }
        // SAFETY: setpriority with PRIO_PROCESS and 0 affects only the
        // calling thread on Linux and takes no pointers.
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) };
        if result != 0 {
            tracing::debug!(thread, "keeps the default priority (no CAP_SYS_NICE)");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (priority, thread);
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The calling thread's scheduling policy and nice value.
    fn current() -> (i32, i32) {
        // SAFETY: both take no pointers and read the calling thread's own
        // settings.
        unsafe {
            (
                libc::sched_getscheduler(0),
                libc::getpriority(libc::PRIO_PROCESS, 0),
            )
        }
    }

    fn may_raise() -> bool {
        // SAFETY: no arguments.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn realtime_makes_the_thread_fifo_and_nice_lowers_its_nice_value() {
        // Threads of their own, so no other test's thread is changed.
        let realtime = std::thread::spawn(|| {
            apply(ThreadPriority::Realtime, "test");
            current()
        })
        .join()
        .unwrap();
        let nice = std::thread::spawn(|| {
            apply(ThreadPriority::Nice, "test");
            current()
        })
        .join()
        .unwrap();
        if may_raise() {
            assert_eq!(realtime.0, libc::SCHED_FIFO);
            assert_eq!(nice, (libc::SCHED_OTHER, -10));
        } else {
            println!("not root: only checking that nothing was raised without permission");
            assert_eq!(realtime.0, libc::SCHED_OTHER);
            assert_eq!(nice.0, libc::SCHED_OTHER);
        }
    }
}
