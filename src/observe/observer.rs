//! One target's sources read together: [`Observer::read`] gives a [`Reading`] with
//! every value the sources had and, for each that could not be read, why. A source
//! that fails never stops the others or the load.

use crate::config::observe::Observe;
use crate::observe::cgroup::{self, Dirs, Mounts};
use crate::observe::exposition;
use crate::observe::postgres::PgSource;
use crate::observe::process::ProcessSource;
use crate::observe::reading::{Reading, Source};
use crate::promql::Prom;

pub struct Observer {
    cfg: Observe,
    process: Option<ProcessSource>,
    cgroup: Option<Dirs>,
    http: reqwest::Client,
    prom: Option<Prom>,
    postgres: Option<PgSource>,
}

impl Observer {
    pub fn new(cfg: Observe) -> Observer {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .unwrap_or_default();
        Observer {
            process: cfg.process.clone().map(ProcessSource::new),
            prom: cfg.promql.as_ref().map(|p| Prom::new(&p.url, "")),
            cgroup: None,
            postgres: cfg.postgres.clone().map(|p| PgSource::new(p, cfg.timeout)),
            http,
            cfg,
        }
    }

    pub fn config(&self) -> &Observe {
        &self.cfg
    }

    /// The sources this target has (the `source` label values).
    pub fn sources(&self) -> Vec<Source> {
        let c = &self.cfg;
        let mut s = Vec::new();
        if c.process.is_some() {
            s.push(Source::Process);
        }
        if c.cgroup.is_some() {
            s.push(Source::Cgroup);
        }
        if c.metrics_url.is_some() {
            s.push(Source::MetricsUrl);
        }
        if c.promql.is_some() {
            s.push(Source::Promql);
        }
        if c.postgres.is_some() {
            s.push(Source::Postgres);
        }
        s
    }

    /// Reads every source; `now` is Unix seconds (PromQL's evaluation time).
    pub async fn read(&mut self, now: f64) -> Reading {
        let mut out = Reading::default();
        // /proc and cgroup files are small and in memory; this thread is the soak's
        // own, never the load's.
        if let Some(p) = &mut self.process {
            if let Err(e) = p.read(&mut out) {
                out.errors.push((Source::Process, e));
            }
        }
        if let Some(path) = &self.cfg.cgroup {
            let dirs = match self.cgroup.take() {
                Some(d) => Ok(d),
                None => Mounts::here().locate(path),
            };
            match dirs.and_then(|d| cgroup::read_into(&d, &mut out).map(|()| d)) {
                Ok(d) => self.cgroup = Some(d),
                Err(e) => out.errors.push((Source::Cgroup, e)),
            }
        }
        if let Some(url) = &self.cfg.metrics_url {
            if let Err(e) = self.scrape(url, &mut out).await {
                out.errors.push((Source::MetricsUrl, e));
            }
        }
        if let (Some(prom), Some(p)) = (&self.prom, &self.cfg.promql) {
            let mut failed = Vec::new();
            for (name, q) in &p.queries {
                match prom.value(q, now).await {
                    Ok(Some(v)) => out.set(name, v),
                    Ok(None) => failed.push(format!("{name}: no value")),
                    Err(e) => failed.push(format!("{name}: {e}")),
                }
            }
            if !failed.is_empty() {
                out.errors.push((Source::Promql, failed.join("; ")));
            }
        }
        if let Some(pg) = &mut self.postgres {
            if let Err(e) = pg.read(&mut out).await {
                out.errors.push((Source::Postgres, e));
            }
        }
        out
    }

    async fn scrape(&self, url: &str, out: &mut Reading) -> Result<(), String> {
        let resp = self
            .http
            .get(url)
            .header("accept", "text/plain;version=0.0.4")
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: HTTP {}", resp.status()));
        }
        let text = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
        exposition::read_text(&text, &self.cfg.series, out)
    }
}
