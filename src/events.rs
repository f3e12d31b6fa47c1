//! The event log: one bounded list of what happened to the load — stage changes,
//! overrides, pauses, reloads, search levels and their verdicts — and to the system
//! under test (its restarts). The page marks them on
//! its time axis, `/api/v1/history` returns them, and the server, the engine and the
//! capacity search all write here (one way in and out).
//!
//! It holds at most `capacity` events; the oldest go first. Each event has an id that
//! only grows, so a client polling with `since` can drop the ones it already has.

use parking_lot::Mutex;
use serde::Serialize;
use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

/// What kind of thing happened (a fixed set: the page colours by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A scenario's schedule moved to another stage.
    Stage,
    /// A rate override was set or cleared.
    Override,
    Pause,
    Resume,
    /// The config was reloaded and applied.
    Reload,
    /// A reload was rejected; the running config stayed.
    ReloadFailed,
    /// A capacity-search level started or was judged.
    SearchLevel,
    /// A capacity search started, completed or failed.
    Search,
    /// A scenario's guard stepped its rate down, paused it, recovered, or was reverted.
    Guard,
    /// An observed target restarted (its pid or start time changed, or a counter reset).
    Restart,
    /// A target was deployed (its release changed, it was told, or it restarted with no
    /// release source).
    Deploy,
    /// A deploy's verdict was given or revised.
    DeployVerdict,
    /// A `follow:` stage's reads started failing, or read again.
    Follow,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Grows by one per event, never reused.
    pub id: u64,
    /// Unix time in milliseconds.
    pub t_ms: i64,
    pub kind: EventKind,
    /// The scenario it concerns, when it concerns one.
    pub scenario: Option<String>,
    pub message: String,
}

pub struct EventLog {
    capacity: usize,
    inner: Mutex<(u64, VecDeque<Event>)>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl crate::metrics::MemorySize for EventLog {
    fn memory_bytes(&self) -> u64 {
        let g = self.inner.lock();
        let fixed = g.1.capacity() * std::mem::size_of::<Event>();
        let text: usize =
            g.1.iter()
                .map(|e| e.message.capacity() + e.scenario.as_ref().map_or(0, |s| s.capacity()))
                .sum();
        (fixed + text) as u64
    }
}

impl EventLog {
    pub fn new(capacity: usize) -> EventLog {
        EventLog {
            capacity: capacity.max(1),
            inner: Mutex::new((0, VecDeque::new())),
        }
    }

    /// Records an event now; logs it too.
    pub fn push(&self, kind: EventKind, scenario: Option<&str>, message: impl Into<String>) {
        self.push_at(now_ms(), kind, scenario, message)
    }

    pub fn push_at(
        &self,
        t_ms: i64,
        kind: EventKind,
        scenario: Option<&str>,
        message: impl Into<String>,
    ) {
        let message = message.into();
        tracing::debug!(?kind, scenario, %message, "event");
        let mut g = self.inner.lock();
        g.0 += 1;
        let ev = Event {
            id: g.0,
            t_ms,
            kind,
            scenario: scenario.map(str::to_string),
            message,
        };
        if g.1.len() == self.capacity {
            g.1.pop_front();
        }
        g.1.push_back(ev);
    }

    /// Events newer than `since_ms` (unix ms), oldest first.
    pub fn since(&self, since_ms: i64) -> Vec<Event> {
        let g = self.inner.lock();
        // Times can step back (a clock adjustment), so filter instead of bisecting.
        g.1.iter().filter(|e| e.t_ms > since_ms).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().1.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_since_is_strict() {
        let log = EventLog::new(3);
        for i in 0..5 {
            log.push_at(
                1000 + i,
                EventKind::Stage,
                Some("api"),
                format!("stage {i}"),
            );
        }
        assert_eq!(log.len(), 3);
        let all = log.since(0);
        assert_eq!(
            all.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![3, 4, 5],
            "the oldest go first"
        );
        let newer = log.since(1003);
        assert_eq!(newer.len(), 1);
        assert_eq!(newer[0].message, "stage 4");
        assert!(log.since(1004).is_empty());
    }
}
