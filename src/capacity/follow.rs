//! A follower: with `verdicts.prometheus`, shard 0 runs the capacity search and judges
//! each level from every shard's sums; the other shards follow it. A follower reads the
//! leader's `GET /api/v1/search` every second and applies the rates listed there (totals
//! over every shard; it runs its 1/n share) to the searched scenarios, and clears them
//! when the leader does; its guards stand aside while the leader searches, as the
//! leader's do. When the leader cannot be read for [`LEADER_LOST_AFTER`], the follower
//! puts its searched scenarios back on their schedules: the search pauses, the soak goes
//! on, and the follower takes up the leader's level again when it answers.
//!
//! The follower's own `/api/v1/search` shows the leader's progress, the leader's URL,
//! and why it cannot read it when it cannot.

use super::controller::{SearchState, SharedProgress};
use crate::config::search::SearchConfig;
use crate::engine::Engine;
use crate::events::EventKind;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the leader is read.
const POLL: Duration = Duration::from_secs(1);
/// How long the leader may go unread before the follower stops holding its level.
pub const LEADER_LOST_AFTER: Duration = Duration::from_secs(5);

/// What a follower reads of the leader's progress.
#[derive(Debug, Clone, Deserialize)]
pub struct LeaderView {
    pub state: SearchState,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub levels_done: usize,
    #[serde(default)]
    pub levels_max: usize,
    #[serde(default)]
    pub runs_completed: u64,
    #[serde(default)]
    pub next_run_at: Option<f64>,
    /// Totals over every shard, by scenario.
    #[serde(default)]
    pub rates: BTreeMap<String, f64>,
}

/// Whether the leader is driving its scenarios through a search now (not merely holding
/// them at `then` after one).
pub fn searching(state: SearchState) -> bool {
    matches!(
        state,
        SearchState::Starting
            | SearchState::Warmup
            | SearchState::Measuring
            | SearchState::Cooldown
    )
}

/// What the follower holds: the overrides it set itself (it clears only those, never a
/// rate set through the control API), and whether it suspends the guards.
#[derive(Default)]
struct Held {
    rates: BTreeMap<String, f64>,
    guards_suspended: bool,
}

impl Held {
    /// Applies the leader's `rates` (totals) as `share` of each to the `searched`
    /// scenarios; those not listed go back to their schedules.
    fn apply(
        &mut self,
        engine: &Engine,
        searched: &[String],
        share: f64,
        rates: &BTreeMap<String, f64>,
    ) {
        for name in searched {
            let Some(st) = engine.scenario(name) else {
                continue;
            };
            match rates.get(name).map(|total| total * share) {
                Some(r) => {
                    if self.rates.get(name) != Some(&r) {
                        st.set_rate_override(Some(r));
                        self.rates.insert(name.clone(), r);
                    }
                }
                None => {
                    if self.rates.remove(name).is_some() {
                        st.set_rate_override(None);
                    }
                }
            }
        }
    }

    /// Suspends the searched scenarios' guards while the leader searches, and gives them
    /// back after.
    fn suspend_guards(&mut self, engine: &Engine, searched: &[String], on: bool) {
        if on == self.guards_suspended {
            return;
        }
        for name in searched {
            if let Some(st) = engine.scenario(name) {
                st.guard.set_searched(on);
            }
        }
        self.guards_suspended = on;
    }
}

async fn read(http: &reqwest::Client, url: &str) -> Result<LeaderView, String> {
    let r = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("cannot read {url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("{url} answered {}", r.status()));
    }
    r.json::<LeaderView>()
        .await
        .map_err(|e| format!("{url} did not answer with a search's progress: {e}"))
}

/// Follows `leader`'s search (of the same `search` config) until the engine is dropped.
pub fn spawn(engine: &Arc<Engine>, search: SearchConfig, leader: String, progress: SharedProgress) {
    let weak = Arc::downgrade(engine);
    tokio::spawn(follow(weak, search, leader, progress));
}

async fn follow(
    engine: Weak<Engine>,
    search: SearchConfig,
    leader: String,
    progress: SharedProgress,
) {
    let http = reqwest::Client::builder()
        .timeout(POLL * 2)
        .build()
        .unwrap_or_default();
    let url = format!("{leader}/api/v1/search");
    let searched: Vec<String> = search.scenarios.iter().map(|s| s.name.clone()).collect();
    {
        let mut p = progress.lock();
        p.name = search.name.clone();
        p.leader = Some(leader.clone());
    }
    tracing::info!(leader = %leader, "capacity search: following the leader's search");
    let mut held = Held::default();
    let mut last_read = Instant::now();
    let mut lost = false;
    let mut last_level: Option<String> = None;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let share = 1.0 / engine.shard_divisor();
        match read(&http, &url).await {
            Ok(v) => {
                last_read = Instant::now();
                if lost {
                    lost = false;
                    tracing::info!(leader = %leader, "capacity search: the leader answers again; following it");
                    engine.events.push(
                        EventKind::Search,
                        None,
                        format!("following the search of {leader} again"),
                    );
                }
                held.apply(&engine, &searched, share, &v.rates);
                held.suspend_guards(&engine, &searched, searching(v.state));
                if v.level != last_level {
                    if let Some(level) = &v.level {
                        engine.events.push(
                            EventKind::SearchLevel,
                            None,
                            format!("level {level} (the leader's)"),
                        );
                    }
                    last_level = v.level.clone();
                }
                let mut p = progress.lock();
                p.state = v.state;
                p.run_id = v.run_id;
                p.level = v.level;
                p.levels_done = v.levels_done;
                p.levels_max = v.levels_max;
                p.runs_completed = v.runs_completed;
                p.next_run_at = v.next_run_at;
                p.rates = v.rates;
                p.leader_error = None;
            }
            Err(e) => {
                progress.lock().leader_error = Some(e.clone());
                if !lost && last_read.elapsed() >= LEADER_LOST_AFTER {
                    lost = true;
                    held.apply(&engine, &searched, share, &BTreeMap::new());
                    held.suspend_guards(&engine, &searched, false);
                    last_level = None;
                    tracing::warn!(leader = %leader, "capacity search paused: {e}; the searched scenarios run their schedules until the leader answers");
                    engine.events.push(
                        EventKind::Search,
                        None,
                        format!("search paused, leader unreachable ({e}): scenarios back on their schedules"),
                    );
                    let mut p = progress.lock();
                    p.state = SearchState::LeaderLost;
                    p.level = None;
                    p.rates.clear();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaders_progress_is_read_as_the_api_writes_it() {
        let mut p = super::super::controller::Progress {
            state: SearchState::Measuring,
            level: Some("events 200/s".into()),
            levels_done: 1,
            levels_max: 3,
            ..Default::default()
        };
        p.rates.insert("events".into(), 200.0);
        let v: LeaderView = serde_json::from_value(serde_json::to_value(p.now()).unwrap()).unwrap();
        assert_eq!(v.state, SearchState::Measuring);
        assert_eq!(v.rates.get("events"), Some(&200.0));
        assert_eq!((v.levels_done, v.levels_max), (1, 3));
        assert!(searching(v.state));
        // After the search the leader holds `then` (or nothing): not searching.
        for s in [
            SearchState::Complete,
            SearchState::Scheduled,
            SearchState::Failed,
            SearchState::OpeningStore,
            SearchState::LeaderLost,
        ] {
            assert!(!searching(s), "{s:?}");
            let v: LeaderView = serde_json::from_value(
                serde_json::json!({"state": serde_json::to_value(s).unwrap()}),
            )
            .unwrap();
            assert_eq!(v.state, s);
            assert!(v.rates.is_empty());
        }
    }
}
