//! The readers of `follow:` stages (`schedule::follow`): one task per stage on the load
//! runtime, querying Prometheus every `every` and setting the stage's rate; and the
//! engine's registry of them, so a reload that leaves a stage as it was keeps its
//! reader and its rate.

use crate::events::{EventKind, EventLog};
use crate::metrics::follow::FollowFamily;
use crate::promql::Prom;
use crate::schedule::follow::{next_rate, Follow, OnError};
use crate::schedule::Stage;
use crate::units::format_rate;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

/// Starts `f`'s reader on the current runtime, once; it ends when the last stage
/// holding `f` is dropped.
pub fn start(f: &Arc<Follow>, scenario: &str, metrics: &FollowFamily, events: Arc<EventLog>) {
    if !f.claim() {
        return;
    }
    let weak: Weak<Follow> = Arc::downgrade(f);
    let prom = Prom::new(&f.spec.prometheus, "");
    let every = f.spec.every;
    let scenario = scenario.to_string();
    let series = metrics.scenario(&scenario);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(f) = weak.upgrade() else { break };
            let read = read(&prom, &f.spec.query).await;
            let before = f.rate();
            let next = next_rate(&f.spec, before, read.as_ref().ok().copied());
            f.set(next);
            series.rate.set(next);
            match read {
                Ok(v) => {
                    series.signal.set(v);
                    if f.read_ok(v, crate::units::now_unix()) {
                        events.push(
                            EventKind::Follow,
                            Some(&scenario),
                            format!("follow: reading again ({v} → {})", format_rate(next)),
                        );
                    }
                }
                Err(e) => {
                    series.errors.inc();
                    let then = match f.spec.on_error {
                        OnError::Hold => format!("holding {}", format_rate(before)),
                        OnError::Fallback => format!(
                            "moving to the fallback {}",
                            format_rate(f.spec.fallback.unwrap_or(before))
                        ),
                    };
                    let msg = format!("follow: {e}; {then}");
                    if f.read_failed(e) {
                        events.push(EventKind::Follow, Some(&scenario), msg);
                    }
                }
            }
        }
    });
}

/// The query's one number, or why there is none.
async fn read(prom: &Prom, query: &str) -> Result<f64, String> {
    let samples = prom
        .query(query, crate::units::now_unix())
        .await
        .map_err(|e| e.to_string())?;
    match samples.as_slice() {
        [] => Err(format!("`{query}` returned no series")),
        [s] if s.value.is_finite() => Ok(s.value.max(0.0)),
        [s] => Err(format!("`{query}` returned {}", s.value)),
        more => Err(format!(
            "`{query}` returned {} series; follow needs one number (sum() them)",
            more.len()
        )),
    }
}

/// The engine's `Follow`s by scenario and stage, kept across reloads that leave them as
/// they were.
#[derive(Default)]
pub struct Followers {
    by_stage: Mutex<HashMap<(String, usize), Arc<Follow>>>,
}

impl Followers {
    /// Puts the running `Follow` in place of each equal one in `cfg` (the same scenario
    /// and stage, the same config): nothing starts yet, so a config that fails to apply
    /// changes nothing.
    pub fn prepare(&self, cfg: &mut crate::config::Config) {
        let running = self.by_stage.lock();
        for sc in &mut cfg.scenarios {
            for (i, st) in sc.schedule.stages.iter_mut().enumerate() {
                if let Stage::Follow { follow, .. } = st {
                    if let Some(r) = running
                        .get(&(sc.name.clone(), i))
                        .filter(|r| ***r == **follow)
                    {
                        *follow = r.clone();
                    }
                }
            }
        }
    }

    /// Starts the readers `cfg` (applied) has that are not running, and forgets those it
    /// no longer has (their readers end with the plans that hold them).
    pub fn commit(
        &self,
        cfg: &crate::config::Config,
        metrics: &FollowFamily,
        events: &Arc<EventLog>,
    ) {
        let mut now: HashMap<(String, usize), Arc<Follow>> = HashMap::new();
        for sc in &cfg.scenarios {
            for (i, st) in sc.schedule.stages.iter().enumerate() {
                if let Stage::Follow { follow, .. } = st {
                    start(follow, &sc.name, metrics, events.clone());
                    now.insert((sc.name.clone(), i), follow.clone());
                }
            }
        }
        *self.by_stage.lock() = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_reload_that_leaves_the_stage_as_it_was_keeps_its_reader_and_rate() {
        let yaml = |factor: &str| {
            format!(
                r#"
targets: {{t: {{type: http, base_url: "http://127.0.0.1:1"}}}}
scenarios:
  s:
    target: t
    schedule: {{follow: {{prometheus: "http://127.0.0.1:1", query: q, factor: {factor}, max: 100/s, every: 1h}}}}
    ops: {{o: {{http: {{path: /}}}}}}
"#
            )
        };
        let stage = |c: &crate::config::Config| match &c.scenarios[0].schedule.stages[0] {
            crate::schedule::Stage::Follow { follow, .. } => follow.clone(),
            other => panic!("{other:?}"),
        };
        let metrics = crate::metrics::Metrics::new(Duration::from_secs(60));
        let events = Arc::new(EventLog::new(16));
        let f = Followers::default();
        let first = crate::config::parse_for_test(&yaml("1")).unwrap();
        f.commit(&first, &metrics.follow, &events);
        let running = stage(&first);
        running.set(42.0);
        // The same stage again: the running one, its rate kept.
        let mut same = crate::config::parse_for_test(&yaml("1")).unwrap();
        f.prepare(&mut same);
        assert!(Arc::ptr_eq(&stage(&same), &running));
        assert_eq!(stage(&same).rate(), 42.0);
        // A changed stage: a new one, from its initial rate.
        let mut changed = crate::config::parse_for_test(&yaml("2")).unwrap();
        f.prepare(&mut changed);
        assert!(!Arc::ptr_eq(&stage(&changed), &running));
        assert_eq!(stage(&changed).rate(), 0.0);
    }
}
