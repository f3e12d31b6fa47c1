//! [`Metrics`]: the daemon's registry with every family registered in it.

use super::buffer::BufferFamily;
use super::capacity::CapacityFamily;
use super::common::MetricsError;
use super::config::ConfigFamily;
use super::deploy::DeployFamily;
use super::expo::{self, Format};
use super::follow::FollowFamily;
use super::guard::GuardFamily;
use super::http::HttpFamily;
use super::memory::MemoryAreas;
use super::pg::PgFamily;
use super::pool::PoolFamily;
use super::process::ProcessCollector;
use super::runtime::RuntimeFamily;
use super::scenario::ScenarioFamily;
use super::slo::SloFamily;
use super::soak::SoakFamily;
use super::visibility::VisibilityFamily;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

/// The daemon's registry and its families.
pub struct Metrics {
    pub registry: Registry,
    pub scenarios: ScenarioFamily,
    pub pools: PoolFamily,
    pub buffers: BufferFamily,
    pub http: HttpFamily,
    pub pg: PgFamily,
    pub config: ConfigFamily,
    /// The load runtime's scheduling delay.
    pub runtime: RuntimeFamily,
    /// The rolling SLO verdicts.
    pub slo: SloFamily,
    /// The latest and the baseline capacity runs.
    pub capacity: CapacityFamily,
    /// The guardrails' actions.
    pub guard: GuardFamily,
    /// Write-to-visible probes.
    pub visibility: VisibilityFamily,
    /// The bounded structures' bytes (`soakd_memory_bytes{area}`).
    pub memory: Arc<MemoryAreas>,
    /// What is observed of the system under test, and the soak's verdicts on it.
    pub soak: SoakFamily,
    /// Deploys of the system under test and their verdicts.
    pub deploy: DeployFamily,
    /// `follow:` stages: the signal read and the rate set.
    pub follow: FollowFamily,
}

impl Metrics {
    pub fn new(quantile_window: Duration) -> Metrics {
        let mut registry = Registry::default();
        let scenarios = ScenarioFamily::register(&mut registry, quantile_window);
        let config = ConfigFamily::register(&mut registry);
        let memory = MemoryAreas::register_family(&mut registry);
        memory.register("latency_windows", &scenarios.windows);
        let visibility = VisibilityFamily::register(&mut registry, quantile_window);
        memory.register("latency_windows", &visibility.windows);
        let pools = PoolFamily::register(&mut registry);
        let buffers = BufferFamily::register(&mut registry, memory.clone());
        let http = HttpFamily::register(&mut registry);
        let pg = PgFamily::register(&mut registry);
        let runtime = RuntimeFamily::register(&mut registry);
        let slo = SloFamily::register(&mut registry);
        let capacity = CapacityFamily::register(&mut registry);
        let guard = GuardFamily::register(&mut registry);
        let soak = SoakFamily::register(&mut registry);
        let deploy = DeployFamily::register(&mut registry);
        let follow = FollowFamily::register(&mut registry);
        ProcessCollector::register(&mut registry);
        Metrics {
            registry,
            scenarios,
            pools,
            buffers,
            http,
            pg,
            config,
            runtime,
            slo,
            capacity,
            guard,
            visibility,
            memory,
            soak,
            deploy,
            follow,
        }
    }

    /// The exposition in `format`.
    pub fn encode(&self, format: Format) -> Result<Vec<u8>, MetricsError> {
        expo::encode(&self.registry, format)
    }

    /// The Prometheus text exposition (what `promtool check metrics` reads).
    pub fn text(&self) -> String {
        expo::text(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_survive_reacquire_and_quantiles_export() {
        let m = Metrics::new(Duration::from_secs(60));
        let a = m.scenarios.scenario("api", &["list"]);
        a.ops[0].requests.inc();
        a.ops[0].window.record(Duration::from_millis(5));
        a.record_error(0, "status_5xx");
        let b = m.scenarios.scenario("api", &["list"]);
        b.ops[0].requests.inc();
        assert_eq!(b.ops[0].requests.get(), 2);
        assert_eq!(b.ops[0].window.snapshot().len(), 1);
        let text = m.text();
        assert!(
            text.contains("soakd_requests_total{op=\"list\",scenario=\"api\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("soakd_request_duration_quantile_seconds{op=\"list\",scenario=\"api\",quantile=\"0.99\"} 0.005"),
            "{text}"
        );
        assert!(text.contains(
            "soakd_request_errors_total{kind=\"status_5xx\",op=\"list\",scenario=\"api\"} 1"
        ));
        assert!(text.contains("soakd_build_info{version="), "{text}");
        assert!(
            text.contains("# HELP soakd_requests_total Operations completed (any outcome).\n"),
            "help texts end in one full stop: {text}"
        );
        assert_eq!(a.errors_by_kind(), vec![("status_5xx".to_string(), 1)]);
        m.scenarios.remove("api", &["list".to_string()], true);
        let text = m.text();
        assert!(!text.contains("soakd_requests_total{"), "{text}");
        assert!(!text.contains("soakd_request_errors_total{"), "{text}");
    }
}
