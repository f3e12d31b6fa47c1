//! One judge for a sharded fleet: with `--shard i/n` and `verdicts.prometheus`, the
//! leader (shard 0) judges deploys on the fleet's blocks, not its own 1/n. Each period
//! it cuts is held until Prometheus has scraped past the period's end, then its op and
//! scenario blocks are replaced by Prometheus's sums over every shard (`Prom::period`:
//! native buckets where Prometheus keeps them); soakd's own side (CPU, runtime delay,
//! schedule lag, connection slots) stays the leader's. A period Prometheus cannot sum
//! over every shard is set aside, as soakd's, never judged on one shard's share.

use super::blocks::Cut;
use crate::promql::{Period, Prom};
use crate::shift::Block;
use std::collections::VecDeque;

/// Periods held at most, waiting for Prometheus (a period older than this many is
/// given up on, set aside).
pub const MAX_HELD: usize = 16;

pub struct Fleet {
    prom: Prom,
    /// How long after a period's end Prometheus has scraped past it.
    settle: f64,
    shards: u32,
    held: VecDeque<Cut>,
}

impl Fleet {
    pub fn new(prom: Prom, settle: f64, shards: u32) -> Fleet {
        Fleet {
            prom,
            settle,
            shards,
            held: VecDeque::new(),
        }
    }

    /// Seconds from a period's end until its sums are asked for.
    pub fn settle(&self) -> f64 {
        self.settle
    }

    /// Holds a period's cut; returns the oldest when more than [`MAX_HELD`] wait (set
    /// aside: Prometheus did not answer in time).
    pub fn hold(&mut self, cut: Cut) -> Option<Cut> {
        self.held.push_back(cut);
        if self.held.len() <= MAX_HELD {
            return None;
        }
        let mut old = self.held.pop_front()?;
        old.generator.unsummed = Some("Prometheus had not answered for it in time".into());
        Some(old)
    }

    /// Every held period Prometheus has scraped past by `now`, summed over the shards
    /// (or set aside with why not), oldest first.
    pub async fn ready(&mut self, now: f64) -> Vec<Cut> {
        let mut out = Vec::new();
        // Once Prometheus cannot be reached, the other periods due are not asked again
        // this round (each ask could wait for its timeout).
        let mut down: Option<String> = None;
        while let Some(c) = self.held.front() {
            let end = c.generator.t + c.generator.secs;
            if end + self.settle > now {
                break;
            }
            let Some(mut cut) = self.held.pop_front() else {
                break;
            };
            if let Some(why) = &down {
                cut.generator.unsummed = Some(why.clone());
                out.push(cut);
                continue;
            }
            match self.prom.period(cut.generator.secs, end).await {
                Ok(p) if p.instances >= self.shards => summed(&mut cut, &p, self.shards),
                Ok(p) => {
                    cut.generator.unsummed = Some(format!(
                        "Prometheus had the series of {} of the {} shards",
                        p.instances, self.shards
                    ))
                }
                Err(e) => {
                    let why = e.to_string();
                    if matches!(e, crate::promql::PromError::Unreachable { .. }) {
                        down = Some(why.clone());
                    }
                    cut.generator.unsummed = Some(why);
                }
            }
            out.push(cut);
        }
        out
    }
}

/// Replaces a period's op blocks and scenario arrivals by the fleet's sums.
pub fn summed(cut: &mut Cut, p: &Period, shards: u32) {
    let (t, secs) = (cut.generator.t, cut.generator.secs);
    let count = |v: f64| v.max(0.0).round() as u64;
    cut.ops = p
        .ops
        .iter()
        .map(|((scenario, op), o)| {
            let b = Block {
                t,
                secs,
                hist: Block::hist_from_ranges(&o.buckets),
                requests: count(o.completed),
                errors: o
                    .errors
                    .iter()
                    .map(|(k, v)| (k.clone(), count(*v)))
                    .filter(|(_, v)| *v > 0)
                    .collect(),
            };
            (format!("{scenario}/{op}"), b)
        })
        .collect();
    for (name, sb) in cut.scenarios.iter_mut() {
        let (started, dropped) = p.scenarios.get(name).copied().unwrap_or((0.0, 0.0));
        sb.offered = count(started + dropped);
        sb.dropped = count(dropped);
    }
    cut.generator.shards = Some(shards);
    cut.generator.classic = p.ops.values().any(|o| !o.native && !o.buckets.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::blocks::{GeneratorBlock, ScenarioBlock};
    use crate::promql::OpPeriod;
    use std::collections::BTreeMap;

    fn cut(t: f64) -> Cut {
        Cut {
            ops: vec![("api/get".into(), Block::default())],
            scenarios: vec![(
                "api".into(),
                ScenarioBlock {
                    t,
                    secs: 60.0,
                    offered: 3000,
                    dropped: 0,
                    lag_p99: Some(0.002),
                    queue_share: Some(0.0),
                },
            )],
            generator: GeneratorBlock {
                t,
                secs: 60.0,
                cpu_share: Some(0.1),
                ..GeneratorBlock::default()
            },
        }
    }

    #[test]
    fn a_period_takes_the_fleets_sums_and_keeps_the_leaders_own_side() {
        let mut c = cut(1000.0);
        let mut ops = BTreeMap::new();
        ops.insert(
            ("api".to_string(), "get".to_string()),
            OpPeriod {
                buckets: vec![(0.0078125, 0.0085195, 5999.6)],
                native: true,
                completed: 6000.4,
                errors: [("timeout".to_string(), 3.2), ("http_5xx".to_string(), 0.2)]
                    .into_iter()
                    .collect(),
            },
        );
        let p = Period {
            instances: 2,
            ops,
            scenarios: [("api".to_string(), (5990.0, 10.0))].into_iter().collect(),
        };
        summed(&mut c, &p, 2);
        assert_eq!(c.ops.len(), 1);
        let (k, b) = &c.ops[0];
        assert_eq!(k, "api/get");
        assert_eq!(
            (b.t, b.secs, b.requests, b.count()),
            (1000.0, 60.0, 6000, 6000)
        );
        assert_eq!(b.errors.get("timeout"), Some(&3));
        assert!(!b.errors.contains_key("http_5xx"));
        let s = &c.scenarios[0].1;
        assert_eq!((s.offered, s.dropped, s.lag_p99), (6000, 10, Some(0.002)));
        assert_eq!(c.generator.shards, Some(2));
        assert!(!c.generator.classic);
        assert_eq!(c.generator.cpu_share, Some(0.1));
    }

    #[test]
    fn held_periods_are_bounded_and_the_overflow_set_aside() {
        let mut f = Fleet::new(Prom::new("http://127.0.0.1:9", ""), 5.0, 2);
        for i in 0..MAX_HELD {
            assert!(f.hold(cut(i as f64 * 60.0)).is_none());
        }
        let old = f.hold(cut(1e6)).expect("the oldest is given up");
        assert_eq!(old.generator.t, 0.0);
        assert!(old.generator.unsummed.is_some());
        assert_eq!(f.held.len(), MAX_HELD);
    }

    #[tokio::test]
    async fn a_period_prometheus_cannot_answer_is_set_aside_with_why() {
        let mut f = Fleet::new(Prom::new("http://127.0.0.1:9", ""), 5.0, 2);
        f.hold(cut(1000.0));
        f.hold(cut(1060.0));
        f.hold(cut(1120.0));
        // Not yet scraped past the third's end.
        let out = f.ready(1000.0 + 120.0 + 1.0 + 5.0).await;
        assert_eq!(out.len(), 2);
        for c in &out {
            let why = c.generator.unsummed.clone().unwrap_or_default();
            assert!(why.contains("cannot reach Prometheus"), "{why}");
            assert_eq!(c.generator.shards, None);
        }
        assert_eq!(f.held.len(), 1);
    }
}
