//! Named fault-injection points, compiled only with the `fail-points`
//! feature (tests enable it). A normal build has neither this module nor the
//! config key that arms it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FailAction {
    /// Panic the first `times` times the point is reached.
    Panic { times: u32 },
    /// Abort the process (no destructors, no flush: as close to `kill -9` as
    /// a process can do to itself) when the point is reached for the
    /// `after`-th time.
    Abort { after: u32 },
}

#[derive(Clone, Default)]
pub struct FailPoints(Arc<BTreeMap<String, (FailAction, Arc<AtomicU32>)>>);

impl FailPoints {
    pub fn new(config: &BTreeMap<String, FailAction>) -> Self {
        Self(Arc::new(
            config
                .iter()
                .map(|(name, action)| (name.clone(), (action.clone(), Arc::new(AtomicU32::new(0)))))
                .collect(),
        ))
    }

    /// How often the named point has been reached so far.
    pub fn hits(&self, name: &str) -> u32 {
        self.0
            .get(name)
            .map_or(0, |(_, count)| count.load(Ordering::SeqCst))
    }

    pub fn hit(&self, name: &str) {
        let Some((action, count)) = self.0.get(name) else {
            return;
        };
        match action {
            FailAction::Panic { times } => {
                if count.fetch_add(1, Ordering::SeqCst) < *times {
                    panic!("fail point {name} reached");
                }
            }
            FailAction::Abort { after } => {
                if count.fetch_add(1, Ordering::SeqCst) + 1 >= *after {
                    eprintln!("fail point {name} reached: aborting");
                    std::process::abort();
                }
            }
        }
    }
}
