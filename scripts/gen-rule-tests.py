#!/usr/bin/env python3
"""Writes rules/tests/alerts_test.yml: for every alert one input that fires it and one
that keeps it silent; rules/tests/recording_test.yml: every recording rule's value once.

Expected annotations are pinned from rules/tests/annotations.json (written by
`--pin`, which runs promtool and records what each firing alert says), so a change of
wording shows up in review. Run from the repository root:
    scripts/gen-rule-tests.py          # regenerate from the pinned annotations
    scripts/gen-rule-tests.py --pin    # re-pin after changing an alert's text
"""
import json, os, re, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "rules", "tests")
FILES = ["../thresholds.yml", "../recording.yml", "../alerts.yml"]

def hist(name, labels, le_counts, minutes=20):
    """Cumulative buckets growing linearly: le_counts maps le -> increase per minute."""
    out = []
    acc = 0
    for le, per_min in le_counts:
        acc += per_min
        out.append((f'{name}_bucket{{{labels},le="{le}"}}', f"0+{acc}x{minutes}"))
    out.append((f'{name}_count{{{labels}}}', f"0+{acc}x{minutes}"))
    return out

INFO_HTTP = [('soakd_scenario_info{scenario="api",target="challenge-api",target_type="http"}', "1x20")]
INFO_GRPC = [('soakd_scenario_info{scenario="events",target="event-handler",target_type="grpc"}', "1x20")]
REQ = lambda sc, per_min: [(f'soakd_requests_total{{scenario="{sc}",op="o"}}', f"0+{per_min}x20")]
ERR = lambda sc, per_min: [(f'soakd_request_errors_total{{scenario="{sc}",op="o",kind="status_5xx"}}', f"0+{per_min}x20")]

# alert -> (eval_time, firing series, silent series, expected labels)
CASES = {
    "DatabaseConnectionPoolHigh": ("10m",
        [('soakd_db_pool_connections_in_use{target="db"}', "45x20"), ('soakd_db_pool_max_connections{target="db"}', "50x20")],
        [('soakd_db_pool_connections_in_use{target="db"}', "20x20"), ('soakd_db_pool_max_connections{target="db"}', "50x20")],
        {"severity": "warning", "target": "db"}),
    "HighAPILatency": ("10m",
        INFO_HTTP + hist("soakd_request_duration_seconds", 'scenario="api",op="o"', [("0.1", 0), ("1", 600), ("+Inf", 0)]),
        INFO_HTTP + hist("soakd_request_duration_seconds", 'scenario="api",op="o"', [("0.1", 600), ("1", 0), ("+Inf", 0)]),
        {"severity": "warning", "scenario": "api", "target": "challenge-api"}),
    "HighEventLatency": ("10m",
        INFO_GRPC + hist("soakd_request_duration_seconds", 'scenario="events",op="o"', [("0.05", 0), ("0.5", 600), ("+Inf", 0)]),
        INFO_GRPC + hist("soakd_request_duration_seconds", 'scenario="events",op="o"', [("0.05", 600), ("0.5", 0), ("+Inf", 0)]),
        {"severity": "warning", "scenario": "events", "target": "event-handler"}),
    "HighErrorRate": ("10m", REQ("api", 600) + ERR("api", 30), REQ("api", 600) + ERR("api", 3),
        {"severity": "critical", "scenario": "api"}),
    "BufferSizeHigh": ("10m",
        [('soakd_buffer_events{scenario="events"}', "90000x20"), ('soakd_buffer_capacity_events{scenario="events"}', "100000x20")],
        [('soakd_buffer_events{scenario="events"}', "1000x20"), ('soakd_buffer_capacity_events{scenario="events"}', "100000x20")],
        {"severity": "warning", "scenario": "events"}),
    "LoadGeneratorSaturated": ("10m",
        REQ("api", 600) + [('soakd_target_rate{scenario="api"}', "20x20"), ('soakd_dropped_iterations_total{scenario="api"}', "0x20")],
        REQ("api", 1200) + [('soakd_target_rate{scenario="api"}', "20x20"), ('soakd_dropped_iterations_total{scenario="api"}', "0x20")],
        {"severity": "warning", "scenario": "api"}),
    "SoakdDown": ("5m", [('up{job="soakd",instance="soakd:9400"}', "0x10")], [('up{job="soakd",instance="soakd:9400"}', "1x10")],
        {"severity": "critical", "job": "soakd", "instance": "soakd:9400"}),
    # RSS at 60 MiB growing 5 %/h (the demo before the fix) fires; growth during the
    # first hour only (a warm-up) and flat after it does not.
    "SoakdMemoryGrowing": ("480m",
        [('process_resident_memory_bytes{job="soakd",instance="soakd:9400"}', "62914560+52429x600"),
         ('process_start_time_seconds{job="soakd",instance="soakd:9400"}', "0x600")],
        [('process_resident_memory_bytes{job="soakd",instance="soakd:9400"}', "62914560+52429x60 66060300x540"),
         ('process_start_time_seconds{job="soakd",instance="soakd:9400"}', "0x600")],
        {"severity": "warning", "job": "soakd", "instance": "soakd:9400"}),
    # The latest run sustained 400/s against a baseline of 500/s (tolerance 10 %: the
    # limit is 450/s) fires; 460/s does not.
    # The soak judge's verdicts: a growing memory trend held 30 minutes fires; the same
    # trend with the judge saying not growing does not.
    "TargetMemoryGrowing": ("40m",
        [('soakd_soak_trend_per_day{target="api",resource="rss_bytes",bound="estimate"}', "0.031x40"),
         ('soakd_soak_growing{target="api",resource="rss_bytes"}', "1x40")],
        [('soakd_soak_trend_per_day{target="api",resource="rss_bytes",bound="estimate"}', "0.031x40"),
         ('soakd_soak_growing{target="api",resource="rss_bytes"}', "0x40")],
        {"severity": "warning", "target": "api", "resource": "rss_bytes", "bound": "estimate"}),
    "TargetFdsGrowing": ("40m",
        [('soakd_soak_trend_per_day{target="api",resource="open_fds",bound="estimate"}', "0.2x40"),
         ('soakd_soak_growing{target="api",resource="open_fds"}', "1x40")],
        [('soakd_soak_trend_per_day{target="api",resource="open_fds",bound="estimate"}', "0.2x40"),
         ('soakd_soak_growing{target="api",resource="open_fds"}', "0x40")],
        {"severity": "warning", "target": "api", "resource": "open_fds", "bound": "estimate"}),
    "TargetRestarting": ("60m",
        [('soakd_target_restarts_total{target="api"}', "0x20 1x10 2x10 3x30")],
        [('soakd_target_restarts_total{target="api"}', "0x20 1x50")],
        {"severity": "critical", "target": "api"}),
    "LatencyDrifting": ("40m",
        [('soakd_soak_op_trend_per_day{scenario="api",op="list",series="p99_seconds",bound="estimate"}', "0.08x40"),
         ('soakd_soak_op_growing{scenario="api",op="list",series="p99_seconds"}', "1x40")],
        [('soakd_soak_op_trend_per_day{scenario="api",op="list",series="p99_seconds",bound="estimate"}', "0.08x40"),
         ('soakd_soak_op_growing{scenario="api",op="list",series="p99_seconds"}', "0x40")],
        {"severity": "warning", "scenario": "api", "op": "list", "series": "p99_seconds", "bound": "estimate"}),
    # A table whose bytes per live tuple the judge finds growing for 30 minutes fires;
    # the same trend judged not growing (an insert workload, say) does not.
    "TableBloatGrowing": ("40m",
        [('soakd_soak_trend_per_day{target="db",resource="orders.bytes_per_live_tuple",bound="estimate"}', "0.4x40"),
         ('soakd_soak_growing{target="db",resource="orders.bytes_per_live_tuple"}', "1x40")],
        [('soakd_soak_trend_per_day{target="db",resource="orders.bytes_per_live_tuple",bound="estimate"}', "0.4x40"),
         ('soakd_soak_growing{target="db",resource="orders.bytes_per_live_tuple"}', "0x40")],
        {"severity": "warning", "target": "db", "resource": "orders.bytes_per_live_tuple", "bound": "estimate"}),
    # The last deploy's verdict: regressed for the scenario fires at once; unchanged
    # (or improved, invalid, pending: all 0) does not.
    "DeployRegressed": ("5m",
        [('soakd_deploy_regressed{target="api",scenario="checkout"}', "1x10")],
        [('soakd_deploy_regressed{target="api",scenario="checkout"}', "0x10")],
        {"severity": "warning", "target": "api", "scenario": "checkout"}),
    "CapacityRegressed": ("5m",
        [('soakd_capacity_max_sustainable{job="soakd",instance="soakd:9400",scenario="api"}', "400x10"),
         ('soakd_capacity_baseline{job="soakd",instance="soakd:9400",scenario="api"}', "500x10"),
         ('soakd_capacity_regression_tolerance{job="soakd",instance="soakd:9400"}', "0.1x10")],
        [('soakd_capacity_max_sustainable{job="soakd",instance="soakd:9400",scenario="api"}', "460x10"),
         ('soakd_capacity_baseline{job="soakd",instance="soakd:9400",scenario="api"}', "500x10"),
         ('soakd_capacity_regression_tolerance{job="soakd",instance="soakd:9400"}', "0.1x10")],
        {"severity": "warning", "job": "soakd", "instance": "soakd:9400", "scenario": "api"}),
    "SoakdConfigReloadFailed": ("5m", [('soakd_config_last_reload_successful{instance="soakd:9400"}', "0x10")],
        [('soakd_config_last_reload_successful{instance="soakd:9400"}', "1x10")],
        {"severity": "warning", "instance": "soakd:9400"}),
    "BufferFlushFailing": ("10m", [('soakd_buffer_flush_errors_total{scenario="events"}', "0+6x20")],
        [('soakd_buffer_flush_errors_total{scenario="events"}', "3x20")],
        {"severity": "critical", "scenario": "events"}),
    "EventE2ELatencyHigh": ("10m",
        hist("soakd_event_e2e_seconds", 'scenario="events"', [("1", 0), ("5", 600), ("+Inf", 0)]),
        hist("soakd_event_e2e_seconds", 'scenario="events"', [("1", 600), ("5", 0), ("+Inf", 0)]),
        {"severity": "warning", "scenario": "events"}),
    # p95 of 12 s against the 10 s threshold fires; 0.6 s (a 1 s flush) does not.
    "VisibilityLatencyHigh": ("15m",
        hist("soakd_visibility_seconds", 'scenario="visibility",op="stat_to_api"', [("1", 0), ("30", 600), ("+Inf", 0)]),
        hist("soakd_visibility_seconds", 'scenario="visibility",op="stat_to_api"', [("1", 600), ("30", 0), ("+Inf", 0)]),
        {"severity": "warning", "scenario": "visibility", "op": "stat_to_api"}),
    "ErrorBudgetBurnFast": ("70m",
        [('soakd_requests_total{scenario="api",op="o"}', "0+600x80"), ('soakd_request_errors_total{scenario="api",op="o",kind="io"}', "0+120x80")],
        [('soakd_requests_total{scenario="api",op="o"}', "0+600x80"), ('soakd_request_errors_total{scenario="api",op="o",kind="io"}', "0+30x80")],
        {"severity": "critical", "scenario": "api"}),
    "ErrorBudgetBurnSlow": ("400m",
        [('soakd_requests_total{scenario="api",op="o"}', "0+600x420"), ('soakd_request_errors_total{scenario="api",op="o",kind="io"}', "0+48x420")],
        [('soakd_requests_total{scenario="api",op="o"}', "0+600x420"), ('soakd_request_errors_total{scenario="api",op="o",kind="io"}', "0+12x420")],
        {"severity": "warning", "scenario": "api"}),
    "PostgresDown": ("5m", [('pg_up{job="soakd",instance="soakd:9400"}', "0x10")], [('pg_up{job="soakd",instance="soakd:9400"}', "1x10")],
        {"severity": "critical", "job": "soakd", "instance": "soakd:9400"}),
    "PostgresConnectionsHigh": ("10m",
        [('pg_stat_activity_count{job="soakd",instance="i",datname="app",state="active"}', "100x20"),
         ('pg_stat_activity_count{job="soakd",instance="i",datname="app",state="idle"}', "80x20"),
         ('pg_settings_max_connections{job="soakd",instance="i"}', "200x20")],
        [('pg_stat_activity_count{job="soakd",instance="i",datname="app",state="active"}', "10x20"),
         ('pg_settings_max_connections{job="soakd",instance="i"}', "200x20")],
        {"severity": "warning", "job": "soakd", "instance": "i"}),
    "PostgresCacheHitRatioLow": ("20m",
        [('pg_stat_database_blks_hit{job="soakd",instance="i",datid="1",datname="app"}', "0+800x30"),
         ('pg_stat_database_blks_read{job="soakd",instance="i",datid="1",datname="app"}', "0+200x30")],
        [('pg_stat_database_blks_hit{job="soakd",instance="i",datid="1",datname="app"}', "0+990x30"),
         ('pg_stat_database_blks_read{job="soakd",instance="i",datid="1",datname="app"}', "0+10x30")],
        {"severity": "warning", "job": "soakd", "instance": "i", "datname": "app"}),
    "PostgresLongRunningTransaction": ("10m",
        [('pg_stat_activity_max_tx_duration{job="soakd",instance="i",datname="app",state="idle in transaction"}', "600x20")],
        [('pg_stat_activity_max_tx_duration{job="soakd",instance="i",datname="app",state="idle in transaction"}', "5x20")],
        {"severity": "warning", "job": "soakd", "instance": "i", "datname": "app", "state": "idle in transaction"}),
    "PostgresDeadTuplesHigh": ("30m",
        [('pg_stat_user_tables_n_dead_tup{job="soakd",instance="i",datname="app",schemaname="public",relname="user_goal_progress"}', "50000x40"),
         ('pg_stat_user_tables_n_live_tup{job="soakd",instance="i",datname="app",schemaname="public",relname="user_goal_progress"}', "100000x40")],
        [('pg_stat_user_tables_n_dead_tup{job="soakd",instance="i",datname="app",schemaname="public",relname="user_goal_progress"}', "5000x40"),
         ('pg_stat_user_tables_n_live_tup{job="soakd",instance="i",datname="app",schemaname="public",relname="user_goal_progress"}', "100000x40")],
        {"severity": "warning", "job": "soakd", "instance": "i", "datname": "app", "schemaname": "public", "relname": "user_goal_progress"}),
    "PostgresDeadlocks": ("10m",
        [('pg_stat_database_deadlocks{job="soakd",instance="i",datid="1",datname="app"}', "0 0 0 0 0 0 0 1 2 3 3 3")],
        [('pg_stat_database_deadlocks{job="soakd",instance="i",datid="1",datname="app"}', "4x20")],
        {"severity": "warning", "job": "soakd", "instance": "i", "datname": "app"}),
    "PostgresReplicationLagHigh": ("10m",
        [('pg_replication_lag_seconds{job="soakd",instance="i"}', "120x20"), ('pg_replication_is_replica{job="soakd",instance="i"}', "1x20")],
        [('pg_replication_lag_seconds{job="soakd",instance="i"}', "120x20"), ('pg_replication_is_replica{job="soakd",instance="i"}', "0x20")],
        {"severity": "warning", "job": "soakd", "instance": "i"}),
}

def yq(s):
    return json.dumps(s)

def alerts_yaml(pins):
    out = ["# Generated by scripts/gen-rule-tests.py: every alert shown firing and silent.",
           "rule_files: [" + ", ".join(FILES) + "]", "evaluation_interval: 1m", "tests:"]
    for name, (t, fire, silent, labels) in CASES.items():
        for kind, series in (("fires", fire), ("silent", silent)):
            out.append(f"  # {name} {kind}")
            out.append("  - interval: 1m")
            out.append("    input_series:")
            for s, v in series:
                out.append(f"      - series: {yq(s)}")
                out.append(f"        values: {yq(v)}")
            out.append("    alert_rule_test:")
            out.append(f"      - eval_time: {t}")
            out.append(f"        alertname: {name}")
            if kind == "fires":
                out.append("        exp_alerts:")
                out.append("          - exp_labels:")
                for k, v in labels.items():
                    out.append(f"              {k}: {yq(v)}")
                ann = pins.get(name, {})
                if ann:
                    out.append("            exp_annotations:")
                    for k, v in sorted(ann.items()):
                        out.append(f"              {k}: {yq(v)}")
            else:
                out.append("        exp_alerts: []")
    return "\n".join(out) + "\n"

def main():
    pins_file = os.path.join(TESTS, "annotations.json")
    pins = json.load(open(pins_file)) if os.path.exists(pins_file) else {}
    if "--pin" in sys.argv:
        pins = {}
        open(os.path.join(TESTS, "alerts_test.yml"), "w").write(alerts_yaml(pins))
        p = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=TESTS, capture_output=True, text=True)
        text = p.stdout + p.stderr
        # promtool prints, per failed test: alertname: X, ... exp:[...] got:[ 0: Labels:{...}
        # Annotations:{k="v", ...} ]
        for block in text.split("alertname: ")[1:]:
            name = block.split(",", 1)[0].strip()
            got = block.split("got:[", 1)
            if len(got) < 2 or "Annotations:{" not in got[1]:
                continue
            ann = got[1].split("Annotations:{", 1)[1].split("}\n", 1)[0]
            pins[name] = {k: json.loads('"' + v + '"') for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', ann)}
        json.dump(pins, open(pins_file, "w"), indent=1, sort_keys=True)
        print(f"pinned annotations of {len(pins)} alerts")
    open(os.path.join(TESTS, "alerts_test.yml"), "w").write(alerts_yaml(pins))

main()
