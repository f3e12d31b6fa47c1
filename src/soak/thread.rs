//! The soak's own thread: reads every observed target on the soak's clock
//! (`soak.resolution`), records what it read, sees restarts, and judges every series at
//! most once a minute — all off the load's runtime, on a current-thread runtime of its
//! own. With `--shard i/n` only shard 0 runs it, so a target is observed and judged
//! once, not n times; with `verdicts:` too, soakd's own series are the fleet's sums
//! from Prometheus, as the other verdicts across shards are.

use crate::config::observe::Observe;
use crate::engine::Engine;
use crate::events::EventKind;
use crate::metrics::window::{quantile_secs, Tap};
use crate::metrics::Metrics;
use crate::observe::{Identity, Observer, Reading};
use crate::soak::store::{Soak, SoakStore};
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Judging runs at most this often.
pub const JUDGE_EVERY: Duration = Duration::from_secs(60);

/// Stops the thread when dropped (it is not waited for: a source that does not answer
/// must not hold up a shutdown).
pub struct SoakThread {
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub fn spawn(engine: &Arc<Engine>, soak: Arc<Soak>) -> std::io::Result<SoakThread> {
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let weak = Arc::downgrade(engine);
    crate::threads::spawn_with_runtime("soakd-soak", move || async move {
        let mut w = Watcher::new(soak);
        // Sharded with Prometheus: soakd's own series are the fleet's sums.
        if let Some(engine) = Weak::upgrade(&weak) {
            let cfg = engine.config();
            if let (Some(v), true) = (&cfg.verdicts, engine.shard_divisor() > 1.0) {
                let every = w.soak.targets.config().resolution;
                w.fleet = Some(Fleet {
                    prom: crate::promql::Prom::new(&v.prometheus, &v.selector),
                    secs: every.max(v.scrape_interval * 4).as_secs_f64(),
                });
            }
        }
        let every = w.soak.targets.config().resolution;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pull = tokio::time::interval(Tap::PULL_EVERY);
        pull.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut rx => break,
                _ = tick.tick() => {
                    let Some(engine) = Weak::upgrade(&weak) else { break };
                    w.round(&engine).await;
                }
                _ = pull.tick() => {
                    let Some(engine) = Weak::upgrade(&weak) else { break };
                    w.pull_ops(&engine);
                }
            }
        }
    })?;
    Ok(SoakThread { _stop: tx })
}

struct Watched {
    observer: Observer,
    identity: Option<Identity>,
    /// Counters' last values (a fall is a reset).
    last: BTreeMap<String, f64>,
    resources: Vec<String>,
}

/// Where the last read of one op left off (its latencies pulled every second: a window's
/// slots can be shorter than the soak's resolution).
struct OpRead {
    tap: Tap,
    requests: u64,
    errors: u64,
    t: f64,
}

/// Where a sharded fleet's sums come from.
struct Fleet {
    prom: crate::promql::Prom,
    /// The span each reading sums over: the resolution, and at least four scrapes.
    secs: f64,
}

struct Watcher {
    soak: Arc<Soak>,
    fleet: Option<Fleet>,
    targets: BTreeMap<String, Watched>,
    /// By `scenario/op`.
    ops: BTreeMap<String, OpRead>,
    last_judged: Option<f64>,
}

impl Watcher {
    fn new(soak: Arc<Soak>) -> Watcher {
        Watcher {
            soak,
            fleet: None,
            targets: BTreeMap::new(),
            ops: BTreeMap::new(),
            last_judged: None,
        }
    }

    fn store(&self) -> &SoakStore {
        &self.soak.targets
    }

    /// Pulls every op window's latencies into its tap (between reads).
    fn pull_ops(&mut self, engine: &Arc<Engine>) {
        if self.fleet.is_some() {
            return;
        }
        for st in engine.states() {
            let m = st.metrics();
            for op in &m.ops {
                if let Some(r) = self.ops.get_mut(&format!("{}/{}", st.name, op.op)) {
                    r.tap.pull(&op.window);
                }
            }
        }
    }

    /// soakd's own series of every op since the last read: latency quantiles (of what
    /// finished in the period), the error ratio and the achieved rate.
    fn read_ops(&mut self, engine: &Arc<Engine>, now: f64) {
        let mut seen = Vec::new();
        for st in engine.states() {
            let m = st.metrics();
            for (i, op) in m.ops.iter().enumerate() {
                let key = format!("{}/{}", st.name, op.op);
                let (requests, errors) = (op.requests.get(), m.op_errors(i));
                let r = self.ops.entry(key.clone()).or_insert_with(|| OpRead {
                    tap: Tap::default(),
                    requests,
                    errors,
                    t: now,
                });
                r.tap.pull(&op.window);
                let h = r.tap.take();
                let (dr, de, dt) = (
                    requests.checked_sub(r.requests),
                    errors.checked_sub(r.errors),
                    now - r.t,
                );
                (r.requests, r.errors, r.t) = (requests, errors, now);
                seen.push(key.clone());
                let latency = [0.5, 0.95, 0.99].map(|q| quantile_secs(&h, q));
                let counts = dr.zip(de).map(|(dr, de)| (dr as f64, de as f64));
                record_op(&self.soak.ops, &key, now, latency, counts, dt);
            }
        }
        self.ops.retain(|k, _| seen.contains(k));
        let keep: Vec<&str> = seen.iter().map(String::as_str).collect();
        self.soak.ops.retain_targets(&keep);
    }

    /// soakd's own series of every op as the fleet's sums from Prometheus (`verdicts:`
    /// with `--shard`): the latency quantiles of the fleet's histograms, its error ratio
    /// and its rate over the last `secs`. A Prometheus that does not answer leaves a gap
    /// (never this shard's share in its place, which would read as a step).
    async fn read_fleet_ops(
        &mut self,
        engine: &Arc<Engine>,
        prom: crate::promql::Prom,
        secs: f64,
        now: f64,
    ) {
        let mine: Vec<String> = engine
            .states()
            .iter()
            .flat_map(|st| {
                st.metrics()
                    .ops
                    .iter()
                    .map(|o| format!("{}/{}", st.name, o.op))
                    .collect::<Vec<_>>()
            })
            .collect();
        let keep: Vec<&str> = mine.iter().map(String::as_str).collect();
        self.soak.ops.retain_targets(&keep);
        let totals = match prom.ops(secs, now).await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!("soak: the fleet's op series from Prometheus: {e}");
                return;
            }
        };
        let store = &self.soak.ops;
        for ((scenario, op), t) in totals {
            let key = format!("{scenario}/{op}");
            if !mine.contains(&key) {
                continue;
            }
            record_op(
                store,
                &key,
                now,
                t.latency,
                Some((t.completed, t.failed)),
                secs,
            );
        }
    }

    /// Follows the config: observers for new or changed targets, none for removed ones.
    fn follow(&mut self, observe: &[Observe], metrics: &Metrics) {
        let gone: Vec<String> = self
            .targets
            .iter()
            .filter(|(name, w)| {
                !observe
                    .iter()
                    .any(|o| o == w.observer.config() && &o.target == *name)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            if let Some(w) = self.targets.remove(&name) {
                let sources: Vec<&'static str> =
                    w.observer.sources().iter().map(|s| s.as_str()).collect();
                metrics.soak.forget(&name, &w.resources, &sources);
            }
        }
        for o in observe {
            if !self.targets.contains_key(&o.target) {
                let observer = Observer::new(o.clone());
                let sources: Vec<&'static str> =
                    observer.sources().iter().map(|s| s.as_str()).collect();
                metrics.soak.target(&o.target, &sources);
                self.targets.insert(
                    o.target.clone(),
                    Watched {
                        observer,
                        identity: None,
                        last: BTreeMap::new(),
                        resources: Vec::new(),
                    },
                );
            }
        }
        let keep: Vec<&str> = self.targets.keys().map(String::as_str).collect();
        self.store().retain_targets(&keep);
    }

    async fn round(&mut self, engine: &Arc<Engine>) {
        let cfg = engine.config();
        self.follow(&cfg.observe, &engine.metrics);
        let now = crate::units::now_unix();
        match &self.fleet {
            Some(f) => {
                self.read_fleet_ops(engine, f.prom.clone(), f.secs, now)
                    .await
            }
            None => self.read_ops(engine, now),
        }
        let store = &self.soak.targets;
        for (name, w) in self.targets.iter_mut() {
            let reading = w.observer.read(now).await;
            if let Some(why) = restarted(w, &reading) {
                store.restart(name, now);
                engine.metrics.soak.restarted(name);
                engine.events.push(
                    EventKind::Restart,
                    None,
                    format!("target {name} restarted: {why}"),
                );
            }
            if reading.identity.is_some() {
                w.identity = reading.identity;
            }
            for (resource, v) in &reading.values {
                let counter = reading.counters.contains(resource);
                store.record(name, resource, counter, now, *v);
                engine.metrics.soak.set_observed(name, resource, *v);
                if !w.resources.contains(resource) {
                    w.resources.push(resource.clone());
                }
                w.last.insert(resource.clone(), *v);
            }
            let mut errors = BTreeMap::new();
            for s in w.observer.sources() {
                let failed: Vec<&str> = reading
                    .errors
                    .iter()
                    .filter(|(src, _)| *src == s)
                    .map(|(_, e)| e.as_str())
                    .collect();
                engine
                    .metrics
                    .soak
                    .source_read(name, s.as_str(), failed.is_empty());
                if !failed.is_empty() {
                    errors.insert(s.as_str().to_string(), failed.join("; "));
                }
            }
            store.set_errors(name, errors);
        }
        if self
            .last_judged
            .is_none_or(|t| now - t >= JUDGE_EVERY.as_secs_f64())
        {
            self.judge(engine, now);
        }
    }

    fn judge(&mut self, engine: &Arc<Engine>, now: f64) {
        let log = engine.events.since(i64::MIN);
        let cfg = engine.config();
        // What may explain a change: soakd-wide events (reloads, a search), the events
        // of the scenarios that load the target (or of the op's own scenario), and the
        // target's own restarts — not another scenario's stage or another target's
        // restart.
        let relevant = |e: &crate::events::Event, target: Option<&str>, scenario: Option<&str>| {
            may_explain(e, target, scenario, &cfg.scenarios)
        };
        let pick = |target: Option<&str>, scenario: Option<&str>| -> Vec<(f64, String)> {
            log.iter()
                .filter(|e| relevant(e, target, scenario))
                .map(|e| (e.t_ms as f64 / 1000.0, e.message.clone()))
                .collect()
        };
        let target_events = |t: &str| pick(Some(t), None);
        let op_events = |key: &str| {
            let scenario = key.split_once('/').map(|(s, _)| s);
            let target = scenario.and_then(|s| {
                cfg.scenarios
                    .iter()
                    .find(|x| x.name == s)
                    .map(|x| x.target.as_str())
            });
            pick(target, scenario)
        };
        let ops = self.soak.ops.judge_all(now);
        let targets = self.soak.targets.judge_all(now);
        // The first verdict is given once one is possible; then once a minute.
        let insufficient = |j: &crate::soak::verdict::Judgement| {
            j.verdict == crate::soak::verdict::Verdict::Insufficient
        };
        if ops.iter().all(|(_, j)| insufficient(j)) && targets.iter().all(|(_, j)| insufficient(j))
        {
            return;
        }
        self.last_judged = Some(now);
        let soak = &engine.metrics.soak;
        for (k, cp) in self.soak.ops.detect_changes(now, &op_events) {
            if let Some((scenario, op)) = k.target.split_once('/') {
                soak.op_change_point(scenario, op, &k.resource);
                log_change(&k.target, &k.resource, &cp);
            }
        }
        for (k, cp) in self.soak.targets.detect_changes(now, &target_events) {
            soak.change_point(&k.target, &k.resource);
            log_change(&k.target, &k.resource, &cp);
        }
        for (k, j) in ops {
            if let Some((scenario, op)) = k.target.split_once('/') {
                let trend = j
                    .relative
                    .or(j.absolute)
                    .map(|r| (r.estimate, r.lower, r.upper));
                let growing = j.verdict == crate::soak::verdict::Verdict::Growing;
                soak.set_op_trend(scenario, op, &k.resource, trend, growing);
            }
        }
        for (k, j) in targets {
            // Relative to the level, or absolute per day for the classes whose level
            // can be 0 (a dead-tuple ratio, the oldest transaction's age).
            let trend = j
                .relative
                .or(j.absolute)
                .map(|r| (r.estimate, r.lower, r.upper));
            let growing = j.verdict == crate::soak::verdict::Verdict::Growing;
            soak.set_trend(&k.target, &k.resource, trend, growing);
        }
    }
}

/// Records one read of an op's own series: its p50/p95/p99, and from the operations
/// completed and failed over `secs`, its error ratio and rate.
fn record_op(
    store: &crate::soak::store::SoakStore,
    key: &str,
    now: f64,
    latency: [Option<f64>; 3],
    counts: Option<(f64, f64)>,
    secs: f64,
) {
    for (name, v) in ["p50_seconds", "p95_seconds", "p99_seconds"]
        .iter()
        .zip(latency)
    {
        if let Some(v) = v {
            store.record(key, name, false, now, v);
        }
    }
    if let Some((completed, failed)) = counts {
        if completed > 0.0 {
            store.record(
                key,
                "error_ratio",
                false,
                now,
                (failed / completed).clamp(0.0, 1.0),
            );
        }
        if secs > 0.0 {
            store.record(key, "rate_per_second", false, now, completed / secs);
        }
    }
}

/// Whether event `e` may explain a change of a series of `target` (an observed
/// target's, or the target of an op's scenario) or of `scenario`'s op: soakd-wide
/// events (reloads, the search), events of `scenario` or of a scenario loading
/// `target`, and `target`'s own restarts — not another scenario's stage, not another
/// target's restart.
fn may_explain(
    e: &crate::events::Event,
    target: Option<&str>,
    scenario: Option<&str>,
    scenarios: &[crate::config::Scenario],
) -> bool {
    match (&e.kind, &e.scenario) {
        // A verdict explains nothing; the deploy it is about may.
        (EventKind::DeployVerdict, _) => false,
        (EventKind::Restart | EventKind::Deploy, _) => {
            target.is_some_and(|t| e.message.starts_with(&format!("target {t} ")))
        }
        (_, None) => true,
        (_, Some(s)) => {
            scenario == Some(s.as_str())
                || target.is_some_and(|t| scenarios.iter().any(|x| &x.name == s && x.target == t))
        }
    }
}

fn log_change(subject: &str, resource: &str, cp: &crate::soak::changepoint::ChangePoint) {
    tracing::info!(
        subject,
        resource,
        before = cp.before,
        after = cp.after,
        cause = cp.cause.as_deref().unwrap_or("none"),
        "soak: a level shift"
    );
}

/// Why this reading is of a new run of the target's process, if it is.
fn restarted(w: &Watched, r: &Reading) -> Option<String> {
    let (Some(old), Some(new)) = (w.identity, r.identity) else {
        // No identity: a counter that fell is a reset.
        return reset_counter(w, r);
    };
    if old.pid.is_some() && new.pid.is_some() && old.pid != new.pid {
        return Some(format!(
            "pid {} → {}",
            old.pid.unwrap_or(0),
            new.pid.unwrap_or(0)
        ));
    }
    match (old.start_time, new.start_time) {
        (Some(a), Some(b)) if (a - b).abs() > 1.0 => Some("its start time changed".into()),
        _ => None,
    }
}

fn reset_counter(w: &Watched, r: &Reading) -> Option<String> {
    ["cpu_seconds", "cgroup_cpu_seconds"]
        .iter()
        .find_map(|c| match (w.last.get(*c), r.get(c)) {
            (Some(a), Some(b)) if b < *a => Some(format!("{c} fell from {a:.1} to {b:.1}")),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;

    fn ev(kind: EventKind, scenario: Option<&str>, message: &str) -> Event {
        Event {
            id: 0,
            t_ms: 0,
            kind,
            scenario: scenario.map(str::to_string),
            message: message.into(),
        }
    }

    #[test]
    fn a_cause_is_a_soakd_wide_event_or_one_of_the_loading_scenario() {
        let cfg = crate::config::parse_for_test(
            "targets:\n  a: {type: http, base_url: \"http://127.0.0.1:1\"}\n  b: {type: http, base_url: \"http://127.0.0.1:2\"}\nscenarios:\n  on_a: {target: a, schedule: {hold: {rate: 1/s}}, ops: {x: {http: {path: /}}}}\n  on_b: {target: b, schedule: {hold: {rate: 1/s}}, ops: {x: {http: {path: /}}}}\n",
        )
        .unwrap();
        let sc = &cfg.scenarios;
        let reload = ev(EventKind::Reload, None, "config reloaded");
        let stage_a = ev(EventKind::Stage, Some("on_a"), "stage 2/3");
        let stage_b = ev(EventKind::Stage, Some("on_b"), "stage 2/3");
        let restart_a = ev(EventKind::Restart, None, "target a restarted: pid 1 → 2");
        // Target a's series.
        assert!(may_explain(&reload, Some("a"), None, sc));
        assert!(may_explain(&stage_a, Some("a"), None, sc));
        assert!(!may_explain(&stage_b, Some("a"), None, sc));
        assert!(may_explain(&restart_a, Some("a"), None, sc));
        assert!(!may_explain(&restart_a, Some("b"), None, sc));
        // on_b's op: its own stage, not on_a's.
        assert!(may_explain(&stage_b, Some("b"), Some("on_b"), sc));
        assert!(!may_explain(&stage_a, Some("b"), Some("on_b"), sc));
    }
}
