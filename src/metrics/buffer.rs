//! The buffer family: per buffered writer, its fill and limit, flush time, committed,
//! refused and failed entries, and the events' end-to-end latency.

use super::histogram::{Histogram, WithBounds};
use super::memory::MemoryAreas;
use super::scenario::ScenarioLabel;
use crate::metrics::common::{histograms, register, Counter, IntGauge, FLUSH_BUCKETS};
use parking_lot::Mutex;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Buffered-writer handles for a scenario.
#[derive(Clone)]
pub struct BufferMetrics {
    pub events: IntGauge,
    pub capacity: IntGauge,
    pub flush: Histogram,
    pub flushed: Counter,
    pub dropped: Counter,
    pub flush_errors: Counter,
    pub e2e: Histogram,
    /// Where the writer reports its bytes (area `write_buffers`).
    pub memory: Arc<MemoryAreas>,
}

/// The buffer series, registered once per registry.
pub struct BufferFamily {
    events: Family<ScenarioLabel, IntGauge>,
    capacity: Family<ScenarioLabel, IntGauge>,
    flush: Family<ScenarioLabel, Histogram, WithBounds>,
    flushed: Family<ScenarioLabel, Counter>,
    dropped: Family<ScenarioLabel, Counter>,
    flush_errors: Family<ScenarioLabel, Counter>,
    e2e: Family<ScenarioLabel, Histogram, WithBounds>,
    /// Every writer's handles by name, for the history sampler (names come from the
    /// config, so the map is bounded).
    writers: Mutex<BTreeMap<String, BufferMetrics>>,
    memory: Arc<MemoryAreas>,
}

impl BufferFamily {
    /// Registers the series; writers report their bytes to `memory`.
    pub fn register(registry: &mut Registry, memory: Arc<MemoryAreas>) -> BufferFamily {
        let f = BufferFamily {
            events: Family::default(),
            capacity: Family::default(),
            flush: histograms(FLUSH_BUCKETS),
            flushed: Family::default(),
            dropped: Family::default(),
            flush_errors: Family::default(),
            e2e: histograms(FLUSH_BUCKETS),
            writers: Mutex::new(BTreeMap::new()),
            memory,
        };
        register(
            registry,
            "soakd_buffer_events",
            "Entries (user x goal rows) waiting in the buffered writer.",
            f.events.clone(),
        );
        register(
            registry,
            "soakd_buffer_capacity_events",
            "The buffered writer's size_limit.",
            f.capacity.clone(),
        );
        register(
            registry,
            "soakd_buffer_flush_duration_seconds",
            "Time of one flush (one batched UPSERT), failed ones included.",
            f.flush.clone(),
        );
        register(
            registry,
            "soakd_buffer_flushed_events_total",
            "Entries committed by flushes.",
            f.flushed.clone(),
        );
        register(
            registry,
            "soakd_buffer_dropped_events_total",
            "Events refused because the buffer was full.",
            f.dropped.clone(),
        );
        register(
            registry,
            "soakd_buffer_flush_errors_total",
            "Flushes that failed (their entries stay buffered and are retried).",
            f.flush_errors.clone(),
        );
        register(
            registry,
            "soakd_event_e2e_seconds",
            "Event accepted into the buffer until its row is committed (the seed's E2E latency).",
            f.e2e.clone(),
        );
        f
    }

    /// Handles for the writer named `scenario` (the same series when asked again).
    pub fn writer(&self, scenario: &str) -> BufferMetrics {
        let s = ScenarioLabel {
            scenario: scenario.to_string(),
        };
        let m = BufferMetrics {
            events: self.events.get_or_create_owned(&s),
            capacity: self.capacity.get_or_create_owned(&s),
            flush: self.flush.get_or_create_owned(&s),
            flushed: self.flushed.get_or_create_owned(&s),
            dropped: self.dropped.get_or_create_owned(&s),
            flush_errors: self.flush_errors.get_or_create_owned(&s),
            e2e: self.e2e.get_or_create_owned(&s),
            memory: self.memory.clone(),
        };
        self.writers.lock().insert(scenario.to_string(), m.clone());
        m
    }

    /// The buffered writers' handles (one per writer name ever created).
    pub fn list(&self) -> Vec<(String, BufferMetrics)> {
        self.writers
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
