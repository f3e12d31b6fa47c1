//! Visibility probes (`visibility:` on an op): once the op — the write — has succeeded,
//! poll another target until the answer shows the write, or the deadline passes.
//!
//! The runner counts a probe against the scenario's `max_pending` from the arrival on
//! (an arrival that finds them all taken is dropped, never queued) and releases the
//! in-flight slot when the write returns, so polls consume neither arrivals nor
//! `max_in_flight`. The latency is the first satisfying answer's arrival minus the
//! write's intended start (`soakd_visibility_seconds`); a missed deadline is the op's
//! error `not_visible`.

use crate::config::visibility::{Cmp, Condition, Poll, Subject, Visibility};
use crate::config::{HttpStep, Op, OpKind, SqlOp, Target, TargetKind};
use crate::drivers::http::HttpDriver;
use crate::drivers::postgres::PostgresDriver;
use crate::drivers::{DriverError, OpError, TargetClient};
use crate::metrics::visibility::VisibilityOpMetrics;
use crate::template::IterVars;
use bytes::Bytes;
use serde_json::{Map, Value as Json};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The error kind of a write that did not become visible by the deadline.
pub const NOT_VISIBLE: &str = "not_visible";

/// A visibility op's poll: its driver, conditions and series.
pub struct Probe {
    cfg: Visibility,
    poller: Poller,
    pub metrics: VisibilityOpMetrics,
}

enum Poller {
    Http(HttpDriver),
    Sql(PostgresDriver),
}

/// One poll's answer.
enum Answer {
    Http {
        status: u16,
        body: Bytes,
    },
    /// The first row, or None when the statement returned none.
    Row(Option<Map<String, Json>>),
}

impl Probe {
    /// The probe of op `op` (with `visibility`), on its poll target's client.
    pub fn build(
        op: &Op,
        vis: &Visibility,
        clients: &HashMap<String, (Target, TargetClient)>,
        metrics: VisibilityOpMetrics,
    ) -> Result<Probe, DriverError> {
        let fail = |message: String| DriverError::Build {
            target: vis.target.clone(),
            message: format!("op {}'s visibility poll: {message}", op.name),
        };
        let (target, client) = clients
            .get(&vis.target)
            .ok_or_else(|| fail("no such target".into()))?;
        let poll_op = |kind| Op {
            name: format!("{}.visibility", op.name),
            weight: 1,
            timeout: None,
            kind,
            visibility: None,
        };
        let poller = match (&vis.poll, &target.kind, client) {
            (Poll::Http(r), TargetKind::Http(h), TargetClient::Http(c)) => {
                let step = HttpStep {
                    request: r.clone(),
                    extract: vec![],
                };
                Poller::Http(
                    HttpDriver::new(c.clone(), h, &[poll_op(OpKind::Http(vec![step]))])
                        .map_err(fail)?,
                )
            }
            (Poll::Sql(s), TargetKind::Postgres(_), TargetClient::Postgres(c)) => {
                let sql = SqlOp {
                    query: s.query.clone(),
                    params: s.params.clone(),
                };
                Poller::Sql(
                    PostgresDriver::new(c.clone(), &[poll_op(OpKind::Sql(sql))], None)
                        .map_err(fail)?,
                )
            }
            _ => return Err(fail("the poll does not fit the target's type".into())),
        };
        Ok(Probe {
            cfg: vis.clone(),
            poller,
            metrics,
        })
    }

    /// Polls until the answer shows the write or the deadline (from `start`, the
    /// write's intended start) passes; each poll gets at most `poll_timeout`. Ok: the
    /// latency. `vars` holds what the write bound, also as `write`.
    pub async fn run(
        &self,
        vars: &mut IterVars<'_>,
        start: Instant,
        poll_timeout: Duration,
    ) -> Result<Duration, OpError> {
        let deadline = start + self.cfg.deadline;
        let mut gap = self.cfg.every;
        let mut next = Instant::now();
        let mut polls = 0u64;
        let mut last = String::from("no poll answered");
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if next > now {
                tokio::time::sleep_until(next.min(deadline).into()).await;
                continue;
            }
            next = now + gap;
            gap = gap.mul_f64(self.cfg.backoff).min(self.cfg.max_every);
            polls += 1;
            self.metrics.polls.inc();
            let left = deadline.saturating_duration_since(now);
            match tokio::time::timeout(poll_timeout.min(left), self.poll(vars)).await {
                Ok(Ok(answer)) => match self.verdict(&answer, vars) {
                    Ok(()) => return Ok(Instant::now().saturating_duration_since(start)),
                    Err(why) => last = why,
                },
                Ok(Err(e)) => last = format!("poll failed ({}): {}", e.kind, e.detail),
                Err(_) => last = "a poll got no answer in time".into(),
            }
        }
        Err(OpError::new(
            NOT_VISIBLE,
            format!(
                "not visible within {} ({polls} polls); last: {last}",
                crate::units::format_duration(self.cfg.deadline)
            ),
        ))
    }

    async fn poll(&self, vars: &mut IterVars<'_>) -> Result<Answer, OpError> {
        match &self.poller {
            Poller::Http(d) => d
                .fetch(0, vars)
                .await
                .map(|(status, body)| Answer::Http { status, body }),
            Poller::Sql(d) => d.fetch_row(0, vars).await.map(Answer::Row),
        }
    }

    /// Ok when every condition holds; else why not (for the `not_visible` detail).
    fn verdict(&self, answer: &Answer, vars: &mut IterVars<'_>) -> Result<(), String> {
        let mut doc: Option<Json> = None;
        match answer {
            Answer::Http { status, .. } if self.cfg.until.is_empty() => {
                return if (200..300).contains(status) {
                    Ok(())
                } else {
                    Err(format!("status {status}"))
                };
            }
            Answer::Row(None) => return Err("no row".into()),
            _ => {}
        }
        for c in &self.cfg.until {
            match (c, answer) {
                (Condition::Status(m), Answer::Http { status, .. }) => {
                    if !m.matches(*status) {
                        return Err(format!("status {status}"));
                    }
                }
                (
                    Condition::Compare {
                        subject,
                        cmp,
                        value,
                    },
                    _,
                ) => {
                    let got: Option<&Json> = match (subject, answer) {
                        (Subject::Json(ptr), Answer::Http { status, body }) => {
                            if doc.is_none() {
                                doc = Some(serde_json::from_slice(body).map_err(|_| {
                                    format!("status {status}, the body is not JSON")
                                })?);
                            }
                            doc.as_ref().and_then(|d| d.pointer(ptr))
                        }
                        (Subject::Column(col), Answer::Row(Some(row))) => row.get(col),
                        _ => None,
                    };
                    let want = value.render(vars).map_err(|e| e.to_string())?;
                    let name = match subject {
                        Subject::Json(p) => p.as_str(),
                        Subject::Column(c) => c.as_str(),
                    };
                    match got {
                        Some(g) if compare(g, *cmp, &want) => {}
                        Some(g) => return Err(format!("{name} is {g}, not {} {want}", cmp.word())),
                        None => return Err(format!("{name} is absent")),
                    }
                }
                (Condition::Status(_), Answer::Row(_)) => {}
            }
        }
        Ok(())
    }
}

/// A number, or a string that reads as one (templates render text).
fn number(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `got cmp want`: numbers as numbers (also when one side is text that reads as a
/// number), text as text, booleans against `true`/`false`, anything else by JSON
/// equality; ordering only between numbers or between texts.
pub fn compare(got: &Json, cmp: Cmp, want: &Json) -> bool {
    let ord = match (number(got), number(want)) {
        (Some(a), Some(b)) => a.partial_cmp(&b),
        _ => match (got, want) {
            (Json::String(a), Json::String(b)) => Some(a.cmp(b)),
            (Json::Bool(a), Json::String(b)) | (Json::String(b), Json::Bool(a)) => {
                (a.to_string() == b.trim()).then_some(Ordering::Equal)
            }
            _ => (got == want).then_some(Ordering::Equal),
        },
    };
    match cmp {
        Cmp::Eq => ord == Some(Ordering::Equal),
        Cmp::Ne => ord != Some(Ordering::Equal),
        Cmp::Gt => ord == Some(Ordering::Greater),
        Cmp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        Cmp::Lt => ord == Some(Ordering::Less),
        Cmp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
    }
}

/// The probes of a scenario's ops (None for ops without `visibility`).
pub fn probes(
    scenario: &str,
    ops: &[Op],
    clients: &HashMap<String, (Target, TargetClient)>,
    metrics: &crate::metrics::visibility::VisibilityFamily,
) -> Result<Vec<Option<Arc<Probe>>>, DriverError> {
    ops.iter()
        .map(|o| match &o.visibility {
            Some(v) => Probe::build(o, v, clients, metrics.op(scenario, &o.name))
                .map(|p| Some(Arc::new(p))),
            None => Ok(None),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn comparisons_read_numbers_in_text_and_order_like_with_like() {
        assert!(compare(&json!(2), Cmp::Eq, &json!("2")));
        assert!(compare(&json!(2.0), Cmp::Eq, &json!(2)));
        assert!(compare(&json!("abc"), Cmp::Eq, &json!("abc")));
        assert!(compare(&json!(true), Cmp::Eq, &json!("true")));
        assert!(compare(&json!(true), Cmp::Eq, &json!(true)));
        assert!(!compare(&json!(false), Cmp::Eq, &json!("true")));
        assert!(compare(&json!(null), Cmp::Eq, &json!(null)));
        assert!(compare(&json!(1), Cmp::Ne, &json!(null)));
        assert!(compare(&json!(10), Cmp::Gt, &json!("9")));
        assert!(compare(&json!(9), Cmp::Ge, &json!(9)));
        assert!(!compare(&json!(8), Cmp::Ge, &json!(9)));
        assert!(compare(&json!(8), Cmp::Lt, &json!(9)));
        assert!(compare(&json!("b"), Cmp::Gt, &json!("a")));
        // No order between a number and a word, or with null.
        assert!(!compare(&json!(1), Cmp::Lt, &json!("x")));
        assert!(!compare(&json!(1), Cmp::Gt, &json!("x")));
        assert!(!compare(&json!(null), Cmp::Lt, &json!(1)));
        assert!(compare(&json!({"a": 1}), Cmp::Eq, &json!({"a": 1})));
    }
}
