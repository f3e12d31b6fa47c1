//! The demo target's own series (on its /metrics): requests by route and code, gRPC calls,
//! and its memory.

use super::memory::{self, MemoryAreas};
use super::{opts, MetricsError, ProcessMetrics, DURATION_BUCKETS};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Registry, TextEncoder,
};
use std::sync::Arc;

/// Metrics of the demo target, served on the target's own `/metrics`.
pub struct DemoMetrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub in_flight: IntGauge,
    pub claims: IntCounterVec,
    pub grpc_requests: IntCounterVec,
    pub grpc_duration: HistogramVec,
    pub grpc_in_flight: IntGauge,
    /// The target's bounded state and its writer's buffer (`soakd_memory_bytes{area}`).
    pub memory: Arc<MemoryAreas>,
}

impl DemoMetrics {
    pub fn new() -> Result<DemoMetrics, MetricsError> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            opts(
                "demo_http_requests_total",
                "Requests the demo target answered, by route and status code.",
            ),
            &["route", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "demo_http_request_duration_seconds",
                "Time the demo target spent on a request, including injected latency and queueing.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route"],
        )?;
        let in_flight = IntGauge::new(
            "demo_http_in_flight",
            "Requests the demo target is working on or queueing.",
        )?;
        let claims = IntCounterVec::new(
            opts("demo_claims_total", "Claim attempts by result."),
            &["result"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        let grpc_requests = IntCounterVec::new(
            opts(
                "demo_grpc_requests_total",
                "Event calls the demo target answered, by method (login, stat) and status code.",
            ),
            &["method", "code"],
        )?;
        let grpc_duration = HistogramVec::new(
            HistogramOpts::new(
                "demo_grpc_request_duration_seconds",
                "Time the demo target spent on an event call, including injected latency.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["method"],
        )?;
        let grpc_in_flight = IntGauge::new(
            "demo_grpc_in_flight",
            "Event calls the demo target is working on.",
        )?;
        registry.register(Box::new(claims.clone()))?;
        registry.register(Box::new(grpc_requests.clone()))?;
        registry.register(Box::new(grpc_duration.clone()))?;
        registry.register(Box::new(grpc_in_flight.clone()))?;
        // The target's own CPU and memory, for capacity reports (`target_process`).
        registry.register(Box::new(ProcessMetrics::new()))?;
        let memory = Arc::new(MemoryAreas::default());
        registry.register(Box::new(memory::MemoryCollector::new(memory.clone())?))?;
        Ok(DemoMetrics {
            registry,
            requests,
            duration,
            in_flight,
            claims,
            grpc_requests,
            grpc_duration,
            grpc_in_flight,
            memory,
        })
    }

    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
