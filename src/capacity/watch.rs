//! Keeps `soakd_capacity_max_sustainable`, `soakd_capacity_baseline`,
//! `soakd_capacity_regressed` (the comparison of the two runs) and
//! `soakd_capacity_regression_tolerance` in step with the results store: at start, after
//! each run the daemon's search finishes, and every [`REFRESH`] (a baseline set by
//! `soakd report --set-baseline` in another process shows within that). A JSONL store is
//! read on a blocking thread, and only when its directory changed: never on the load
//! runtime's workers.

use super::compare::{compare, max_sustainable, Change};
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
            .as_ref()
            .map(|r| max_sustainable(r).into_iter().collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    let baseline = match store.baseline(&search.name).await? {
        Some(id) => Some(store.load_run(&id).await?),
        None => None,
    };
    gauges.set_baseline(
        &baseline
            .as_ref()
            .map(|r| max_sustainable(r).into_iter().collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    // The comparison's verdict per scenario (none when the latest is the baseline):
    // computed once per pair of runs and tolerance, off the load runtime's workers.
    let key = match (&baseline, &latest) {
        (Some(a), Some(b)) => Some(format!(
            "{} {} {}",
            a.record.id, b.record.id, search.regression_tolerance
        )),
        _ => None,
    };
    if key.is_some() && gauges.regressed_key().as_ref() == key.as_ref() {
        return Ok(());
    }
    let tolerance = search.regression_tolerance;
    let regressed = match (baseline, latest) {
        (Some(a), Some(b)) if a.record.id != b.record.id => {
            let judged = tokio::task::spawn_blocking(move || compare(&a, &b, tolerance)).await;
            match judged {
                Err(e) => {
                    tracing::warn!("capacity: comparing the latest run with the baseline: {e}");
                    Vec::new()
                }
                Ok(Ok(c)) => c
                    .scenarios
                    .iter()
                    .map(|s| {
                        let r = (s.change == Change::Regressed) as u8;
                        (s.scenario.clone(), r as f64)
                    })
                    .collect(),
                Ok(Err(e)) => {
                    tracing::warn!("capacity: comparing the latest run with the baseline: {e}");
                    Vec::new()
                }
            }
        }
        (Some(_), Some(b)) => max_sustainable(&b).into_keys().map(|s| (s, 0.0)).collect(),
        _ => Vec::new(),
    };
    gauges.set_regressed(&regressed, key);
    Ok(())
}

/// What a JSONL store's directory looks like (entries, their sizes and times): when it
/// has not changed, neither have the runs or the baselines.
fn jsonl_signature(
    dir: &std::path::Path,
) -> Option<Vec<(std::ffi::OsString, u64, std::time::SystemTime)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).ok()? {
        let e = e.ok()?;
        let m = e.metadata().ok()?;
        v.push((e.file_name(), m.len(), m.modified().ok()?));
    }
    v.sort();
    Some(v)
}

/// [`refresh`] off the load runtime: the JSONL store reads and parses files, so it runs
/// on a blocking thread, and only when the directory changed since the last time.
async fn refresh_off_runtime(
    engine: &Arc<Engine>,
    store: &Store,
    last: &mut Option<Vec<(std::ffi::OsString, u64, std::time::SystemTime)>>,
) -> Result<(), StoreError> {
    let Store::Jsonl(dir) = store else {
        return refresh_now(engine, store).await;
    };
    let sig = jsonl_signature(dir);
    if sig.is_some() && sig == *last {
        // The tolerance may have changed with a reload; the runs have not.
        if let Some(s) = &engine.config().search {
            engine
                .metrics
                .capacity
                .set_tolerance(s.regression_tolerance);
        }
        return Ok(());
    }
    let r = refresh_now(engine, store).await;
    if r.is_ok() {
        *last = sig;
    }
    r
}

/// [`refresh`] now, a JSONL store's reads on a blocking thread (not the load runtime's).
pub async fn refresh_now(engine: &Arc<Engine>, store: &Store) -> Result<(), StoreError> {
    match store {
        Store::Jsonl(_) => {
            let (e, st) = (engine.clone(), store.clone());
            tokio::task::spawn_blocking(move || futures::executor::block_on(refresh(&e, &st)))
                .await
                .unwrap_or(Ok(()))
        }
        Store::Postgres(_) => refresh(engine, store).await,
    }
}

/// Refreshes now and every [`REFRESH`] until the runtime stops.
pub fn spawn(engine: Arc<Engine>, store: Store) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let mut seen = None;
        loop {
            tick.tick().await;
            match refresh_off_runtime(&engine, &store, &mut seen).await {
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
