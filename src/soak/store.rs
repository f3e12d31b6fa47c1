//! The soak's series: one bounded ring of `(t, value)` per series (f64, whether or not
//! the dashboard is enabled), the restarts of each target, and the latest judgement of
//! each series. Every ring's length is fixed by `soak.window / soak.resolution` (at most
//! [`MAX_POINTS`](crate::config::soak::MAX_POINTS)), so a week holds what a minute does.

use crate::config::soak::{GrowthClass, SoakConfig};
use crate::soak::changepoint::{ChangePoint, Detector};
use crate::soak::verdict::{judge, Judgement, Threshold};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// Restarts kept per target (the newest).
pub const MAX_RESTARTS: usize = 100;
/// A series is judged once it holds this many points after warmup.
pub const MIN_POINTS: usize = 60;
/// Restarts within the window that make a restart loop.
pub const RESTART_LOOP: usize = 3;

/// How a series' values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Gauge,
    /// Only grows, except at a restart: judged as its rate per second.
    Counter,
}

/// Which series: a resource of a target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Key {
    pub target: String,
    pub resource: String,
}

/// What a resource is: its growth class, how it is read, whether it is judged at all.
pub fn class_of(resource: &str, counter: bool) -> (Option<GrowthClass>, Shape) {
    let shape = if counter {
        Shape::Counter
    } else {
        Shape::Gauge
    };
    let class = match resource {
        "rss_bytes" | "anon_bytes" | "heap_bytes" | "cgroup_memory_bytes" | "cgroup_anon_bytes" => {
            Some(GrowthClass::Memory)
        }
        "open_fds" => Some(GrowthClass::Fds),
        "threads" | "goroutines" => Some(GrowthClass::Threads),
        "cpu_seconds" | "cgroup_cpu_seconds" => return (Some(GrowthClass::Cpu), Shape::Counter),
        // Page cache grows by design; limits and identities are not trends.
        "cgroup_file_bytes" | "max_fds" | "start_time_seconds" => None,
        "oom_kills" => return (None, Shape::Counter),
        // soakd's own series of each op.
        "p50_seconds" | "p95_seconds" | "p99_seconds" => Some(GrowthClass::Latency),
        "error_ratio" => Some(GrowthClass::Errors),
        // A postgres target's server.
        "oldest_xid_age" => Some(GrowthClass::XidAge),
        "replication_lag_seconds" => Some(GrowthClass::ReplicationLag),
        "connections" => Some(GrowthClass::Fds),
        // Its tables (`TABLE.kind`; a named series holds no '.').
        r => match r.rsplit_once('.').map(|(_, k)| k) {
            Some("bytes_per_live_tuple") => Some(GrowthClass::Tables),
            Some("dead_tuple_ratio") => Some(GrowthClass::DeadTuples),
            Some("autovacuum_runs") => return (None, Shape::Counter),
            _ => Some(GrowthClass::Custom),
        },
    };
    (class, shape)
}

struct Series {
    points: VecDeque<(f64, f64)>,
    shape: Shape,
    class: Option<GrowthClass>,
    changes: Detector,
}

impl Series {
    /// The points from `from` on as they are judged: a counter's as its rate.
    fn judged_points(&self, from: f64) -> Vec<(f64, f64)> {
        let pts: Vec<(f64, f64)> = self
            .points
            .iter()
            .copied()
            .filter(|(t, _)| *t >= from)
            .collect();
        match self.shape {
            Shape::Gauge => pts,
            Shape::Counter => rates(&pts),
        }
    }
}

#[derive(Default)]
struct Inner {
    series: BTreeMap<Key, Series>,
    /// Unix seconds of each target's restarts, newest last.
    restarts: BTreeMap<String, VecDeque<f64>>,
    /// When each target was first seen (warmup counts from it).
    started: BTreeMap<String, f64>,
    judged: BTreeMap<Key, Judgement>,
    /// Each target's unreadable sources now: source → reason.
    errors: BTreeMap<String, BTreeMap<String, String>>,
}

pub struct SoakStore {
    cfg: SoakConfig,
    inner: Mutex<Inner>,
}

/// Everything the soak keeps: the observed targets' series, and soakd's own series of
/// each op (keyed `scenario/op`; names cannot hold a `/`).
pub struct Soak {
    pub targets: SoakStore,
    pub ops: SoakStore,
}

impl Soak {
    pub fn new(cfg: SoakConfig) -> Soak {
        Soak {
            targets: SoakStore::new(cfg.clone()),
            ops: SoakStore::new(cfg),
        }
    }
}

impl crate::metrics::MemorySize for Soak {
    fn memory_bytes(&self) -> u64 {
        self.targets.memory_bytes() + self.ops.memory_bytes()
    }
}

/// A target's state for the API and the page.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSoak {
    pub target: String,
    pub restarts: Vec<f64>,
    /// A finding: `RESTART_LOOP` or more restarts within the window.
    pub restart_loop: bool,
    pub errors: BTreeMap<String, String>,
    pub series: Vec<SeriesSoak>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeriesSoak {
    pub resource: String,
    pub shape: Shape,
    /// Whether it is judged at all (limits and identities — `max_fds`,
    /// `start_time_seconds` — and counts like `oom_kills` are kept, not judged).
    pub judged: bool,
    pub latest: Option<f64>,
    pub judgement: Option<Judgement>,
    /// Level shifts found, oldest first (at most 20).
    pub change_points: Vec<ChangePoint>,
    /// The judged points (a counter's as its rate), averaged down to at most the number
    /// asked for: `[t, value]`. Empty unless asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub points: Vec<[f64; 2]>,
}

impl crate::metrics::MemorySize for SoakStore {
    fn memory_bytes(&self) -> u64 {
        let g = self.inner.lock();
        let points: usize = g.series.values().map(|s| s.points.capacity() * 16).sum();
        let restarts: usize = g.restarts.values().map(|r| r.capacity() * 8).sum();
        (points + restarts + g.judged.len() * std::mem::size_of::<Judgement>()) as u64
    }
}

impl SoakStore {
    pub fn new(cfg: SoakConfig) -> SoakStore {
        SoakStore {
            cfg,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn config(&self) -> &SoakConfig {
        &self.cfg
    }

    /// Records one value at `t` (Unix seconds).
    pub fn record(&self, target: &str, resource: &str, counter: bool, t: f64, v: f64) {
        let cap = self.cfg.points();
        let mut g = self.inner.lock();
        g.started.entry(target.to_string()).or_insert(t);
        let key = Key {
            target: target.to_string(),
            resource: resource.to_string(),
        };
        let s = g.series.entry(key).or_insert_with(|| {
            let (class, shape) = class_of(resource, counter);
            Series {
                points: VecDeque::with_capacity(cap),
                shape,
                class,
                changes: Detector::default(),
            }
        });
        if s.points.len() == cap {
            s.points.pop_front();
        }
        s.points.push_back((t, v));
    }

    /// A restart of the target at `t`: its series are judged from here on.
    pub fn restart(&self, target: &str, t: f64) {
        let mut g = self.inner.lock();
        let r = g.restarts.entry(target.to_string()).or_default();
        if r.len() == MAX_RESTARTS {
            r.pop_front();
        }
        r.push_back(t);
    }

    pub fn set_errors(&self, target: &str, errors: BTreeMap<String, String>) {
        self.inner.lock().errors.insert(target.to_string(), errors);
    }

    /// Forgets the targets no longer observed.
    pub fn retain_targets(&self, keep: &[&str]) {
        let mut g = self.inner.lock();
        g.series.retain(|k, _| keep.contains(&k.target.as_str()));
        g.judged.retain(|k, _| keep.contains(&k.target.as_str()));
        g.restarts.retain(|k, _| keep.contains(&k.as_str()));
        g.started.retain(|k, _| keep.contains(&k.as_str()));
        g.errors.retain(|k, _| keep.contains(&k.as_str()));
    }

    /// Judges every series at `now`; returns the judgements made.
    pub fn judge_all(&self, now: f64) -> Vec<(Key, Judgement)> {
        // Copy the points out, so recording never waits for a fit.
        let work: Vec<Work> = {
            let g = self.inner.lock();
            g.series
                .iter()
                .map(|(k, s)| {
                    let from = self.judged_from(&g, &k.target, now);
                    (k.clone(), s.judged_points(from), s.class)
                })
                .collect()
        };
        let mut out = Vec::new();
        for (key, pts, class) in work {
            let Some(class) = class else { continue };
            let growth = self.cfg.growth_of(class);
            let threshold = match class {
                c if c.absolute() => Threshold::Absolute(growth),
                _ => Threshold::Relative(growth),
            };
            let j = if pts.len() < MIN_POINTS {
                insufficient(pts.len())
            } else {
                judge(&pts, threshold)
            };
            out.push((key, j));
        }
        let mut g = self.inner.lock();
        for (k, j) in &out {
            g.judged.insert(k.clone(), j.clone());
        }
        out
    }

    /// Looks for level shifts in every judged series (a counter's rate) after its
    /// target's warmup; `events_of(target)` (Unix seconds, message) are the events that
    /// may explain a change of that target's series, for the probable cause. Returns
    /// the change points newly found.
    pub fn detect_changes(
        &self,
        now: f64,
        events_of: &dyn Fn(&str) -> Vec<(f64, String)>,
    ) -> Vec<(Key, ChangePoint)> {
        let mut cache: BTreeMap<String, Vec<(f64, String)>> = BTreeMap::new();
        let mut g = self.inner.lock();
        let froms: BTreeMap<String, f64> = g
            .started
            .keys()
            .map(|t| (t.clone(), self.judged_from(&g, t, now)))
            .collect();
        let mut out = Vec::new();
        for (k, s) in g.series.iter_mut() {
            if s.class.is_none() {
                continue;
            }
            let from = froms.get(&k.target).copied().unwrap_or(now);
            let pts = s.judged_points(from);
            let events = cache
                .entry(k.target.clone())
                .or_insert_with(|| events_of(&k.target));
            if let Some(cp) = s.changes.step(&pts, events) {
                out.push((k.clone(), cp));
            }
        }
        out
    }

    /// Points count from the later of the target's start plus warmup, its last restart
    /// plus warmup, and the window's start.
    fn judged_from(&self, g: &Inner, target: &str, now: f64) -> f64 {
        let warm = self.cfg.warmup.as_secs_f64();
        let start = g.started.get(target).copied().unwrap_or(now) + warm;
        let restart = g
            .restarts
            .get(target)
            .and_then(|r| r.back())
            .map_or(f64::NEG_INFINITY, |t| t + warm);
        start.max(restart).max(now - self.cfg.window.as_secs_f64())
    }

    /// Every observed target with its series and their latest judgements, and each
    /// series' judged points averaged down to at most `chart_points` (0: none).
    pub fn snapshot(&self, now: f64, chart_points: usize) -> Vec<TargetSoak> {
        let g = self.inner.lock();
        let window = now - self.cfg.window.as_secs_f64();
        let mut targets: BTreeMap<&str, TargetSoak> = BTreeMap::new();
        // A target every source of which fails has no values yet, only its errors.
        let names: std::collections::BTreeSet<&String> =
            g.started.keys().chain(g.errors.keys()).collect();
        for name in names {
            let restarts: Vec<f64> = g
                .restarts
                .get(name)
                .map(|r| r.iter().copied().collect())
                .unwrap_or_default();
            let recent = restarts.iter().filter(|t| **t >= window).count();
            targets.insert(
                name,
                TargetSoak {
                    target: name.clone(),
                    restart_loop: recent >= RESTART_LOOP,
                    restarts,
                    errors: g.errors.get(name).cloned().unwrap_or_default(),
                    series: Vec::new(),
                },
            );
        }
        for (k, s) in &g.series {
            if let Some(t) = targets.get_mut(k.target.as_str()) {
                t.series.push(SeriesSoak {
                    resource: k.resource.clone(),
                    shape: s.shape,
                    judged: s.class.is_some(),
                    latest: s.points.back().map(|p| p.1),
                    judgement: g.judged.get(k).cloned(),
                    change_points: s.changes.found.clone(),
                    points: if chart_points == 0 {
                        Vec::new()
                    } else {
                        let from = self.judged_from(&g, &k.target, now);
                        averaged(&s.judged_points(from), chart_points)
                    },
                });
            }
        }
        targets.into_values().collect()
    }

    /// One series' points in the window (for charts and reports).
    pub fn points(&self, key: &Key) -> Vec<(f64, f64)> {
        let g = self.inner.lock();
        g.series
            .get(key)
            .map(|s| s.points.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// A series to judge: its key, its judged points and its class.
type Work = (Key, Vec<(f64, f64)>, Option<GrowthClass>);

fn insufficient(n: usize) -> Judgement {
    Judgement {
        verdict: crate::soak::verdict::Verdict::Insufficient,
        absolute: None,
        relative: None,
        plateau: None,
        period: None,
        resolvable_period: None,
        points: n,
        reason: format!("{n} points after warmup; {MIN_POINTS} are needed before a verdict"),
        line: None,
    }
}

/// At most `n` points: consecutive points averaged in equal groups (time and value).
fn averaged(pts: &[(f64, f64)], n: usize) -> Vec<[f64; 2]> {
    let size = pts.len().div_ceil(n.max(1)).max(1);
    pts.chunks(size)
        .map(|c| {
            let k = c.len() as f64;
            [
                c.iter().map(|p| p.0).sum::<f64>() / k,
                c.iter().map(|p| p.1).sum::<f64>() / k,
            ]
        })
        .collect()
}

/// A counter's rate per second between consecutive points; a fall (a reset) starts over.
fn rates(pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
    pts.windows(2)
        .filter_map(|w| {
            let (dt, dv) = (w[1].0 - w[0].0, w[1].1 - w[0].1);
            (dt > 0.0 && dv >= 0.0).then(|| (w[1].0, dv / dt))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn store() -> SoakStore {
        SoakStore::new(SoakConfig {
            window: Duration::from_secs(600),
            warmup: Duration::from_secs(10),
            resolution: Duration::from_secs(1),
            ..SoakConfig::default()
        })
    }

    #[test]
    fn rings_are_bounded_and_a_restart_starts_the_judged_points_over() {
        let s = store();
        for i in 0..1000 {
            s.record("api", "rss_bytes", false, i as f64, 1e8 + 1e6 * i as f64);
        }
        let key = Key {
            target: "api".into(),
            resource: "rss_bytes".into(),
        };
        assert_eq!(s.points(&key).len(), 600);
        let j = s.judge_all(1000.0);
        assert_eq!(
            j[0].1.verdict,
            crate::soak::verdict::Verdict::Growing,
            "{:?}",
            j[0].1
        );
        // After a restart at 990 s, 10 s of warmup leave nothing to judge.
        s.restart("api", 990.0);
        let j = s.judge_all(1000.0);
        assert_eq!(j[0].1.verdict, crate::soak::verdict::Verdict::Insufficient);
        let snap = s.snapshot(1000.0, 0);
        assert_eq!(snap[0].restarts, vec![990.0]);
        assert!(!snap[0].restart_loop);
        s.restart("api", 995.0);
        s.restart("api", 999.0);
        assert!(s.snapshot(1000.0, 0)[0].restart_loop);
        s.retain_targets(&[]);
        assert!(s.snapshot(1000.0, 0).is_empty());
    }

    #[test]
    fn counters_are_judged_as_rates_across_a_reset() {
        let s = store();
        // CPU seconds growing at 0.5 cores, reset at 300 s: flat rate, not a trend.
        for i in 0..600 {
            let t = i as f64;
            let v = if i < 300 { 0.5 * t } else { 0.5 * (t - 300.0) };
            s.record("api", "cpu_seconds", false, t, v);
        }
        let j = s.judge_all(600.0);
        assert_eq!(
            j[0].1.verdict,
            crate::soak::verdict::Verdict::Flat,
            "{:?}",
            j[0].1
        );
        assert_eq!(
            rates(&[(0.0, 1.0), (1.0, 3.0), (2.0, 0.5)]),
            vec![(1.0, 2.0)]
        );
    }
}
