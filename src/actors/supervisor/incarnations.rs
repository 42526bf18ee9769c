//! Which actor incarnation serves which project, and each project's recent
//! failures: the supervisor's bookkeeping, apart from the actors so its
//! rules can be tested without making one fail at a chosen moment.
//!
//! An incarnation stays on the books until ractor reports its end. A
//! request can find a project's actor already stopped before that report
//! reaches the supervisor and get a new incarnation started; the old one's
//! failure, reported afterwards, must still count, or a project that
//! panics on every request could outrun its own pause.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ractor::ActorId;

use crate::model::ProjectId;

/// The first restart after a failure waits this long; each further failure
/// within the window doubles it.
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(50);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(10);

/// What to do about a project whose actor failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Start it again after this delay (unless something started it
    /// meanwhile).
    RestartAfter(Duration),
    /// It failed this many times within one window: pause it for a window.
    Pause { failures: usize },
}

pub struct Incarnations {
    by_actor: HashMap<ActorId, ProjectId>,
    failures: HashMap<ProjectId, VecDeque<Instant>>,
    max_restarts: usize,
    window: Duration,
}

impl Incarnations {
    pub fn new(max_restarts: u32, window: Duration) -> Self {
        Self {
            by_actor: HashMap::new(),
            failures: HashMap::new(),
            max_restarts: max_restarts as usize,
            window,
        }
    }

    /// A new actor serves `project`. An older incarnation of the project
    /// that has not been reported ended yet stays on the books.
    pub fn started(&mut self, actor: ActorId, project: ProjectId) {
        self.by_actor.insert(actor, project);
    }

    /// An incarnation ended, however it ended: its project, if it was one
    /// of ours and not already reported.
    pub fn ended(&mut self, actor: ActorId) -> Option<ProjectId> {
        self.by_actor.remove(&actor)
    }

    /// An incarnation failed: counts the failure against its project (even
    /// when a newer incarnation already serves it) and says what to do.
    pub fn failed(&mut self, actor: ActorId, now: Instant) -> Option<(ProjectId, Verdict)> {
        let project = self.ended(actor)?;
        let failures = self.failures.entry(project.clone()).or_default();
        failures.push_back(now);
        while failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            failures.pop_front();
        }
        let count = failures.len();
        let verdict = if count > self.max_restarts {
            self.failures.remove(&project);
            Verdict::Pause { failures: count }
        } else {
            Verdict::RestartAfter(
                FIRST_RESTART_DELAY
                    .saturating_mul(1 << (count.saturating_sub(1)).min(16))
                    .min(MAX_RESTART_DELAY),
            )
        };
        Some((project, verdict))
    }

    /// Failures are counted per window; a project's are dropped once its
    /// window has passed with none (called on the expiry sweep so the map
    /// does not keep every project that ever failed once).
    pub fn forget_old_failures(&mut self, now: Instant) {
        let window = self.window;
        self.failures.retain(|_, failures| {
            failures
                .back()
                .is_some_and(|last| now.duration_since(*last) <= window)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> ProjectId {
        ProjectId::generate()
    }

    #[test]
    fn a_failure_reported_after_a_newer_incarnation_started_still_counts() {
        let mut books = Incarnations::new(2, Duration::from_secs(60));
        let project = project();
        let now = Instant::now();
        // Each request found the previous actor already stopped and got a
        // new one started before the failure was reported.
        books.started(ActorId::Local(1), project.clone());
        books.started(ActorId::Local(2), project.clone());
        books.started(ActorId::Local(3), project.clone());

        assert_eq!(
            books.failed(ActorId::Local(1), now),
            Some((project.clone(), Verdict::RestartAfter(FIRST_RESTART_DELAY)))
        );
        assert_eq!(
            books.failed(ActorId::Local(2), now),
            Some((
                project.clone(),
                Verdict::RestartAfter(FIRST_RESTART_DELAY * 2)
            ))
        );
        assert_eq!(
            books.failed(ActorId::Local(3), now),
            Some((project, Verdict::Pause { failures: 3 }))
        );
    }

    #[test]
    fn an_incarnation_is_reported_once_and_unknown_actors_are_ignored() {
        let mut books = Incarnations::new(2, Duration::from_secs(60));
        let project = project();
        books.started(ActorId::Local(1), project.clone());
        assert_eq!(books.ended(ActorId::Local(1)), Some(project));
        assert_eq!(books.failed(ActorId::Local(1), Instant::now()), None);
        assert_eq!(books.failed(ActorId::Local(9), Instant::now()), None);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let window = Duration::from_secs(10);
        let mut books = Incarnations::new(1, window);
        let project = project();
        let start = Instant::now();
        books.started(ActorId::Local(1), project.clone());
        books.failed(ActorId::Local(1), start);
        books.started(ActorId::Local(2), project.clone());
        let later = start + window + Duration::from_millis(1);
        assert_eq!(
            books.failed(ActorId::Local(2), later),
            Some((project.clone(), Verdict::RestartAfter(FIRST_RESTART_DELAY)))
        );
        books.forget_old_failures(later + window + Duration::from_millis(1));
        assert!(books.failures.is_empty());
    }

    #[test]
    fn the_restart_delay_doubles_and_is_capped() {
        let mut books = Incarnations::new(100, Duration::from_secs(3600));
        let project = project();
        let now = Instant::now();
        let mut delays = Vec::new();
        for n in 0..12 {
            books.started(ActorId::Local(n), project.clone());
            if let Some((_, Verdict::RestartAfter(delay))) = books.failed(ActorId::Local(n), now) {
                delays.push(delay);
            }
        }
        assert_eq!(delays[0], Duration::from_millis(50));
        assert_eq!(delays[3], Duration::from_millis(400));
        assert_eq!(delays[11], MAX_RESTART_DELAY);
    }
}
