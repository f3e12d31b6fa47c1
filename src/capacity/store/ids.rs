//! Run ids and UTC times, without a date library: a run id starts with its UTC start.

/// (year, month, day, hour, minute, second) in UTC of unix seconds.
fn utc_parts(unix: f64) -> (i64, u32, u32, i64, i64, i64) {
    let secs = unix.max(0.0) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    (y, m, d, s / 3600, (s % 3600) / 60, s % 60)
}

/// A run id: UTC start time, the search name and a random suffix, e.g.
/// `20261122T091500Z-api-3f2a`.
pub fn new_run_id(name: &str, unix: f64) -> String {
    let (y, m, d, h, mi, s) = utc_parts(unix);
    format!(
        "{y:04}{m:02}{d:02}T{h:02}{mi:02}{s:02}Z-{name}-{:04x}",
        rand::random::<u16>()
    )
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

/// Whether `id` can name a run: generated ids are letters, digits, `-` and `_`; anything
/// else cannot, and must not reach a file path.
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(format_utc(1_795_337_193.0), "2026-11-22 08:46:33 UTC");
        let id = new_run_id("api", 1_795_337_193.0);
        assert!(id.starts_with("20261122T084633Z-api-"), "{id}");
    }

    #[test]
    fn only_a_generated_shape_names_a_run() {
        assert!(valid_id("20261122T084633Z-api-3f2a"));
        assert!(!valid_id(""));
        assert!(!valid_id("../etc/passwd"));
        assert!(!valid_id("a b"));
    }
}
