//! A block: what one op did in one period (a minute by default) — its latency as a
//! sparse log-bucketed histogram, its completed operations and its errors by kind. The
//! deploy judge's unit: operations within a minute share the target's state (a GC, a
//! cache, a neighbour) and are not independent; minutes, far more nearly, are.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Buckets per doubling: 2^5 = 32, each 2.2 % wide, so a quantile read at a bucket's
/// geometric middle is within 1.1 % of the recorded value — well under the 5 % a deploy
/// verdict's smallest latency effect is by default (the same layout as a Prometheus
/// native histogram of schema 5).
pub const SCHEMA: i32 = 5;
/// The quantiles every op is compared on.
pub const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];
const PER_DOUBLING: f64 = (1 << SCHEMA) as f64;

/// The bucket a latency of `secs` falls in: `(2^((i-1)/32), 2^(i/32)]`.
pub fn bucket_of(secs: f64) -> i32 {
    (secs.max(1e-9).log2() * PER_DOUBLING).ceil() as i32
}

/// A bucket's geometric middle, seconds.
pub fn value_of(i: i32) -> f64 {
    ((i as f64 - 0.5) / PER_DOUBLING).exp2()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Block {
    /// Start, unix seconds.
    pub t: f64,
    pub secs: f64,
    /// Latency buckets `(index, count)`, ascending by index.
    pub hist: Vec<(i32, u32)>,
    /// Operations completed (succeeded or failed).
    pub requests: u64,
    /// Failed operations by error kind.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, u64>,
}

impl Block {
    /// The buckets of an HdrHistogram of microseconds (what the op windows keep).
    pub fn hist_of(h: &hdrhistogram::Histogram<u64>) -> Vec<(i32, u32)> {
        let mut out: Vec<(i32, u32)> = Vec::new();
        for v in h.iter_recorded() {
            let i = bucket_of(v.value_iterated_to() as f64 / 1e6);
            let n = v.count_at_value().min(u32::MAX as u64) as u32;
            match out.last_mut() {
                Some((j, c)) if *j == i => *c = c.saturating_add(n),
                _ => out.push((i, n)),
            }
        }
        out
    }

    /// Buckets `(lower, upper, count)` in seconds from another layout (a Prometheus
    /// native histogram, 8 per doubling, or classic boundaries) laid over this one:
    /// each count spread evenly over the log buckets its range covers, so a quantile
    /// interpolates inside it as Prometheus's does; a range from 0 lands in its top
    /// bucket and one to +Inf in its bottom one. Fractional counts (from `increase`'s
    /// extrapolation) are carried, so the total is the sum rounded.
    pub fn hist_from_ranges(ranges: &[(f64, f64, f64)]) -> Vec<(i32, u32)> {
        let edge = |x: f64| x.log2() * PER_DOUBLING;
        let mut spread: BTreeMap<i32, f64> = BTreeMap::new();
        for &(lo, hi, n) in ranges {
            if n.is_nan() || n <= 0.0 || hi.is_nan() || hi <= 0.0 {
                continue;
            }
            let (first, last) = if lo <= 0.0 || !lo.is_finite() {
                let i = bucket_of(hi);
                (i, i)
            } else if !hi.is_finite() {
                let i = (edge(lo) + 1e-6).floor() as i32 + 1;
                (i, i)
            } else {
                let first = (edge(lo) + 1e-6).floor() as i32 + 1;
                (first, ((edge(hi) - 1e-6).ceil() as i32).max(first))
            };
            let each = n / (last - first + 1) as f64;
            for i in first..=last {
                *spread.entry(i).or_default() += each;
            }
        }
        let (mut out, mut carried, mut kept) = (Vec::with_capacity(spread.len()), 0.0, 0.0);
        for (i, x) in spread {
            carried += x;
            let n = (carried.round() - kept).max(0.0);
            if n > 0.0 {
                out.push((i, n.min(u32::MAX as f64) as u32));
                kept += n;
            }
        }
        out
    }

    /// Latencies recorded.
    pub fn count(&self) -> u64 {
        self.hist.iter().map(|(_, n)| *n as u64).sum()
    }

    /// Failed operations, every kind.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Quantile `q` of this block alone, seconds; None when it recorded nothing.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        quantile_of(&self.hist, q)
    }

    /// Bytes this block holds (for the memory report).
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Block>()
            + self.hist.capacity() * std::mem::size_of::<(i32, u32)>()
            + self.errors.keys().map(|k| k.len() + 32).sum::<usize>()
    }

    /// Every latency multiplied by `factor` (the accuracy benchmark's known shift).
    pub fn scaled(&self, factor: f64) -> Block {
        let shift = factor.log2() * PER_DOUBLING;
        let mut hist: Vec<(i32, u32)> = Vec::with_capacity(self.hist.len());
        for (i, n) in &self.hist {
            let j = (*i as f64 + shift).round() as i32;
            match hist.last_mut() {
                Some((k, c)) if *k == j => *c = c.saturating_add(*n),
                _ => hist.push((j, *n)),
            }
        }
        Block {
            hist,
            ..self.clone()
        }
    }
}

/// Quantile `q` of sparse buckets, seconds.
pub fn quantile_of(hist: &[(i32, u32)], q: f64) -> Option<f64> {
    let total: u64 = hist.iter().map(|(_, n)| *n as u64).sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    for (i, n) in hist {
        seen += *n as u64;
        if seen >= rank {
            return Some(value_of(*i));
        }
    }
    hist.last().map(|(i, _)| value_of(*i))
}

/// Blocks of one window laid over a shared index range as cumulative counts, so the
/// quantile of any multiset of them is a binary search of summed prefix counts — what
/// a bootstrap asks thousands of times.
pub struct Dense {
    lo: i32,
    /// Per block, cumulative counts over `lo..=hi`.
    cum: Vec<Vec<u32>>,
    totals: Vec<u64>,
}

impl Dense {
    /// Over the index range of every block given (both windows', so they share it).
    pub fn new(blocks: &[&Block], lo: i32, hi: i32) -> Dense {
        let width = (hi - lo + 1).max(1) as usize;
        let mut cum = Vec::with_capacity(blocks.len());
        let mut totals = Vec::with_capacity(blocks.len());
        for b in blocks {
            let mut c = vec![0u32; width];
            for (i, n) in &b.hist {
                let k = (*i - lo).clamp(0, width as i32 - 1) as usize;
                c[k] = c[k].saturating_add(*n);
            }
            let mut run = 0u32;
            for x in c.iter_mut() {
                run = run.saturating_add(*x);
                *x = run;
            }
            totals.push(run as u64);
            cum.push(c);
        }
        Dense { lo, cum, totals }
    }

    pub fn len(&self) -> usize {
        self.cum.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cum.is_empty()
    }

    /// Quantiles `qs` (ascending) of the blocks `pick` (indices, repeats allowed) merged.
    pub fn quantiles(&self, pick: &[usize], qs: &[f64], out: &mut Vec<Option<f64>>) {
        out.clear();
        let total: u64 = pick.iter().map(|&b| self.totals[b]).sum();
        let width = self.cum.first().map_or(0, Vec::len);
        for q in qs {
            if total == 0 || width == 0 {
                out.push(None);
                continue;
            }
            let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
            let (mut a, mut b) = (0usize, width - 1);
            while a < b {
                let mid = (a + b) / 2;
                let s: u64 = pick.iter().map(|&k| self.cum[k][mid] as u64).sum();
                if s >= rank {
                    b = mid;
                } else {
                    a = mid + 1;
                }
            }
            out.push(Some(value_of(self.lo + a as i32)));
        }
    }
}

/// The index range of every bucket in `blocks`.
pub fn range(blocks: &[&Block]) -> Option<(i32, i32)> {
    let lo = blocks
        .iter()
        .filter_map(|b| b.hist.first())
        .map(|x| x.0)
        .min()?;
    let hi = blocks
        .iter()
        .filter_map(|b| b.hist.last())
        .map(|x| x.0)
        .max()?;
    Some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quantile_is_within_its_bucket_of_the_truth() {
        for v in [0.0001, 0.003, 0.0523, 0.2, 1.7, 42.0] {
            let got = value_of(bucket_of(v));
            assert!((got / v - 1.0).abs() < 0.0111, "{v} read as {got}");
        }
        let mut h = crate::metrics::window::new_hist::<u64>();
        for us in 1..=10_000u64 {
            h.record(us * 10).unwrap();
        }
        let b = Block {
            hist: Block::hist_of(&h),
            ..Block::default()
        };
        assert_eq!(b.count(), 10_000);
        let p95 = b.quantile(0.95).unwrap();
        assert!((p95 / 0.095 - 1.0).abs() < 0.012, "{p95}");
    }

    #[test]
    fn ranges_from_another_layout_spread_over_the_log_buckets() {
        // Schema 3 (Prometheus native, 8 per doubling): one bucket is four of ours.
        let lo = 2f64.powf(-56.0 / 8.0); // ≈ 7.8 ms
        let hi = 2f64.powf(-55.0 / 8.0);
        let h = Block::hist_from_ranges(&[(lo, hi, 400.0)]);
        assert_eq!(h.len(), 4, "{h:?}");
        assert!(h.iter().all(|(_, n)| *n == 100), "{h:?}");
        assert_eq!(h[0].0, -223);
        assert_eq!(h[3].0, -220);
        // Uniform latency across many native buckets reads back its quantiles within a
        // bucket of ours.
        let mut ranges = Vec::new();
        for k in -64..-40 {
            let (a, b) = (2f64.powf(k as f64 / 8.0), 2f64.powf((k + 1) as f64 / 8.0));
            ranges.push((a, b, 1000.0 * (b - a) / 0.05));
        }
        let b = Block {
            hist: Block::hist_from_ranges(&ranges),
            ..Block::default()
        };
        let total: f64 = ranges.iter().map(|r| r.2).sum();
        assert!(
            (b.count() as f64 - total).abs() <= 1.0,
            "{} of {total}",
            b.count()
        );
        let (first, last) = (ranges[0].0, ranges[ranges.len() - 1].1);
        let want = first + 0.95 * (last - first);
        let got = b.quantile(0.95).unwrap();
        assert!((got / want - 1.0).abs() < 0.02, "p95 {got} of {want}");
        // Classic ranges: from 0 into the top bucket, to +Inf into the bottom one,
        // fractional counts carried.
        let h = Block::hist_from_ranges(&[
            (0.0, 0.005, 2.4),
            (0.005, 0.01, 0.0),
            (1.0, f64::INFINITY, 1.3),
        ]);
        assert_eq!(h, vec![(bucket_of(0.005), 2), (1, 2)]);
        assert!(Block::hist_from_ranges(&[(0.1, 0.2, f64::NAN)]).is_empty());
    }

    #[test]
    fn dense_quantiles_match_the_merged_blocks() {
        let mk = |lo: u64, hi: u64| {
            let mut h = crate::metrics::window::new_hist::<u64>();
            for us in lo..hi {
                h.record(us).unwrap();
            }
            Block {
                hist: Block::hist_of(&h),
                ..Block::default()
            }
        };
        let (a, b) = (mk(1000, 3000), mk(5000, 7000));
        let blocks = [&a, &b];
        let (lo, hi) = range(&blocks).unwrap();
        let d = Dense::new(&blocks, lo, hi);
        let mut out = Vec::new();
        d.quantiles(&[0, 1], &[0.5, 0.99], &mut out);
        let mut merged: Vec<(i32, u32)> = a.hist.clone();
        merged.extend(b.hist.iter().copied());
        merged.sort();
        let want = [quantile_of(&merged, 0.5), quantile_of(&merged, 0.99)];
        assert_eq!(out, want);
        // A block twice weighs twice.
        d.quantiles(&[0, 0, 1], &[0.5], &mut out);
        assert!(out[0].unwrap() < 0.003, "{out:?}");
        // Scaling moves every quantile by the factor, within a bucket.
        let s = b.scaled(1.1);
        let r = s.quantile(0.5).unwrap() / b.quantile(0.5).unwrap();
        assert!((r - 1.1).abs() < 0.012, "{r}");
    }
}
