//! soakd's pg_* series against the real prometheus-postgres-exporter (the Debian
//! package, 0.11) on the same database: the same names with the same labels, except
//! for the differences listed (and documented in docs/METRICS.md).

mod common;

use common::*;
use soakd::pg::cluster::Cluster;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Where soakd and postgres_exporter 0.11 knowingly differ, and why.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "pg_replication_lag_seconds",
        "0.11's example queries call it pg_replication_lag; newer exporters use _seconds",
    ),
    (
        "pg_replication_is_replica",
        "not in 0.11's example queries (newer exporters' replication collector has it)",
    ),
    (
        "pg_stat_statements_calls_total",
        "0.11's example query reads total_time, which PostgreSQL 13+ renamed; newer exporters' stat_statements collector exports this name",
    ),
    ("pg_stat_statements_seconds_total", "as pg_stat_statements_calls_total"),
    ("pg_stat_statements_rows_total", "as pg_stat_statements_calls_total"),
];

/// name -> set of label-name sets seen (the exporter's `server` label removed: soakd
/// leaves instance identity to Prometheus' target labels).
fn label_sets(text: &str) -> BTreeMap<String, BTreeSet<Vec<String>>> {
    let mut out: BTreeMap<String, BTreeSet<Vec<String>>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || !line.starts_with("pg_") {
            continue;
        }
        let (name, labels) = match line.find('{') {
            Some(i) => {
                let end = line.rfind('}').unwrap();
                (&line[..i], &line[i + 1..end])
            }
            None => (line.split(' ').next().unwrap(), ""),
        };
        let mut names: Vec<String> = labels
            .split("\",")
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.split('=').next().unwrap().trim().to_string())
            .filter(|k| k != "server")
            .collect();
        names.sort();
        out.entry(name.to_string()).or_default().insert(names);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_match_postgres_exporter() {
    let exporter = "/usr/bin/prometheus-postgres-exporter";
    assert!(
        std::path::Path::new(exporter).exists(),
        "prometheus-postgres-exporter is missing: run scripts/test.sh (it installs the Debian package)"
    );
    let pg = Cluster::start(true).unwrap();
    let url = pg.url("postgres");
    // soakd with load, so tables, statements and activity exist.
    let env = std::collections::HashMap::from([("DATABASE_URL".to_string(), url.clone())]);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let cfg = soakd::config::parse(
        r#"
fixtures: {user: {file: users.json}}
targets:
  db: {type: postgres, url: "${DATABASE_URL}", bootstrap: true, stats: {interval: 300ms}}
scenarios:
  events:
    target: db
    buffer: {flush_interval: 100ms}
    schedule: {hold: {rate: 100/s}}
    ops:
      e: {event: {user: "{{user.id}}", stat_code: wins_ranked, value: "{{rand_int 1 60}}"}}
  reads:
    target: db
    schedule: {hold: {rate: 50/s}}
    ops:
      r: {sql: {query: "SELECT * FROM user_goal_progress WHERE user_id = $1", params: ["{{user.id}}"]}}
"#,
        "compat.yaml",
        &dir,
        &env,
    )
    .unwrap();
    let d = daemon(cfg);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The exporter with its own example queries (pg_stat_user_tables, replication...).
    let port = free_port();
    let mut child = Command::new(exporter)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(
            "--extend.query-path=/usr/share/doc/prometheus-postgres-exporter/examples/queries.yaml",
        )
        .env("DATA_SOURCE_NAME", format!("{url}?sslmode=disable"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let theirs = eventually(Duration::from_secs(10), || async {
        let t = try_text(&format!("http://127.0.0.1:{port}/metrics")).await?;
        t.contains("pg_stat_user_tables_n_live_tup").then_some(t)
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let theirs = theirs.expect("postgres_exporter produced no pg_stat_user_tables series");
    let ours = metrics_text(d.addr()).await;
    d.shutdown(Duration::from_secs(5)).await;

    let (ours, theirs) = (label_sets(&ours), label_sets(&theirs));
    let mut report = Vec::new();
    let mut unexplained = Vec::new();
    for (name, _) in soakd::metrics::pg::SERIES {
        let known = KNOWN_DIFFERENCES.iter().find(|(n, _)| n == name);
        let a = ours.get(*name);
        let b = theirs.get(*name);
        let same = a.is_some() && a == b;
        report.push(format!(
            "{name}: soakd {:?} / exporter {:?}{}",
            a,
            b,
            if same { "" } else { "  <- differs" }
        ));
        match (same, known) {
            (true, Some(_)) => {
                unexplained.push(format!("{name} is listed as a difference but matches"))
            }
            (false, None) => unexplained.push(format!("{name} differs")),
            _ => {}
        }
        assert!(
            a.is_some(),
            "soakd did not export {name}:\n{}",
            report.join("\n")
        );
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        unexplained.is_empty(),
        "{unexplained:?}\n{}",
        report.join("\n")
    );
}
