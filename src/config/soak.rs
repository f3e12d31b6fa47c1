//! The `soak:` section: how the soak judge reads the series of the system under test
//! (`targets.NAME.observe`) and soakd's own per-op latency, errors and rate.
//!
//! ```yaml
//! soak:
//!   window: 24h        # the sliding window each trend is fitted over (10m to 7d)
//!   warmup: 15m        # skipped after start and after each restart of the target
//!   resolution: 1m     # one point per series per resolution (1s to 1h)
//!   growth:            # a trend smaller than this per day is not `growing`
//!     memory: 0.5%
//! ```
//!
//! The window over the resolution is the most points a series keeps: at most
//! [`MAX_POINTS`], so every ring's size is fixed when the daemon starts.

use crate::config::errors::Errs;
use crate::units::{Dur, Growth};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// Points per series at most: a week at one a minute (80 KiB of f64 per series).
pub const MAX_POINTS: usize = 10_080;

/// What a resource is, for its materiality threshold (`soak.growth.<class>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrowthClass {
    /// Resident, anonymous, heap and cgroup memory.
    Memory,
    /// Open file descriptors.
    Fds,
    /// Threads and goroutines.
    Threads,
    /// CPU seconds, judged as cores (their rate).
    Cpu,
    /// soakd's own latency quantiles of each op.
    Latency,
    /// Per-table bytes per live tuple.
    Tables,
    /// A series the user named (`series:`, `promql.queries`), and each op's achieved rate.
    Custom,
    /// Each op's error ratio: judged on its absolute change per day (its level can be 0).
    Errors,
    /// A table's dead-tuple ratio: absolute (0.02 = the ratio rises 2 points a day).
    DeadTuples,
    /// The oldest open transaction's age: absolute, in transactions per day.
    XidAge,
    /// Replication lag: absolute, in seconds per day.
    ReplicationLag,
}

impl GrowthClass {
    pub const ALL: [GrowthClass; 11] = [
        GrowthClass::Memory,
        GrowthClass::Fds,
        GrowthClass::Threads,
        GrowthClass::Cpu,
        GrowthClass::Latency,
        GrowthClass::Tables,
        GrowthClass::Custom,
        GrowthClass::Errors,
        GrowthClass::DeadTuples,
        GrowthClass::XidAge,
        GrowthClass::ReplicationLag,
    ];

    pub fn key(self) -> &'static str {
        match self {
            GrowthClass::Memory => "memory",
            GrowthClass::Fds => "fds",
            GrowthClass::Threads => "threads",
            GrowthClass::Cpu => "cpu",
            GrowthClass::Latency => "latency",
            GrowthClass::Tables => "tables",
            GrowthClass::Custom => "custom",
            GrowthClass::Errors => "errors",
            GrowthClass::DeadTuples => "dead_tuples",
            GrowthClass::XidAge => "xid_age",
            GrowthClass::ReplicationLag => "replication_lag",
        }
    }

    /// Whether the class's threshold is an absolute change per day (its level can be 0)
    /// rather than one relative to the level.
    pub fn absolute(self) -> bool {
        matches!(
            self,
            GrowthClass::Errors
                | GrowthClass::DeadTuples
                | GrowthClass::XidAge
                | GrowthClass::ReplicationLag
        )
    }

    /// The default growth per day below which a trend is not material: relative to the
    /// level, except the absolute classes' (the error ratio's 0.001 = it rises 0.1 % a
    /// day; a transaction held open for a day at 12 transactions a second ages 10⁶).
    pub fn default_growth(self) -> f64 {
        match self {
            GrowthClass::Memory | GrowthClass::Fds => 0.005,
            GrowthClass::Threads | GrowthClass::Custom => 0.01,
            GrowthClass::Tables => 0.02,
            GrowthClass::Cpu | GrowthClass::Latency => 0.05,
            GrowthClass::Errors => 0.001,
            GrowthClass::DeadTuples => 0.02,
            GrowthClass::XidAge => 1_000_000.0,
            GrowthClass::ReplicationLag => 60.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SoakConfig {
    /// Judge at all (default on; off: nothing is observed or judged).
    pub enabled: bool,
    pub window: Duration,
    pub warmup: Duration,
    pub resolution: Duration,
    /// Material growth per day, relative to the level, per class.
    pub growth: [f64; 11],
}

impl Default for SoakConfig {
    fn default() -> Self {
        SoakConfig {
            enabled: true,
            window: Duration::from_secs(86_400),
            warmup: Duration::from_secs(15 * 60),
            resolution: Duration::from_secs(60),
            growth: GrowthClass::ALL.map(GrowthClass::default_growth),
        }
    }
}

impl SoakConfig {
    /// Points each series keeps: the window over the resolution.
    pub fn points(&self) -> usize {
        ((self.window.as_secs_f64() / self.resolution.as_secs_f64()).ceil() as usize)
            .clamp(1, MAX_POINTS)
    }

    pub fn growth_of(&self, c: GrowthClass) -> f64 {
        let i = GrowthClass::ALL.iter().position(|x| *x == c).unwrap_or(0);
        self.growth[i]
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSoak {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    window: Option<Dur>,
    #[serde(default)]
    warmup: Option<Dur>,
    #[serde(default)]
    resolution: Option<Dur>,
    #[serde(default)]
    growth: Option<RawGrowth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrowth {
    #[serde(default)]
    memory: Option<Growth>,
    #[serde(default)]
    fds: Option<Growth>,
    #[serde(default)]
    threads: Option<Growth>,
    #[serde(default)]
    cpu: Option<Growth>,
    #[serde(default)]
    custom: Option<Growth>,
    #[serde(default)]
    latency: Option<Growth>,
    /// The error ratio's, absolute (0.1% = the ratio rises 0.001 a day).
    #[serde(default)]
    errors: Option<Growth>,
    /// Bytes per live tuple of each judged table.
    #[serde(default)]
    tables: Option<Growth>,
    /// The dead-tuple ratio's, absolute (2% = it rises 2 points a day).
    #[serde(default)]
    dead_tuples: Option<Growth>,
    /// Transactions a day the oldest open transaction ages by.
    #[serde(default)]
    xid_age: Option<f64>,
    /// Seconds a day replication lag grows by.
    #[serde(default)]
    replication_lag: Option<f64>,
}

pub(super) fn build_soak(v: Option<&Value>, errs: &mut Errs) -> SoakConfig {
    let mut cfg = SoakConfig::default();
    let Some(v) = v else { return cfg };
    let Some(raw) = errs.decode::<RawSoak>(v, "soak") else {
        return cfg;
    };
    if let Some(e) = raw.enabled {
        cfg.enabled = e;
    }
    let within = |d: Option<Dur>, lo: u64, hi: u64, key: &str, say: &str, errs: &mut Errs| {
        let d = d?.0;
        if d < Duration::from_secs(lo) || d > Duration::from_secs(hi) {
            errs.push(format!("soak.{key}"), format!("must be between {say}"));
            None
        } else {
            Some(d)
        }
    };
    if let Some(d) = within(raw.window, 600, 7 * 86_400, "window", "10m and 7d", errs) {
        cfg.window = d;
    }
    if let Some(d) = within(raw.warmup, 10, 86_400, "warmup", "10s and 24h", errs) {
        cfg.warmup = d;
    }
    if let Some(d) = within(raw.resolution, 1, 3600, "resolution", "1s and 1h", errs) {
        cfg.resolution = d;
    }
    let points = cfg.window.as_secs_f64() / cfg.resolution.as_secs_f64();
    if points > MAX_POINTS as f64 {
        errs.push(
            "soak.window",
            format!(
                "{} at a resolution of {} is {points:.0} points per series; at most {MAX_POINTS} are kept (raise soak.resolution or shorten the window)",
                crate::units::format_duration(cfg.window),
                crate::units::format_duration(cfg.resolution),
            ),
        );
    }
    if let Some(g) = raw.growth {
        let given = [
            (GrowthClass::Memory, g.memory),
            (GrowthClass::Fds, g.fds),
            (GrowthClass::Threads, g.threads),
            (GrowthClass::Cpu, g.cpu),
            (GrowthClass::Custom, g.custom),
            (GrowthClass::Latency, g.latency),
            (GrowthClass::Errors, g.errors),
            (GrowthClass::Tables, g.tables),
            (GrowthClass::DeadTuples, g.dead_tuples),
        ];
        for (class, v, key) in [
            (GrowthClass::XidAge, g.xid_age, "xid_age"),
            (
                GrowthClass::ReplicationLag,
                g.replication_lag,
                "replication_lag",
            ),
        ] {
            match v {
                Some(v) if v.is_finite() && v > 0.0 => {
                    if let Some(i) = GrowthClass::ALL.iter().position(|c| *c == class) {
                        cfg.growth[i] = v;
                    }
                }
                Some(_) => errs.push(format!("soak.growth.{key}"), "must be a positive number"),
                None => {}
            }
        }
        for (class, r) in given {
            if let (Some(r), Some(i)) = (r, GrowthClass::ALL.iter().position(|c| *c == class)) {
                cfg.growth[i] = r.0;
            }
        }
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::parse_section_for_test as parse;

    #[test]
    fn defaults_and_bounds() {
        let c = parse("").unwrap();
        assert_eq!(c.soak, SoakConfig::default());
        assert_eq!(c.soak.points(), 1440);
        assert_eq!(c.soak.growth_of(GrowthClass::Memory), 0.005);
        let c =
            parse("soak: {window: 10m, warmup: 10s, resolution: 1s, growth: {fds: 2%}}").unwrap();
        assert_eq!(c.soak.points(), 600);
        assert_eq!(c.soak.growth_of(GrowthClass::Fds), 0.02);
        let c = parse("soak: {growth: {tables: 5%, dead_tuples: 1%, xid_age: 2000000}}").unwrap();
        assert_eq!(c.soak.growth_of(GrowthClass::Tables), 0.05);
        assert_eq!(c.soak.growth_of(GrowthClass::DeadTuples), 0.01);
        assert_eq!(c.soak.growth_of(GrowthClass::XidAge), 2e6);
        let e = parse("soak: {growth: {replication_lag: -1}}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("soak.growth.replication_lag: must be a positive number"),
            "{e}"
        );
        let e = parse("soak:\n  window: 7d\n  resolution: 1s")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("soak.window: 7d at a resolution of 1s is 604800 points"),
            "{e}"
        );
        assert!(e.contains("(line 4"), "{e}");
        let e = parse("soak: {warmup: 1s}").unwrap_err().to_string();
        assert!(
            e.contains("soak.warmup: must be between 10s and 24h"),
            "{e}"
        );
        let e = parse("soak: {growth: {memroy: 1%}}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("soak.growth.memroy: unknown field `memroy`"),
            "{e}"
        );
    }
}
