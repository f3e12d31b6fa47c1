//! The soak's own thread: reads every observed target on the soak's clock
//! (`soak.resolution`), records what it read, sees restarts, and judges every series at
//! most once a minute — all off the load's runtime, on a current-thread runtime of its
//! own. With `--shard i/n` only shard 0 runs it, so a target is observed and judged
//! once, not n times.

use crate::config::observe::Observe;
use crate::engine::Engine;
use crate::events::EventKind;
use crate::metrics::Metrics;
use crate::observe::{Identity, Observer, Reading};
use crate::soak::store::SoakStore;
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

pub fn spawn(engine: &Arc<Engine>, store: Arc<SoakStore>) -> std::io::Result<SoakThread> {
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let weak = Arc::downgrade(engine);
    std::thread::Builder::new()
        .name("soakd-soak".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("soak: cannot start a runtime ({e}); nothing is observed");
                    return;
                }
            };
            rt.block_on(async move {
                let mut w = Watcher::new(store);
                let every = w.store.config().resolution;
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        _ = tick.tick() => {
                            let Some(engine) = Weak::upgrade(&weak) else { break };
                            w.round(&engine).await;
                        }
                    }
                }
            });
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

struct Watcher {
    store: Arc<SoakStore>,
    targets: BTreeMap<String, Watched>,
    last_judged: Option<f64>,
}

impl Watcher {
    fn new(store: Arc<SoakStore>) -> Watcher {
        Watcher {
            store,
            targets: BTreeMap::new(),
            last_judged: None,
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
        self.store.retain_targets(&keep);
    }

    async fn round(&mut self, engine: &Arc<Engine>) {
        let cfg = engine.config();
        self.follow(&cfg.observe, &engine.metrics);
        let now = crate::units::now_unix();
        for (name, w) in self.targets.iter_mut() {
            let reading = w.observer.read(now).await;
            if let Some(why) = restarted(w, &reading) {
                self.store.restart(name, now);
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
                self.store.record(name, resource, counter, now, *v);
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
            self.store.set_errors(name, errors);
        }
        if self
            .last_judged
            .is_none_or(|t| now - t >= JUDGE_EVERY.as_secs_f64())
        {
            self.judge(engine, now);
        }
    }

    fn judge(&mut self, engine: &Arc<Engine>, now: f64) {
        let judged = self.store.judge_all(now);
        // The first verdict is given once one is possible; then once a minute.
        if judged
            .iter()
            .all(|(_, j)| j.verdict == crate::soak::verdict::Verdict::Insufficient)
        {
            return;
        }
        self.last_judged = Some(now);
        for (k, j) in judged {
            let trend = j.relative.map(|r| (r.estimate, r.lower, r.upper));
            let growing = j.verdict == crate::soak::verdict::Verdict::Growing;
            engine
                .metrics
                .soak
                .set_trend(&k.target, &k.resource, trend, growing);
        }
    }
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
