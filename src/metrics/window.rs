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

pub struct Window {
    start: Instant,
    slot_len: Duration,
    inner: Mutex<Vec<(u64, Histogram<u32>)>>,
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
        Window {
            start: Instant::now(),
            slot_len,
            inner: Mutex::new((0..=SLOTS).map(|_| (u64::MAX, new_hist())).collect()),
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.start).as_nanos() / self.slot_len.as_nanos().max(1))
            as u64
    }

    pub fn record(&self, value: Duration) {
        self.record_at(value, Instant::now());
    }

    pub fn record_at(&self, value: Duration, now: Instant) {
        let e = self.epoch(now);
        let micros = (value.as_micros() as u64).clamp(1, MAX_MICROS);
        let mut slots = self.inner.lock();
        let len = slots.len() as u64;
        let slot = &mut slots[(e % len) as usize];
        if slot.0 != e {
            slot.0 = e;
            slot.1.reset();
        }
        slot.1.saturating_record(micros);
    }

    /// Everything recorded inside the window ending now.
    pub fn snapshot(&self) -> Histogram<u64> {
        self.snapshot_at(Instant::now())
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

/// Quantile `q` of `h` in seconds, or None when it is empty.
pub fn quantile_secs(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn clamps_out_of_range() {
        let w = Window::new(Duration::from_secs(60));
        w.record(Duration::from_secs(100_000));
        w.record(Duration::ZERO);
        assert_eq!(w.snapshot().len(), 2);
    }
}
