//! Keeps `soakd_capacity_max_sustainable`, `soakd_capacity_baseline` and
//! `soakd_capacity_regression_tolerance` in step with the results store: at start, after
//! each run the daemon's search finishes, and every [`REFRESH`] (a baseline set by
//! `soakd report --set-baseline` in another process shows within that).

use super::compare::max_sustainable;
use super::store::{Store, StoreError};
use crate::engine::Engine;
use std::sync::Arc;
use std::time::Duration;

/// How often the store is re-read.
pub const REFRESH: Duration = Duration::from_secs(30);

/// Re-reads the latest finished run and the baseline of the configured search.
pub async fn refresh(engine: &Engine, store: &Store) -> Result<(), StoreError> {
    let Some(search) = engine.config().search.clone() else {
        return Ok(());
    };
    let gauges = &engine.metrics.capacity;
    gauges.set_tolerance(search.regression_tolerance);
    let latest = store.latest_complete(&search.name).await?;
    gauges.set_latest(
        &latest
            .map(|r| max_sustainable(&r).into_iter().collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    let baseline = match store.baseline(&search.name).await? {
        Some(id) => Some(store.load_run(&id).await?),
        None => None,
    };
    gauges.set_baseline(
        &baseline
            .map(|r| max_sustainable(&r).into_iter().collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    Ok(())
}

/// Refreshes now and every [`REFRESH`] until the runtime stops.
pub fn spawn(engine: Arc<Engine>, store: Store) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            match refresh(&engine, &store).await {
                Ok(()) => failing = false,
                // Logged once per outage, not every tick.
                Err(e) if !failing => {
                    tracing::warn!("capacity series: reading the results store: {e}");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    });
}
