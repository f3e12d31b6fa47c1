//! The deploy judge's series: deploys seen per target, whether the last one regressed
//! each scenario on it, and each target's current release. Labels are bounded: targets
//! and scenarios come from the config; `target_version` is one series per target (the
//! old one is removed when the release changes).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;

use crate::metrics::common::register;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScenarioLabels {
    pub target: String,
    pub scenario: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    pub target: String,
    pub target_version: String,
}

pub struct DeployFamily {
    deploys: Family<TargetLabel, Counter>,
    regressed: Family<ScenarioLabels, Gauge>,
    info: Family<InfoLabels, Gauge>,
    /// The version each target's info series carries now.
    versions: parking_lot::Mutex<BTreeMap<String, String>>,
}

impl DeployFamily {
    pub fn register(registry: &mut Registry) -> DeployFamily {
        let f = DeployFamily {
            deploys: Family::default(),
            regressed: Family::default(),
            info: Family::default(),
            versions: parking_lot::Mutex::new(BTreeMap::new()),
        };
        register(
            registry,
            "soakd_deploys",
            "Deploys of the target soakd has seen (its release changed, POST /api/v1/deploys, or a restart with no release source).",
            f.deploys.clone(),
        );
        register(
            registry,
            "soakd_deploy_regressed",
            "1 when the target's last judged deploy regressed the scenario (its latency, errors or drops, or the target's resources), else 0; the evidence is in /api/v1/deploys.",
            f.regressed.clone(),
        );
        register(
            registry,
            "soakd_deploy_info",
            "The target's current release (one series per target, value 1); soakd's own version is on soakd_build_info.",
            f.info.clone(),
        );
        f
    }

    /// Starts a target's series at 0 (so an alert's `increase()` sees its first deploy).
    pub fn target(&self, target: &str) {
        let _ = self.deploys.get_or_create(&TargetLabel {
            target: target.to_string(),
        });
    }

    pub fn deployed(&self, target: &str) {
        self.deploys
            .get_or_create(&TargetLabel {
                target: target.to_string(),
            })
            .inc();
    }

    pub fn set_regressed(&self, target: &str, scenario: &str, regressed: bool) {
        self.regressed
            .get_or_create(&ScenarioLabels {
                target: target.to_string(),
                scenario: scenario.to_string(),
            })
            .set(i64::from(regressed));
    }

    /// The target's release is `version` now.
    pub fn set_version(&self, target: &str, version: &str) {
        let mut v = self.versions.lock();
        if let Some(old) = v.get(target) {
            if old == version {
                return;
            }
            self.info.remove(&InfoLabels {
                target: target.to_string(),
                target_version: old.clone(),
            });
        }
        self.info
            .get_or_create(&InfoLabels {
                target: target.to_string(),
                target_version: version.to_string(),
            })
            .set(1);
        v.insert(target.to_string(), version.to_string());
    }
}
