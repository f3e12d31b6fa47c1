//! soakd's latency histogram: classic buckets (the SLO boundaries the rules use), a native
//! histogram beside them, and exemplars on the classic buckets — all lock-free on the hot
//! path, encoded through prometheus-client's encoders.
//!
//! prometheus-client's own `Histogram` takes a mutex per observation and cannot carry
//! exemplars together with native buckets, and it cannot be read back (the capacity
//! controller and the history sampler difference bucket counts). This type implements the
//! library's `EncodeMetric` instead, so the registry, the three expositions and the content
//! negotiation stay the library's.
//!
//! Native buckets: schema [`NATIVE_SCHEMA`] (growth factor 2^(1/8) ≈ 1.09, so a quantile
//! from them is within ±4.4 % of the true value), over a fixed range of 2^-20 s (≈ 1 µs;
//! anything at or below it is in the zero bucket) to 2^12 s (68 min; anything above is
//! counted in the top bucket). That is 256 counters, 2 KiB per series and stripe, allocated
//! once: the bucket count never grows, which is the "bucket limit" of a native histogram
//! here.
//!
//! Stripes: an observation adds to four counters (a classic bucket, a native bucket, the
//! sum and the count). With every load thread adding to the same counters, each addition
//! pulls the cache line from the other core — at tens of thousands of requests a second,
//! with the duration and three phase histograms per request, that was a quarter of the
//! generator's CPU (`docs/BENCHMARKS.md`). So the counters are kept in [`STRIPES`]
//! stripes, each on cache lines of its own; a thread always adds to the same stripe, and
//! readers (scrapes, the history sampler) add the stripes up. About 10 KiB per series.

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeMetric, MetricEncoder, NativeHistogram, NativeHistogramBuckets,
};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The native histogram's schema: 2^3 = 8 buckets per power of two.
pub const NATIVE_SCHEMA: i32 = 3;
/// Lowest native bucket boundary, as a power of two (2^-20 s ≈ 0.95 µs): the zero
/// bucket's threshold.
const NATIVE_MIN_EXP: i32 = -20;
/// Highest native bucket boundary, as a power of two (2^12 s ≈ 68 min).
const NATIVE_MAX_EXP: i32 = 12;
const PER_OCTAVE: i32 = 1 << NATIVE_SCHEMA;
/// Native bucket indexes: bucket `i` holds (2^((i-1)/8), 2^(i/8)].
const NATIVE_FIRST: i32 = NATIVE_MIN_EXP * PER_OCTAVE + 1;
const NATIVE_LAST: i32 = NATIVE_MAX_EXP * PER_OCTAVE;
const NATIVE_BUCKETS: usize = (NATIVE_LAST - NATIVE_FIRST + 1) as usize;
/// The zero bucket's threshold (2^-20 s).
pub const NATIVE_ZERO_THRESHOLD: f64 = 1.0 / (1u64 << -NATIVE_MIN_EXP) as f64;

/// The worst relative error of a quantile read from the native buckets: half a bucket's
/// width in log space, 2^(1/16) - 1.
pub fn native_relative_error() -> f64 {
    2f64.powf(1.0 / (2.0 * PER_OCTAVE as f64)) - 1.0
}

/// An exemplar's label set: the W3C trace id of the request it came from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceLabel {
    pub trace_id: String,
}

/// At most one exemplar per classic bucket per this many milliseconds: Prometheus keeps the
/// latest per scrape, so more would be work nobody sees.
const EXEMPLAR_EVERY_MS: u64 = 1000;

/// Counter stripes per histogram (see the module's doc).
const STRIPES: usize = 4;
/// Unused slots before each stripe's counters (128 bytes: two cache lines), so that no
/// cache line holds counters of two stripes, or of a stripe and a neighbouring allocation.
const PAD: usize = 16;
/// A stripe's layout, in u64 slots from its start.
const COUNT: usize = PAD;
const SUM: usize = PAD + 1;
const ZERO: usize = PAD + 2;
const CLASSIC: usize = PAD + 3;

/// The stripe the calling thread adds to: threads take stripes in turn as they first
/// observe, so the load runtime's workers (the first to observe) get different ones.
fn my_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    MINE.with(|m| *m)
}

/// A histogram handle; clones share the same counts.
#[derive(Clone, Debug)]
pub struct Histogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Classic upper bounds, ascending and finite (+Inf is implicit).
    bounds: &'static [f64],
    /// [`STRIPES`] stripes of `stride` slots: padding, then the count, the sum (f64
    /// bits), the native zero bucket, the classic buckets (not cumulative, the last one
    /// +Inf) and the native buckets; the tail pads the last stripe.
    slots: Box<[AtomicU64]>,
    stride: usize,
    /// Per classic bucket: when its exemplar was last replaced (ms after `epoch`, +1 so
    /// that 0 means never), and the exemplar.
    exemplar_at: Box<[AtomicU64]>,
    exemplars: Box<[parking_lot::Mutex<Option<Sampled>>]>,
    epoch: Instant,
    created: SystemTime,
}

impl Inner {
    fn native_at(&self) -> usize {
        CLASSIC + self.bounds.len() + 1
    }

    /// Slot `k` of every stripe, added up.
    fn total(&self, k: usize, order: Ordering) -> u64 {
        (0..STRIPES)
            .map(|s| self.slots[s * self.stride + k].load(order))
            .sum()
    }
}

#[derive(Clone, Copy, Debug)]
struct Sampled {
    trace_id: u128,
    value: f64,
    at: SystemTime,
}

/// Native bucket index of `v` (> 0) at [`NATIVE_SCHEMA`], as Prometheus defines it:
/// bucket `i` holds (2^((i-1)/8), 2^(i/8)]. Computed from the binary exponent and a
/// search within the octave, as client_golang does, so exact powers of two land on the
/// right side.
fn native_index(v: f64) -> i32 {
    // v = frac * 2^exp with frac in [0.5, 1).
    let (frac, exp) = frexp(v);
    let within = OCTAVE_BOUNDS.partition_point(|x| *x < frac) as i32;
    within + (exp - 1) * PER_OCTAVE
}

/// 2^(k/8) / 2 for k in 0..8: an octave's bucket boundaries as fractions in [0.5, 1)
/// (client_golang's table for schema 3, so boundaries match Prometheus's to the bit).
const OCTAVE_BOUNDS: [f64; PER_OCTAVE as usize] = [
    0.5,
    0.5452538663326288,
    0.5946035575013605,
    0.6484197773255048,
    0.7071067811865475,
    0.7711054127039704,
    0.8408964152537144,
    0.9170040432046711,
];

/// `v` (finite, > 0, normal) as frac × 2^exp with frac in [0.5, 1).
fn frexp(v: f64) -> (f64, i32) {
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: far below the zero threshold; callers never get here.
        return (0.5, -1021);
    }
    let frac = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (frac, exp - 1022)
}

impl Histogram {
    /// A histogram with the given classic bucket bounds (ascending, finite).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        let n = bounds.len() + 1;
        let stride = CLASSIC + n + NATIVE_BUCKETS;
        Histogram {
            inner: Arc::new(Inner {
                bounds,
                slots: (0..STRIPES * stride + PAD)
                    .map(|k| {
                        let sum = k % stride == SUM && k < STRIPES * stride;
                        AtomicU64::new(if sum { 0f64.to_bits() } else { 0 })
                    })
                    .collect(),
                stride,
                exemplar_at: (0..n).map(|_| AtomicU64::new(0)).collect(),
                exemplars: (0..n).map(|_| parking_lot::Mutex::new(None)).collect(),
                epoch: Instant::now(),
                created: SystemTime::now(),
            }),
        }
    }

    /// Records `v` seconds.
    pub fn observe(&self, v: f64) {
        self.record(v);
    }

    /// Records `v` seconds from the request traced as `trace_id`; the trace becomes the
    /// bucket's exemplar if the bucket's last one is at least a second old.
    pub fn observe_traced(&self, v: f64, trace_id: u128) {
        let bucket = self.record(v);
        let i = &self.inner;
        let now = i.epoch.elapsed().as_millis() as u64 + 1;
        let last = i.exemplar_at[bucket].load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < EXEMPLAR_EVERY_MS {
            return;
        }
        if i.exemplar_at[bucket]
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            *i.exemplars[bucket].lock() = Some(Sampled {
                trace_id,
                value: v,
                at: SystemTime::now(),
            });
        }
    }

    /// Counts `v` everywhere (in the calling thread's stripe); returns its classic bucket.
    fn record(&self, v: f64) -> usize {
        let i = &self.inner;
        let at = &i.slots[my_stripe() * i.stride..];
        let bucket = i.bounds.partition_point(|b| *b < v);
        at[CLASSIC + bucket].fetch_add(1, Ordering::Relaxed);
        let sum = &at[SUM];
        let mut old = sum.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(old) + v).to_bits();
            match sum.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(x) => old = x,
            }
        }
        if v.is_nan() || v <= NATIVE_ZERO_THRESHOLD {
            at[ZERO].fetch_add(1, Ordering::Relaxed);
        } else {
            let idx = native_index(v).clamp(NATIVE_FIRST, NATIVE_LAST);
            at[i.native_at() + (idx - NATIVE_FIRST) as usize].fetch_add(1, Ordering::Relaxed);
        }
        // Last, so that a reader never sees a count its buckets do not hold yet.
        at[COUNT].fetch_add(1, Ordering::Release);
        bucket
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner.total(COUNT, Ordering::Acquire)
    }

    /// The sum of observations so far.
    pub fn sum(&self) -> f64 {
        let i = &self.inner;
        (0..STRIPES)
            .map(|s| f64::from_bits(i.slots[s * i.stride + SUM].load(Ordering::Relaxed)))
            .sum()
    }

    /// Classic counts per bucket (not cumulative), the last one +Inf.
    fn classic(&self) -> Vec<u64> {
        let i = &self.inner;
        (0..=i.bounds.len())
            .map(|k| i.total(CLASSIC + k, Ordering::Relaxed))
            .collect()
    }

    /// Cumulative classic counts: (upper bound, count at or below it), +Inf not included;
    /// and the total.
    pub fn classic_cumulative(&self) -> (u64, Vec<(f64, u64)>) {
        let i = &self.inner;
        let counts = self.classic();
        let mut acc = 0;
        let buckets = i
            .bounds
            .iter()
            .zip(&counts)
            .map(|(b, c)| {
                acc += c;
                (*b, acc)
            })
            .collect();
        let inf = counts[i.bounds.len()];
        (acc + inf, buckets)
    }

    /// Native buckets with observations: (index, count), ascending; and the zero count.
    pub fn native_buckets(&self) -> (u64, Vec<(i32, u64)>) {
        let i = &self.inner;
        let first = i.native_at();
        let buckets = (0..NATIVE_BUCKETS)
            .filter_map(|k| {
                let c = i.total(first + k, Ordering::Relaxed);
                (c > 0).then_some((k as i32 + NATIVE_FIRST, c))
            })
            .collect();
        (i.total(ZERO, Ordering::Relaxed), buckets)
    }

    /// The exemplars by classic bucket index, for the encoders.
    fn exemplars(&self) -> HashMap<usize, Exemplar<TraceLabel, f64>> {
        self.inner
            .exemplars
            .iter()
            .enumerate()
            .filter_map(|(k, slot)| {
                let s = (*slot.lock())?;
                Some((
                    k,
                    Exemplar::new(
                        TraceLabel {
                            trace_id: format!("{:032x}", s.trace_id),
                        },
                        s.value,
                        Some(s.at),
                    ),
                ))
            })
            .collect()
    }
}

/// Native buckets as Prometheus's spans and deltas: spans of consecutive indexes (the
/// first offset absolute, later ones the gap from the previous span's end), and per
/// bucket the difference from the previous bucket's count.
pub fn spans_and_deltas(buckets: &[(i32, u64)]) -> (Vec<(i32, u32)>, Vec<i64>) {
    let mut spans: Vec<(i32, u32)> = Vec::new();
    let mut deltas = Vec::with_capacity(buckets.len());
    let mut next: Option<i32> = None;
    let mut prev_count = 0i64;
    for &(idx, count) in buckets {
        match next {
            Some(n) if n == idx => {
                if let Some(last) = spans.last_mut() {
                    last.1 += 1;
                }
            }
            Some(n) => spans.push((idx - n, 1)),
            None => spans.push((idx, 1)),
        }
        next = Some(idx + 1);
        deltas.push(count as i64 - prev_count);
        prev_count = count as i64;
    }
    (spans, deltas)
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let i = &self.inner;
        // Buckets first and the count last, so that the count never exceeds the buckets.
        let mut buckets: Vec<(f64, u64)> = i
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.classic())
            .collect();
        let (zero, native) = self.native_buckets();
        let total: u64 = buckets.iter().map(|b| b.1).sum();
        let native_total = zero + native.iter().map(|b| b.1).sum::<u64>();
        // The +Inf bucket absorbs observations that landed between the loads above.
        let count = total.max(native_total);
        if let Some(inf) = buckets.last_mut() {
            inf.1 += count - total;
        }
        let (spans, deltas) = spans_and_deltas(&native);
        let zero = zero + (count - native_total);
        let exemplars = self.exemplars();
        encoder.encode_histogram_with_native(
            self.sum(),
            count,
            &buckets,
            Some(&exemplars),
            NativeHistogram {
                schema: NATIVE_SCHEMA,
                zero_threshold: NATIVE_ZERO_THRESHOLD,
                zero_count: zero,
                negative: NativeHistogramBuckets {
                    spans: &[],
                    deltas: &[],
                },
                positive: NativeHistogramBuckets {
                    spans: &spans,
                    deltas: &deltas,
                },
                created: Some(i.created),
            },
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Makes a `Family` of histograms with the same bounds.
#[derive(Clone, Copy, Debug)]
pub struct WithBounds(pub &'static [f64]);

impl prometheus_client::metrics::family::MetricConstructor<Histogram> for WithBounds {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upper(idx: i32) -> f64 {
        2f64.powf(idx as f64 / PER_OCTAVE as f64)
    }

    #[test]
    fn native_index_follows_prometheus_boundaries() {
        // Powers of two are upper bounds: 1 is the top of bucket 0, 2 of bucket 8.
        assert_eq!(native_index(1.0), 0);
        assert_eq!(native_index(2.0), 8);
        assert_eq!(native_index(0.5), -8);
        assert_eq!(native_index(1.0000001), 1);
        for v in [1e-6, 3.7e-4, 0.0123, 0.25, 0.3, 1.5, 42.0, 3000.0] {
            let i = native_index(v);
            assert!(
                upper(i - 1) < v && v <= upper(i) * (1.0 + 1e-12),
                "{v} in {i}"
            );
        }
    }

    #[test]
    fn counts_land_in_classic_and_native_buckets() {
        static B: &[f64] = &[0.1, 0.5, 1.0];
        let h = Histogram::new(B);
        for v in [0.05, 0.1, 0.2, 0.7, 3.0, 1e-9, 1e9] {
            h.observe(v);
        }
        assert_eq!(h.count(), 7);
        let (total, cum) = h.classic_cumulative();
        assert_eq!(total, 7);
        // 1e-9, 0.05 and 0.1 at or below 0.1; 0.2 below 0.5; 0.7 below 1.
        assert_eq!(cum, vec![(0.1, 3), (0.5, 4), (1.0, 5)]);
        let (zero, native) = h.native_buckets();
        assert_eq!(zero, 1, "1 ns is in the zero bucket");
        assert_eq!(native.iter().map(|b| b.1).sum::<u64>(), 6);
        assert_eq!(
            native.last().map(|b| b.0),
            Some(NATIVE_LAST),
            "1e9 s is clamped"
        );
        assert!((h.sum() - (0.05 + 0.1 + 0.2 + 0.7 + 3.0 + 1e-9 + 1e9)).abs() < 1e-3);
    }

    #[test]
    fn threads_add_to_their_own_stripes_and_readers_add_them_up() {
        static B: &[f64] = &[0.1, 1.0];
        let h = Histogram::new(B);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for k in 0..1000 {
                        h.observe(if (t + k) % 2 == 0 { 0.05 } else { 0.5 });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.count(), 8000);
        assert_eq!(
            h.classic_cumulative(),
            (8000, vec![(0.1, 4000), (1.0, 8000)])
        );
        let (zero, native) = h.native_buckets();
        assert_eq!((zero, native.len()), (0, 2));
        assert_eq!(native.iter().map(|b| b.1).sum::<u64>(), 8000);
        assert!((h.sum() - (4000.0 * 0.05 + 4000.0 * 0.5)).abs() < 1e-6);
        // The stripes were used: more than one holds counts.
        let i = &h.inner;
        let used = (0..STRIPES)
            .filter(|s| i.slots[s * i.stride + COUNT].load(Ordering::Relaxed) > 0)
            .count();
        assert!(used > 1, "{used} stripes used");
    }

    #[test]
    fn spans_and_deltas_encode_runs_and_gaps() {
        let (spans, deltas) = spans_and_deltas(&[(-3, 2), (-2, 5), (0, 1), (4, 1), (5, 3)]);
        assert_eq!(spans, vec![(-3, 2), (1, 1), (3, 2)]);
        assert_eq!(deltas, vec![2, 3, -4, 0, 2]);
        assert_eq!(spans_and_deltas(&[]), (vec![], vec![]));
    }

    #[test]
    fn exemplars_are_sampled_per_bucket_and_encoded_on_buckets() {
        static B: &[f64] = &[0.1, 1.0];
        let h = Histogram::new(B);
        h.observe_traced(0.05, 0xabc);
        // Same bucket within a second: the first exemplar stays.
        h.observe_traced(0.06, 0xdef);
        // Another bucket gets its own.
        h.observe_traced(0.5, 0x123);
        assert_eq!(h.exemplars().len(), 2);
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register("lat_seconds", "Latency", h.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        let line = |le: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("lat_seconds_bucket{{le=\"{le}\"}}")))
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            line("0.1").starts_with(&format!(
                "lat_seconds_bucket{{le=\"0.1\"}} 2 # {{trace_id=\"{:032x}\"}} 0.05 ",
                0xabc
            )),
            "{text}"
        );
        assert!(line("1.0").contains(&format!("{:032x}", 0x123)), "{text}");
        assert!(!line("+Inf").contains('#'), "{text}");
        assert!(text.contains("lat_seconds_count 3"), "{text}");
    }
}
