//! One read of a target's sources: each resource's value, what identifies the process
//! read (to see a restart), and each source that could not be read with its reason.

use serde::Serialize;

/// Which source a value or an error came from (a bounded label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Process,
    Cgroup,
    MetricsUrl,
    Promql,
    Postgres,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::Process,
        Source::Cgroup,
        Source::MetricsUrl,
        Source::Promql,
        Source::Postgres,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Process => "process",
            Source::Cgroup => "cgroup",
            Source::MetricsUrl => "metrics_url",
            Source::Promql => "promql",
            Source::Postgres => "postgres",
        }
    }
}

/// What tells one run of the target's process from the next.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Identity {
    pub pid: Option<u32>,
    /// Unix seconds.
    pub start_time: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Resource name → value, in the order read.
    pub values: Vec<(String, f64)>,
    pub identity: Option<Identity>,
    pub errors: Vec<(Source, String)>,
    /// Named series whose exposition type is counter (judged as their rate).
    pub counters: Vec<String>,
}

impl Reading {
    /// Sets a resource (a later source overwrites an earlier one of the same name).
    pub fn set(&mut self, name: &str, v: f64) {
        if !v.is_finite() {
            return;
        }
        match self.values.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = v,
            None => self.values.push((name.to_string(), v)),
        }
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// Sets a resource only if no source gave it yet (a process read directly is
    /// preferred to what the target says of itself).
    pub fn offer(&mut self, name: &str, v: f64) {
        if self.get(name).is_none() {
            self.set(name, v);
        }
    }
}
