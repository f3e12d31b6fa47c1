//! The demo target's own series (on its /metrics): requests by route and code, gRPC calls,
//! its process and memory, and — when it writes to PostgreSQL — its buffered writer and
//! pool, through the same families soakd registers.

use crate::metrics::{
    histograms, register, BufferFamily, Counter, Format, Histogram, IntGauge, MemoryAreas,
    MetricsError, PoolFamily, ProcessCollector, DURATION_BUCKETS,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteCode {
    code: String,
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodCode {
    code: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Method {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClaimResult {
    result: &'static str,
}

type Histograms<S> = Family<S, Histogram, crate::metrics::histogram::WithBounds>;

/// Metrics of the demo target, served on the target's own `/metrics`.
pub struct DemoMetrics {
    registry: Registry,
    requests: Family<RouteCode, Counter>,
    duration: Histograms<Route>,
    pub in_flight: IntGauge,
    claims: Family<ClaimResult, Counter>,
    grpc_requests: Family<MethodCode, Counter>,
    grpc_duration: Histograms<Method>,
    pub grpc_in_flight: IntGauge,
    /// The target's bounded state and its writer's buffer (`soakd_memory_bytes{area}`).
    pub memory: Arc<MemoryAreas>,
    /// The writer's pool, when the target writes to PostgreSQL.
    pub pools: PoolFamily,
    /// The writer's series, when the target writes to PostgreSQL.
    pub buffers: BufferFamily,
}

impl DemoMetrics {
    pub fn new() -> DemoMetrics {
        let mut r = Registry::default();
        let requests = Family::default();
        let duration = histograms(DURATION_BUCKETS);
        let in_flight = IntGauge::default();
        let claims = Family::default();
        let grpc_requests = Family::default();
        let grpc_duration = histograms(DURATION_BUCKETS);
        let grpc_in_flight = IntGauge::default();
        register(
            &mut r,
            "demo_http_requests_total",
            "Requests the demo target answered, by route and status code.",
            requests.clone(),
        );
        register(
            &mut r,
            "demo_http_request_duration_seconds",
            "Time the demo target spent on a request, including injected latency and queueing.",
            duration.clone(),
        );
        register(
            &mut r,
            "demo_http_in_flight",
            "Requests the demo target is working on or queueing.",
            in_flight.clone(),
        );
        register(
            &mut r,
            "demo_claims_total",
            "Claim attempts by result.",
            claims.clone(),
        );
        register(
            &mut r,
            "demo_grpc_requests_total",
            "Event calls the demo target answered, by method (login, stat) and status code.",
            grpc_requests.clone(),
        );
        register(
            &mut r,
            "demo_grpc_request_duration_seconds",
            "Time the demo target spent on an event call, including injected latency.",
            grpc_duration.clone(),
        );
        register(
            &mut r,
            "demo_grpc_in_flight",
            "Event calls the demo target is working on.",
            grpc_in_flight.clone(),
        );
        // The target's own CPU and memory, for capacity reports (`target_process`).
        ProcessCollector::register(&mut r);
        let memory = MemoryAreas::register_family(&mut r);
        let pools = PoolFamily::register(&mut r);
        // A writer registers its bytes with its family's areas. The target counts its
        // writer itself (`DemoState::with_store`), whichever family the handles come
        // from, so this family's areas stay off the exposition.
        let buffers = BufferFamily::register(&mut r, Arc::new(MemoryAreas::default()));
        DemoMetrics {
            registry: r,
            requests,
            duration,
            in_flight,
            claims,
            grpc_requests,
            grpc_duration,
            grpc_in_flight,
            memory,
            pools,
            buffers,
        }
    }

    /// A request on `route` answered with `code` after `secs`.
    pub fn request(&self, route: &'static str, code: &str, secs: f64) {
        self.requests
            .get_or_create(&RouteCode {
                code: code.to_string(),
                route,
            })
            .inc();
        self.duration.get_or_create(&Route { route }).observe(secs);
    }

    /// An event call of `method` answered with `code` after `secs`.
    pub fn grpc_request(&self, method: &'static str, code: &str, secs: f64) {
        self.grpc_requests
            .get_or_create(&MethodCode {
                code: code.to_string(),
                method,
            })
            .inc();
        self.grpc_duration
            .get_or_create(&Method { method })
            .observe(secs);
    }

    /// A claim attempt's result (`claimed`, `already_claimed`, `not_completed`).
    pub fn claim(&self, result: &'static str) {
        self.claims.get_or_create(&ClaimResult { result }).inc();
    }

    /// Claim attempts with `result` so far.
    pub fn claims(&self, result: &'static str) -> u64 {
        self.claims
            .get(&ClaimResult { result })
            .map_or(0, |c| c.get())
    }

    pub fn encode(&self, format: Format) -> Result<Vec<u8>, MetricsError> {
        crate::metrics::expo::encode(&self.registry, format)
    }

    /// The Prometheus text exposition.
    pub fn text(&self) -> String {
        crate::metrics::expo::text(&self.registry)
    }
}

impl Default for DemoMetrics {
    fn default() -> Self {
        Self::new()
    }
}
