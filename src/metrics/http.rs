//! The HTTP family: per op, where its requests spent their time
//! (`soakd_http_phase_seconds{scenario,op,phase}`, from `crate::phases`), and per
//! scenario the bytes each way. Measured on the HTTP/1.1 fast path; requests through the
//! general client (TLS, HTTP/2, redirects elsewhere) record none.

use super::histogram::{Histogram, WithBounds};
use super::scenario::ScenarioLabel;
use crate::metrics::common::{histograms, register, Counter, DURATION_BUCKETS};
use crate::phases::{Phases, NAMES};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    op: String,
    phase: &'static str,
    scenario: String,
}

/// The HTTP series, registered once per registry.
pub struct HttpFamily {
    phase: Family<PhaseLabels, Histogram, WithBounds>,
    sent: Family<ScenarioLabel, Counter>,
    received: Family<ScenarioLabel, Counter>,
}

/// One HTTP op's handles.
#[derive(Clone)]
pub struct PhaseMetrics {
    /// In [`NAMES`] order.
    phases: [Histogram; 5],
    sent: Counter,
    received: Counter,
}

impl PhaseMetrics {
    /// Per phase in [`NAMES`] order: seconds observed so far.
    pub fn sums(&self) -> [f64; 5] {
        self.phases.each_ref().map(Histogram::sum)
    }

    /// Records one iteration: each phase that happened, and the bytes.
    pub fn observe(&self, p: &Phases) {
        for (h, d) in self.phases.iter().zip(p.by_name()) {
            if let Some(d) = d {
                h.observe(d.as_secs_f64());
            }
        }
        self.sent.inc_by(p.sent);
        self.received.inc_by(p.received);
    }
}

impl HttpFamily {
    pub fn register(registry: &mut Registry) -> HttpFamily {
        let f = HttpFamily {
            phase: histograms(DURATION_BUCKETS),
            sent: Family::default(),
            received: Family::default(),
        };
        register(
            registry,
            "soakd_http_phase_seconds",
            "Where HTTP operations spent their time, summed over an iteration's requests: queue (waiting for a connection slot), connect, tls, first_byte (request written to the first byte of the answer), body (the rest of the answer). A phase that did not happen (a reused connection) is not observed.",
            f.phase.clone(),
        );
        register(
            registry,
            "soakd_http_sent_bytes_total",
            "Bytes of HTTP requests written (heads and bodies).",
            f.sent.clone(),
        );
        register(
            registry,
            "soakd_http_received_bytes_total",
            "Bytes of HTTP responses read (heads and bodies).",
            f.received.clone(),
        );
        f
    }

    /// Handles for op `op` of `scenario`.
    pub fn op(&self, scenario: &str, op: &str) -> PhaseMetrics {
        let s = ScenarioLabel {
            scenario: scenario.to_string(),
        };
        PhaseMetrics {
            phases: NAMES.map(|phase| {
                self.phase.get_or_create_owned(&PhaseLabels {
                    op: op.to_string(),
                    phase,
                    scenario: scenario.to_string(),
                })
            }),
            sent: self.sent.get_or_create_owned(&s),
            received: self.received.get_or_create_owned(&s),
        }
    }

    /// Forgets the series of ops (or a whole scenario's bytes) a reload removed.
    pub fn remove(&self, scenario: &str, ops: &[String], whole_scenario: bool) {
        for op in ops {
            for phase in NAMES {
                self.phase.remove(&PhaseLabels {
                    op: op.clone(),
                    phase,
                    scenario: scenario.to_string(),
                });
            }
        }
        if whole_scenario {
            let s = ScenarioLabel {
                scenario: scenario.to_string(),
            };
            self.sent.remove(&s);
            self.received.remove(&s);
        }
    }
}
