//! The pg_* series (postgres_exporter's names and labels): their help texts and the
//! collector that serves the last complete snapshot at scrape time. `crate::pg::stats`
//! queries the database and fills the snapshot; a scrape never waits on it.

use crate::metrics::common::{register, Counter, TargetLabel};
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One sample of the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// Help text of every pg_* series, in one place (the docs list the same).
pub const SERIES: &[(&str, &str)] = &[
    (
        "pg_up",
        "Whether the last statistics collection reached the server (1) or not (0).",
    ),
    (
        "pg_stat_database_numbackends",
        "Backends connected to this database.",
    ),
    ("pg_stat_database_xact_commit", "Transactions committed."),
    (
        "pg_stat_database_xact_rollback",
        "Transactions rolled back.",
    ),
    ("pg_stat_database_blks_read", "Disk blocks read."),
    ("pg_stat_database_blks_hit", "Buffer cache hits."),
    ("pg_stat_database_tup_returned", "Rows returned by queries."),
    ("pg_stat_database_tup_fetched", "Rows fetched by queries."),
    ("pg_stat_database_tup_inserted", "Rows inserted."),
    ("pg_stat_database_tup_updated", "Rows updated."),
    ("pg_stat_database_tup_deleted", "Rows deleted."),
    (
        "pg_stat_database_conflicts",
        "Queries canceled due to conflicts with recovery.",
    ),
    ("pg_stat_database_temp_files", "Temporary files created."),
    (
        "pg_stat_database_temp_bytes",
        "Bytes written to temporary files.",
    ),
    ("pg_stat_database_deadlocks", "Deadlocks detected."),
    (
        "pg_stat_activity_count",
        "Connections by database and state.",
    ),
    (
        "pg_stat_activity_max_tx_duration",
        "Longest running transaction by database and state, in seconds.",
    ),
    (
        "pg_settings_max_connections",
        "Server setting max_connections.",
    ),
    (
        "pg_settings_superuser_reserved_connections",
        "Server setting superuser_reserved_connections.",
    ),
    (
        "pg_settings_shared_buffers_bytes",
        "Server setting shared_buffers, in bytes.",
    ),
    (
        "pg_settings_work_mem_bytes",
        "Server setting work_mem, in bytes.",
    ),
    (
        "pg_settings_max_wal_size_bytes",
        "Server setting max_wal_size, in bytes.",
    ),
    (
        "pg_settings_effective_cache_size_bytes",
        "Server setting effective_cache_size, in bytes.",
    ),
    (
        "pg_settings_checkpoint_timeout_seconds",
        "Server setting checkpoint_timeout, in seconds.",
    ),
    (
        "pg_settings_autovacuum_naptime_seconds",
        "Server setting autovacuum_naptime, in seconds.",
    ),
    (
        "pg_locks_count",
        "Locks held or awaited, by database and mode.",
    ),
    ("pg_database_size_bytes", "Disk space used by the database."),
    (
        "pg_stat_user_tables_seq_scan",
        "Sequential scans of the table.",
    ),
    ("pg_stat_user_tables_idx_scan", "Index scans of the table."),
    (
        "pg_stat_user_tables_n_tup_ins",
        "Rows inserted into the table.",
    ),
    (
        "pg_stat_user_tables_n_tup_upd",
        "Rows updated in the table.",
    ),
    (
        "pg_stat_user_tables_n_tup_del",
        "Rows deleted from the table.",
    ),
    ("pg_stat_user_tables_n_live_tup", "Estimated live rows."),
    ("pg_stat_user_tables_n_dead_tup", "Estimated dead rows."),
    (
        "pg_stat_user_tables_last_autovacuum",
        "Unix time of the last autovacuum (0: never).",
    ),
    (
        "pg_stat_user_tables_last_autoanalyze",
        "Unix time of the last autoanalyze (0: never).",
    ),
    (
        "pg_stat_user_tables_autovacuum_count",
        "Times the table was vacuumed by autovacuum.",
    ),
    (
        "pg_stat_bgwriter_checkpoints_timed_total",
        "Scheduled checkpoints performed.",
    ),
    (
        "pg_stat_bgwriter_checkpoints_req_total",
        "Requested checkpoints performed.",
    ),
    (
        "pg_stat_bgwriter_checkpoint_write_time_total",
        "Time writing checkpoint files, in milliseconds.",
    ),
    (
        "pg_stat_bgwriter_checkpoint_sync_time_total",
        "Time syncing checkpoint files, in milliseconds.",
    ),
    (
        "pg_stat_bgwriter_buffers_checkpoint_total",
        "Buffers written during checkpoints.",
    ),
    (
        "pg_stat_bgwriter_buffers_clean_total",
        "Buffers written by the background writer.",
    ),
    (
        "pg_stat_bgwriter_maxwritten_clean_total",
        "Times the background writer stopped for writing too many buffers.",
    ),
    (
        "pg_stat_bgwriter_buffers_backend_total",
        "Buffers written directly by backends.",
    ),
    (
        "pg_stat_bgwriter_buffers_backend_fsync_total",
        "Times a backend had to fsync itself.",
    ),
    ("pg_stat_bgwriter_buffers_alloc_total", "Buffers allocated."),
    (
        "pg_stat_statements_calls_total",
        "Executions of the statement (top statements by total time).",
    ),
    (
        "pg_stat_statements_seconds_total",
        "Total execution time of the statement, in seconds.",
    ),
    (
        "pg_stat_statements_rows_total",
        "Rows retrieved or affected by the statement.",
    ),
    (
        "pg_replication_is_replica",
        "1 if the server is a replica (in recovery).",
    ),
    (
        "pg_replication_lag_seconds",
        "Replication lag behind the primary in seconds (0 on a primary).",
    ),
];

fn is_counter(name: &str) -> bool {
    name.ends_with("_total")
}

/// The last snapshot, shared by the collecting task and the registry.
#[derive(Default)]
pub struct Snapshot {
    samples: Mutex<Vec<Sample>>,
}

impl Snapshot {
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().clone()
    }

    /// Replaces the snapshot with a complete pass (or with `pg_up 0` when it failed).
    pub fn set(&self, samples: Vec<Sample>) {
        *self.samples.lock() = samples;
    }
}

/// The pg family: the statistics snapshot (rendered at scrape time) and the failed
/// collections per target.
pub struct PgFamily {
    /// The PostgreSQL statistics snapshot (pg_* series), filled by `crate::pg::stats`.
    pub snapshot: Arc<Snapshot>,
    errors: Family<TargetLabel, Counter>,
}

impl PgFamily {
    pub fn register(registry: &mut Registry) -> PgFamily {
        let f = PgFamily {
            snapshot: Arc::new(Snapshot::default()),
            errors: Family::default(),
        };
        register(
            registry,
            "soakd_pgstats_errors_total",
            "Failed statistics collections (connect, query or timeout), by target.",
            f.errors.clone(),
        );
        registry.register_collector(Box::new(SnapshotCollector(f.snapshot.clone())));
        f
    }

    /// The failed-collections counter of `target`.
    pub fn errors(&self, target: &str) -> Counter {
        self.errors.get_or_create_owned(&TargetLabel::of(target))
    }
}

/// Renders the snapshot at scrape time.
struct SnapshotCollector(Arc<Snapshot>);

impl std::fmt::Debug for SnapshotCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotCollector")
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let samples = self.0.samples();
        let mut by_name: BTreeMap<&'static str, Vec<&Sample>> = BTreeMap::new();
        for s in &samples {
            by_name.entry(s.name).or_default().push(s);
        }
        for (name, list) in by_name {
            let help = SERIES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, h)| *h)
                .unwrap_or("");
            let counter = is_counter(name);
            // The encoders add `_total` to counters themselves.
            let (family_name, kind) = match name.strip_suffix("_total") {
                Some(base) if counter => (base, MetricType::Counter),
                _ => (name, MetricType::Gauge),
            };
            let mut family = encoder.encode_descriptor(family_name, help, None, kind)?;
            let mut seen = std::collections::HashSet::new();
            for s in list {
                let mut labels: Vec<(&str, &str)> =
                    s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                labels.sort_by(|a, b| a.0.cmp(b.0));
                if !seen.insert(labels.clone()) {
                    continue;
                }
                let m = family.encode_family(&labels)?;
                if counter {
                    ConstCounter::new(s.value).encode(m)?;
                } else {
                    ConstGauge::new(s.value).encode(m)?;
                }
            }
        }
        Ok(())
    }
}
