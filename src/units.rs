//! Human units in config files: durations (`30s`, `5m`, `1h30m`, `250ms`), rates
//! (`500/s`, `30000/m`, `10/h`) and ratios (`1%`, `0.01`).
//!
//! Each type deserializes from a YAML string and fails with a message that shows the
//! expected form, so a config error reads `expected a rate like "500/s"`.

use serde::{de, Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A duration written with units: `250ms`, `30s`, `5m`, `1h30m`, `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

/// Operations per second, written `500/s`, `30000/m` or `10/h`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Rate(pub f64);

/// A fraction in [0, 1], written `1%` or `0.01`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Ratio(pub f64);

pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += n * mult;
    }
    if !total.is_finite() || total < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

pub fn parse_rate(s: &str) -> Option<f64> {
    let (n, unit) = s.trim().split_once('/')?;
    let n: f64 = n.trim().parse().ok()?;
    let per = match unit.trim() {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let r = n / per;
    (r.is_finite() && r >= 0.0).then_some(r)
}

pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut s = ms / 1000;
    let mut out = String::new();
    for (unit, len) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    out
}

/// A latency for people: `0.42ms`, `3.1ms`, `52ms`, `1.40s`.
pub fn format_latency(s: f64) -> String {
    match s {
        s if s >= 10.0 => format!("{s:.1}s"),
        s if s >= 1.0 => format!("{s:.2}s"),
        s if s >= 0.01 => format!("{:.0}ms", s * 1e3),
        s if s >= 0.001 => format!("{:.1}ms", s * 1e3),
        s => format!("{:.2}ms", s * 1e3),
    }
}

pub fn format_rate(r: f64) -> String {
    if (r - r.round()).abs() < 1e-9 {
        format!("{}/s", r.round() as u64)
    } else {
        format!("{r:.2}/s")
    }
}

/// Accept strings; also accept bare YAML numbers so the message can say what is wrong
/// rather than "invalid type".
fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V)
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = scalar_string(d)?;
        parse_duration(&s).map(Dur).ok_or_else(|| {
            de::Error::custom(format!(
                "expected a duration like \"30s\", \"5m\" or \"250ms\", got {s:?}"
            ))
        })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = scalar_string(d)?;
        parse_rate(&s)
            .map(Rate)
            .ok_or_else(|| de::Error::custom(format!("expected a rate like \"500/s\", got {s:?}")))
    }
}

/// The wall clock in Unix seconds (0 before 1970: a clock that broken is not ours to fix).
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A ratio written `1%` or `0.01`, within [0, 1].
pub fn parse_ratio(s: &str) -> Option<f64> {
    parse_rate_of_change(s).filter(|v| (0.0..=1.0).contains(v))
}

/// A relative change written `1%` or `0.01`, any finite number not below 0 (a growth
/// per day may exceed 100 %).
pub fn parse_rate_of_change(s: &str) -> Option<f64> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok().map(|v| v / 100.0),
        None => t.parse::<f64>().ok(),
    };
    v.filter(|v| v.is_finite() && *v >= 0.0)
}

/// A growth per day: `0.5%`, `0.005` or `1000%` (no upper bound).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth(pub f64);

impl<'de> Deserialize<'de> for Growth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = scalar_string(d)?;
        match parse_rate_of_change(&s) {
            Some(v) => Ok(Growth(v)),
            None => Err(de::Error::custom(format!(
                "expected a growth per day like \"0.5%\" or 0.005, got {s:?}"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = scalar_string(d)?;
        match parse_ratio(&s) {
            Some(v) => Ok(Ratio(v)),
            None => Err(de::Error::custom(format!(
                "expected a ratio like \"1%\" or 0.01, got {s:?}"
            ))),
        }
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&format_rate(self.0))
    }
}

/// Bytes as a person reads them: `12.3 MiB` (binary units).
pub fn format_bytes(v: f64) -> String {
    if !v.is_finite() || v < 0.0 {
        return format!("{v:.0} B");
    }
    bytesize::ByteSize::b(v as u64).display().iec().to_string()
}

/// (year, month, day, hour, minute, second) in UTC of unix seconds.
pub fn utc_parts(unix: f64) -> (i64, u32, u32, i64, i64, i64) {
    let secs = unix.max(0.0) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    (y, m, d, s / 3600, (s % 3600) / 60, s % 60)
}

/// Date from days since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2026-11-22 09:15:00 UTC` from unix seconds.
pub fn format_utc(unix: f64) -> String {
    let (y, m, d, h, mi, s) = utc_parts(unix);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("500/s"), Some(500.0));
        assert_eq!(parse_rate("600/m"), Some(10.0));
        assert_eq!(parse_rate("3600/h"), Some(1.0));
        assert_eq!(parse_rate("0/s"), Some(0.0));
        assert_eq!(parse_rate("500"), None);
        assert_eq!(parse_rate("-5/s"), None);
        assert_eq!(parse_rate("fast/s"), None);
    }

    #[test]
    fn formatting_round_trips() {
        for s in ["30s", "5m", "1h30m", "250ms", "1d"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
        assert_eq!(format_rate(500.0), "500/s");
        assert_eq!(format_rate(0.5), "0.50/s");
    }

    #[test]
    fn ratio_forms() {
        let r: Ratio = serde_saphyr::from_str("\"1%\"").unwrap();
        assert!((r.0 - 0.01).abs() < 1e-12);
        let r: Ratio = serde_saphyr::from_str("0.05").unwrap();
        assert!((r.0 - 0.05).abs() < 1e-12);
        assert!(serde_saphyr::from_str::<Ratio>("\"150%\"").is_err());
    }
}
