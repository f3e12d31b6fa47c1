//! Run ids: a run id starts with its UTC start.

use crate::units::utc_parts;
#[cfg(test)]
use crate::units::{civil_from_days, format_utc};

/// A run id: UTC start time, the search name and a random suffix, e.g.
/// `20261122T091500Z-api-3f2a`.
pub fn new_run_id(name: &str, unix: f64) -> String {
    let (y, m, d, h, mi, s) = utc_parts(unix);
    format!(
        "{y:04}{m:02}{d:02}T{h:02}{mi:02}{s:02}Z-{name}-{:04x}",
        rand::random::<u16>()
    )
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
