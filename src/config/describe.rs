//! What `check-config` prints: each scenario, its target, op mix, SLO and schedule.

use crate::config::model::{Config, Target};
use crate::units;

impl Config {
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// What `check-config` prints: each scenario, its target and its schedule.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("listen {}\n", self.listen));
        if self.scenarios.is_empty() {
            out.push_str("no scenarios\n");
        }
        for s in &self.scenarios {
            let target = self
                .target(&s.target)
                .map(|t| format!("{} {}", t.kind.type_name(), t.kind.display_endpoint()))
                .unwrap_or_default();
            out.push_str(&format!(
                "\nscenario {} -> target {} ({target})\n",
                s.name, s.target
            ));
            let total: u32 = s.ops.iter().map(|o| o.weight).sum();
            let mix: Vec<String> = s
                .ops
                .iter()
                .map(|o| {
                    let pct = if total > 0 {
                        100.0 * o.weight as f64 / total as f64
                    } else {
                        0.0
                    };
                    format!("{} {pct:.0}%", o.name)
                })
                .collect();
            out.push_str(&format!("  ops: {}\n", mix.join(", ")));
            out.push_str(&format!(
                "  max_in_flight {}, timeout {}, arrival {}\n",
                s.max_in_flight,
                units::format_duration(s.timeout),
                format!("{:?}", s.arrival).to_lowercase()
            ));
            for o in &s.ops {
                if let Some(v) = &o.visibility {
                    out.push_str(&format!("  {}\n", describe_visibility(&o.name, v)));
                }
            }
            if s.ops.iter().any(|o| o.visibility.is_some()) {
                out.push_str(&format!(
                    "  max_pending {} probes (an arrival past it is dropped)\n",
                    s.max_pending
                ));
            }
            let mut slo = Vec::new();
            for (n, v) in [
                ("p50", s.slo.p50),
                ("p95", s.slo.p95),
                ("p99", s.slo.p99),
                ("event e2e p95", s.slo.e2e_p95),
            ] {
                if let Some(d) = v {
                    slo.push(format!("{n} < {d}"));
                }
            }
            if let Some(r) = s.slo.error_rate {
                slo.push(format!("error rate < {}%", r.0 * 100.0));
            }
            if !slo.is_empty() {
                out.push_str(&format!(
                    "  slo: {}, rolling over {} (soakd_slo_ok)\n",
                    slo.join(", "),
                    units::format_duration(s.slo.window())
                ));
            }
            if let Some(g) = &s.guard {
                out.push_str(&format!("  {}\n", g.describe()));
            }
            out.push_str("  schedule:\n");
            for line in s.schedule.timeline() {
                out.push_str(&format!("    {line}\n"));
            }
        }
        if let Some(search) = &self.search {
            out.push_str(&search.describe());
        }
        if let Some(v) = &self.verdicts {
            out.push_str(&format!(
                "\nverdicts from Prometheus {}{}: SLOs every {}, search levels summed over every shard (scrapes every {})\n",
                v.prometheus,
                if v.selector.is_empty() {
                    String::new()
                } else {
                    format!(" {{{}}}", v.selector)
                },
                units::format_duration(v.interval),
                units::format_duration(v.scrape_interval),
            ));
            if let Some(l) = &v.leader {
                out.push_str(&format!("  shards other than 0 follow the search of {l}\n"));
            }
        }
        out
    }
}

/// `visibility of OP: poll TARGET GET /path every 50ms (x1.5 up to 1s) until …, deadline 10s`.
fn describe_visibility(op: &str, v: &super::visibility::Visibility) -> String {
    use super::visibility::{Condition, Poll, Subject};
    let what = match &v.poll {
        Poll::Http(r) => format!("{} {}", r.method, r.path.source()),
        Poll::Sql(s) => {
            let q: String = s.query.split_whitespace().collect::<Vec<_>>().join(" ");
            if q.chars().count() > 60 {
                format!("{}…", q.chars().take(60).collect::<String>())
            } else {
                q
            }
        }
    };
    let period = if v.backoff > 1.0 {
        format!(
            "every {} (x{} up to {})",
            units::format_duration(v.every),
            v.backoff,
            units::format_duration(v.max_every)
        )
    } else {
        format!("every {}", units::format_duration(v.every))
    };
    let until: Vec<String> = v
        .until
        .iter()
        .map(|c| match c {
            Condition::Status(m) => match m {
                crate::config::http::StatusMatch::Code(c) => format!("status {c}"),
                crate::config::http::StatusMatch::Class(c) => format!("status {c}xx"),
            },
            Condition::Compare {
                subject,
                cmp,
                value,
            } => {
                let s = match subject {
                    Subject::Json(p) => p.clone(),
                    Subject::Column(c) => c.clone(),
                };
                let shown = match value {
                    crate::template::JsonTemplate::Str(t) => t.source().to_string(),
                    crate::template::JsonTemplate::Value(j) => j.to_string(),
                    other => format!("{other:?}"),
                };
                format!("{s} {} {shown}", cmp.word())
            }
        })
        .collect();
    let until = if until.is_empty() {
        match v.poll {
            Poll::Http(_) => "a 2xx answer".to_string(),
            Poll::Sql(_) => "a row".to_string(),
        }
    } else {
        until.join(" and ")
    };
    format!(
        "visibility of {op}: poll {} {what} {period} until {until}, deadline {} from the write",
        v.target,
        units::format_duration(v.deadline)
    )
}
