//! `observe` linked to what it serves, once the targets, scenarios and search are
//! built: a postgres target's statistics source (its ops' tables), and the capacity
//! search's target process read from `observe` (the deprecated `search.target_process`
//! moved onto it).

use crate::config::errors::Errs;
use crate::config::observe::{tables_of, Observe, PgObserve, ProcessRef, MAX_TABLES};

/// The table the buffered writer's event ops write.
const EVENT_TABLE: &str = "user_goal_progress";

/// Gives each postgres target its statistics source (unless `observe: {postgres:
/// false}`): the tables under `tables:`, then those its ops' SQL names, at most
/// [`MAX_TABLES`]. `tables:` or `postgres:` on any other kind of target is an error.
pub(super) fn attach_postgres(
    observed: &mut Vec<Observe>,
    targets: &[crate::config::model::Target],
    scenarios: &[crate::config::model::Scenario],
    errs: &mut Errs,
) {
    use crate::config::model::{OpKind, TargetKind};
    for t in targets {
        let TargetKind::Postgres(p) = &t.kind else {
            if let Some(o) = observed.iter().find(|o| o.target == t.name) {
                if !o.tables.is_empty() || !o.postgres_enabled {
                    errs.push(
                        format!("targets.{}.observe", t.name),
                        "`tables` and `postgres` are for postgres targets",
                    );
                }
            }
            continue;
        };
        let i = match observed.iter().position(|o| o.target == t.name) {
            Some(i) => i,
            None => {
                observed.push(Observe::empty(&t.name));
                observed.len() - 1
            }
        };
        let o = &mut observed[i];
        if !o.postgres_enabled {
            if !o.has_source() {
                observed.remove(i);
            }
            continue;
        }
        let mut tables = o.tables.clone();
        for s in scenarios.iter().filter(|s| s.target == t.name) {
            for op in &s.ops {
                let named = match &op.kind {
                    OpKind::Sql(q) => tables_of(&q.query),
                    OpKind::Event(_) => vec![EVENT_TABLE.to_string()],
                    OpKind::Http(_) | OpKind::Grpc(_) => Vec::new(),
                };
                for n in named {
                    if !tables.contains(&n) && tables.len() < MAX_TABLES {
                        tables.push(n);
                    }
                }
            }
        }
        o.postgres = Some(PgObserve {
            url: p.url.clone(),
            tables,
        });
    }
}

/// `search.target_process` read through `observe`, the one way in: the deprecated key is
/// moved onto the targets it serves (it is an error where one already names its
/// process), then the search's process is the one the searched scenarios' targets
/// observe — the first searched target's that names one, serving every searched target
/// that names the same.
pub(super) fn link_search(
    observed: &mut Vec<Observe>,
    search: &mut crate::config::search::SearchConfig,
    scenarios: &[crate::config::model::Scenario],
    errs: &mut Errs,
) {
    use crate::config::search::TargetProcess;
    let mut searched: Vec<String> = Vec::new();
    for s in &search.scenarios {
        if let Some(sc) = scenarios.iter().find(|x| x.name == s.name) {
            if !searched.contains(&sc.target) {
                searched.push(sc.target.clone());
            }
        }
    }
    if let Some(tp) = search.target_process.take() {
        let served = if search.target_process_targets.is_empty() {
            searched.clone()
        } else {
            search.target_process_targets.clone()
        };
        for t in &served {
            let i = match observed.iter().position(|o| &o.target == t) {
                Some(i) => i,
                None => {
                    observed.push(Observe::empty(t));
                    observed.len() - 1
                }
            };
            let o = &mut observed[i];
            if o.process.is_some() || o.metrics_url.is_some() {
                errs.push(
                    "search.target_process",
                    format!("targets.{t}.observe already names its process: remove search.target_process"),
                );
                continue;
            }
            match &tp {
                TargetProcess::Pid(p) => o.process = Some(ProcessRef::Pid(*p)),
                TargetProcess::MetricsUrl(u) => o.metrics_url = Some(u.clone()),
                TargetProcess::Observed(_) => {}
            }
        }
        // As given: the plan (and an interrupted run's resumption) is unchanged.
        search.target_process = Some(tp);
        return;
    }
    let process_of = |o: &Observe| -> Option<TargetProcess> {
        match (&o.process, &o.metrics_url) {
            (Some(ProcessRef::Pid(p)), _) => Some(TargetProcess::Pid(*p)),
            (Some(_), _) => Some(TargetProcess::Observed(o.target.clone())),
            (None, Some(u)) => Some(TargetProcess::MetricsUrl(u.clone())),
            (None, None) => None,
        }
    };
    let find = |t: &str| observed.iter().find(|o| o.target == t);
    let Some((first, tp)) = searched
        .iter()
        .find_map(|t| find(t).and_then(|o| process_of(o).map(|p| (o, p))))
    else {
        return;
    };
    let same = |o: &Observe| o.process == first.process && o.metrics_url == first.metrics_url;
    search.target_process_targets = searched
        .iter()
        .filter(|t| find(t).is_some_and(same))
        .cloned()
        .collect();
    search.target_process = Some(tp);
}

/// Resolves each `observe.release`: an `http` path joined to the http target's
/// `base_url`, and a PromQL source's Prometheus (`observe.promql.url`, then
/// `verdicts.prometheus`).
pub(super) fn link_release(
    observed: &mut [Observe],
    targets: &[crate::config::model::Target],
    verdicts: Option<&crate::config::verdicts::VerdictsConfig>,
    errs: &mut Errs,
) {
    use crate::config::model::TargetKind;
    use crate::config::observe::ReleaseSource;
    for o in observed.iter_mut() {
        let path = format!("targets.{}.observe.release", o.target);
        let promql_url = o.promql.as_ref().map(|p| p.url.clone());
        match o.release.as_mut() {
            Some(ReleaseSource::Http { url, .. }) if url.starts_with('/') => {
                match targets.iter().find(|t| t.name == o.target).map(|t| &t.kind) {
                    Some(TargetKind::Http(h)) => {
                        *url = format!("{}{url}", h.base_url.trim_end_matches('/'));
                    }
                    _ => errs.push(
                        format!("{path}.http"),
                        "a path needs an http target to join it to; give a full URL",
                    ),
                }
            }
            Some(ReleaseSource::Promql { url, .. }) if url.is_empty() => {
                match promql_url.or_else(|| verdicts.map(|v| v.prometheus.trim_end_matches('/').to_string())) {
                    Some(u) => *url = u,
                    None => errs.push(
                        path,
                        "name the Prometheus to ask: `url`, `observe.promql.url` or `verdicts.prometheus`",
                    ),
                }
            }
            _ => {}
        }
    }
}
