#!/usr/bin/env python3
"""Writes grafana/dashboards/*.json: soakd's three dashboards.

Every panel uses the datasource template variable, has a unit, uses $__rate_interval for
rates and filters by $job (no hard-coded instance); uids are stable. Edit the panel
lists below and re-run:  scripts/gen-dashboards.py
"""
import json, os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "grafana", "dashboards")
DS = {"type": "prometheus", "uid": "${datasource}"}
J = 'job=~"$job"'
S = 'job=~"$job",scenario=~"$scenario"'
RI = "$__rate_interval"


def var_datasource():
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "refresh": 1, "options": []}


def var_query(name, label, query, multi=True):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
            "refresh": 2, "includeAll": multi, "multi": multi, "allValue": ".*" if multi else None,
            "current": {}, "options": [], "hide": 0, "sort": 1}


def hq(q, by, name, sel, exemplar=False):
    """A quantile of a histogram: the native series where Prometheus stores one
    (--enable-feature=native-histograms), else the classic buckets. With `exemplar`, the
    target asks Grafana for the buckets' exemplars (trace ids)."""
    expr = (f"histogram_quantile({q}, sum by ({by}) (rate({name}{{{sel}}}[{RI}]))) or "
            f"histogram_quantile({q}, sum by ({by}, le) (rate({name}_bucket{{{sel}}}[{RI}])))")
    return (expr, exemplar)


def panel(title, unit, targets, kind="timeseries", desc="", overrides=None, stacked=False):
    defaults = {"unit": unit}
    if stacked:
        defaults["custom"] = {"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 40}
    out = []
    for i, (e, l) in enumerate(targets):
        t = {"refId": chr(65 + i), "datasource": DS}
        if isinstance(e, tuple):
            e, exemplar = e
            t.update({"expr": e, "legendFormat": l})
            if exemplar:
                t["exemplar"] = True
        else:
            t.update({"expr": e, "legendFormat": l})
        out.append(t)
    return {"type": kind, "title": title, "description": desc, "datasource": DS,
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}}
            if kind == "timeseries" else {},
            "targets": out}


def annotation(name, colour, expr, title, text="", tags="", use_value_for_time=False):
    """A Prometheus annotation query: every panel's time axis marks when it returns a
    series (Grafana's own API is not needed)."""
    a = {"name": name, "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "enable": True, "iconColor": colour, "expr": expr, "step": "15s",
         "titleFormat": title, "textFormat": text, "tagKeys": tags}
    if use_value_for_time:
        a["useValueForTime"] = True
    return a


# What soakd changed, on every dashboard: its own series, so they need no Grafana API.
ANNOTATIONS = [
    annotation("soakd: rate and stage changes", "blue",
               'changes(soakd_target_rate{job=~"$job"}[1m]) > 0',
               "{{scenario}}: offered rate changed", "a schedule stage, an override, a search level or a guard action", "scenario"),
    annotation("soakd: config applied", "purple",
               'soakd_config_last_reload_success_timestamp_seconds{job=~"$job"} * 1000',
               "config applied on {{instance}}", "soakd started or reloaded its config", "instance",
               use_value_for_time=True),
    annotation("soakd: reload rejected", "red",
               'soakd_config_last_reload_successful{job=~"$job"} == 0',
               "config reload rejected on {{instance}}", "the previous config keeps running", "instance"),
    annotation("soakd: guard actions", "orange",
               'increase(soakd_guard_actions_total{job=~"$job"}[1m]) > 0',
               "guard {{action}}: {{scenario}}", "the scenario's guard acted on its rolling SLO", "scenario,action"),
    annotation("soakd: deploys", "dark-red",
               'increase(soakd_deploys_total{job=~"$job"}[1m]) > 0',
               "deploy of {{target}}", "the target's release changed, a deploy was told, or it restarted with no release source (soakd_deploy_info has the release; /api/v1/deploys the verdict)", "target"),
    annotation("soakd: capacity search levels", "green",
               'changes(soakd_capacity_level_rate{job=~"$job"}[1m]) > 0',
               "search level: {{scenario}}", "a capacity-search level started", "scenario"),
    annotation("soakd: capacity verdicts", "yellow",
               'increase(soakd_capacity_levels_total{job=~"$job"}[1m]) > 0',
               "level judged {{verdict}}", "a capacity-search level was judged", "verdict"),
]


def dashboard(uid, title, desc, variables, panels):
    # Two panels per row, 8 high.
    for i, p in enumerate(panels):
        p["id"] = i + 1
        p["gridPos"] = {"x": (i % 2) * 12, "y": (i // 2) * 8, "w": 12, "h": 8}
    return {"uid": uid, "title": title, "description": desc, "tags": ["soakd"], "editable": True,
            "schemaVersion": 38, "version": 1, "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
            "timepicker": {}, "timezone": "", "graphTooltip": 1, "annotations": {"list": ANNOTATIONS},
            "links": [{"title": "soakd dashboards", "type": "dashboards", "tags": ["soakd"], "asDropdown": True}],
            "templating": {"list": variables}, "panels": panels}


overview = dashboard(
    "soakd-overview", "soakd — Soak overview",
    "Offered vs achieved load, latency from intended start, errors, in-flight, drops and schedule lag.",
    [var_datasource(), var_query("job", "Job", "label_values(soakd_build_info, job)"),
     var_query("scenario", "Scenario", f'label_values(soakd_target_rate{{{J}}}, scenario)')],
    [
        panel("Target vs achieved rate", "reqps", [
            (f"sum by (scenario) (soakd_target_rate{{{S}}})", "{{scenario}} target"),
            (f"sum by (scenario) (rate(soakd_requests_total{{{S}}}[{RI}]))", "{{scenario}} achieved")],
            desc="The schedule's rate (or override) and what completed. A gap means soakd cannot keep up (see dropped and lag)."),
        panel("Latency p50 / p95 / p99 per op (from intended start)", "s", [
            (hq("0.50", "scenario, op", "soakd_request_duration_seconds", S, exemplar=True), "{{scenario}}/{{op}} p50"),
            (hq("0.95", "scenario, op", "soakd_request_duration_seconds", S, exemplar=True), "{{scenario}}/{{op}} p95"),
            (hq("0.99", "scenario, op", "soakd_request_duration_seconds", S, exemplar=True), "{{scenario}}/{{op}} p99")]),
        panel("Errors by kind", "reqps", [
            (f"sum by (scenario, kind) (rate(soakd_request_errors_total{{{S}}}[{RI}]))", "{{scenario}} {{kind}}")]),
        panel("Error ratio", "percentunit", [
            (f"sum by (scenario) (rate(soakd_request_errors_total{{{S}}}[{RI}])) / sum by (scenario) (rate(soakd_requests_total{{{S}}}[{RI}]))", "{{scenario}}")]),
        panel("In flight vs cap", "short", [
            (f"sum by (scenario) (soakd_in_flight{{{S}}})", "{{scenario}} in flight"),
            (f"sum by (scenario) (soakd_max_in_flight{{{S}}})", "{{scenario}} max_in_flight")]),
        panel("Dropped iterations", "reqps", [
            (f"sum by (scenario) (rate(soakd_dropped_iterations_total{{{S}}}[{RI}]))", "{{scenario}}")],
            desc="Arrivals not started: the cap was reached or the clock fell more than 1 s behind."),
        panel("Schedule lag p99", "s", [
            (hq("0.99", "scenario", "soakd_schedule_lag_seconds", S), "{{scenario}}")]),
        panel("Firing alerts", "short", [
            ('sum by (alertname, severity) (ALERTS{alertstate="firing"})', "{{alertname}} ({{severity}})")],
            kind="table"),
        panel("Config reloads", "bool", [
            (f"min by (instance) (soakd_config_last_reload_successful{{{J}}})", "{{instance}} last reload ok")]),
        panel("soakd CPU and memory", "short", [
            (f"sum by (instance) (rate(process_cpu_seconds_total{{{J}}}[{RI}]))", "{{instance}} CPU cores"),
            (f"sum by (instance) (process_resident_memory_bytes{{{J}}}) / 1048576", "{{instance}} RSS MiB")]),
        panel("soakd memory: where it is, and its trend", "bytes", [
            (f"sum by (instance) (process_resident_memory_bytes{{{J}}})", "{{instance}} RSS"),
            (f"sum by (instance) (soakd_allocator_committed_bytes{{{J}}})", "{{instance}} allocator committed"),
            (f"sum by (instance, area) (soakd_memory_bytes{{{J}}})", "{{instance}} {{area}}"),
            (f"deriv(process_resident_memory_bytes{{{J}}}[6h]) * 86400 / avg_over_time(process_resident_memory_bytes{{{J}}}[6h])", "{{instance}} RSS trend per day (6 h)")],
            desc="RSS, what the allocator holds, and soakd's bounded structures by area (history rings, latency windows, write buffers, connection buffers, fixtures, events). Flat once they are full: the trend line (right axis) stays under 1 % a day; SoakdMemoryGrowing fires above 10 %.",
            overrides=[{"matcher": {"id": "byRegexp", "options": ".* trend per day.*"},
                        "properties": [{"id": "unit", "value": "percentunit"}, {"id": "custom.axisPlacement", "value": "right"}]}]),
        panel("HTTP time per operation by phase", "s", [
            (f"(sum by (scenario, phase) (histogram_sum(rate(soakd_http_phase_seconds{{{S}}}[{RI}]))) or "
             f"sum by (scenario, phase) (rate(soakd_http_phase_seconds_sum{{{S}}}[{RI}]))) "
             f"/ on (scenario) group_left sum by (scenario) (rate(soakd_requests_total{{{S}}}[{RI}]))", "{{scenario}} {{phase}}")],
            desc="Seconds an HTTP operation spends in each phase, per operation (stacked): queue (waiting for a connection slot), connect, tls, first_byte (the server's time plus a round trip), body. Measured on the HTTP/1.1 fast path.",
            stacked=True),
        panel("HTTP bytes sent and received", "Bps", [
            (f"sum by (scenario) (rate(soakd_http_sent_bytes_total{{{S}}}[{RI}]))", "{{scenario}} sent"),
            (f"sum by (scenario) (rate(soakd_http_received_bytes_total{{{S}}}[{RI}]))", "{{scenario}} received")],
            desc="Bytes per second of HTTP requests written and responses read (heads and bodies), on the HTTP/1.1 fast path."),
    ])

capacity = dashboard(
    "soakd-capacity", "soakd — Capacity",
    "Latency and errors against the offered level, and the saturation signals that explain a knee: pool, buffer, flushes, end-to-end events.",
    [var_datasource(), var_query("job", "Job", "label_values(soakd_build_info, job)"),
     var_query("scenario", "Scenario", f'label_values(soakd_target_rate{{{J}}}, scenario)')],
    [
        panel("Latency percentiles and offered level", "s", [
            (hq("0.50", "scenario", "soakd_request_duration_seconds", S, exemplar=True), "{{scenario}} p50"),
            (hq("0.95", "scenario", "soakd_request_duration_seconds", S, exemplar=True), "{{scenario}} p95"),
            (hq("0.99", "scenario", "soakd_request_duration_seconds", S, exemplar=True), "{{scenario}} p99"),
            (f"sum by (scenario) (soakd_target_rate{{{S}}})", "{{scenario}} offered")],
            overrides=[{"matcher": {"id": "byRegexp", "options": ".* offered"},
                        "properties": [{"id": "unit", "value": "reqps"}, {"id": "custom.axisPlacement", "value": "right"}]}]),
        panel("Error ratio and offered level", "percentunit", [
            (f"sum by (scenario) (rate(soakd_request_errors_total{{{S}}}[{RI}])) / sum by (scenario) (rate(soakd_requests_total{{{S}}}[{RI}]))", "{{scenario}} error ratio"),
            (f"sum by (scenario) (soakd_target_rate{{{S}}})", "{{scenario}} offered")],
            overrides=[{"matcher": {"id": "byRegexp", "options": ".* offered"},
                        "properties": [{"id": "unit", "value": "reqps"}, {"id": "custom.axisPlacement", "value": "right"}]}]),
        panel("Pool: in use vs max", "short", [
            (f"sum by (target) (soakd_db_pool_connections_in_use{{{J}}})", "{{target}} in use"),
            (f"sum by (target) (soakd_db_pool_connections_idle{{{J}}})", "{{target}} idle"),
            (f"sum by (target) (soakd_db_pool_max_connections{{{J}}})", "{{target}} max")]),
        panel("Pool: acquire wait p95 and timeouts", "s", [
            (hq("0.95", "target", "soakd_db_pool_acquire_seconds", J), "{{target}} acquire p95"),
            (f"sum by (target) (rate(soakd_db_pool_acquire_timeouts_total{{{J}}}[{RI}]))", "{{target}} timeouts/s")],
            overrides=[{"matcher": {"id": "byRegexp", "options": ".* timeouts/s"},
                        "properties": [{"id": "unit", "value": "reqps"}, {"id": "custom.axisPlacement", "value": "right"}]}]),
        panel("Buffer fill vs limit", "short", [
            (f"sum by (scenario) (soakd_buffer_events{{{S}}})", "{{scenario}} buffered"),
            (f"sum by (scenario) (soakd_buffer_capacity_events{{{S}}})", "{{scenario}} limit")]),
        panel("Flush duration p95 and flush errors", "s", [
            (hq("0.95", "scenario", "soakd_buffer_flush_duration_seconds", S), "{{scenario}} flush p95"),
            (f"sum by (scenario) (rate(soakd_buffer_flush_errors_total{{{S}}}[{RI}]))", "{{scenario}} errors/s")],
            overrides=[{"matcher": {"id": "byRegexp", "options": ".* errors/s"},
                        "properties": [{"id": "unit", "value": "reqps"}, {"id": "custom.axisPlacement", "value": "right"}]}]),
        panel("Event end-to-end latency (accept to commit)", "s", [
            (f"histogram_quantile(0.50, sum by (scenario, le) (rate(soakd_event_e2e_seconds_bucket{{{S}}}[{RI}])))", "{{scenario}} p50"),
            (f"histogram_quantile(0.95, sum by (scenario, le) (rate(soakd_event_e2e_seconds_bucket{{{S}}}[{RI}])))", "{{scenario}} p95")]),
        panel("Write to visible (visibility probes)", "s", [
            (hq("0.50", "scenario, op", "soakd_visibility_seconds", S, exemplar=True), "{{scenario}}/{{op}} p50"),
            (hq("0.95", "scenario, op", "soakd_visibility_seconds", S, exemplar=True), "{{scenario}}/{{op}} p95"),
            (hq("0.99", "scenario, op", "soakd_visibility_seconds", S, exemplar=True), "{{scenario}}/{{op}} p99"),
            (f'sum by (scenario, op) (rate(soakd_request_errors_total{{{S},kind="not_visible"}}[{RI}]))', "{{scenario}}/{{op}} not visible/s"),
            (f"sum by (scenario) (soakd_visibility_pending{{{S}}})", "{{scenario}} pending")],
            desc="From a write's intended start to the first read that shows it (an op's `visibility:` probe): a pipeline's end-to-end delay as its users see it. Not visible/s: writes whose probe reached its deadline (error kind not_visible). Pending: probes polling now, at most max_pending. VisibilityLatencyHigh fires on the p95.",
            overrides=[{"matcher": {"id": "byRegexp", "options": ".* (not visible/s|pending)"},
                        "properties": [{"id": "unit", "value": "short"}, {"id": "custom.axisPlacement", "value": "right"}]}]),
        panel("Events flushed and dropped", "reqps", [
            (f"sum by (scenario) (rate(soakd_buffer_flushed_events_total{{{S}}}[{RI}]))", "{{scenario}} flushed"),
            (f"sum by (scenario) (rate(soakd_buffer_dropped_events_total{{{S}}}[{RI}]))", "{{scenario}} dropped")]),
    ])

postgres = dashboard(
    "soakd-postgres", "soakd — PostgreSQL",
    "postgres_exporter's series (from soakd's collector or the exporter): connections, transactions, cache, vacuum, locks, statements.",
    [var_datasource(), var_query("job", "Job", "label_values(pg_up, job)"),
     var_query("datname", "Database", f'label_values(pg_stat_database_xact_commit{{{J}}}, datname)')],
    [
        panel("Connections by state vs max_connections", "short", [
            (f'sum by (state) (pg_stat_activity_count{{{J},datname=~"$datname"}})', "{{state}}"),
            (f"max(pg_settings_max_connections{{{J}}})", "max_connections")]),
        panel("Transactions per second", "reqps", [
            (f'sum by (datname) (rate(pg_stat_database_xact_commit{{{J},datname=~"$datname"}}[{RI}]))', "{{datname}} commits"),
            (f'sum by (datname) (rate(pg_stat_database_xact_rollback{{{J},datname=~"$datname"}}[{RI}]))', "{{datname}} rollbacks")]),
        panel("Cache hit ratio", "percentunit", [
            (f'sum by (datname) (rate(pg_stat_database_blks_hit{{{J},datname=~"$datname"}}[{RI}])) / (sum by (datname) (rate(pg_stat_database_blks_hit{{{J},datname=~"$datname"}}[{RI}])) + sum by (datname) (rate(pg_stat_database_blks_read{{{J},datname=~"$datname"}}[{RI}])))', "{{datname}}")]),
        panel("Dead tuples", "short", [
            (f'sum by (relname) (pg_stat_user_tables_n_dead_tup{{{J},datname=~"$datname"}})', "{{relname}} dead"),
            (f'sum by (relname) (pg_stat_user_tables_n_live_tup{{{J},datname=~"$datname"}})', "{{relname}} live")]),
        panel("Autovacuum runs", "short", [
            (f'sum by (relname) (increase(pg_stat_user_tables_autovacuum_count{{{J},datname=~"$datname"}}[{RI}]))', "{{relname}}")]),
        panel("Locks by mode", "short", [
            (f'sum by (mode) (pg_locks_count{{{J},datname=~"$datname"}})', "{{mode}}")]),
        panel("Top statements by time", "s", [
            (f'topk(10, sum by (queryid) (rate(pg_stat_statements_seconds_total{{{J},datname=~"$datname"}}[{RI}])))', "query {{queryid}}")],
            desc="Execution seconds per second by statement (pg_stat_statements). Look the queryid up in pg_stat_statements for its text."),
        panel("Rows written", "reqps", [
            (f'sum by (datname) (rate(pg_stat_database_tup_inserted{{{J},datname=~"$datname"}}[{RI}]))', "{{datname}} inserted"),
            (f'sum by (datname) (rate(pg_stat_database_tup_updated{{{J},datname=~"$datname"}}[{RI}]))', "{{datname}} updated")]),
        panel("Deadlocks", "short", [
            (f'sum by (datname) (increase(pg_stat_database_deadlocks{{{J},datname=~"$datname"}}[{RI}]))', "{{datname}}")]),
        panel("Replication lag", "s", [
            (f"max by (instance) (pg_replication_lag_seconds{{{J}}})", "{{instance}}")]),
        panel("Database size", "bytes", [
            (f'sum by (datname) (pg_database_size_bytes{{{J},datname=~"$datname"}})', "{{datname}}")]),
        panel("Up", "bool", [(f"min by (instance) (pg_up{{{J}}})", "{{instance}}")]),
    ])

os.makedirs(OUT, exist_ok=True)
for name, d in (("soak-overview", overview), ("capacity", capacity), ("postgresql", postgres)):
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(d, f, indent=1)
        f.write("\n")
print("wrote", ", ".join(["soak-overview", "capacity", "postgresql"]))
