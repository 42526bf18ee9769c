//! `switch_path_priority`: how the threads a rollback or promote passes
//! through ask the kernel for priority (applied by `io::thread_priority`).

use serde::{Deserialize, Serialize};

/// The scheduling the switch path's threads ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadPriority {
    /// nice -10: the kernel favours them, but a thread that wakes may
    /// still wait for a busy core's current slice.
    #[default]
    Nice,
    /// `SCHED_FIFO` priority 10: they preempt every ordinary thread the
    /// moment they wake. Needs root or `CAP_SYS_NICE` (without it, nice
    /// -10). The kernel's real-time throttling (95 % of each second by
    /// default) still leaves other threads some time if one never blocks.
    Realtime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn switch_path_priority_is_nice_unless_the_file_says_realtime() {
        let parse = |text: &str| toml::from_str::<Config>(text);
        assert_eq!(
            parse("").unwrap().switch_path_priority,
            ThreadPriority::Nice
        );
        assert_eq!(
            parse("switch_path_priority = \"realtime\"")
                .unwrap()
                .switch_path_priority,
            ThreadPriority::Realtime
        );
        let error = parse("switch_path_priority = \"fastest\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("realtime"), "{error}");
    }
}
