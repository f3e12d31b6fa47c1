//! The target's own Prometheus exposition (`observe.metrics_url`): the standard
//! `process_*` series, the common runtime ones where they follow the client libraries'
//! names, and the series the user names (`observe.series`). Parsed with the
//! `prometheus-parse` crate (Apache-2.0).
//!
//! What a direct read of the process gives (`observe.process`) is preferred; the
//! exposition fills what it does not.

use crate::config::observe::SeriesSelector;
use crate::observe::reading::{Identity, Reading};
use prometheus_parse::{Sample, Scrape, Value};
use std::collections::BTreeMap;

/// Resource ← the first exposition series of these that is present (summed over its
/// samples): the standard process collector, then Go, JVM, Node.js and .NET clients.
/// An exposition metric, with the one label it must carry if any.
type Candidate = (&'static str, Option<(&'static str, &'static str)>);

const KNOWN: &[(&str, &[Candidate])] = &[
    ("rss_bytes", &[("process_resident_memory_bytes", None)]),
    ("open_fds", &[("process_open_fds", None)]),
    ("max_fds", &[("process_max_fds", None)]),
    ("cpu_seconds", &[("process_cpu_seconds_total", None)]),
    (
        "start_time_seconds",
        &[("process_start_time_seconds", None)],
    ),
    (
        "threads",
        &[
            ("process_threads", None),
            ("go_threads", None),
            ("jvm_threads_live_threads", None),
            ("jvm_threads_current", None),
        ],
    ),
    (
        "heap_bytes",
        &[
            ("go_memstats_heap_inuse_bytes", None),
            ("jvm_memory_used_bytes", Some(("area", "heap"))),
            ("jvm_memory_bytes_used", Some(("area", "heap"))),
            ("nodejs_heap_size_used_bytes", None),
            ("dotnet_total_memory_bytes", None),
        ],
    ),
    ("goroutines", &[("go_goroutines", None)]),
];

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Counter(x) | Value::Gauge(x) | Value::Untyped(x) => Some(*x),
        _ => None,
    }
}

fn sum_of<'a>(samples: impl Iterator<Item = &'a Sample>) -> Option<(f64, bool)> {
    let mut total: Option<f64> = None;
    let mut counter = false;
    for s in samples {
        if let Some(v) = number(&s.value) {
            total = Some(total.unwrap_or(0.0) + v);
            counter |= matches!(s.value, Value::Counter(_));
        }
    }
    total.map(|t| (t, counter))
}

/// Reads a scraped text exposition into `out`; the named series that are counters are
/// listed in `out.counters`.
pub fn read_text(
    text: &str,
    named: &BTreeMap<String, SeriesSelector>,
    out: &mut Reading,
) -> Result<(), String> {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .map_err(|e| format!("the exposition does not parse: {e}"))?;
    for (resource, candidates) in KNOWN {
        for (metric, label) in candidates.iter() {
            let hits = scrape.samples.iter().filter(|s| {
                s.metric == *metric && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v))
            });
            if let Some((v, _)) = sum_of(hits) {
                out.offer(resource, v);
                break;
            }
        }
    }
    if let Some(start) = out.get("start_time_seconds") {
        let id = out.identity.get_or_insert(Identity::default());
        id.start_time.get_or_insert(start);
    }
    let mut missing = Vec::new();
    for (name, sel) in named {
        let hits = scrape.samples.iter().filter(|s| {
            s.metric == sel.metric
                && sel
                    .labels
                    .iter()
                    .all(|(k, v)| s.labels.get(k) == Some(v.as_str()))
        });
        match sum_of(hits) {
            Some((v, counter)) => {
                out.set(name, v);
                if counter {
                    out.counters.push(name.clone());
                }
            }
            None => missing.push(name.as_str()),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("no series for {}", missing.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::observe::parse_selector;

    const GO: &str = r#"# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 1.2582912e+07
# TYPE go_threads gauge
go_threads 9
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
# TYPE process_open_fds gauge
process_open_fds 17
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 3.3554432e+07
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1.76e+09
# TYPE jobs_done_total counter
jobs_done_total{queue="a"} 10
jobs_done_total{queue="b"} 5
# TYPE jobs_queued gauge
jobs_queued{queue="a"} 3
"#;

    #[test]
    fn standard_runtime_and_named_series() {
        let named = BTreeMap::from([
            (
                "done".to_string(),
                parse_selector("jobs_done_total").unwrap(),
            ),
            (
                "queued_a".to_string(),
                parse_selector(r#"jobs_queued{queue="a"}"#).unwrap(),
            ),
        ]);
        let mut r = Reading::default();
        read_text(GO, &named, &mut r).unwrap();
        assert_eq!(r.get("goroutines"), Some(42.0));
        assert_eq!(r.get("heap_bytes"), Some(12582912.0));
        assert_eq!(r.get("threads"), Some(9.0));
        assert_eq!(r.get("rss_bytes"), Some(33554432.0));
        assert_eq!(r.get("open_fds"), Some(17.0));
        assert_eq!(r.get("cpu_seconds"), Some(12.5));
        assert_eq!(r.identity.unwrap().start_time, Some(1.76e9));
        assert_eq!(r.get("done"), Some(15.0));
        assert_eq!(r.get("queued_a"), Some(3.0));
        assert_eq!(r.counters, vec!["done".to_string()]);
    }

    #[test]
    fn a_direct_read_wins_and_a_missing_series_is_named() {
        let mut r = Reading::default();
        r.set("rss_bytes", 1.0);
        let named = BTreeMap::from([("gone".to_string(), parse_selector("nope").unwrap())]);
        let e = read_text(GO, &named, &mut r).unwrap_err();
        assert_eq!(e, "no series for gone");
        assert_eq!(r.get("rss_bytes"), Some(1.0));
        assert_eq!(r.get("goroutines"), Some(42.0));
    }

    #[test]
    fn jvm_heap_is_the_heap_area_summed() {
        let text = "# TYPE jvm_memory_used_bytes gauge\njvm_memory_used_bytes{area=\"heap\",id=\"G1 Eden Space\"} 100\njvm_memory_used_bytes{area=\"heap\",id=\"G1 Old Gen\"} 300\njvm_memory_used_bytes{area=\"nonheap\",id=\"Metaspace\"} 50\n";
        let mut r = Reading::default();
        read_text(text, &BTreeMap::new(), &mut r).unwrap();
        assert_eq!(r.get("heap_bytes"), Some(400.0));
    }
}
