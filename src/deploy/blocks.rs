//! The blocks a deploy is judged on, cut from the engine as it runs: every op's
//! latency, completions and errors by kind per period (`deploys.block`, a minute by
//! default), every scenario's arrivals and drops, and soakd's own side of the period —
//! the evidence that a window was unusable because of soakd, not the target. Each kept
//! in a ring long enough for a deploy's before, settle and after windows (or a day and
//! an hour with `baseline: yesterday`).

use crate::engine::Engine;
use crate::metrics::window::Tap;
use crate::metrics::HistSnap;
use crate::shift::drift::Summary;
use crate::shift::Block;
use crate::sysinfo::ProcSample;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;

/// A scenario's period: what it offered, what it dropped and how late it started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScenarioBlock {
    pub t: f64,
    pub secs: f64,
    /// Arrivals due: started and dropped.
    pub offered: u64,
    /// Arrivals dropped at `max_in_flight`.
    pub dropped: u64,
    /// p99 of how late operations started (`soakd_schedule_lag_seconds`).
    pub lag_p99: Option<f64>,
    /// The share of its HTTP time spent waiting for soakd's own connection slots.
    pub queue_share: Option<f64>,
}

/// soakd's own side of a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GeneratorBlock {
    pub t: f64,
    pub secs: f64,
    /// soakd's CPU over the period, as a share of the CPUs its load runs on.
    pub cpu_share: Option<f64>,
    /// p99 of the load runtime's scheduling delay.
    pub runtime_delay_p99: Option<f64>,
    /// With `--shard` and `verdicts.prometheus`: the shards whose sums the period's op
    /// blocks and arrivals are (None: this process's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// The summed latency came from classic buckets (Prometheus without native
    /// histograms), not native ones.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub classic: bool,
    /// Why the fleet's sums are missing for the period (it is set aside).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsummed: Option<String>,
}

/// One period's blocks.
#[derive(Debug, Clone, Default)]
pub struct Cut {
    /// By `scenario/op`.
    pub ops: Vec<(String, Block)>,
    pub scenarios: Vec<(String, ScenarioBlock)>,
    pub generator: GeneratorBlock,
}

struct OpCut {
    tap: Tap,
    requests: u64,
    errors: BTreeMap<String, u64>,
}

struct ScenarioCut {
    started: u64,
    dropped: u64,
    lag: HistSnap,
    phases: [f64; 5],
}

/// Reads the engine: [`Cutter::pull`] at least every [`Tap::PULL_EVERY`],
/// [`Cutter::cut`] at the end of each period.
pub struct Cutter {
    ops: BTreeMap<String, OpCut>,
    scenarios: BTreeMap<String, ScenarioCut>,
    proc: Option<ProcSample>,
    delay: Option<HistSnap>,
    since: f64,
}

impl Cutter {
    pub fn new(engine: &Engine, now: f64) -> Cutter {
        let mut c = Cutter {
            ops: BTreeMap::new(),
            scenarios: BTreeMap::new(),
            proc: None,
            delay: None,
            since: now,
        };
        c.start_period(engine);
        c.pull(engine);
        c
    }

    /// Counters as the period starts (new ops and scenarios start from here too).
    fn start_period(&mut self, engine: &Engine) {
        self.proc = crate::sysinfo::read_proc(None);
        self.delay = Some(HistSnap::of(&engine.metrics.runtime.delay));
        for st in engine.states() {
            let m = st.metrics();
            self.scenarios.insert(
                st.name.clone(),
                ScenarioCut {
                    started: st.started.load(Ordering::Relaxed),
                    dropped: st.dropped.load(Ordering::Relaxed),
                    lag: HistSnap::of(&m.lag),
                    phases: st.phase_sums(),
                },
            );
        }
    }

    /// Pulls every op window's latencies since the last pull.
    pub fn pull(&mut self, engine: &Engine) {
        let mut seen: Vec<String> = Vec::new();
        for st in engine.states() {
            let m = st.metrics();
            for (i, op) in m.ops.iter().enumerate() {
                let key = format!("{}/{}", st.name, op.op);
                let c = self.ops.entry(key.clone()).or_insert_with(|| OpCut {
                    tap: Tap::default(),
                    requests: op.requests.get(),
                    errors: m.op_errors_by_kind(i).into_iter().collect(),
                });
                c.tap.pull(&op.window);
                seen.push(key);
            }
        }
        self.ops.retain(|k, _| seen.contains(k));
    }

    /// Closes the period at `now`: every op's block and every scenario's, and soakd's.
    pub fn cut(&mut self, engine: &Engine, now: f64) -> Cut {
        self.pull(engine);
        let (t, secs) = (self.since, (now - self.since).max(1e-3));
        let mut out = Cut::default();
        for st in engine.states() {
            let m = st.metrics();
            for (i, op) in m.ops.iter().enumerate() {
                let key = format!("{}/{}", st.name, op.op);
                let Some(c) = self.ops.get_mut(&key) else {
                    continue;
                };
                let requests = op.requests.get();
                let errors: BTreeMap<String, u64> = m.op_errors_by_kind(i).into_iter().collect();
                let h = c.tap.take();
                let mut b = Block {
                    t,
                    secs,
                    hist: Block::hist_of(&h),
                    requests: requests.saturating_sub(c.requests),
                    errors: BTreeMap::new(),
                };
                for (kind, n) in &errors {
                    let d = n.saturating_sub(c.errors.get(kind).copied().unwrap_or(0));
                    if d > 0 {
                        b.errors.insert(kind.clone(), d);
                    }
                }
                (c.requests, c.errors) = (requests, errors);
                out.ops.push((key, b));
            }
            if let Some(s) = self.scenarios.get(&st.name) {
                let (started, dropped) = (
                    st.started.load(Ordering::Relaxed),
                    st.dropped.load(Ordering::Relaxed),
                );
                let ds = started.saturating_sub(s.started);
                let dd = dropped.saturating_sub(s.dropped);
                let phases = st.phase_sums();
                let spent: Vec<f64> = phases.iter().zip(s.phases).map(|(a, b)| a - b).collect();
                let total: f64 = spent.iter().sum();
                out.scenarios.push((
                    st.name.clone(),
                    ScenarioBlock {
                        t,
                        secs,
                        offered: ds + dd,
                        dropped: dd,
                        lag_p99: HistSnap::of(&m.lag).quantile_since(&s.lag, 0.99),
                        queue_share: (total > 0.0).then(|| spent[0] / total),
                    },
                ));
            }
        }
        let proc = crate::sysinfo::read_proc(None);
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .max(1);
        out.generator = GeneratorBlock {
            t,
            secs,
            cpu_share: crate::sysinfo::cpu_percent(self.proc, proc, secs)
                .map(|p| p / 100.0 / cpus as f64),
            runtime_delay_p99: self
                .delay
                .as_ref()
                .and_then(|d| HistSnap::of(&engine.metrics.runtime.delay).quantile_since(d, 0.99)),
            ..GeneratorBlock::default()
        };
        self.since = now;
        self.start_period(engine);
        out
    }
}

/// Deploys (and restarts) remembered per target, so the drift check leaves the window
/// pairs they fall in out.
pub const MAX_MARKS: usize = 256;

/// Every op's, scenario's and soakd's blocks, newest last, each ring at most `keep`;
/// and every op's block summaries (`shift::drift`) for `deploys.history`, at most
/// `history_keep` each.
pub struct Rings {
    keep: usize,
    history_keep: usize,
    pub ops: BTreeMap<String, VecDeque<Block>>,
    pub scenarios: BTreeMap<String, VecDeque<ScenarioBlock>>,
    pub generator: VecDeque<GeneratorBlock>,
    pub history: BTreeMap<String, VecDeque<Summary>>,
    /// By target: when it was deployed or restarted, newest last.
    pub marks: BTreeMap<String, VecDeque<f64>>,
}

impl Rings {
    pub fn new(keep: usize, history_keep: usize) -> Rings {
        Rings {
            keep: keep.max(1),
            history_keep,
            ops: BTreeMap::new(),
            scenarios: BTreeMap::new(),
            generator: VecDeque::new(),
            history: BTreeMap::new(),
            marks: BTreeMap::new(),
        }
    }

    /// Remembers that `target` changed at `at` (kept in time order, the newest
    /// [`MAX_MARKS`]).
    pub fn mark(&mut self, target: &str, at: f64) {
        let m = self.marks.entry(target.to_string()).or_default();
        let i = m.partition_point(|x| *x <= at);
        if m.get(i.wrapping_sub(1)) == Some(&at) {
            return;
        }
        m.insert(i, at);
        while m.len() > MAX_MARKS {
            m.pop_front();
        }
    }

    pub fn keep(&self) -> usize {
        self.keep
    }

    fn push<T>(ring: &mut VecDeque<T>, x: T, keep: usize) {
        while ring.len() >= keep {
            ring.pop_front();
        }
        ring.push_back(x);
    }

    /// Adds a period's blocks; ops and scenarios no longer running are dropped once
    /// their newest block is older than the ring's span.
    pub fn add(&mut self, cut: Cut) {
        let t = cut.generator.t;
        let keep = self.keep;
        let secs = cut.generator.secs;
        for (k, b) in cut.ops {
            if self.history_keep > 0 {
                if let Some(x) = Summary::of(&b) {
                    match self.history.get_mut(&k) {
                        Some(h) => Self::push(h, x, self.history_keep),
                        None => {
                            self.history.insert(k.clone(), VecDeque::from([x]));
                        }
                    }
                }
            }
            Self::push(self.ops.entry(k).or_default(), b, keep);
        }
        for (k, b) in cut.scenarios {
            Self::push(self.scenarios.entry(k).or_default(), b, keep);
        }
        Self::push(&mut self.generator, cut.generator, keep);
        let oldest = self.generator.front().map_or(t, |g| g.t);
        self.ops
            .retain(|_, r| r.back().is_some_and(|b| b.t >= oldest));
        self.scenarios
            .retain(|_, r| r.back().is_some_and(|b| b.t >= oldest));
        let horizon = t - secs * self.history_keep as f64;
        self.history
            .retain(|_, r| r.back().is_some_and(|b| b.t >= horizon));
    }

    /// Bytes held (for `soakd_memory_bytes{area="deploys"}`).
    pub fn bytes(&self) -> usize {
        let ops: usize = self.ops.values().flatten().map(Block::bytes).sum();
        let sc = self.scenarios.values().map(VecDeque::len).sum::<usize>()
            * std::mem::size_of::<ScenarioBlock>();
        let history = self.history.values().map(VecDeque::len).sum::<usize>()
            * std::mem::size_of::<Summary>();
        ops + sc + history + self.generator.len() * std::mem::size_of::<GeneratorBlock>()
    }
}

/// Blocks whose whole period lies in `[from, to)`.
pub fn within<T>(
    ring: &VecDeque<T>,
    from: f64,
    to: f64,
    span: impl Fn(&T) -> (f64, f64),
) -> Vec<&T> {
    ring.iter()
        .filter(|b| {
            let (t, secs) = span(b);
            t >= from - 1e-6 && t + secs <= to + 1e-6
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shift::block::bucket_of;

    fn cut(t: f64, ops: &[&str]) -> Cut {
        let mut c = Cut::default();
        c.generator.t = t;
        c.generator.secs = 1.0;
        for k in ops {
            c.ops.push((
                k.to_string(),
                Block {
                    t,
                    secs: 1.0,
                    hist: vec![(bucket_of(0.01), 9), (bucket_of(0.1), 1)],
                    requests: 10,
                    errors: BTreeMap::new(),
                },
            ));
        }
        c
    }

    #[test]
    fn the_history_keeps_a_summary_per_block_bounded_and_forgets_stopped_ops() {
        let mut r = Rings::new(3, 10);
        for i in 0..25 {
            let ops: &[&str] = if i < 5 { &["a/x", "b/y"] } else { &["a/x"] };
            r.add(cut(i as f64, ops));
        }
        // Blocks: the last 3; summaries: the last 10.
        assert_eq!(r.ops["a/x"].len(), 3);
        let h = &r.history["a/x"];
        assert_eq!(h.len(), 10);
        assert_eq!(h.front().map(|s| s.t), Some(15.0));
        let s = h.back().copied().unwrap();
        // ln of the p50 (10 ms) and of the p95 and p99 (100 ms), within a bucket.
        assert!((f64::from(s.ln_q[0]) - 0.01f64.ln()).abs() < 0.03, "{s:?}");
        assert!((f64::from(s.ln_q[2]) - 0.1f64.ln()).abs() < 0.03, "{s:?}");
        // An op that stopped is dropped once its newest summary is a history old.
        assert!(!r.history.contains_key("b/y"));
        assert!(r.bytes() >= 10 * std::mem::size_of::<Summary>());
        // No history kept: none at all.
        let mut r = Rings::new(3, 0);
        r.add(cut(0.0, &["a/x"]));
        assert!(r.history.is_empty());
    }
}
