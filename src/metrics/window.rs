//! Rolling HdrHistogram windows: recent latency quantiles in bounded memory.
//!
//! A window of length W is kept as `SLOTS` sub-histograms of W/SLOTS each plus the one
//! being filled; a snapshot merges the slots that are still inside the window, so it
//! covers between W and W + W/SLOTS of history. Memory is fixed at creation: a
//! week-long run uses exactly what the first minute did.

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::time::{Duration, Instant};

const SLOTS: u64 = 6;
/// Largest recordable value, in microseconds (10 minutes); larger values are clamped.
pub const MAX_MICROS: u64 = 600_000_000;
const SIGFIGS: u8 = 3;

/// Where a reader of [`Window::since`] left off: the slot it saw last, as it was then.
#[derive(Default)]
pub struct Cursor {
    last: Option<(u64, Histogram<u32>)>,
}

pub struct Window {
    start: Instant,
    slot_len: Duration,
    inner: Mutex<Vec<(u64, Histogram<u32>)>>,
    /// Bytes of the slots' counts, fixed at creation (the histograms never resize).
    bytes: u64,
}

pub fn new_hist<T: hdrhistogram::Counter>() -> Histogram<T> {
    // Constant bounds that hdrhistogram accepts (the unit tests build these); no input
    // can make this fail.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, MAX_MICROS, SIGFIGS).expect("constant histogram bounds are valid")
}

impl Window {
    pub fn new(window: Duration) -> Window {
        let slot_len = (window / SLOTS as u32).max(Duration::from_millis(100));
        let slots: Vec<(u64, Histogram<u32>)> =
            (0..=SLOTS).map(|_| (u64::MAX, new_hist())).collect();
        let bytes = slots
            .iter()
            .map(|(_, h)| (h.distinct_values() * std::mem::size_of::<u32>()) as u64)
            .sum();
        Window {
            start: Instant::now(),
            slot_len,
            inner: Mutex::new(slots),
            bytes,
        }
    }

    /// The length of history a snapshot covers at least (the configured window).
    pub fn span(&self) -> Duration {
        self.slot_len * SLOTS as u32
    }

    /// Bytes of its histograms (the same for the whole run).
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    fn epoch(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.start).as_nanos() / self.slot_len.as_nanos().max(1))
            as u64
    }

    pub fn record(&self, value: Duration) {
        self.record_at(value, Instant::now());
    }

    pub fn record_at(&self, value: Duration, now: Instant) {
        let micros = (value.as_micros() as u64).clamp(1, MAX_MICROS);
        self.in_slot(now, |h| h.saturating_record(micros));
    }

    /// Runs `f` on the slot of `now` under the lock (reset first if it held an older
    /// epoch).
    fn in_slot(&self, now: Instant, f: impl FnOnce(&mut Histogram<u32>)) {
        let e = self.epoch(now);
        let mut slots = self.inner.lock();
        let len = slots.len() as u64;
        let slot = &mut slots[(e % len) as usize];
        if slot.0 != e {
            slot.0 = e;
            slot.1.reset();
        }
        f(&mut slot.1);
    }

    /// Adds everything in `h` (microseconds, as [`Window::since`] returns them) at `now`:
    /// how a reader keeps its own window of another length over what a window recorded.
    pub fn add_at(&self, h: &Histogram<u64>, now: Instant) {
        if h.is_empty() {
            return;
        }
        self.in_slot(now, |slot| {
            for v in h.iter_recorded() {
                let n = u32::try_from(v.count_at_value()).unwrap_or(u32::MAX);
                let _ = slot.record_n(v.value_iterated_to().clamp(1, MAX_MICROS), n);
            }
        });
    }

    /// Everything recorded inside the window ending now.
    pub fn snapshot(&self) -> Histogram<u64> {
        self.snapshot_at(Instant::now())
    }

    /// What was recorded since the last call with the same `cursor` (the sampler's
    /// once-a-second read). Under the lock it only copies the slot being filled (and, right
    /// after a slot boundary, the one before it); the differences are taken outside it,
    /// so an operation recording at the same moment waits for a memcpy at most.
    /// The first call with a fresh cursor returns an empty histogram.
    pub fn since(&self, cursor: &mut Cursor) -> Histogram<u64> {
        self.since_at(cursor, Instant::now())
    }

    pub fn since_at(&self, cursor: &mut Cursor, now: Instant) -> Histogram<u64> {
        let e = self.epoch(now);
        let (cur, before) = {
            let slots = self.inner.lock();
            let len = slots.len() as u64;
            let copy = |epoch: u64| {
                let s = &slots[(epoch % len) as usize];
                (s.0 == epoch).then(|| s.1.clone())
            };
            let before = match &cursor.last {
                Some((pe, _)) if *pe + 1 == e => copy(*pe),
                _ => None,
            };
            (copy(e), before)
        };
        let mut out: Histogram<u64> = new_hist();
        let add = |out: &mut Histogram<u64>, h: &Histogram<u32>, minus: Option<&Histogram<u32>>| {
            for v in h.iter_recorded() {
                let at = v.value_iterated_to();
                let was = minus.map_or(0, |m| m.count_at(at));
                let n = (v.count_at_value() as u64).saturating_sub(was as u64);
                if n > 0 {
                    let _ = out.record_n(at, n);
                }
            }
        };
        let cur = cur.unwrap_or_else(new_hist);
        match cursor.last.take() {
            // Still in the same slot: only the growth since the last read.
            Some((pe, prev)) if pe == e => add(&mut out, &cur, Some(&prev)),
            // One slot on: the rest of the previous slot, then all of this one.
            Some((pe, prev)) if pe + 1 == e => {
                if let Some(b) = &before {
                    add(&mut out, b, Some(&prev));
                }
                add(&mut out, &cur, None);
            }
            // First read, or more than a slot since the last: nothing is known to be new.
            _ => {}
        }
        cursor.last = Some((e, cur));
        out
    }

    pub fn snapshot_at(&self, now: Instant) -> Histogram<u64> {
        let e = self.epoch(now);
        let mut out: Histogram<u64> = new_hist();
        let slots = self.inner.lock();
        for (epoch, h) in slots.iter() {
            if *epoch != u64::MAX && *epoch <= e && e - *epoch <= SLOTS {
                for v in h.iter_recorded() {
                    // Same bounds on both sides, so recording cannot fail.
                    let _ = out.record_n(v.value_iterated_to(), v.count_at_value() as u64);
                }
            }
        }
        out
    }
}

/// What one reader has pulled from a window since it last took it: read at least once a
/// slot ([`Tap::pull`], see [`Tap::PULL_EVERY`]), taken whenever the reader likes
/// ([`Tap::take`]) — so a reader that judges once a minute misses nothing of a window
/// whose slots are 10 s long.
#[derive(Default)]
pub struct Tap {
    cursor: Cursor,
    acc: Option<Histogram<u64>>,
}

impl Tap {
    /// Pull at least this often: under the shortest slot (`quantile_window` of 10 s / 6).
    pub const PULL_EVERY: Duration = Duration::from_secs(1);

    /// Adds what `w` recorded since the last pull.
    pub fn pull(&mut self, w: &Window) {
        self.pull_at(w, Instant::now());
    }

    pub fn pull_at(&mut self, w: &Window, now: Instant) {
        let h = w.since_at(&mut self.cursor, now);
        if h.is_empty() {
            return;
        }
        match self.acc.as_mut() {
            // Same bounds on both sides: adding cannot fail.
            Some(a) => {
                let _ = a.add(&h);
            }
            None => self.acc = Some(h),
        }
    }

    /// Everything pulled since the last take (empty when nothing finished).
    pub fn take(&mut self) -> Histogram<u64> {
        self.acc.take().unwrap_or_else(new_hist)
    }
}

/// Quantiles `qs` (seconds) of several windows merged; None where nothing was recorded.
pub fn merged_quantiles<'a>(
    windows: impl IntoIterator<Item = &'a Window>,
    qs: &[f64],
) -> Vec<Option<f64>> {
    let mut merged: Option<Histogram<u64>> = None;
    for w in windows {
        let s = w.snapshot();
        match merged.as_mut() {
            Some(m) => {
                let _ = m.add(&s);
            }
            None => merged = Some(s),
        }
    }
    qs.iter()
        .map(|q| merged.as_ref().and_then(|h| quantile_secs(h, *q)))
        .collect()
}

/// Quantile `q` of `h` in seconds, or None when it is empty.
pub fn quantile_secs(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tap_pulled_each_slot_misses_nothing_a_minute_long() {
        let w = Window::new(Duration::from_secs(10));
        let t0 = w.start;
        let mut tap = Tap::default();
        tap.pull_at(&w, t0);
        let mut n = 0;
        for ms in (0..60_000u64).step_by(50) {
            let now = t0 + Duration::from_millis(ms);
            w.record_at(Duration::from_millis(1 + ms % 7), now);
            n += 1;
            if ms % 1000 == 0 {
                tap.pull_at(&w, now);
            }
        }
        tap.pull_at(&w, t0 + Duration::from_secs(60));
        assert_eq!(tap.take().len(), n);
        assert!(tap.take().is_empty());
    }

    #[test]
    fn quantiles_and_expiry() {
        let w = Window::new(Duration::from_secs(60));
        let t0 = w.start;
        for i in 1..=100u64 {
            w.record_at(Duration::from_millis(i), t0 + Duration::from_millis(i));
        }
        let s = w.snapshot_at(t0 + Duration::from_secs(1));
        assert_eq!(s.len(), 100);
        let p99 = quantile_secs(&s, 0.99).unwrap();
        assert!((p99 - 0.099).abs() < 0.001, "{p99}");
        // 30 s later still inside the window.
        assert_eq!(w.snapshot_at(t0 + Duration::from_secs(30)).len(), 100);
        // More than window + one slot later, gone.
        assert_eq!(w.snapshot_at(t0 + Duration::from_secs(71)).len(), 0);
        // Recording after expiry reuses the slot instead of growing.
        w.record_at(Duration::from_secs(2), t0 + Duration::from_secs(75));
        let s = w.snapshot_at(t0 + Duration::from_secs(75));
        assert_eq!(s.len(), 1);
        assert!((quantile_secs(&s, 0.5).unwrap() - 2.0).abs() < 0.01);
    }

    #[test]
    fn since_returns_only_what_is_new() {
        // 60 s window: 10 s slots.
        let w = Window::new(Duration::from_secs(60));
        let t0 = w.start;
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut c = Cursor::default();
        w.record_at(Duration::from_millis(5), at(100));
        assert_eq!(
            w.since_at(&mut c, at(500)).len(),
            0,
            "a fresh cursor starts now"
        );
        w.record_at(Duration::from_millis(7), at(900));
        w.record_at(Duration::from_millis(7), at(1200));
        let d = w.since_at(&mut c, at(1500));
        assert_eq!(d.len(), 2);
        assert!((quantile_secs(&d, 0.5).unwrap() - 0.007).abs() < 0.0001);
        // Across a slot boundary: the end of the old slot and the start of the new one.
        w.record_at(Duration::from_millis(50), at(9_800));
        w.record_at(Duration::from_millis(90), at(10_100));
        let d = w.since_at(&mut c, at(10_500));
        assert_eq!(d.len(), 2);
        assert!((quantile_secs(&d, 1.0).unwrap() - 0.090).abs() < 0.001);
        // Nothing new.
        assert_eq!(w.since_at(&mut c, at(11_000)).len(), 0);
        // A long silence (more than a slot): nothing is known to be new, then back to normal.
        assert_eq!(w.since_at(&mut c, at(40_000)).len(), 0);
        w.record_at(Duration::from_millis(3), at(40_200));
        assert_eq!(w.since_at(&mut c, at(41_000)).len(), 1);
    }

    #[test]
    fn clamps_out_of_range() {
        let w = Window::new(Duration::from_secs(60));
        w.record(Duration::from_secs(100_000));
        w.record(Duration::ZERO);
        assert_eq!(w.snapshot().len(), 2);
    }
}
