//! Where the memory is: `soakd_memory_bytes{area}` for the structures that may grow up
//! to a bound (so a growing RSS has a name), and `soakd_allocator_committed_bytes`, what
//! the allocator holds from the operating system (live heap plus the free pages it
//! keeps).
//!
//! Each structure that can grow registers itself under one of [`AREAS`] as a weak
//! reference; a scrape asks the live ones for their bytes and forgets the dropped ones
//! (a reload replaces buffers and pools). Reporting is on the scrape, never on the hot
//! path: a structure answers from a capacity it already knows or from a short lock.

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

/// The areas, a fixed set (the label stays bounded).
pub const AREAS: &[(&str, &str)] = &[
    ("history", "the dashboard's 1 s and 1 min rings"),
    ("events", "the dashboard's event log"),
    ("soak", "the soak's series rings, restarts and verdicts"),
    (
        "deploys",
        "the deploy judge's blocks (before, settle and after windows) and kept deploys",
    ),
    ("latency_windows", "the rolling HdrHistogram windows"),
    (
        "write_buffers",
        "buffered writers' pending entries (hash maps at their capacity)",
    ),
    (
        "connections",
        "HTTP/1.1 connections' read and write buffers, open and idle",
    ),
    ("fixtures", "fixture rows loaded from files"),
    (
        "target_state",
        "the demo target's bounded in-memory state (events, logins, progress)",
    ),
];

/// Something that can say how many bytes it holds.
pub trait MemorySize: Send + Sync {
    fn memory_bytes(&self) -> u64;
}

const NAME: &str = "soakd_memory_bytes";
const HELP: &str =
    "Bytes held by soakd's bounded structures, by area (estimated from their capacities).";
const ALLOC_NAME: &str = "soakd_allocator_committed_bytes";
const ALLOC_HELP: &str = "Bytes the memory allocator has committed from the operating system: the live heap plus the free pages it keeps.";

/// The allocator's committed bytes, set once by the binary that chose the allocator.
static ALLOCATOR: OnceLock<fn() -> u64> = OnceLock::new();

/// Tells the metrics how to read the global allocator's committed bytes (the binary
/// knows which allocator it linked; the library does not).
pub fn set_allocator_committed(f: fn() -> u64) {
    let _ = ALLOCATOR.set(f);
}

const LIVE_NAME: &str = "soakd_allocator_live_bytes";
const LIVE_HELP: &str =
    "Bytes allocated and not yet freed: the live heap (heap-count bench builds only).";

/// The live heap's bytes, set by a heap-count build.
static LIVE: OnceLock<fn() -> u64> = OnceLock::new();

/// Tells the metrics how to read the live heap's bytes (the heap-count build).
pub fn set_allocator_live(f: fn() -> u64) {
    let _ = LIVE.set(f);
}

/// The allocator's committed bytes, when the binary told us how to read them.
pub fn allocator_committed() -> Option<u64> {
    ALLOCATOR.get().map(|f| f())
}

/// The registered structures, by area.
#[derive(Default)]
pub struct MemoryAreas {
    sources: Mutex<Vec<(&'static str, Weak<dyn MemorySize>)>>,
}

impl MemoryAreas {
    /// New areas, served on `registry` as `soakd_memory_bytes` and
    /// `soakd_allocator_committed_bytes`.
    pub fn register_family(registry: &mut Registry) -> Arc<MemoryAreas> {
        let areas = Arc::new(MemoryAreas::default());
        registry.register_collector(Box::new(MemoryCollector::new(areas.clone())));
        areas
    }

    /// Registers `source` under `area` (one of [`AREAS`]) for as long as it lives.
    pub fn register<T: MemorySize + 'static>(&self, area: &'static str, source: &Arc<T>) {
        let weak: Weak<T> = Arc::downgrade(source);
        self.register_weak(area, weak);
    }

    pub fn register_weak(&self, area: &'static str, source: Weak<dyn MemorySize>) {
        debug_assert!(AREAS.iter().any(|(a, _)| *a == area), "unknown area {area}");
        let mut s = self.sources.lock();
        s.retain(|(_, w)| w.strong_count() > 0);
        s.push((area, source));
    }

    /// Bytes per area, every area listed (0 when nothing is registered under it).
    pub fn bytes(&self) -> Vec<(&'static str, u64)> {
        let live: Vec<(&'static str, Arc<dyn MemorySize>)> = {
            let mut s = self.sources.lock();
            s.retain(|(_, w)| w.strong_count() > 0);
            s.iter()
                .filter_map(|(a, w)| w.upgrade().map(|x| (*a, x)))
                .collect()
        };
        let mut sum: HashMap<&str, u64> = HashMap::new();
        for (a, src) in live {
            *sum.entry(a).or_default() += src.memory_bytes();
        }
        AREAS
            .iter()
            .map(|(a, _)| (*a, sum.get(a).copied().unwrap_or(0)))
            .collect()
    }
}

/// Renders both families at scrape time.
pub struct MemoryCollector {
    areas: Arc<MemoryAreas>,
    help: String,
}

impl std::fmt::Debug for MemoryCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryCollector")
    }
}

/// The HELP of `soakd_memory_bytes`, naming what each area holds.
fn help() -> String {
    let areas: Vec<String> = AREAS
        .iter()
        .map(|(a, what)| format!("{a}: {what}"))
        .collect();
    format!("{HELP} Areas: {}.", areas.join("; "))
}

impl MemoryCollector {
    pub fn new(areas: Arc<MemoryAreas>) -> Self {
        MemoryCollector {
            areas,
            help: help(),
        }
    }
}

impl Collector for MemoryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(NAME, &self.help, None, MetricType::Gauge)?;
        for (area, bytes) in self.areas.bytes() {
            ConstGauge::new(bytes as f64).encode(family.encode_family(&[("area", area)])?)?;
        }
        if let Some(c) = allocator_committed() {
            ConstGauge::new(c as f64).encode(encoder.encode_descriptor(
                ALLOC_NAME,
                ALLOC_HELP,
                None,
                MetricType::Gauge,
            )?)?;
        }
        if let Some(f) = LIVE.get() {
            ConstGauge::new(f() as f64).encode(encoder.encode_descriptor(
                LIVE_NAME,
                LIVE_HELP,
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

impl MemorySize for std::sync::atomic::AtomicU64 {
    fn memory_bytes(&self) -> u64 {
        self.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Estimated bytes of a JSON value on the heap: the value itself, its strings, arrays
/// and objects (serde_json's maps are B-trees: leaf nodes of 11 key/value slots, so a
/// small object costs a whole node).
pub fn json_bytes(v: &serde_json::Value) -> u64 {
    use serde_json::Value;
    let value = std::mem::size_of::<Value>();
    // Objects keep document order (serde_json's `preserve_order`): an IndexMap, i.e. a
    // vector of (hash, key, value) entries plus a hash table of indices into it.
    let entry = std::mem::size_of::<u64>() + std::mem::size_of::<String>() + value;
    value as u64
        + match v {
            Value::String(s) => s.capacity() as u64,
            Value::Array(a) => a.iter().map(json_bytes).sum(),
            Value::Object(o) => {
                let n = o.len();
                let buckets = if n == 0 {
                    0
                } else {
                    (n * 8 / 7).next_power_of_two().max(4)
                };
                (n * entry + buckets * (std::mem::size_of::<usize>() + 1)) as u64
                    + o.iter()
                        .map(|(k, v)| k.capacity() as u64 + json_bytes(v) - value as u64)
                        .sum::<u64>()
            }
            _ => 0,
        }
}

/// Bytes of a hash map's table at its capacity (keys, values and control bytes).
pub fn hash_map_bytes<K, V>(capacity: usize) -> u64 {
    (capacity * (std::mem::size_of::<(K, V)>() + 1)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_says_what_every_area_holds() {
        let mut r = Registry::default();
        MemoryAreas::register_family(&mut r);
        let text = super::super::expo::text(&r);
        for (a, what) in AREAS {
            assert!(text.contains(&format!("{a}: {what}")), "{text}");
            assert!(
                text.contains(&format!("soakd_memory_bytes{{area=\"{a}\"}} 0")),
                "{text}"
            );
        }
    }

    struct Fixed(u64);
    impl MemorySize for Fixed {
        fn memory_bytes(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn areas_sum_live_sources_and_forget_dropped_ones() {
        let areas = MemoryAreas::default();
        let a = Arc::new(Fixed(100));
        let b = Arc::new(Fixed(20));
        areas.register("write_buffers", &a);
        areas.register("write_buffers", &b);
        let get = |areas: &MemoryAreas, name: &str| {
            areas
                .bytes()
                .into_iter()
                .find(|(a, _)| *a == name)
                .map(|(_, b)| b)
        };
        assert_eq!(get(&areas, "write_buffers"), Some(120));
        assert_eq!(get(&areas, "history"), Some(0), "every area is listed");
        drop(b);
        assert_eq!(get(&areas, "write_buffers"), Some(100));
        assert_eq!(
            areas.sources.lock().len(),
            1,
            "the dropped source is forgotten"
        );
    }

    #[test]
    fn json_estimate_counts_strings_and_map_nodes() {
        let small: serde_json::Value = serde_json::json!({"id": "u1"});
        let users: serde_json::Value = serde_json::Value::Array(
            (0..100)
                .map(|i| serde_json::json!({"id": format!("user-{i}"), "token": "t".repeat(40)}))
                .collect(),
        );
        let one = json_bytes(&small);
        // A value, one entry and a four-bucket index, the key's and the string's bytes.
        let value = std::mem::size_of::<serde_json::Value>() as u64;
        assert_eq!(one, 2 * value + 8 + 24 + 4 * 9 + 2 + 2, "{one}");
        let all = json_bytes(&users);
        assert!((100 * (one + 40)..100 * 1024).contains(&all), "{all}");
    }

    #[test]
    fn collector_exports_every_area() {
        let mut r = Registry::default();
        let areas = MemoryAreas::register_family(&mut r);
        let h = Arc::new(Fixed(4096));
        areas.register("history", &h);
        let text = super::super::expo::text(&r);
        assert!(
            text.contains("soakd_memory_bytes{area=\"history\"} 4096"),
            "{text}"
        );
        assert_eq!(text.matches("soakd_memory_bytes{").count(), AREAS.len());
    }
}
