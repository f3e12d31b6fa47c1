//! The deploy judge's thread: cuts the blocks, reads each target's release on
//! `deploys.poll` and debounces it, hears restarts of targets with no release source,
//! judges each deploy once its after window has filled, revises the resource part when
//! the soak can say, keeps the `soakd_deploy*` series in step and saves every record to
//! the results store — all on a current-thread runtime of its own, off the load's.

use super::blocks::Cutter;
use super::fleet::Fleet;
use super::judge::judge_load;
use super::record::{Deploy, Source, State};
use super::release::{Reader, Step};
use super::state::{new_deploy, Deploys, Seen};
use crate::capacity::store::SharedStore;
use crate::config::observe::ReleaseSource;
use crate::engine::Engine;
use crate::events::EventKind;
use crate::shift::Change;
use crate::soak::store::Soak;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Stops the thread when dropped.
pub struct DeployThread {
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub fn spawn(
    engine: &Arc<Engine>,
    deploys: Arc<Deploys>,
    soak: Option<Arc<Soak>>,
    store: SharedStore,
) -> std::io::Result<DeployThread> {
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let weak = Arc::downgrade(engine);
    crate::threads::spawn_with_runtime("soakd-deploys", move || async move {
        let Some(engine) = Weak::upgrade(&weak) else {
            return;
        };
        let now = crate::units::now_unix();
        // Sharded with Prometheus: the leader judges the fleet's sums.
        let cfg = engine.config();
        let fleet = match (&cfg.verdicts, engine.shard_divisor() > 1.0) {
            (Some(v), true) => Some(Fleet::new(
                crate::promql::Prom::new(&v.prometheus, &v.selector),
                (v.scrape_interval * 2 + Duration::from_secs(1)).as_secs_f64(),
                engine.shard_divisor().round() as u32,
            )),
            _ => None,
        };
        let mut w = Watcher {
            fleet,
            cutter: Cutter::new(&engine, now),
            next_cut: now + deploys.cfg.block.as_secs_f64(),
            next_poll: now,
            last_event: engine.events.since(i64::MIN).last().map_or(0, |e| e.id),
            reader: Reader::new(Duration::from_secs(5)),
            loaded: false,
            deploys,
            soak,
            store,
        };
        // Every target's deploy count starts at 0, so its first deploy is an increase.
        for t in &engine.config().targets {
            engine.metrics.deploy.target(&t.name);
        }
        drop(cfg);
        drop(engine);
        let mut tick = tokio::time::interval(crate::metrics::window::Tap::PULL_EVERY);
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
    })?;
    Ok(DeployThread { _stop: tx })
}

struct Watcher {
    cutter: Cutter,
    /// With `--shard` and `verdicts.prometheus`: the periods waiting for the fleet's sums.
    fleet: Option<Fleet>,
    next_cut: f64,
    next_poll: f64,
    last_event: u64,
    reader: Reader,
    /// The results store's deploys have been read back (once, when it is open).
    loaded: bool,
    deploys: Arc<Deploys>,
    soak: Option<Arc<Soak>>,
    store: SharedStore,
}

impl Watcher {
    async fn round(&mut self, engine: &Arc<Engine>) {
        let now = crate::units::now_unix();
        if now >= self.next_cut {
            let cut = self.cutter.cut(engine, now);
            match &mut self.fleet {
                Some(f) => {
                    if let Some(old) = f.hold(cut) {
                        self.deploys.rings.lock().add(old);
                    }
                }
                None => self.deploys.rings.lock().add(cut),
            }
            let block = self.deploys.cfg.block.as_secs_f64();
            self.next_cut += block;
            if self.next_cut < now {
                // Far behind (a suspended process): start again from now.
                self.next_cut = now + block;
            }
        } else {
            self.cutter.pull(engine);
        }
        if let Some(f) = &mut self.fleet {
            for cut in f.ready(now).await {
                self.deploys.rings.lock().add(cut);
            }
        }
        self.load(engine).await;
        if now >= self.next_poll {
            self.next_poll = now + self.deploys.cfg.poll.as_secs_f64();
            self.poll(engine, now).await;
        }
        self.restarts(engine, now);
        self.judge(engine, now);
        self.save().await;
    }

    /// Reads the deploys kept in the results store back, once it is open: their
    /// verdicts survive a restart, and each target's last release is its current one.
    async fn load(&mut self, engine: &Arc<Engine>) {
        if self.loaded {
            return;
        }
        let Some(store) = self.store.read().clone() else {
            return;
        };
        let keep = self.deploys.cfg.keep;
        match store.load_deploys(keep).await {
            Ok(records) => {
                for r in records {
                    match serde_json::from_value::<Deploy>(r) {
                        Ok(d) => {
                            // The drift check leaves its windows out.
                            self.deploys.rings.lock().mark(&d.target, d.at);
                            let mut g = self.deploys.inner.lock();
                            let rel = g.releases.entry(d.target.clone()).or_default();
                            if let Some(v) = &d.to {
                                rel.debounce.set(v);
                                engine.metrics.deploy.set_version(&d.target, v);
                            }
                            // Kept in time order, beside any told before the store
                            // opened.
                            g.insert(d);
                        }
                        Err(e) => tracing::warn!("deploys: a stored record does not read: {e}"),
                    }
                }
                self.loaded = true;
            }
            Err(e) => tracing::warn!("deploys: reading the results store: {e}"),
        }
    }

    /// Reads every release source and turns what held into deploys.
    async fn poll(&mut self, engine: &Arc<Engine>, now: f64) {
        let cfg = engine.config();
        for o in &cfg.observe {
            let Some(src) = &o.release else { continue };
            engine.metrics.deploy.target(&o.target);
            {
                let mut g = self.deploys.inner.lock();
                g.releases.entry(o.target.clone()).or_default().source = Some(src.kind());
            }
            let Some(read) = self.reader.read(src, o.metrics_url.as_deref(), now).await else {
                continue;
            };
            let source = match src {
                ReleaseSource::Metrics { .. } => Source::Metrics,
                ReleaseSource::Http { .. } => Source::Http,
                ReleaseSource::Promql { .. } => Source::Promql,
                ReleaseSource::Api => Source::Api,
            };
            let step = {
                let mut g = self.deploys.inner.lock();
                let rel = g.releases.entry(o.target.clone()).or_default();
                rel.read_at = Some(now);
                match read {
                    Ok(v) => {
                        rel.error = None;
                        rel.debounce.see(&v, now, self.deploys.cfg.debounce)
                    }
                    Err(e) => {
                        rel.error = Some(e);
                        Step::Same
                    }
                }
            };
            match step {
                Step::Same => {}
                Step::First(v) => engine.metrics.deploy.set_version(&o.target, &v),
                Step::Changed { from, to, since } => {
                    let seen = Seen {
                        target: o.target.clone(),
                        at: since,
                        from: Some(from),
                        to: Some(to),
                        source,
                        note: None,
                    };
                    self.deployed(engine, seen);
                }
            }
        }
    }

    /// Records a new deploy: in the list, the event log and the series.
    fn deployed(&self, engine: &Arc<Engine>, seen: Seen) {
        let cfg = engine.config();
        let observed = self.soak.is_some()
            && cfg
                .observe
                .iter()
                .any(|o| o.target == seen.target && o.has_source());
        let d = new_deploy(seen, &self.deploys.cfg, observed);
        record_new(engine, &d);
        self.deploys.add(d);
    }

    /// A restart of a target with no release source is a possible deploy.
    fn restarts(&mut self, engine: &Arc<Engine>, now: f64) {
        let cfg = engine.config();
        let events = engine.events.since(i64::MIN);
        let new: Vec<_> = events
            .into_iter()
            .filter(|e| e.id > self.last_event)
            .collect();
        if let Some(e) = new.last() {
            self.last_event = e.id;
        }
        for e in new.iter().filter(|e| e.kind == EventKind::Restart) {
            let Some(target) = cfg
                .observe
                .iter()
                .map(|o| o.target.as_str())
                .find(|t| e.message.starts_with(&format!("target {t} ")))
            else {
                continue;
            };
            let has_release = cfg
                .observe
                .iter()
                .any(|o| o.target == target && o.release.is_some());
            if has_release {
                continue;
            }
            let at = (e.t_ms as f64 / 1000.0).min(now);
            let why = e.message.split_once(": ").map(|(_, w)| w.to_string());
            let seen = Seen {
                target: target.to_string(),
                at,
                from: None,
                to: None,
                source: Source::Restart,
                note: why,
            };
            self.deployed(engine, seen);
        }
    }

    /// Judges every deploy whose after window has filled, and revises resources.
    fn judge(&mut self, engine: &Arc<Engine>, now: f64) {
        let cfg = engine.config();
        let pending: Vec<Deploy> = self
            .deploys
            .inner
            .lock()
            .list
            .iter()
            .filter(|d| {
                d.verdict.load == State::Pending || d.verdict.resources.state == State::Pending
            })
            .cloned()
            .collect();
        for mut d in pending {
            let mut changed = false;
            // The last block lands a block after the window (and, summed over a fleet,
            // once Prometheus has scraped past it).
            let block = self.deploys.cfg.block.as_secs_f64()
                + self.fleet.as_ref().map_or(0.0, Fleet::settle);
            if d.verdict.load == State::Pending && now >= d.verdict.windows.after[1] + block {
                let v = {
                    let rings = self.deploys.rings.lock();
                    judge_load(
                        &d.id,
                        &d.target,
                        d.at,
                        &self.deploys.cfg,
                        &cfg.scenarios,
                        &rings,
                    )
                };
                d.verdict.load = v.state;
                d.verdict.findings = v.findings;
                d.verdict.reasons = v.reasons;
                d.verdict.series = v.series;
                d.verdict.judged_at = Some(now);
                changed = true;
                let mut scen: Vec<&str> = cfg
                    .scenarios
                    .iter()
                    .filter(|s| s.target == d.target)
                    .map(|s| s.name.as_str())
                    .collect();
                scen.sort();
                for s in scen {
                    let worse = d.verdict.findings.iter().any(|f| {
                        f.change == Change::Worse
                            && (f.subject == s || f.subject.starts_with(&format!("{s}/")))
                    });
                    engine.metrics.deploy.set_regressed(&d.target, s, worse);
                }
            }
            if d.verdict.resources.state == State::Pending {
                changed |= revise_resources(&mut d, self.soak.as_deref(), now);
            }
            if changed {
                let before = d.verdict.state;
                d.verdict.state = combined(&d);
                if before != State::Pending
                    && before != d.verdict.state
                    && d.verdict.first.is_none()
                {
                    d.verdict.first = Some(before);
                }
                if d.verdict.state != before {
                    engine.events.push(
                        EventKind::DeployVerdict,
                        None,
                        format!(
                            "target {} deploy {} judged {}: {}",
                            d.target,
                            d.id,
                            d.verdict.state.as_str(),
                            d.verdict.reasons.first().cloned().unwrap_or_default()
                        ),
                    );
                    if d.verdict.resources.state == State::Regressed {
                        for s in cfg.scenarios.iter().filter(|s| s.target == d.target) {
                            engine
                                .metrics
                                .deploy
                                .set_regressed(&d.target, &s.name, true);
                        }
                    }
                }
                self.deploys.update(d);
            }
        }
    }

    async fn save(&mut self) {
        let Some(store) = self.store.read().clone() else {
            return;
        };
        let dirty = self.deploys.take_dirty();
        let keep = self.deploys.inner.lock().keep;
        let mut failed = Vec::new();
        for d in dirty {
            let v = match serde_json::to_value(&d) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("deploys: {} does not serialize: {e}", d.id);
                    continue;
                }
            };
            if let Err(e) = store.save_deploy(&d.id, &d.target, d.at, &v, keep).await {
                tracing::warn!("deploys: saving {}: {e}", d.id);
                failed.push(d.id);
            }
        }
        if !failed.is_empty() {
            self.deploys.redirty(failed);
        }
    }
}

/// A new deploy's event and series.
pub fn record_new(engine: &Engine, d: &Deploy) {
    engine.metrics.deploy.deployed(&d.target);
    if let Some(v) = &d.to {
        engine.metrics.deploy.set_version(&d.target, v);
    }
    let what = match (&d.from, &d.to) {
        (Some(a), Some(b)) => format!("{a} → {b}"),
        (None, Some(b)) => format!("→ {b}"),
        _ => "a restart with no release source (a possible deploy)".to_string(),
    };
    engine.events.push(
        EventKind::Deploy,
        None,
        format!(
            "target {} deployed: {what} ({}; verdict at {})",
            d.target,
            d.id,
            crate::units::format_utc(d.verdict.windows.after[1])
        ),
    );
}

/// The whole deploy's state: regressed if either part is, else the load's.
fn combined(d: &Deploy) -> State {
    if d.verdict.load == State::Regressed || d.verdict.resources.state == State::Regressed {
        State::Regressed
    } else {
        d.verdict.load
    }
}

/// The resource part, from the soak's verdicts on the target: `regressed` as soon as a
/// series fitted only after the deploy grows; once a whole soak window has passed since
/// the deploy, `unchanged` if none does. Whether it changed.
fn revise_resources(d: &mut Deploy, soak: Option<&Soak>, now: f64) -> bool {
    let Some(soak) = soak else { return false };
    let window = soak.targets.config().window.as_secs_f64();
    let Some(t) = soak
        .targets
        .snapshot(now, 0)
        .into_iter()
        .find(|t| t.target == d.target)
    else {
        return false;
    };
    let mut growing = Vec::new();
    let mut seen = Vec::new();
    for s in t.series.iter().filter(|s| s.judged) {
        let Some(j) = &s.judgement else { continue };
        seen.push(format!("{} {}", s.resource, j.verdict.as_str()));
        let after = j.line.as_ref().is_some_and(|l| l.t0 >= d.at);
        if j.verdict == crate::soak::Verdict::Growing && after {
            growing.push(format!("{}: {}", s.resource, j.reason));
        }
    }
    if !growing.is_empty() {
        d.verdict.resources.state = State::Regressed;
        d.verdict.resources.judged_at = Some(now);
        d.verdict.resources.reasons = growing;
        return true;
    }
    if now >= d.at + window {
        d.verdict.resources.state = State::Unchanged;
        d.verdict.resources.judged_at = Some(now);
        d.verdict.resources.reasons = vec![format!(
            "nothing grows over the soak window since the deploy: {}",
            if seen.is_empty() {
                "no series judged".to_string()
            } else {
                seen.join(", ")
            }
        )];
        return true;
    }
    false
}
