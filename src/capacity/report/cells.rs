//! The report's one set of formatters: every table cell and chart label goes through
//! these, so a latency or a percentage reads the same everywhere.

use crate::capacity::record::Verdict;
use crate::units::format_latency;

/// A latency (`12.3 ms`, `1.20 s`), or `–` when not measured.
pub(super) fn ms(s: Option<f64>) -> String {
    s.map(format_latency).unwrap_or_else(|| "–".into())
}

/// A ratio as a percentage: `0%`, `0.050%` below 0.1 %, else two decimals.
pub(super) fn pct(r: f64) -> String {
    if r == 0.0 {
        "0%".into()
    } else if r < 0.001 {
        format!("{:.3}%", r * 100.0)
    } else {
        format!("{:.2}%", r * 100.0)
    }
}

/// Bytes as whole MB, or `–`.
pub(super) fn mib(b: Option<u64>) -> String {
    match b {
        Some(b) => format!("{:.0}MB", b as f64 / 1_048_576.0),
        None => "–".into(),
    }
}

/// Percent of one CPU, or `–`.
pub(super) fn cpu(c: Option<f64>) -> String {
    c.map(|c| format!("{c:.0}%")).unwrap_or_else(|| "–".into())
}

pub(super) use crate::chart::rate_num;

/// A whole number (chart ticks of counts).
pub(super) fn int(v: f64) -> String {
    format!("{v:.0}")
}

/// A verdict as a table cell: failures bold, invalid levels in italics.
pub(super) fn verdict(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Pass) => "pass",
        Some(Verdict::Fail) => "**FAIL**",
        Some(Verdict::Invalid) => "*invalid*",
        None => "–",
    }
}

/// Text safe inside a Markdown table cell.
pub(super) fn escape(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_read_the_same_everywhere() {
        assert_eq!(ms(None), "–");
        assert_eq!(pct(0.0), "0%");
        assert_eq!(pct(0.0005), "0.050%");
        assert_eq!(pct(0.015), "1.50%");
        assert_eq!(mib(Some(3 * 1_048_576)), "3MB");
        assert_eq!(cpu(Some(149.6)), "150%");
        assert_eq!(int(12.4), "12");
        assert_eq!(verdict(Some(Verdict::Fail)), "**FAIL**");
        assert_eq!(escape("a|b"), "a\\|b");
    }
}
