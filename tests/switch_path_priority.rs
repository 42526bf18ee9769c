//! `switch_path_priority = "realtime"` reaches the threads a switch passes
//! through. In a test binary of its own: the policy is chosen once per
//! process, and no other daemon here should get real-time threads.

mod common;

use common::*;
use deployd::config::ThreadPriority;

/// The scheduling policy of every thread of this process whose name starts
/// with `prefix` (names are cut to 15 bytes by the kernel).
fn policies(prefix: &str) -> Vec<i32> {
    let mut found = Vec::new();
    let tasks = std::fs::read_dir("/proc/self/task").expect("procfs");
    for task in tasks.flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !name.trim_end().starts_with(prefix) {
            continue;
        }
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // SAFETY: takes a thread id, no pointers.
        found.push(unsafe { libc::sched_getscheduler(tid) });
    }
    found
}

#[tokio::test]
async fn realtime_runs_the_writer_the_actors_and_the_switch_lane_as_fifo() {
    let mut config = fast_config();
    config.switch_listen = Some(([127, 0, 0, 1], 0).into());
    config.switch_path_priority = ThreadPriority::Realtime;
    let daemon = TestDaemon::start_with(config).await;
    // The daemon works as usual.
    let project = daemon.project("acme", "web").await;
    let (old, live) = daemon.two_production_deploys(&project.id).await;
    daemon.rollback(&live, &old).await.expect("rollback");

    // SAFETY: no arguments.
    let root = unsafe { libc::geteuid() } == 0;
    for thread in ["deployd-store-w", "deployd-actors", "deployd-switch-"] {
        let found = policies(thread);
        assert!(!found.is_empty(), "no thread named {thread}*");
        let expected = if root {
            libc::SCHED_FIFO
        } else {
            println!("not root: {thread} falls back to the ordinary policy");
            libc::SCHED_OTHER
        };
        assert!(
            found.iter().all(|policy| *policy == expected),
            "{thread}: {found:?}"
        );
    }
    // Threads that are not on the switch path (this test's own) keep the
    // ordinary policy.
    // SAFETY: pid 0 is the calling thread.
    assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
}
