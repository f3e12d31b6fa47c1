//! Where a search is, as `/api/v1/status`, `/api/v1/search` and the page show it: the
//! [`Progress`], shared through a [`ProgressCell`] that tells waiters when the state
//! moves (so `--exit-after-search` waits on a signal, not a poll).

use crate::capacity::record::{Phase, Verdict};
use parking_lot::{Mutex, MutexGuard};
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// Where a search is, as `/api/v1/status` and the page show it (lowercase).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchState {
    /// Connecting to the results store (retried with backoff).
    #[default]
    #[serde(rename = "opening the results store")]
    OpeningStore,
    Starting,
    Warmup,
    Measuring,
    /// After a broken level, until its backlog drains.
    Cooldown,
    Complete,
    Failed,
    /// Between the runs of a scheduled search (`search.every`): the soak runs.
    Scheduled,
    /// A follower that cannot read its leader: the search is paused for it, and its
    /// searched scenarios run their schedules.
    #[serde(rename = "leader unreachable")]
    LeaderLost,
}

impl SearchState {
    /// Whether the search has stopped, one way or the other.
    pub fn finished(self) -> bool {
        matches!(self, SearchState::Complete | SearchState::Failed)
    }
}

/// The search's progress, for logs, `/api/v1/status` and the landing page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub name: String,
    pub run_id: Option<String>,
    pub state: SearchState,
    pub level: Option<String>,
    pub phase: Option<Phase>,
    pub level_remaining_seconds: Option<f64>,
    pub levels_done: usize,
    pub levels_max: usize,
    /// Levels resumed from an interrupted run.
    pub resumed: usize,
    pub last: Option<LastLevel>,
    pub error: Option<String>,
    /// The configured ladder of each searched scenario (levels per second, ascending;
    /// bisection adds levels between them).
    pub plan: Vec<PlanLine>,
    /// Runs finished since the daemon started.
    pub runs_completed: u64,
    /// A scheduled search's next start (Unix seconds), while it waits for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<f64>,
    /// The rates the search applies now by scenario, as totals over every shard: the
    /// level's, 0 while a broken level drains, `then` after the search. A searched
    /// scenario not listed runs its schedule. Followers apply the same.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rates: BTreeMap<String, f64>,
    /// On a follower (`verdicts.leader`, shards other than 0): the leader it follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// On a follower: why it cannot read the leader now (its searched scenarios then
    /// run their schedules until it can).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_error: Option<String>,
    #[serde(skip)]
    pub level_ends: Option<Instant>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanLine {
    pub scenario: String,
    pub levels: Vec<f64>,
    /// The soak rate after the search (None: back to the schedule).
    pub then: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastLevel {
    pub level: String,
    pub verdict: Verdict,
    pub reason: String,
}

impl Progress {
    /// With the time left in the current level computed now.
    pub fn now(&self) -> Progress {
        let mut p = self.clone();
        p.level_remaining_seconds = p
            .level_ends
            .map(|e| e.saturating_duration_since(Instant::now()).as_secs_f64());
        p
    }
}

/// The progress and a channel that carries its state and finished-run count whenever a
/// change to either is let go.
pub struct ProgressCell {
    progress: Mutex<Progress>,
    moved: watch::Sender<(SearchState, u64)>,
}

pub type SharedProgress = Arc<ProgressCell>;

impl ProgressCell {
    pub fn new(p: Progress) -> SharedProgress {
        let (moved, _) = watch::channel((p.state, p.runs_completed));
        Arc::new(ProgressCell {
            progress: Mutex::new(p),
            moved,
        })
    }

    /// The progress to read or change; waiters hear of a new state when it is let go.
    pub fn lock(&self) -> ProgressGuard<'_> {
        ProgressGuard {
            guard: self.progress.lock(),
            moved: &self.moved,
        }
    }

    /// (state, runs completed), told each time either changes.
    pub fn subscribe(&self) -> watch::Receiver<(SearchState, u64)> {
        self.moved.subscribe()
    }
}

pub struct ProgressGuard<'a> {
    guard: MutexGuard<'a, Progress>,
    moved: &'a watch::Sender<(SearchState, u64)>,
}

impl Deref for ProgressGuard<'_> {
    type Target = Progress;
    fn deref(&self) -> &Progress {
        &self.guard
    }
}

impl DerefMut for ProgressGuard<'_> {
    fn deref_mut(&mut self) -> &mut Progress {
        &mut self.guard
    }
}

impl Drop for ProgressGuard<'_> {
    fn drop(&mut self) {
        let now = (self.guard.state, self.guard.runs_completed);
        self.moved.send_if_modified(|v| {
            let moved = *v != now;
            *v = now;
            moved
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_hears_when_the_state_moves_and_not_otherwise() {
        let cell = ProgressCell::new(Progress::default());
        let mut rx = cell.subscribe();
        cell.lock().levels_done = 3;
        assert!(!rx.has_changed().unwrap(), "the state did not move");
        cell.lock().state = SearchState::Measuring;
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), (SearchState::Measuring, 0));
        {
            let mut p = cell.lock();
            p.state = SearchState::Complete;
            p.runs_completed += 1;
        }
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), (SearchState::Complete, 1));
    }
}
