//! PromQL over the Prometheus HTTP API, for `verdicts.prometheus`: one verdict across
//! shards. Every shard of a deployment exports its own 1/n of the load; Prometheus,
//! which scrapes them all, sums their counters and histogram buckets, and the rolling
//! SLO and the capacity search judge from those sums instead of from one process.
//!
//! [`Prom`] asks instant queries (`/api/v1/query`, evaluated at a given time) and reads
//! vectors and scalars; [`Prom::window`] is what a capacity level needs over its window
//! and [`Prom::slo`] what a rolling SLO needs, both over the series of every instance
//! matching the scenario and the configured selector.

use std::collections::BTreeMap;
use std::time::Duration;

/// How long one query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, thiserror::Error)]
pub enum PromError {
    #[error("cannot reach Prometheus at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("Prometheus refused `{query}`: {message}")]
    Refused { query: String, message: String },
    #[error("Prometheus answered `{query}` with {what}")]
    Unexpected { query: String, what: String },
    #[error("no instance in Prometheus exports scenario {scenario:?} (is it scraping the shards, and does verdicts.selector match them?)")]
    NoSeries { scenario: String },
}

/// One series of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    /// The number; for a native histogram, its count.
    pub value: f64,
    /// A native histogram's buckets, `(lower, upper, count)` as the HTTP API writes
    /// them (Prometheus with `--enable-feature=native-histograms`).
    pub buckets: Option<Vec<(f64, f64, f64)>>,
}

/// A Prometheus server and the label matchers that pick this deployment's series.
#[derive(Clone)]
pub struct Prom {
    base: String,
    selector: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Prom {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Prom({}, {{{}}})", self.base, self.selector)
    }
}

/// A scenario over one capacity level's window, summed over every shard.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowTotals {
    /// Instances exporting the scenario at the window's end.
    pub instances: u32,
    pub completed: f64,
    /// Operations started: completed plus the change of those in flight.
    pub started: f64,
    pub errors: BTreeMap<String, f64>,
    pub dropped: f64,
    /// The sum of each instance's peak in flight.
    pub in_flight_peak: f64,
    /// The sum of the instances' `max_in_flight`.
    pub max_in_flight: f64,
    /// p50, p95, p99, p99.9 from the summed latency buckets (seconds).
    pub latency: [Option<f64>; 4],
    pub lag_p99: Option<f64>,
}

/// A scenario's rolling SLO values over every shard.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SloTotals {
    pub instances: u32,
    /// p50, p95, p99 over the SLO's window (seconds).
    pub latency: [Option<f64>; 3],
    pub error_ratio: Option<f64>,
    /// The error ratio over 5 minutes and over 1 hour.
    pub burn_ratios: [Option<f64>; 2],
    pub e2e_p95: Option<f64>,
}

/// A PromQL range of `secs` seconds, in whole milliseconds (at least one).
pub fn range(secs: f64) -> String {
    format!("{}ms", (secs * 1000.0).round().max(1.0) as u64)
}

/// A label value inside double quotes.
fn quote(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// Checks that `s` is a list of label matchers as PromQL writes them inside braces
/// (`job="soakd", namespace=~"staging-.*"`); the error says what is wrong where.
pub fn check_selector(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let mut i = 0;
    let skip = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    skip(&mut i);
    while i < b.len() {
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if i == start || b[start].is_ascii_digit() {
            return Err(format!("expected a label name at character {}", start + 1));
        }
        skip(&mut i);
        let ops: [&[u8]; 4] = [b"=~", b"!~", b"!=", b"="];
        let op = ops.into_iter().find(|op| b[i..].starts_with(op));
        let Some(op) = op else {
            return Err(format!(
                "expected =, !=, =~ or !~ after the label name at character {}",
                i + 1
            ));
        };
        i += op.len();
        skip(&mut i);
        if b.get(i) != Some(&b'"') {
            return Err(format!(
                "expected a double-quoted value at character {}",
                i + 1
            ));
        }
        i += 1;
        loop {
            match b.get(i) {
                None => return Err("a quoted value is not closed".into()),
                Some(b'\\') => i += 2,
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
        skip(&mut i);
        match b.get(i) {
            None => break,
            Some(b',') => {
                i += 1;
                skip(&mut i);
            }
            Some(_) => {
                return Err(format!(
                    "expected a comma between matchers at character {}",
                    i + 1
                ))
            }
        }
    }
    Ok(())
}

/// A histogram's buckets as ranges: `(lower, upper, count)`.
type Ranges = Vec<(f64, f64, f64)>;

/// The vector (or scalar) of a query's JSON answer.
fn parse_answer(query: &str, body: &serde_json::Value) -> Result<Vec<Sample>, PromError> {
    let unexpected = |what: &str| PromError::Unexpected {
        query: query.to_string(),
        what: what.to_string(),
    };
    if body["status"] != "success" {
        return Err(PromError::Refused {
            query: query.to_string(),
            message: body["error"]
                .as_str()
                .unwrap_or("no error message")
                .to_string(),
        });
    }
    let number = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
    let value = |v: &serde_json::Value| {
        number(&v[1]).ok_or_else(|| unexpected("a sample without a number"))
    };
    // `[t, {count, sum, buckets: [[boundaries, lower, upper, count], …]}]`.
    let histogram = |v: &serde_json::Value| -> Result<(f64, Ranges), PromError> {
        let h = &v[1];
        let count = number(&h["count"]).ok_or_else(|| unexpected("a histogram without a count"))?;
        let buckets = h["buckets"]
            .as_array()
            .map(|bs| {
                bs.iter()
                    .map(|b| match (number(&b[1]), number(&b[2]), number(&b[3])) {
                        (Some(lo), Some(hi), Some(n)) => Ok((lo, hi, n)),
                        _ => Err(unexpected(
                            "a histogram bucket without its bounds and count",
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        Ok((count, buckets))
    };
    let data = &body["data"];
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .ok_or_else(|| unexpected("a vector without a result list"))?
            .iter()
            .map(|r| -> Result<Sample, PromError> {
                let labels = r["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default();
                if r.get("histogram").is_some() {
                    let (count, buckets) = histogram(&r["histogram"])?;
                    return Ok(Sample {
                        labels,
                        value: count,
                        buckets: Some(buckets),
                    });
                }
                Ok(Sample {
                    labels,
                    value: value(&r["value"])?,
                    buckets: None,
                })
            })
            .collect(),
        Some("scalar") => Ok(vec![Sample {
            labels: BTreeMap::new(),
            value: value(&data["result"])?,
            buckets: None,
        }]),
        Some(other) => Err(unexpected(&format!("a {other} result"))),
        None => Err(unexpected("no result type")),
    }
}

/// `histogram_quantile(q, …)` of histogram `name` over `m`, increased over `r` and
/// summed by `by` (may be empty): its native buckets `or` (where there are none) its
/// classic ones — one query, whichever Prometheus holds. Prometheus 2.42 with native
/// histograms on keeps only the native buckets of a histogram that has them; without,
/// only the classic ones, whose coarse SLO boundaries read a ~52 ms service as p95
/// 97.5 ms.
fn native_or_classic(name: &str, m: &str, q: f64, r: &str, by: &str) -> String {
    let le = if by.is_empty() {
        "le".to_string()
    } else {
        format!("{by}, le")
    };
    format!(
        "histogram_quantile({q}, sum by ({by}) (increase({name}{m}[{r}]))) or histogram_quantile({q}, sum by ({le}) (increase({name}_bucket{m}[{r}])))"
    )
}

/// One op's period summed over the shards ([`Prom::period`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpPeriod {
    /// Latency buckets `(lower, upper, count)` in seconds: the native ones, or the
    /// classic ones as ranges (the first from 0, the last to +Inf).
    pub buckets: Vec<(f64, f64, f64)>,
    /// The buckets are native (8 per doubling), not the classic SLO boundaries.
    pub native: bool,
    pub completed: f64,
    pub errors: BTreeMap<String, f64>,
}

/// Every op and scenario over one period, summed over the shards.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Period {
    /// Instances exporting soakd's series at the period's end.
    pub instances: u32,
    /// By `(scenario, op)`.
    pub ops: BTreeMap<(String, String), OpPeriod>,
    /// By scenario: iterations started and dropped.
    pub scenarios: BTreeMap<String, (f64, f64)>,
}

/// One op over a span, summed over the shards ([`Prom::ops`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpTotals {
    /// p50, p95, p99 in seconds (None without observations).
    pub latency: [Option<f64>; 3],
    pub completed: f64,
    pub failed: f64,
}

impl Prom {
    /// `base`: the server's URL (`http://prometheus:9090`); `selector`: label matchers
    /// added to every series selector (may be empty).
    pub fn new(base: &str, selector: &str) -> Prom {
        Prom {
            base: base.trim_end_matches('/').to_string(),
            selector: selector.trim().to_string(),
            http: reqwest::Client::builder()
                .timeout(QUERY_TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// `{scenario="NAME", <selector>}`.
    pub fn matcher(&self, scenario: &str) -> String {
        if self.selector.is_empty() {
            format!("{{scenario={}}}", quote(scenario))
        } else {
            format!("{{scenario={},{}}}", quote(scenario), self.selector)
        }
    }

    /// An instant query evaluated at `at` (Unix seconds).
    pub async fn query(&self, query: &str, at: f64) -> Result<Vec<Sample>, PromError> {
        let url = format!("{}/api/v1/query", self.base);
        let time = format!("{at:.3}");
        let unreachable = |e: reqwest::Error| PromError::Unreachable {
            url: self.base.clone(),
            message: e.to_string(),
        };
        let body: serde_json::Value = self
            .http
            .get(&url)
            .query(&[("query", query), ("time", time.as_str())])
            .send()
            .await
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)?;
        parse_answer(query, &body)
    }

    /// A query answered by at most one number: None when the vector is empty or the
    /// number is not finite (a quantile of no observations is NaN).
    pub async fn value(&self, query: &str, at: f64) -> Result<Option<f64>, PromError> {
        Ok(self
            .query(query, at)
            .await?
            .first()
            .map(|s| s.value)
            .filter(|v| v.is_finite()))
    }

    /// The instances exporting `scenario` at `at`.
    pub async fn instances(&self, scenario: &str, at: f64) -> Result<u32, PromError> {
        let m = self.matcher(scenario);
        let n = self
            .value(
                &format!("count(count by (instance) (soakd_requests_total{m}))"),
                at,
            )
            .await?
            .unwrap_or(0.0);
        if n < 1.0 {
            return Err(PromError::NoSeries {
                scenario: scenario.to_string(),
            });
        }
        Ok(n as u32)
    }

    /// `histogram_quantile(q, …)` of the histogram `name` summed over every instance,
    /// increased over `r`: its native buckets where Prometheus has them
    /// (`--enable-feature=native-histograms`, 8 per doubling), else its classic ones.
    async fn quantile(
        &self,
        name: &str,
        m: &str,
        q: f64,
        r: &str,
        at: f64,
    ) -> Result<Option<f64>, PromError> {
        self.value(&native_or_classic(name, m, q, r, ""), at).await
    }

    /// `scenario` over the window from `start` to `end` (Unix seconds), summed over
    /// every instance. Ask after Prometheus has scraped past `end`.
    pub async fn window(
        &self,
        scenario: &str,
        start: f64,
        end: f64,
    ) -> Result<WindowTotals, PromError> {
        let m = self.matcher(scenario);
        let r = range(end - start);
        let instances = self.instances(scenario, end).await?;
        let sum = |q: String| async move {
            Ok::<_, PromError>(self.value(&q, end).await?.unwrap_or(0.0))
        };
        let completed = sum(format!("sum(increase(soakd_requests_total{m}[{r}]))")).await?;
        let dropped = sum(format!(
            "sum(increase(soakd_dropped_iterations_total{m}[{r}]))"
        ))
        .await?;
        let in_flight_end = self
            .value(&format!("sum(soakd_in_flight{m})"), end)
            .await?
            .unwrap_or(0.0);
        let in_flight_start = self
            .value(&format!("sum(soakd_in_flight{m})"), start)
            .await?
            .unwrap_or(0.0);
        let in_flight_peak = sum(format!("sum(max_over_time(soakd_in_flight{m}[{r}]))")).await?;
        let max_in_flight = sum(format!("sum(soakd_max_in_flight{m})")).await?;
        let errors = self
            .query(
                &format!("sum by (kind) (increase(soakd_request_errors_total{m}[{r}]))"),
                end,
            )
            .await?
            .into_iter()
            .filter(|s| s.value.is_finite() && s.value > 0.0)
            .filter_map(|s| Some((s.labels.get("kind")?.clone(), s.value)))
            .collect();
        let mut latency = [None; 4];
        for (slot, q) in latency.iter_mut().zip([0.5, 0.95, 0.99, 0.999]) {
            *slot = self
                .quantile("soakd_request_duration_seconds", &m, q, &r, end)
                .await?;
        }
        let lag_p99 = self
            .quantile("soakd_schedule_lag_seconds", &m, 0.99, &r, end)
            .await?;
        Ok(WindowTotals {
            instances,
            completed,
            started: (completed + in_flight_end - in_flight_start).max(0.0),
            errors,
            dropped,
            in_flight_peak,
            max_in_flight,
            latency,
            lag_p99,
        })
    }

    /// `{<selector>}` (or nothing), for a query over every scenario.
    fn all(&self) -> String {
        if self.selector.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", self.selector)
        }
    }

    /// Every op's latency quantiles (p50, p95, p99), completed and failed operations
    /// over the `secs` before `at`, summed over every instance — the soak judge's
    /// reading of soakd's own series when it is sharded. By `(scenario, op)`.
    pub async fn ops(
        &self,
        secs: f64,
        at: f64,
    ) -> Result<BTreeMap<(String, String), OpTotals>, PromError> {
        let (m, r) = (self.all(), range(secs));
        let mut out: BTreeMap<(String, String), OpTotals> = BTreeMap::new();
        let key = |s: &Sample| -> Option<(String, String)> {
            Some((
                s.labels.get("scenario")?.clone(),
                s.labels.get("op")?.clone(),
            ))
        };
        for family in ["soakd_requests_total", "soakd_request_errors_total"] {
            let q = format!("sum by (scenario, op) (increase({family}{m}[{r}]))");
            for s in self.query(&q, at).await? {
                if let Some(k) = key(&s) {
                    let o = out.entry(k).or_default();
                    match family {
                        "soakd_requests_total" => o.completed = s.value,
                        _ => o.failed = s.value,
                    }
                }
            }
        }
        for (i, q) in [0.5, 0.95, 0.99].into_iter().enumerate() {
            for s in self
                .query(
                    &native_or_classic("soakd_request_duration_seconds", &m, q, &r, "scenario, op"),
                    at,
                )
                .await?
            {
                if let (Some(k), true) = (key(&s), s.value.is_finite()) {
                    out.entry(k).or_default().latency[i] = Some(s.value);
                }
            }
        }
        Ok(out)
    }

    /// Every op's and scenario's period of `secs` before `at`, summed over every
    /// instance — a deploy judge's block when the fleet is sharded: each op's latency
    /// buckets (native where Prometheus has them, else the classic ones), completions
    /// and errors by kind, and each scenario's started and dropped arrivals.
    pub async fn period(&self, secs: f64, at: f64) -> Result<Period, PromError> {
        let (m, r) = (self.all(), range(secs));
        let instances = self
            .value(
                &format!("count(count by (instance) (soakd_requests_total{m}))"),
                at,
            )
            .await?
            .unwrap_or(0.0) as u32;
        let mut out = Period {
            instances,
            ..Period::default()
        };
        let op = |s: &Sample| -> Option<(String, String)> {
            Some((
                s.labels.get("scenario")?.clone(),
                s.labels.get("op")?.clone(),
            ))
        };
        let name = "soakd_request_duration_seconds";
        for s in self
            .query(
                &format!("sum by (scenario, op) (increase({name}{m}[{r}]))"),
                at,
            )
            .await?
        {
            if let (Some(k), Some(b)) = (op(&s), s.buckets) {
                let o = out.ops.entry(k).or_default();
                o.buckets = b;
                o.native = true;
            }
        }
        // The classic buckets, cumulative by `le`, of the ops without native ones.
        let mut classic: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
        for s in self
            .query(
                &format!("sum by (scenario, op, le) (increase({name}_bucket{m}[{r}]))"),
                at,
            )
            .await?
        {
            let le = s.labels.get("le").and_then(|v| v.parse::<f64>().ok());
            if let (Some(k), Some(le)) = (op(&s), le) {
                classic.entry(k).or_default().push((le, s.value));
            }
        }
        for (k, mut cum) in classic {
            let o = out.ops.entry(k).or_default();
            if o.native {
                continue;
            }
            cum.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (mut lo, mut below) = (0.0, 0.0);
            for (le, n) in cum {
                let here = (n - below).max(0.0);
                if here > 0.0 {
                    o.buckets.push((lo, le, here));
                }
                (lo, below) = (le, n.max(below));
            }
        }
        for s in self
            .query(
                &format!("sum by (scenario, op) (increase(soakd_requests_total{m}[{r}]))"),
                at,
            )
            .await?
        {
            if let Some(k) = op(&s) {
                out.ops.entry(k).or_default().completed = s.value.max(0.0);
            }
        }
        for s in self
            .query(
                &format!(
                    "sum by (scenario, op, kind) (increase(soakd_request_errors_total{m}[{r}]))"
                ),
                at,
            )
            .await?
        {
            if let (Some(k), Some(kind)) = (op(&s), s.labels.get("kind")) {
                if s.value > 0.0 {
                    let o = out.ops.entry(k).or_default();
                    o.errors.insert(kind.clone(), s.value);
                }
            }
        }
        // Iterations started: one schedule-lag observation each.
        let lag = "soakd_schedule_lag_seconds";
        for (i, q) in [
            format!("sum by (scenario) (increase({lag}_count{m}[{r}])) or histogram_count(sum by (scenario) (increase({lag}{m}[{r}])))"),
            format!("sum by (scenario) (increase(soakd_dropped_iterations_total{m}[{r}]))"),
        ]
        .iter()
        .enumerate()
        {
            for s in self.query(q, at).await? {
                if let Some(sc) = s.labels.get("scenario") {
                    let e = out.scenarios.entry(sc.clone()).or_default();
                    let v = if s.value.is_finite() { s.value.max(0.0) } else { 0.0 };
                    if i == 0 {
                        e.0 = v;
                    } else {
                        e.1 = v;
                    }
                }
            }
        }
        Ok(out)
    }

    /// `scenario`'s rolling SLO values at `at` over `window`, summed over every
    /// instance.
    pub async fn slo(
        &self,
        scenario: &str,
        window: Duration,
        at: f64,
    ) -> Result<SloTotals, PromError> {
        let m = self.matcher(scenario);
        let r = range(window.as_secs_f64());
        let instances = self.instances(scenario, at).await?;
        let mut latency = [None; 3];
        for (slot, q) in latency.iter_mut().zip([0.5, 0.95, 0.99]) {
            *slot = self
                .quantile("soakd_request_duration_seconds", &m, q, &r, at)
                .await?;
        }
        // Over the SLO's window, 5 minutes and 1 hour: failed over completed (None
        // while nothing completed; no error series yet is no error).
        let mut ratios = [None; 3];
        for (slot, rr) in ratios
            .iter_mut()
            .zip([r.clone(), "5m".to_string(), "1h".to_string()])
        {
            let done = self
                .value(&format!("sum(increase(soakd_requests_total{m}[{rr}]))"), at)
                .await?
                .unwrap_or(0.0);
            if done > 0.0 {
                let failed = self
                    .value(
                        &format!("sum(increase(soakd_request_errors_total{m}[{rr}]))"),
                        at,
                    )
                    .await?
                    .unwrap_or(0.0);
                *slot = Some((failed / done).clamp(0.0, 1.0));
            }
        }
        let e2e_p95 = self
            .quantile("soakd_event_e2e_seconds", &m, 0.95, &r, at)
            .await?;
        Ok(SloTotals {
            instances,
            latency,
            error_ratio: ratios[0],
            burn_ratios: [ratios[1], ratios[2]],
            e2e_p95,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_read_as_vectors_scalars_or_errors() {
        let v = json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"kind": "timeout"}, "value": [1.5, "12"]},
            {"metric": {}, "value": [1.5, "NaN"]},
        ]}});
        let s = parse_answer("q", &v).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels.get("kind").map(String::as_str), Some("timeout"));
        assert_eq!(s[0].value, 12.0);
        assert!(s[1].value.is_nan());
        let v =
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1.5, "+Inf"]}});
        assert_eq!(parse_answer("q", &v).unwrap()[0].value, f64::INFINITY);
        let v =
            json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"});
        let e = parse_answer("sum(", &v).unwrap_err().to_string();
        assert_eq!(e, "Prometheus refused `sum(`: parse error at char 3");
        let v = json!({"status": "success", "data": {"resultType": "matrix", "result": []}});
        let e = parse_answer("x[1m]", &v).unwrap_err().to_string();
        assert_eq!(e, "Prometheus answered `x[1m]` with a matrix result");
        let v = json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "value": [1.5]},
        ]}});
        assert!(parse_answer("q", &v).is_err());
    }

    #[test]
    fn native_histogram_samples_keep_their_buckets() {
        let v = json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"scenario": "api", "op": "get"}, "histogram": [1.5, {
                "count": "12", "sum": "0.3",
                "buckets": [[0, "0.0078125", "0.0085195", "9"], [0, "0.0085195", "0.0092906", "3"]]
            }]},
        ]}});
        let s = parse_answer("q", &v).unwrap();
        assert_eq!(s[0].value, 12.0);
        assert_eq!(
            s[0].buckets,
            Some(vec![
                (0.0078125, 0.0085195, 9.0),
                (0.0085195, 0.0092906, 3.0)
            ])
        );
        let v = json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "histogram": [1.5, {"count": "1", "buckets": [[0, "x", "1", "1"]]}]},
        ]}});
        assert!(parse_answer("q", &v).is_err());
        assert_eq!(
            native_or_classic("h", "{a=\"b\"}", 0.95, "1m", ""),
            "histogram_quantile(0.95, sum by () (increase(h{a=\"b\"}[1m]))) or histogram_quantile(0.95, sum by (le) (increase(h_bucket{a=\"b\"}[1m])))"
        );
    }

    #[test]
    fn matchers_quote_the_scenario_and_add_the_selector() {
        let p = Prom::new("http://prom:9090/", "");
        assert_eq!(p.url(), "http://prom:9090");
        assert_eq!(p.matcher("api"), r#"{scenario="api"}"#);
        let p = Prom::new("http://prom:9090", r#" job="soakd" "#);
        assert_eq!(p.matcher(r#"a"b\c"#), r#"{scenario="a\"b\\c",job="soakd"}"#);
        assert_eq!(range(50.0), "50000ms");
        assert_eq!(range(0.0001), "1ms");
    }

    #[test]
    fn selectors_are_checked_where_they_go_wrong() {
        for ok in [
            "",
            r#"job="soakd""#,
            r#" job = "soakd" , namespace=~"staging-.*",pod!~"x\"y" "#,
            r#"a!="b","#,
        ] {
            assert_eq!(check_selector(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            (r#"{job="soakd"}"#, "expected a label name at character 1"),
            (
                r#"job"#,
                "expected =, !=, =~ or !~ after the label name at character 4",
            ),
            (
                r#"job=soakd"#,
                "expected a double-quoted value at character 5",
            ),
            (r#"job="soakd"#, "a quoted value is not closed"),
            (
                r#"job="a" env="b""#,
                "expected a comma between matchers at character 9",
            ),
            (r#"1job="a""#, "expected a label name at character 1"),
        ] {
            assert_eq!(check_selector(bad), Err(why.to_string()), "{bad}");
        }
    }
}
