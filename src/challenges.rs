//! The seed's challenge definitions (10 challenges x 50 goals, `fixtures/challenges.json`):
//! which goals a stat update advances. Used by the demo target and the buffered writer.

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// The definitions shipped in the binary.
pub const EMBEDDED_JSON: &str = include_str!("../fixtures/challenges.json");

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Challenge {
    pub id: String,
    pub name: String,
    pub goals: Vec<Goal>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Goal {
    pub id: String,
    pub name: String,
    pub stat_code: String,
    pub target: u64,
}

/// A goal as the writer needs it: where it belongs and when it completes.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalRef {
    pub goal_id: Arc<str>,
    pub challenge_id: Arc<str>,
    pub target: u64,
}

/// Goals by the stat code that advances them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChallengeIndex {
    pub challenges: Vec<Challenge>,
    by_stat: HashMap<String, Vec<GoalRef>>,
}

impl ChallengeIndex {
    pub fn parse(json: &str) -> Result<ChallengeIndex, serde_json::Error> {
        let challenges: Vec<Challenge> = serde_json::from_str(json)?;
        let mut by_stat: HashMap<String, Vec<GoalRef>> = HashMap::new();
        for c in &challenges {
            for g in &c.goals {
                by_stat
                    .entry(g.stat_code.clone())
                    .or_default()
                    .push(GoalRef {
                        goal_id: Arc::from(g.id.as_str()),
                        challenge_id: Arc::from(c.id.as_str()),
                        target: g.target,
                    });
            }
        }
        Ok(ChallengeIndex {
            challenges,
            by_stat,
        })
    }

    pub fn embedded() -> Result<ChallengeIndex, serde_json::Error> {
        Self::parse(EMBEDDED_JSON)
    }

    /// The goals a stat code advances (empty for an unknown code).
    pub fn goals_for(&self, stat_code: &str) -> &[GoalRef] {
        self.by_stat
            .get(stat_code)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn stat_codes(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_stat.keys().map(String::as_str).collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_index() {
        let idx = ChallengeIndex::embedded().unwrap();
        assert_eq!(idx.challenges.len(), 10);
        let total: usize = idx
            .stat_codes()
            .iter()
            .map(|s| idx.goals_for(s).len())
            .sum();
        assert_eq!(total, 500);
        assert!(idx.goals_for("no_such_stat").is_empty());
        assert_eq!(idx.stat_codes().len(), 250);
        assert!(idx.stat_codes().iter().all(|s| idx.goals_for(s).len() == 2));
    }
}
