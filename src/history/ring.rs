//! Fixed-size, column-oriented rings of samples: one timestamp column shared by every
//! series, one `f32` column per series. A ring is sized once (`capacity` rows) and never
//! grows; the number of series is bounded by [`MAX_SERIES`], so a ring's memory is at
//! most `capacity × (8 + 4 × MAX_SERIES)` bytes whatever the run length.
//!
//! A series that appears later (a scenario added by a reload) reads as missing (NaN,
//! `null` in JSON) for the rows before it; one that no sample has named for a whole
//! ring's length holds nothing but NaN and is dropped.

use super::catalogue::{Group, Series};
use serde::Serialize;
use std::collections::HashMap;

/// At most this many series per ring; more are not recorded (and logged once).
pub const MAX_SERIES: usize = 4096;

/// What a series describes: its `group` ([`Group`]), `name` the scenario, target or
/// writer; `field` the quantity, one of the [catalogue](super::catalogue)'s.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Key {
    pub group: Group,
    pub name: String,
    pub field: String,
}

impl Key {
    pub fn new(group: Group, name: &str, field: impl Into<String>) -> Key {
        Key {
            group,
            name: name.to_string(),
            field: field.into(),
        }
    }

    /// `series` of `name`.
    pub fn of(series: &Series, name: &str) -> Key {
        Key::new(series.group, name, series.field)
    }

    /// The member `member` (a kind, a state) of the family `series`, of `name`.
    pub fn member(series: &Series, name: &str, member: &str) -> Key {
        Key::new(series.group, name, format!("{}{member}", series.field))
    }

    /// Bytes of its strings on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.name.capacity() + self.field.capacity()
    }
}

struct Column {
    key: Key,
    values: Vec<f32>,
    /// Rows written since this series last had a value.
    idle: usize,
}

pub struct Ring {
    capacity: usize,
    /// Rows written so far (the next row goes to `written % capacity`).
    written: u64,
    ts: Vec<i64>,
    columns: Vec<Column>,
    index: HashMap<Key, usize>,
    overflow_logged: bool,
}

/// A slice of a ring: rows newer than some time, oldest first.
#[derive(Debug, Serialize)]
pub struct View {
    /// Unix milliseconds of each row.
    pub t: Vec<i64>,
    /// Only series with at least one value in these rows.
    pub series: Vec<SeriesView>,
}

#[derive(Debug, Serialize)]
pub struct SeriesView {
    #[serde(flatten)]
    pub key: Key,
    /// One per row of `t`; NaN (null in JSON) where there was no value.
    pub values: Vec<f32>,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        let capacity = capacity.max(1);
        Ring {
            capacity,
            written: 0,
            ts: vec![0; capacity],
            columns: Vec::new(),
            index: HashMap::new(),
            overflow_logged: false,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Rows held now (at most `capacity`).
    pub fn len(&self) -> usize {
        self.written.min(self.capacity as u64) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    pub fn series_count(&self) -> usize {
        self.columns.len()
    }

    /// Bytes held by the rows (timestamps and values), the index aside.
    pub fn value_bytes(&self) -> usize {
        self.ts.capacity() * 8
            + self
                .columns
                .iter()
                .map(|c| c.values.capacity() * 4)
                .sum::<usize>()
    }

    /// Bytes of the rows plus the series' names and index (what the ring holds on the
    /// heap).
    pub fn memory_bytes(&self) -> usize {
        let keys: usize = self
            .index
            .keys()
            .map(|k| std::mem::size_of::<Key>() + k.heap_bytes())
            .sum();
        self.value_bytes()
            + self.columns.capacity() * std::mem::size_of::<Column>()
            + keys * 2 // once in the index, once in its column
            + self.index.capacity() * (std::mem::size_of::<(Key, usize)>() + 1)
    }

    /// The newest row's time.
    pub fn last_t(&self) -> Option<i64> {
        (self.written > 0).then(|| self.ts[((self.written - 1) % self.capacity as u64) as usize])
    }

    /// Appends one row at `t_ms`; series not named get NaN in it.
    pub fn push(&mut self, t_ms: i64, values: &[(Key, f32)]) {
        let row = (self.written % self.capacity as u64) as usize;
        self.written += 1;
        self.ts[row] = t_ms;
        for c in &mut self.columns {
            c.values[row] = f32::NAN;
            c.idle += 1;
        }
        for (key, v) in values {
            let i = match self.index.get(key) {
                Some(&i) => i,
                None => {
                    if self.columns.len() >= MAX_SERIES {
                        if !self.overflow_logged {
                            self.overflow_logged = true;
                            tracing::warn!(
                                max = MAX_SERIES,
                                "history: too many series; new ones are not recorded"
                            );
                        }
                        continue;
                    }
                    self.columns.push(Column {
                        key: key.clone(),
                        values: vec![f32::NAN; self.capacity],
                        idle: 0,
                    });
                    self.index.insert(key.clone(), self.columns.len() - 1);
                    self.columns.len() - 1
                }
            };
            let c = &mut self.columns[i];
            c.values[row] = *v;
            c.idle = 0;
        }
        // A series idle for a whole ring holds only NaN now.
        if self.columns.iter().any(|c| c.idle >= self.capacity) {
            let cap = self.capacity;
            self.columns.retain(|c| c.idle < cap);
            self.index = self
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.key.clone(), i))
                .collect();
        }
    }

    /// Rows with a time after `since_ms`, oldest first.
    pub fn since(&self, since_ms: i64) -> View {
        let n = self.len();
        let first = self.written - n as u64;
        let rows: Vec<usize> = (first..self.written)
            .map(|w| (w % self.capacity as u64) as usize)
            .filter(|&r| self.ts[r] > since_ms)
            .collect();
        let t = rows.iter().map(|&r| self.ts[r]).collect();
        let mut series: Vec<SeriesView> = self
            .columns
            .iter()
            .filter_map(|c| {
                let values: Vec<f32> = rows.iter().map(|&r| c.values[r]).collect();
                values.iter().any(|v| !v.is_nan()).then(|| SeriesView {
                    key: c.key.clone(),
                    values,
                })
            })
            .collect();
        series.sort_by(|a, b| a.key.cmp(&b.key));
        View { t, series }
    }
}

/// How a series' 1 s values become one 1 min value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    /// Rates, fills, ratios: the mean of the minute's values.
    Mean,
    /// Peaks (in flight, CPU): the largest.
    Max,
    /// Settings (caps, limits): the latest.
    Last,
}

#[derive(Clone, Copy)]
struct Acc {
    agg: Agg,
    sum: f64,
    n: u32,
    max: f32,
    last: f32,
}

/// Turns 1 s rows into 1 min rows. Minutes are aligned to the wall clock; a row at
/// `t_ms` belongs to the minute starting at `t_ms - t_ms % 60_000`, and a minute is
/// emitted (stamped with its start) when the first row of a later minute arrives.
#[derive(Default)]
pub struct Rollup {
    minute: Option<i64>,
    acc: HashMap<Key, Acc>,
}

pub const MINUTE_MS: i64 = 60_000;

impl Rollup {
    /// Adds a 1 s row; returns the previous minute's row when this one starts a new
    /// minute.
    pub fn add(&mut self, t_ms: i64, values: &[(Key, f32, Agg)]) -> Option<(i64, Vec<(Key, f32)>)> {
        let m = t_ms - t_ms.rem_euclid(MINUTE_MS);
        let closed = match self.minute {
            Some(prev) if prev != m => Some(self.close(prev)),
            _ => None,
        };
        if self.minute != Some(m) {
            self.minute = Some(m);
            self.acc.clear();
        }
        for (k, v, agg) in values {
            if v.is_nan() {
                continue;
            }
            let a = self.acc.entry(k.clone()).or_insert(Acc {
                agg: *agg,
                sum: 0.0,
                n: 0,
                max: f32::NEG_INFINITY,
                last: f32::NAN,
            });
            a.sum += *v as f64;
            a.n += 1;
            a.max = a.max.max(*v);
            a.last = *v;
        }
        closed
    }

    /// The minute being filled, if any.
    pub fn current_minute(&self) -> Option<i64> {
        self.minute
    }

    fn close(&self, minute: i64) -> (i64, Vec<(Key, f32)>) {
        let mut out: Vec<(Key, f32)> = self
            .acc
            .iter()
            .map(|(k, a)| {
                let v = match a.agg {
                    Agg::Mean => (a.sum / a.n.max(1) as f64) as f32,
                    Agg::Max => a.max,
                    Agg::Last => a.last,
                };
                (k.clone(), v)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        (minute, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(field: &str) -> Key {
        Key::new(Group::Scenario, "api", field)
    }

    #[test]
    fn a_simulated_week_keeps_a_fixed_number_of_rows_and_bytes() {
        let mut r = Ring::new(3600);
        let mut m = Ring::new(1440);
        let mut roll = Rollup::default();
        let t0 = 1_700_000_000_000i64;
        let mut bytes_after_first_hour = 0;
        for s in 0..7 * 86_400i64 {
            let t = t0 + s * 1000;
            let row = [
                (k("achieved_rate"), 100.0, Agg::Mean),
                (k("in_flight"), 3.0, Agg::Max),
            ];
            r.push(
                t,
                &row.iter()
                    .map(|(k, v, _)| (k.clone(), *v))
                    .collect::<Vec<_>>(),
            );
            if let Some((mt, vals)) = roll.add(t, &row) {
                m.push(mt, &vals);
            }
            if s == 3600 {
                bytes_after_first_hour = r.value_bytes() + m.value_bytes();
            }
        }
        assert_eq!(r.len(), 3600);
        assert_eq!(m.len(), 1440);
        assert_eq!(r.series_count(), 2);
        assert_eq!(r.value_bytes() + m.value_bytes(), bytes_after_first_hour);
        // The newest row is the last second pushed; the oldest an hour before it.
        let v = r.since(0);
        assert_eq!(v.t.len(), 3600);
        assert_eq!(*v.t.last().unwrap(), t0 + (7 * 86_400 - 1) * 1000);
        assert_eq!(v.t[0], t0 + (7 * 86_400 - 3600) * 1000);
        assert!(v.t.windows(2).all(|w| w[1] - w[0] == 1000));
    }

    #[test]
    fn since_returns_exactly_the_newer_rows() {
        let mut r = Ring::new(10);
        for i in 0..25i64 {
            r.push(i * 1000, &[(k("x"), i as f32)]);
        }
        // Rows 15..24 are held.
        assert_eq!(r.since(0).t.len(), 10);
        let v = r.since(20_000);
        assert_eq!(v.t, vec![21_000, 22_000, 23_000, 24_000]);
        assert_eq!(v.series[0].values, vec![21.0, 22.0, 23.0, 24.0]);
        assert!(r.since(24_000).t.is_empty());
        assert!(r.since(24_000).series.is_empty());
        assert_eq!(r.since(-1).t[0], 15_000);
        assert_eq!(r.last_t(), Some(24_000));
    }

    #[test]
    fn late_series_read_as_missing_and_idle_ones_are_dropped() {
        let mut r = Ring::new(4);
        r.push(1000, &[(k("a"), 1.0)]);
        r.push(2000, &[(k("a"), 2.0), (k("b"), 5.0)]);
        let v = r.since(0);
        let b = v.series.iter().find(|s| s.key.field == "b").unwrap();
        assert!(b.values[0].is_nan());
        assert_eq!(b.values[1], 5.0);
        // "a" stops; after a whole ring without it, it is gone.
        for t in 3..=6 {
            r.push(t * 1000, &[(k("b"), 1.0)]);
        }
        assert_eq!(r.series_count(), 1);
        assert!(r.since(0).series.iter().all(|s| s.key.field == "b"));
    }

    #[test]
    fn rollup_cuts_at_minute_boundaries() {
        let mut roll = Rollup::default();
        let m0 = 1_700_000_040_000i64 - 1_700_000_040_000i64 % MINUTE_MS;
        let row = |v: f32| {
            vec![
                (k("rate"), v, Agg::Mean),
                (k("peak"), v, Agg::Max),
                (k("cap"), v, Agg::Last),
            ]
        };
        // The first minute: 58 s at 10, the last second of it (59.999 s) at 70.
        for s in 1..59 {
            assert!(roll.add(m0 + s * 1000, &row(10.0)).is_none());
        }
        assert!(
            roll.add(m0 + 59_999, &row(70.0)).is_none(),
            "59.999 s is still minute 0"
        );
        // Exactly 60.000 s starts minute 1 and closes minute 0.
        let (t, vals) = roll
            .add(m0 + MINUTE_MS, &row(1.0))
            .expect("minute 0 closes");
        assert_eq!(t, m0, "stamped with the minute's start");
        let get = |f: &str| vals.iter().find(|(k, _)| k.field == f).unwrap().1;
        assert!((get("rate") - (58.0 * 10.0 + 70.0) / 59.0).abs() < 1e-4);
        assert_eq!(get("peak"), 70.0);
        assert_eq!(get("cap"), 70.0);
        // Minute 1 holds only what came after the boundary.
        let (t, vals) = roll
            .add(m0 + 3 * MINUTE_MS, &row(2.0))
            .expect("minute 1 closes");
        assert_eq!(t, m0 + MINUTE_MS);
        assert_eq!(vals.iter().find(|(k, _)| k.field == "rate").unwrap().1, 1.0);
        // A gap of a whole minute emits nothing for it.
        assert_eq!(roll.current_minute(), Some(m0 + 3 * MINUTE_MS));
        // Missing (NaN) values do not count toward the mean.
        let mut roll = Rollup::default();
        roll.add(m0, &[(k("rate"), 4.0, Agg::Mean)]);
        roll.add(m0 + 1000, &[(k("rate"), f32::NAN, Agg::Mean)]);
        let (_, vals) = roll.add(m0 + MINUTE_MS, &[]).unwrap();
        assert_eq!(vals[0].1, 4.0);
    }
}
