//! Snapshots of a histogram's cumulative bucket counts, so two moments can be
//! differenced: what was observed between them, and its quantiles as PromQL's
//! `histogram_quantile` would compute them. The capacity controller measures its
//! windows with these; the history sampler its last seconds and minutes.

use crate::metrics::histogram::Histogram;

/// Cumulative classic counts of a histogram, to difference two moments.
#[derive(Debug, Clone, Default)]
pub struct HistSnap {
    pub count: u64,
    /// (upper bound, cumulative count), ascending; +Inf not included.
    pub buckets: Vec<(f64, u64)>,
}

impl HistSnap {
    pub fn of(h: &Histogram) -> HistSnap {
        let (count, buckets) = h.classic_cumulative();
        HistSnap { count, buckets }
    }

    /// Quantile `q` of what was observed between `before` and `self`, interpolated
    /// within a bucket as PromQL's histogram_quantile does; None when nothing was.
    pub fn quantile_since(&self, before: &HistSnap, q: f64) -> Option<f64> {
        let total = self.count.saturating_sub(before.count);
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut prev_bound = 0.0;
        let mut prev_count = 0u64;
        for (i, (ub, c)) in self.buckets.iter().enumerate() {
            let b = before.buckets.get(i).map(|x| x.1).unwrap_or(0);
            let c = c.saturating_sub(b);
            if c as f64 >= rank {
                let in_bucket = (c - prev_count) as f64;
                let f = if in_bucket > 0.0 {
                    (rank - prev_count as f64) / in_bucket
                } else {
                    1.0
                };
                return Some(prev_bound + (ub - prev_bound) * f.clamp(0.0, 1.0));
            }
            prev_bound = *ub;
            prev_count = c;
        }
        // In the +Inf bucket: the largest finite bound is all that is known.
        Some(prev_bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_quantiles_of_a_window() {
        let h = Histogram::new(&[0.1, 0.2, 0.5, 1.0]);
        for _ in 0..100 {
            h.observe(0.05);
        }
        let before = HistSnap::of(&h);
        assert_eq!(HistSnap::of(&h).quantile_since(&before, 0.5), None);
        // 10 in (0.1, 0.2], 90 in (0.2, 0.5]: p95 lies in the third bucket.
        for _ in 0..10 {
            h.observe(0.15);
        }
        for _ in 0..90 {
            h.observe(0.3);
        }
        let after = HistSnap::of(&h);
        let p95 = after.quantile_since(&before, 0.95).unwrap();
        // rank 95 of 100: 10 below 0.2, so 85/90 of the way through (0.2, 0.5].
        assert!((p95 - (0.2 + 0.3 * 85.0 / 90.0)).abs() < 1e-9, "{p95}");
        let p05 = after.quantile_since(&before, 0.05).unwrap();
        assert!(p05 > 0.1 && p05 <= 0.2, "{p05}");
        // Above the last bound: the last finite bound.
        h.observe(5.0);
        assert_eq!(HistSnap::of(&h).quantile_since(&after, 0.99), Some(1.0));
    }
}
