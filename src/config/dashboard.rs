//! The `dashboard:` section: how much history the daemon keeps for its page at `/` and
//! for `GET /api/v1/history`.
//!
//! History is two rings of fixed length: one sample a second for `keep_1s`, one a minute
//! for `keep_1m`. Their memory is fixed when the daemon starts (rings are sized then and
//! never grow), so it is the same after a week as after a minute; changing this section
//! takes effect at the next start, as `listen` does.

use crate::config::errors::Errs;
use crate::units::Dur;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// Longest `keep_1s` accepted: 6 h of 1 s samples (21,600 per series).
pub const MAX_KEEP_1S: Duration = Duration::from_secs(6 * 3600);
/// Longest `keep_1m` accepted: 7 days of 1 min samples (10,080 per series).
pub const MAX_KEEP_1M: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, Clone, PartialEq)]
pub struct DashboardConfig {
    /// Sample history at all (off: `/` shows the page without charts, the history API
    /// answers 404).
    pub enabled: bool,
    /// How long 1 s samples are kept (default 1h).
    pub keep_1s: Duration,
    /// How long 1 min samples are kept (default 24h).
    pub keep_1m: Duration,
    /// Events (stage changes, overrides, pauses, reloads, search levels) kept for the
    /// time axis and the event list (default 1,000; the oldest go first).
    pub max_events: usize,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            enabled: true,
            keep_1s: Duration::from_secs(3600),
            keep_1m: Duration::from_secs(86_400),
            max_events: 1000,
        }
    }
}

impl DashboardConfig {
    /// Samples in the 1 s ring.
    pub fn slots_1s(&self) -> usize {
        self.keep_1s.as_secs().max(1) as usize
    }

    /// Samples in the 1 min ring.
    pub fn slots_1m(&self) -> usize {
        (self.keep_1m.as_secs() / 60).max(1) as usize
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDashboard {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    keep_1s: Option<Dur>,
    #[serde(default)]
    keep_1m: Option<Dur>,
    #[serde(default)]
    max_events: Option<usize>,
}

pub(super) fn build_dashboard(v: Option<&Value>, errs: &mut Errs) -> DashboardConfig {
    let mut cfg = DashboardConfig::default();
    let Some(v) = v else { return cfg };
    let Some(raw) = errs.decode::<RawDashboard>(v, "dashboard") else {
        return cfg;
    };
    if let Some(e) = raw.enabled {
        cfg.enabled = e;
    }
    if let Some(d) = raw.keep_1s {
        if d.0 < Duration::from_secs(60) || d.0 > MAX_KEEP_1S {
            errs.push("dashboard.keep_1s", "must be between 1m and 6h");
        } else {
            cfg.keep_1s = d.0;
        }
    }
    if let Some(d) = raw.keep_1m {
        if d.0 < Duration::from_secs(3600) || d.0 > MAX_KEEP_1M {
            errs.push("dashboard.keep_1m", "must be between 1h and 7d");
        } else if d.0.as_secs() % 60 != 0 {
            errs.push("dashboard.keep_1m", "must be a whole number of minutes");
        } else {
            cfg.keep_1m = d.0;
        }
    }
    if let Some(n) = raw.max_events {
        if !(10..=100_000).contains(&n) {
            errs.push("dashboard.max_events", "must be between 10 and 100000");
        } else {
            cfg.max_events = n;
        }
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::parse_section_for_test as parse;

    #[test]
    fn defaults_bounds_and_errors_with_lines() {
        let c = parse("").unwrap();
        assert_eq!(c.dashboard, DashboardConfig::default());
        assert_eq!(
            (c.dashboard.slots_1s(), c.dashboard.slots_1m()),
            (3600, 1440)
        );
        let c = parse("dashboard: {keep_1s: 10m, keep_1m: 7d, max_events: 50}").unwrap();
        assert_eq!(
            (c.dashboard.slots_1s(), c.dashboard.slots_1m()),
            (600, 10_080)
        );
        let e = parse("dashboard:\n  keep_1s: 7h\n  keep_1m: 30m\n  max_events: 5\n  colour: blue")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = parse("dashboard:\n  keep_1s: 7h\n  keep_1m: 30m\n  max_events: 5")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dashboard.keep_1s: must be between 1m and 6h (line 4"),
            "{e}"
        );
        assert!(
            e.contains("dashboard.keep_1m: must be between 1h and 7d (line 5"),
            "{e}"
        );
        assert!(
            e.contains("dashboard.max_events: must be between 10 and 100000 (line 6"),
            "{e}"
        );
    }
}
