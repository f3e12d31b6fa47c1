//! `soakd_build_info` and the config reload series.

use super::common::{register, FloatGauge, IntGauge};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// The config reload and build series.
pub struct ConfigFamily {
    pub reload_successful: IntGauge,
    pub reload_timestamp: FloatGauge,
}

impl ConfigFamily {
    pub fn register(registry: &mut Registry) -> ConfigFamily {
        register(
            registry,
            "soakd_build_info",
            "Always 1; the version label says which soakd runs.",
            Info::new(VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let f = ConfigFamily {
            reload_successful: IntGauge::default(),
            reload_timestamp: FloatGauge::default(),
        };
        register(
            registry,
            "soakd_config_last_reload_successful",
            "1 if the last config load or reload succeeded, 0 if it was rejected.",
            f.reload_successful.clone(),
        );
        register(
            registry,
            "soakd_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load or reload.",
            f.reload_timestamp.clone(),
        );
        f
    }
}
