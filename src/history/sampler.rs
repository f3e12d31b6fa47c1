//! One pass a second over what the engine already records, into the history rings.
//!
//! Counters become rates over the last second; latency quantiles come from the last
//! [`RECENT`] seconds of the scenarios' HdrHistogram windows (read through
//! [`Window::since`], never from buckets); histogram quantiles of pools and buffers
//! come from the difference of their bucket counts over the last few seconds. The
//! 1 min row of a rate, ratio or quantile is computed over the whole minute (not as a
//! mean of per-second quantiles); gauges are averaged, peaks kept, settings taken last.

use super::catalogue::{buffer, postgres, process, scenario, visibility, Series};
use super::ring::{Agg, Key, Rollup};
use crate::engine::Engine;
use crate::history::store::{History, Resolution};
use crate::metrics::scenario::OpCursors;
use crate::metrics::window::quantile_secs;
use crate::metrics::HistSnap;
use hdrhistogram::Histogram;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Seconds of latency behind each 1 s quantile (enough samples at modest rates, short
/// enough that a spike shows when it happens).
pub const RECENT: usize = 5;
/// Pool-acquire, flush and E2E quantiles look further back: flushes happen about once
/// a second, so a 5 s window would hold only a handful.
const RECENT_HIST: usize = 10;

/// Latency histograms kept by the sampler: 2 significant digits (1 % resolution, about
/// 12 KB each) — enough for a chart, an eighth of the windows' size.
fn small_hist() -> Histogram<u64> {
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, crate::metrics::window::MAX_MICROS, 2)
        .expect("constant histogram bounds are valid")
}

fn add_into(dst: &mut Histogram<u64>, src: &Histogram<u64>) {
    for v in src.iter_recorded() {
        let _ = dst.record_n(v.value_iterated_to(), v.count_at_value());
    }
}

/// A reading and when it was taken.
type Stamped<T> = (Instant, T);

/// A cumulative reading kept over the last seconds and at the start of the minute.
#[derive(Default)]
struct Track<T> {
    recent: VecDeque<(Instant, T)>,
    minute_start: Option<(Instant, T)>,
    seen: bool,
}

impl<T: Clone> Track<T> {
    fn push(&mut self, now: Instant, v: T, keep: usize) {
        self.recent.push_back((now, v.clone()));
        while self.recent.len() > keep + 1 {
            self.recent.pop_front();
        }
        if self.minute_start.is_none() {
            self.minute_start = Some((now, v));
        }
        self.seen = true;
    }

    /// The reading `back` samples ago (or the oldest kept) and the newest.
    fn span(&self, back: usize) -> Option<(&Stamped<T>, &Stamped<T>)> {
        let last = self.recent.back()?;
        let i = self.recent.len().saturating_sub(back + 1);
        let first = self.recent.get(i)?;
        (first.0 < last.0).then_some((first, last))
    }
}

/// Per-scenario latency state: a cursor per op window, the last seconds' deltas, and
/// the minute so far.
struct Latency {
    cursors: OpCursors,
    recent: VecDeque<Histogram<u64>>,
    minute: Histogram<u64>,
    seen: bool,
}

/// The PostgreSQL statistics counters (transactions, blocks hit, blocks read), which
/// change only when the collector runs (every `stats.interval`): their rates are taken
/// between the passes, so a 5 s interval does not read as four zeros and a spike.
#[derive(Default)]
struct PgRates {
    last: Option<(Instant, [f64; 3])>,
    rates: Option<[f64; 3]>,
    minute_start: Option<(Instant, [f64; 3])>,
    seen: bool,
}

impl PgRates {
    fn update(&mut self, now: Instant, v: [f64; 3]) {
        match self.last {
            Some((t, old)) if v != old => {
                let dt = now.duration_since(t).as_secs_f64();
                if dt > 0.0 {
                    self.rates = Some([0, 1, 2].map(|i| (v[i] - old[i]).max(0.0) / dt));
                }
                self.last = Some((now, v));
            }
            None => self.last = Some((now, v)),
            _ => {}
        }
        if self.minute_start.is_none() {
            self.minute_start = Some((now, v));
        }
        self.seen = true;
    }
}

pub struct Sampler {
    history: Arc<History>,
    rollup: Rollup,
    counters: HashMap<Key, Track<f64>>,
    pairs: HashMap<Key, Track<(f64, f64)>>,
    hists: HashMap<Key, Track<HistSnap>>,
    latency: HashMap<String, Latency>,
    pg: HashMap<String, PgRates>,
    last_tick: Option<Instant>,
}

/// One tick's values: (key, value, how it rolls up into a minute).
type Row = Vec<(Key, f32, Agg)>;

/// What one tick writes: the 1 s row and, when the tick closes a minute, the exact
/// minute values of rates, ratios and quantiles (which replace the rollup's means).
pub(super) struct TickOut {
    now: Instant,
    closes: bool,
    row: Row,
    minute: Vec<(Key, f32)>,
}

impl Sampler {
    pub fn new(history: Arc<History>) -> Sampler {
        Sampler {
            history,
            rollup: Rollup::default(),
            counters: HashMap::new(),
            pairs: HashMap::new(),
            hists: HashMap::new(),
            latency: HashMap::new(),
            pg: HashMap::new(),
            last_tick: None,
        }
    }

    /// Reads everything once and appends the 1 s row stamped `t_ms` (and the 1 min row
    /// when `t_ms` starts a new minute).
    pub fn tick(&mut self, engine: &Engine, t_ms: i64, now: Instant) {
        let minute_closes = self
            .rollup
            .current_minute()
            .is_some_and(|m| t_ms - t_ms.rem_euclid(super::ring::MINUTE_MS) != m);
        for t in self.counters.values_mut() {
            t.seen = false;
        }
        for t in self.hists.values_mut() {
            t.seen = false;
        }
        for t in self.pairs.values_mut() {
            t.seen = false;
        }
        for t in self.pg.values_mut() {
            t.seen = false;
        }
        for l in self.latency.values_mut() {
            l.seen = false;
        }
        let mut out = TickOut {
            now,
            closes: minute_closes,
            row: Vec::new(),
            minute: Vec::new(),
        };
        self.scenarios(engine, &mut out);
        self.postgres(engine, &mut out);
        self.buffers(engine, &mut out);
        self.process(engine, &mut out);
        let TickOut { row, minute, .. } = out;
        self.last_tick = Some(now);

        // Forget what was not read this time (a scenario or target removed by a reload).
        self.counters.retain(|_, t| t.seen);
        self.hists.retain(|_, t| t.seen);
        self.pairs.retain(|_, t| t.seen);
        self.pg.retain(|_, t| t.seen);
        self.latency.retain(|_, l| l.seen);

        let fine: Vec<(Key, f32)> = row.iter().map(|(k, v, _)| (k.clone(), *v)).collect();
        self.history.push(Resolution::Second, t_ms, &fine);
        // Only gauges roll up as means/peaks; the exact values replace the rest.
        let gauges: Row = row
            .into_iter()
            .filter(|(k, _, _)| !minute.iter().any(|(m, _)| m == k))
            .collect();
        if let Some((mt, mut vals)) = self.rollup.add(t_ms, &gauges) {
            if minute_closes {
                vals.retain(|(k, _)| !minute.iter().any(|(m, _)| m == k));
                vals.extend(minute.into_iter().filter(|(_, v)| !v.is_nan()));
                vals.sort_by(|a, b| a.0.cmp(&b.0));
            }
            self.history.push(Resolution::Minute, mt, &vals);
        }
    }

    /// Rate of a counter over the last second (and over the minute when it closes).
    fn rate(&mut self, key: Key, value: f64, out: &mut TickOut) {
        let t = self.counters.entry(key.clone()).or_default();
        t.push(out.now, value, RECENT);
        let v = t
            .span(1)
            .map(|((t0, a), (t1, b))| {
                ((b - a).max(0.0) / t1.duration_since(*t0).as_secs_f64()) as f32
            })
            .unwrap_or(f32::NAN);
        if out.closes {
            if let Some((t0, a)) = t.minute_start.take() {
                let dt = out.now.duration_since(t0).as_secs_f64();
                if dt > 0.0 {
                    out.minute
                        .push((key.clone(), ((value - a).max(0.0) / dt) as f32));
                }
            }
            t.minute_start = Some((out.now, value));
        }
        out.row.push((key, v, Agg::Mean));
    }

    /// `num` / `den` of two counters' growth over the last seconds (and the minute).
    fn ratio(&mut self, key: Key, num: f64, den: f64, out: &mut TickOut) {
        let of = |(a, b): (f64, f64), (c, d): (f64, f64)| -> f32 {
            if d - b > 0.0 {
                ((c - a).max(0.0) / (d - b)) as f32
            } else {
                0.0
            }
        };
        let t = self.pairs.entry(key.clone()).or_default();
        t.push(out.now, (num, den), RECENT);
        let v = t
            .span(RECENT)
            .map_or(f32::NAN, |((_, a), (_, b))| of(*a, *b));
        if out.closes {
            if let Some((_, a)) = t.minute_start.take() {
                out.minute.push((key.clone(), of(a, (num, den))));
            }
            t.minute_start = Some((out.now, (num, den)));
        }
        out.row.push((key, v, Agg::Mean));
    }

    /// Quantile `q` of a prometheus histogram over the last seconds (and the minute).
    fn hist_quantile(
        &mut self,
        key: Key,
        h: &crate::metrics::Histogram,
        q: f64,
        out: &mut TickOut,
    ) {
        let snap = HistSnap::of(h);
        let t = self.hists.entry(key.clone()).or_default();
        t.push(out.now, snap.clone(), RECENT_HIST);
        let v = t
            .span(RECENT_HIST)
            .and_then(|((_, a), (_, b))| b.quantile_since(a, q))
            .map_or(f32::NAN, |v| v as f32);
        if out.closes {
            if let Some((_, a)) = t.minute_start.take() {
                out.minute.push((
                    key.clone(),
                    snap.quantile_since(&a, q).map_or(f32::NAN, |v| v as f32),
                ));
            }
            t.minute_start = Some((out.now, snap));
        }
        out.row.push((key, v, Agg::Mean));
    }

    fn scenarios(&mut self, engine: &Engine, out: &mut TickOut) {
        for s in engine.states() {
            let plan = s.plan();
            let m = &plan.metrics;
            let name = s.name.as_str();
            let k = |s: &Series| Key::of(s, name);
            let (rate, _) = s.current();
            out.row
                .push((k(&scenario::TARGET_RATE), rate as f32, Agg::Mean));
            if let Some(o) = s.rate_override() {
                out.row.push((k(&scenario::OVERRIDE), o as f32, Agg::Last));
            }
            out.row.push((
                k(&scenario::PAUSED),
                s.paused.load(Ordering::Relaxed) as u8 as f32,
                Agg::Max,
            ));
            let started = s.started.load(Ordering::Relaxed) as f64;
            self.rate(k(&scenario::ACHIEVED_RATE), started, out);
            let completed: u64 = m.ops.iter().map(|o| o.requests.get()).sum();
            self.rate(k(&scenario::COMPLETED_RATE), completed as f64, out);
            out.row.push((
                k(&scenario::IN_FLIGHT),
                s.in_flight.load(Ordering::Relaxed) as f32,
                Agg::Max,
            ));
            out.row.push((
                k(&scenario::MAX_IN_FLIGHT),
                plan.max_in_flight as f32,
                Agg::Last,
            ));
            self.rate(
                k(&scenario::DROPPED_RATE),
                s.dropped.load(Ordering::Relaxed) as f64,
                out,
            );
            let errors = m.errors_by_kind();
            let total: u64 = errors.iter().map(|(_, n)| n).sum();
            self.ratio(
                k(&scenario::ERROR_RATIO),
                total as f64,
                completed as f64,
                out,
            );
            for (kind, n) in &errors {
                self.ratio(
                    Key::member(&scenario::ERROR_RATIO_BY_KIND, name, kind),
                    *n as f64,
                    completed as f64,
                    out,
                );
            }
            self.hist_quantile(k(&scenario::LAG_P99), &m.lag, 0.99, out);
            if let Some(d) = plan.scenario.slo.p95 {
                out.row
                    .push((k(&scenario::SLO_P95), d.0.as_secs_f32(), Agg::Last));
            }
            if let Some(d) = plan.scenario.slo.p99 {
                out.row
                    .push((k(&scenario::SLO_P99), d.0.as_secs_f32(), Agg::Last));
            }
            if let Some(d) = plan.scenario.slo.p50 {
                out.row
                    .push((k(&scenario::SLO_P50), d.0.as_secs_f32(), Agg::Last));
            }
            self.latency_of(name, m, out);
            self.visibility_of(&s, &plan, out);
        }
    }

    /// p50/p95/p99 over the last [`RECENT`] seconds from the op windows.
    fn latency_of(&mut self, name: &str, m: &crate::metrics::ScenarioMetrics, out: &mut TickOut) {
        let windows: Vec<(&str, &crate::metrics::window::Window)> =
            m.ops.iter().map(|o| (o.op.as_str(), &*o.window)).collect();
        self.window_quantiles(
            [scenario::P50, scenario::P95, scenario::P99],
            name,
            &windows,
            RECENT,
            out,
        );
    }

    /// p50/p95/p99 (fields of `key`'s group and name) over the last `keep` seconds of
    /// `windows`, and over the minute when it closes.
    fn window_quantiles(
        &mut self,
        quantiles: [Series; 3],
        name: &str,
        windows: &[(&str, &crate::metrics::window::Window)],
        keep: usize,
        out: &mut TickOut,
    ) {
        let state = format!("{}:{name}", quantiles[0].group.as_str());
        let lat = self.latency.entry(state).or_insert_with(|| Latency {
            cursors: OpCursors::default(),
            recent: VecDeque::new(),
            minute: small_hist(),
            seen: false,
        });
        lat.seen = true;
        // Ops a reload removed lose their cursor; new ones get one.
        let mut second = small_hist();
        lat.cursors
            .read_windows(windows, Instant::now(), |d| add_into(&mut second, d));
        add_into(&mut lat.minute, &second);
        lat.recent.push_back(second);
        while lat.recent.len() > keep {
            lat.recent.pop_front();
        }
        let mut merged = small_hist();
        for h in &lat.recent {
            add_into(&mut merged, h);
        }
        let at = [0.5, 0.95, 0.99];
        for (q, s) in at.iter().zip(&quantiles) {
            let v = quantile_secs(&merged, *q).map_or(f32::NAN, |v| v as f32);
            out.row.push((Key::of(s, name), v, Agg::Mean));
        }
        if out.closes {
            for (q, s) in at.iter().zip(&quantiles) {
                let v = quantile_secs(&lat.minute, *q).map_or(f32::NAN, |v| v as f32);
                out.minute.push((Key::of(s, name), v));
            }
            lat.minute.reset();
        }
    }

    /// Visibility probes of a scenario: write-to-visible quantiles over the last
    /// [`RECENT_HIST`] seconds (probes finish about once per flush), pending against
    /// max_pending, and visible / not visible / polls per second.
    fn visibility_of(
        &mut self,
        s: &crate::engine::ScenarioState,
        plan: &crate::engine::Plan,
        out: &mut TickOut,
    ) {
        let probes: Vec<(&str, &crate::engine::visibility::Probe)> = plan
            .scenario
            .ops
            .iter()
            .zip(&plan.probes)
            .filter_map(|(o, p)| p.as_deref().map(|p| (o.name.as_str(), p)))
            .collect();
        if probes.is_empty() {
            return;
        }
        let name = s.name.as_str();
        let k = |s: &Series| Key::of(s, name);
        let windows: Vec<(&str, &crate::metrics::window::Window)> = probes
            .iter()
            .map(|(op, p)| (*op, &*p.metrics.window))
            .collect();
        self.window_quantiles(
            [visibility::P50, visibility::P95, visibility::P99],
            name,
            &windows,
            RECENT_HIST,
            out,
        );
        out.row.push((
            k(&visibility::PENDING),
            s.pending.load(Ordering::Relaxed) as f32,
            Agg::Max,
        ));
        out.row.push((
            k(&visibility::MAX_PENDING),
            plan.scenario.max_pending as f32,
            Agg::Last,
        ));
        let visible: u64 = probes.iter().map(|(_, p)| p.metrics.seconds.count()).sum();
        let polls: u64 = probes.iter().map(|(_, p)| p.metrics.polls.get()).sum();
        let missed = plan
            .metrics
            .errors_by_kind()
            .iter()
            .find(|(kind, _)| kind == crate::engine::visibility::NOT_VISIBLE)
            .map_or(0, |(_, n)| *n);
        self.rate(k(&visibility::VISIBLE_RATE), visible as f64, out);
        self.rate(k(&visibility::NOT_VISIBLE_RATE), missed as f64, out);
        self.rate(k(&visibility::POLLS_RATE), polls as f64, out);
    }

    fn postgres(&mut self, engine: &Engine, out: &mut TickOut) {
        let cfg = engine.config();
        let mut targets = engine.postgres_targets();
        targets.sort();
        for name in &targets {
            let k = |s: &Series| Key::of(s, name);
            if let Some(p) = engine.pg_stats(name) {
                out.row
                    .push((k(&postgres::POOL_IN_USE), p.in_use() as f32, Agg::Max));
                out.row
                    .push((k(&postgres::POOL_IDLE), p.idle() as f32, Agg::Mean));
                out.row
                    .push((k(&postgres::POOL_MAX), p.max() as f32, Agg::Last));
            }
            let h = engine.metrics.pools.handles(name);
            self.hist_quantile(k(&postgres::ACQUIRE_P95), &h.acquire, 0.95, out);
            self.rate(
                k(&postgres::ACQUIRE_TIMEOUTS_RATE),
                h.timeouts.get() as f64,
                out,
            );
        }
        // The statistics snapshot belongs to the target that collects it.
        let stats_target = cfg.targets.iter().find_map(|t| match &t.kind {
            crate::config::TargetKind::Postgres(p) if p.stats.enabled => Some(t.name.clone()),
            _ => None,
        });
        let Some(name) = stats_target else { return };
        let k = |s: &Series| Key::of(s, &name);
        let samples = engine.metrics.pg.snapshot.samples();
        let sum = |n: &str| -> Option<f64> {
            let mut it = samples.iter().filter(|s| s.name == n).peekable();
            it.peek()?;
            Some(it.map(|s| s.value).sum())
        };
        let up = sum("pg_up").unwrap_or(0.0);
        out.row.push((k(&postgres::PG_UP), up as f32, Agg::Mean));
        if up < 1.0 {
            return;
        }
        let counters = [
            sum("pg_stat_database_xact_commit").unwrap_or(0.0)
                + sum("pg_stat_database_xact_rollback").unwrap_or(0.0),
            sum("pg_stat_database_blks_hit").unwrap_or(0.0),
            sum("pg_stat_database_blks_read").unwrap_or(0.0),
        ];
        let pg = self.pg.entry(name.clone()).or_default();
        pg.update(out.now, counters);
        if let Some([tps, hit, read]) = pg.rates {
            out.row.push((k(&postgres::TPS), tps as f32, Agg::Mean));
            if hit + read > 0.0 {
                out.row.push((
                    k(&postgres::CACHE_HIT_RATIO),
                    (hit / (hit + read)) as f32,
                    Agg::Mean,
                ));
            }
        }
        if out.closes {
            if let Some((t0, [c0, h0, r0])) = pg.minute_start.take() {
                let dt = out.now.duration_since(t0).as_secs_f64().max(1e-9);
                let [c, h, r] = counters;
                out.minute
                    .push((k(&postgres::TPS), ((c - c0).max(0.0) / dt) as f32));
                let (dh, dr) = ((h - h0).max(0.0), (r - r0).max(0.0));
                if dh + dr > 0.0 {
                    out.minute
                        .push((k(&postgres::CACHE_HIT_RATIO), (dh / (dh + dr)) as f32));
                }
            }
            pg.minute_start = Some((out.now, counters));
        }
        let mut by_state: std::collections::BTreeMap<String, f64> = Default::default();
        for s in samples
            .iter()
            .filter(|s| s.name == "pg_stat_activity_count")
        {
            if let Some((_, st)) = s.labels.iter().find(|(l, _)| *l == "state") {
                *by_state.entry(st.clone()).or_default() += s.value;
            }
        }
        for (st, v) in by_state {
            out.row.push((
                Key::member(&postgres::CONNECTIONS_BY_STATE, &name, &st),
                v as f32,
                Agg::Mean,
            ));
        }
    }

    fn buffers(&mut self, engine: &Engine, out: &mut TickOut) {
        for (name, b) in engine.metrics.buffers.list() {
            let k = |s: &Series| Key::of(s, &name);
            out.row
                .push((k(&buffer::FILL), b.events.get() as f32, Agg::Max));
            out.row
                .push((k(&buffer::LIMIT), b.capacity.get() as f32, Agg::Last));
            self.hist_quantile(k(&buffer::FLUSH_P95), &b.flush, 0.95, out);
            self.hist_quantile(k(&buffer::E2E_P95), &b.e2e, 0.95, out);
            self.rate(k(&buffer::FLUSHED_RATE), b.flushed.get() as f64, out);
            self.rate(k(&buffer::REFUSED_RATE), b.dropped.get() as f64, out);
            self.rate(
                k(&buffer::FLUSH_ERRORS_RATE),
                b.flush_errors.get() as f64,
                out,
            );
        }
    }

    fn process(&mut self, engine: &Engine, out: &mut TickOut) {
        let Some(p) = crate::sysinfo::read_proc(None) else {
            return;
        };
        let k = |s: &Series| Key::of(s, "soakd");
        // CPU seconds per second: cores busy.
        self.rate(k(&process::CPU_CORES), p.cpu.as_secs_f64(), out);
        out.row
            .push((k(&process::RSS_BYTES), p.rss_bytes as f32, Agg::Max));
        out.row.push((
            k(&process::HISTORY_BYTES),
            self.history.value_bytes() as f32,
            Agg::Last,
        ));
        if let Some(c) = crate::metrics::memory::allocator_committed() {
            out.row.push((k(&process::HEAP_BYTES), c as f32, Agg::Max));
        }
        // soakd_memory_bytes summed over its areas: the bounded structures.
        let bounded: u64 = engine.metrics.memory.bytes().iter().map(|(_, b)| b).sum();
        out.row
            .push((k(&process::BOUNDED_BYTES), bounded as f32, Agg::Max));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::dashboard::DashboardConfig;
    use std::time::Duration;

    /// Drives the sampler's scenario readings by hand: `ticks` seconds, `per_tick`
    /// operations recorded between them. Returns the history's bytes and the sampler's
    /// own latency state (histograms held).
    fn run(ticks: usize, per_tick: u64) -> (usize, usize, usize) {
        let history = Arc::new(History::new(DashboardConfig {
            keep_1s: Duration::from_secs(120),
            keep_1m: Duration::from_secs(3600),
            ..DashboardConfig::default()
        }));
        let metrics = crate::metrics::Metrics::new(Duration::from_secs(60));
        let m = metrics.scenarios.scenario("api", &["list", "claim"]);
        let mut s = Sampler::new(history.clone());
        let t0 = Instant::now();
        let mut recorded = 0u64;
        for tick in 0..ticks {
            for i in 0..per_tick {
                let op = &m.ops[(i % 2) as usize];
                op.requests.inc();
                op.window.record(Duration::from_micros(500 + i % 20_000));
                recorded += 1;
            }
            let now = t0 + Duration::from_secs(tick as u64 + 1);
            let t_ms = 1_700_000_000_000 + tick as i64 * 1000;
            let mut out = TickOut {
                now,
                closes: tick > 0 && tick % 60 == 0,
                row: Vec::new(),
                minute: Vec::new(),
            };
            s.rate(
                Key::of(&scenario::COMPLETED_RATE, "api"),
                recorded as f64,
                &mut out,
            );
            s.latency_of("api", &m, &mut out);
            let fine: Vec<(Key, f32)> = out.row.iter().map(|(k, v, _)| (k.clone(), *v)).collect();
            history.push(Resolution::Second, t_ms, &fine);
            if out.closes {
                history.push(Resolution::Minute, t_ms - 60_000, &out.minute);
            }
        }
        let lat = &s.latency["scenario:api"];
        (history.value_bytes(), lat.recent.len(), lat.cursors.len())
    }

    #[test]
    fn history_memory_does_not_grow_with_requests() {
        // Ten times the operations, and ten times the run length past the ring's size:
        // the same bytes, the same latency state.
        let (small, recent_a, cursors_a) = run(200, 100);
        let (large, recent_b, cursors_b) = run(2000, 1000);
        assert_eq!(small, large, "history bytes");
        assert_eq!((recent_a, cursors_a), (RECENT, 2));
        assert_eq!((recent_b, cursors_b), (RECENT, 2));
    }

    #[test]
    fn quantiles_cover_the_last_seconds_only() {
        let history = Arc::new(History::new(DashboardConfig::default()));
        let metrics = crate::metrics::Metrics::new(Duration::from_secs(60));
        let m = metrics.scenarios.scenario("api", &["list"]);
        let mut s = Sampler::new(history);
        let p99 = |s: &mut Sampler| {
            let mut out = TickOut {
                now: Instant::now(),
                closes: false,
                row: Vec::new(),
                minute: Vec::new(),
            };
            s.latency_of("api", &m, &mut out);
            out.row
                .iter()
                .find(|(k, _, _)| k.field == "p99")
                .map(|x| x.1)
                .unwrap()
        };
        assert!(p99(&mut s).is_nan(), "nothing recorded yet");
        for _ in 0..100 {
            m.ops[0].window.record(Duration::from_millis(900));
        }
        let v = p99(&mut s);
        assert!((v - 0.9).abs() < 0.01, "{v}");
        // Fast operations only from now on: the slow ones leave after RECENT seconds.
        for _ in 0..RECENT {
            for _ in 0..100 {
                m.ops[0].window.record(Duration::from_millis(2));
            }
            p99(&mut s);
        }
        let v = p99(&mut s);
        assert!((v - 0.002).abs() < 0.0005, "{v}");
    }
}
