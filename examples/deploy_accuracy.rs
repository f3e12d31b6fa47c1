//! The deploy judge's accuracy on deploys whose truth is known, over blocks recorded
//! from a real soakd run (examples/deploy_record.rs): at every block where the windows
//! fit, a "deploy" is judged by the same code a running soakd uses (`judge_load`, the
//! generator rule included) with nothing changed (A/A), with every latency after the
//! deploy multiplied by a known factor, and with the error ratio raised — beside the
//! naive rule "p95 after > p95 before × 1.1".
//!
//! The drift check (`deploys.history`) needs the day before each deploy; a recording
//! of an hour or two is extended back to HISTORY_HOURS (default 24; 0 turns the check
//! off) by reflection — the recording backwards, then forwards, and so on — which keeps
//! its minute-to-minute wander and joins without a jump. Nothing was deployed in it.
//! HISTORY_FROM=OTHER.jsonl reflects another recording instead (a day whose windows
//! are not the judged ones), ending where the judged recording begins.
//!   cargo run --release --example deploy_accuracy -- BLOCKS.jsonl
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use soakd::deploy::blocks::{Cut, GeneratorBlock, Rings, ScenarioBlock};
use soakd::deploy::judge::{judge_load, windows};
use soakd::deploy::State;
use soakd::shift::drift::Summary;
use soakd::shift::Block;
use std::collections::{BTreeMap, VecDeque};

#[derive(serde::Deserialize)]
struct Line {
    ops: Vec<(String, Block)>,
    scenarios: Vec<(String, ScenarioBlock)>,
    generator: GeneratorBlock,
}

const CONFIG: &str = r#"
targets:
  nginx: {type: http, base_url: "http://127.0.0.1:1"}
  demo: {type: http, base_url: "http://127.0.0.1:2"}
  db: {type: postgres, url: "postgres://u@127.0.0.1:3/d"}
scenarios:
  static: {target: nginx, slo: {error_rate: 1%}, schedule: {hold: {rate: 50/s}}, ops: {get: {http: {path: /}}}}
  api: {target: demo, slo: {error_rate: 1%}, schedule: {hold: {rate: 50/s}}, ops: {list: {http: {path: /}}}}
  reads: {target: db, slo: {error_rate: 1%}, schedule: {hold: {rate: 50/s}}, ops: {progress: {sql: {query: "SELECT 1"}}}}
"#;

/// What happens after the deploy.
#[derive(Clone, Copy)]
enum Case {
    Same,
    Slower(f64),
    Errors(f64, f64),
}

fn binomial(rng: &mut StdRng, n: u64, p: f64) -> u64 {
    // Poisson approximation (n large, p small), by inversion.
    let lambda = n as f64 * p;
    let (mut k, mut prod, limit) = (0u64, rng.random::<f64>(), (-lambda).exp());
    while prod > limit {
        k += 1;
        prod *= rng.random::<f64>();
    }
    k
}

/// A recording of `hours` made of `lines`' clean runs (at least 5 blocks in a row whose
/// runtime delay is within 1 ms of the recording's usual), re-timed one a minute.
fn clean_runs(lines: &[Line], hours: f64, rng: &mut StdRng) -> Vec<Line> {
    let mut d: Vec<f64> = lines
        .iter()
        .filter_map(|l| l.generator.runtime_delay_p99)
        .collect();
    d.sort_by(f64::total_cmp);
    let usual = d.get(d.len() / 2).copied().unwrap_or(0.0);
    let clean = |l: &Line| {
        l.generator
            .runtime_delay_p99
            .is_none_or(|x| x - usual < 0.001)
            && l.generator.cpu_share.is_none_or(|c| c < 0.9)
    };
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut start: Option<usize> = None;
    for (i, l) in lines.iter().enumerate().skip(2) {
        match (clean(l), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s >= 5 {
                    runs.push((s, i));
                }
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        if lines.len() - s >= 5 {
            runs.push((s, lines.len()));
        }
    }
    let n_clean = lines.iter().skip(2).filter(|l| clean(l)).count();
    let mean = runs.iter().map(|(a, b)| b - a).sum::<usize>() as f64 / runs.len().max(1) as f64;
    eprintln!(
        "{n_clean} of {} blocks clean (runtime delay p99 within 1 ms of the usual {:.1} ms); {} runs of 5 or more, {mean:.1} blocks long on average",
        lines.len() - 2,
        usual * 1e3,
        runs.len()
    );
    let want = (hours * 60.0) as usize;
    let mut out: Vec<Line> = Vec::with_capacity(want);
    let t0 = lines.first().map_or(0.0, |l| l.generator.t);
    while out.len() < want && !runs.is_empty() {
        let (a, b) = runs[rng.random_range(0..runs.len())];
        for l in &lines[a..b] {
            let t = t0 + 60.0 * out.len() as f64;
            let mut l2 = Line {
                ops: l.ops.clone(),
                scenarios: l.scenarios.clone(),
                generator: l.generator.clone(),
            };
            l2.generator.t = t;
            for (_, b) in l2.ops.iter_mut() {
                b.t = t;
            }
            for (_, b) in l2.scenarios.iter_mut() {
                b.t = t;
            }
            out.push(l2);
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: deploy_accuracy BLOCKS.jsonl"))?;
    let read = |path: &str| -> anyhow::Result<Vec<Line>> {
        let text = std::fs::read_to_string(path)?;
        Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?)
    };
    let lines = read(&path)?;
    let other = match std::env::var("HISTORY_FROM") {
        Ok(p) => Some(read(&p)?),
        Err(_) => None,
    };
    let mut rng = StdRng::seed_from_u64(2026);
    // CLEAN_RUNS=HOURS: a synthetic recording of that many hours made of the recording's
    // runs of blocks soakd did not set aside (its own runtime undelayed), each run kept
    // whole (its minute-to-minute wander), the runs drawn at random.
    let lines = match std::env::var("CLEAN_RUNS") {
        Ok(h) => clean_runs(&lines, h.parse::<f64>()?, &mut rng),
        Err(_) => lines,
    };
    // WINDOW=10m judges shorter windows (a quick look at a short recording);
    // CONTROLS=demo=db,db=demo judges each target's latency relative to another's
    // (deploys.controls).
    let hours: f64 = match std::env::var("HISTORY_HOURS") {
        Ok(h) => h.parse()?,
        Err(_) => 24.0,
    };
    let mut deploys: Vec<String> = vec![format!("history: {}s", (hours * 3600.0) as u64)];
    if let Ok(w) = std::env::var("WINDOW") {
        deploys.push(format!("before: {w}, after: {w}"));
    }
    if let Ok(c) = std::env::var("CONTROLS") {
        let pairs: Vec<String> = c
            .split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(t, c)| format!("{t}: {c}"))
            .collect();
        deploys.push(format!("controls: {{{}}}", pairs.join(", ")));
    }
    let text = format!("{CONFIG}deploys: {{{}}}\n", deploys.join(", "));
    let cfg = soakd::config::parse(
        &text,
        "bench",
        std::path::Path::new("."),
        &soakd::config::interp::ProcessEnv,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let dcfg = cfg.deploys.clone();
    let per_window = (dcfg.before.as_secs_f64() / 60.0).round() as usize;
    let settle = (dcfg.settle.as_secs_f64() / 60.0).round() as usize;
    let span = per_window * 2 + settle;
    eprintln!("{} blocks recorded; each deploy needs {span}", lines.len());
    // Skip the first two minutes (connections, caches).
    let first = 2usize;
    let step: usize = std::env::var("STEP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    // The history: the recording (after its first minutes) reflected back from its
    // start for `hours`, then the recording itself, one block a minute.
    let mut history: BTreeMap<String, VecDeque<Summary>> = BTreeMap::new();
    let src = &lines[first.min(lines.len())..];
    let past = match &other {
        Some(o) => &o[first.min(o.len())..],
        None => src,
    };
    if let (Some(t0), false) = (src.first().map(|l| l.generator.t), past.is_empty()) {
        let m = past.len();
        let period = 2 * m.saturating_sub(1).max(1);
        let n_hist = (hours * 60.0) as usize;
        let reflected = (1..=n_hist).rev().map(|j| {
            let r = j % period;
            let i = if r < m { r } else { period - r };
            (t0 - 60.0 * j as f64, &past[i.min(m - 1)])
        });
        for (t, l) in reflected.chain(src.iter().map(|l| (l.generator.t, l))) {
            for (k, b) in &l.ops {
                if let Some(mut x) = Summary::of(b) {
                    x.t = t;
                    history.entry(k.clone()).or_default().push_back(x);
                }
            }
        }
    }
    eprintln!(
        "history: {hours} h before each deploy ({} blocks of {}, reflected back)",
        past.len(),
        if other.is_some() {
            "another recording"
        } else {
            "this recording"
        }
    );
    let positions: Vec<usize> = (first + per_window
        ..=lines.len().saturating_sub(per_window + settle + 1))
        .step_by(step.max(1))
        .collect();
    let targets = [
        ("nginx", "static", "static/get"),
        ("demo", "api", "api/list"),
        ("db", "reads", "reads/progress"),
    ];
    let cases: Vec<(&str, Case)> = vec![
        ("A/A: nothing changed", Case::Same),
        ("latency ×1.05 after", Case::Slower(1.05)),
        ("latency ×1.10 after", Case::Slower(1.10)),
        ("latency ×1.20 after", Case::Slower(1.20)),
        ("errors 0.1 % → 0.5 %", Case::Errors(0.001, 0.005)),
        ("errors 0.1 % → 0.2 %", Case::Errors(0.001, 0.002)),
    ];
    println!("| case | target | deploys | regressed | improved | invalid | naive p95 × 1.1 rule |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut totals: BTreeMap<&str, (usize, usize, usize, usize)> = BTreeMap::new();
    for (name, case) in &cases {
        for (target, _scenario, key) in targets {
            let (mut n, mut reg, mut imp, mut inv, mut naive) = (0, 0, 0, 0, 0);
            for &p in &positions {
                let at = lines[p].generator.t;
                let w = windows(at, &dcfg);
                let mut rings = Rings::new(span + 4, dcfg.history_kept());
                let start = lines[p - per_window].generator.t - 1.0;
                rings.history = history
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.iter().filter(|x| x.t < start).copied().collect(),
                        )
                    })
                    .collect();
                let mut pooled_b: Vec<(i32, u32)> = Vec::new();
                let mut pooled_a: Vec<(i32, u32)> = Vec::new();
                for l in &lines[p - per_window..(p + per_window + settle + 1).min(lines.len())] {
                    let after = l.generator.t >= w.after[0] - 1.0;
                    let mut cut = Cut {
                        ops: Vec::new(),
                        scenarios: l.scenarios.clone(),
                        generator: l.generator.clone(),
                    };
                    for (k, b) in &l.ops {
                        if k != key {
                            // Every other op as recorded (a control's, when one is set).
                            cut.ops.push((k.clone(), b.clone()));
                            continue;
                        }
                        let mut b = match (case, after) {
                            (Case::Slower(f), true) => b.scaled(*f),
                            _ => b.clone(),
                        };
                        let rate = match case {
                            Case::Errors(x, y) => {
                                if after {
                                    *y
                                } else {
                                    *x
                                }
                            }
                            _ => 0.001,
                        };
                        let e = binomial(&mut rng, b.requests, rate);
                        if e > 0 {
                            b.errors.insert("status_5xx".into(), e);
                        }
                        if l.generator.t >= w.before[0] - 1.0
                            && l.generator.t + l.generator.secs <= w.before[1] + 1.0
                        {
                            pooled_b.extend(b.hist.iter().copied());
                        } else if after {
                            pooled_a.extend(b.hist.iter().copied());
                        }
                        cut.ops.push((k.clone(), b));
                    }
                    rings.add(cut);
                }
                let id = format!("{target}-{p}-{name}");
                let v = judge_load(&id, target, at, &dcfg, &cfg.scenarios, &rings);
                n += 1;
                match v.state {
                    State::Regressed => reg += 1,
                    State::Improved => imp += 1,
                    _ if std::env::var("FINDINGS").is_ok_and(|t| t == target)
                        && matches!(case, Case::Slower(_)) =>
                    {
                        for f in &v.findings {
                            eprintln!("{id}: {} p={:.2e} adj={:.2e}", f.why, f.p, f.p_adjusted);
                        }
                    }
                    State::Invalid => {
                        inv += 1;
                        if std::env::var("WHY").is_ok() {
                            eprintln!("{id}: {:?}", v.reasons);
                        }
                    }
                    _ => {}
                }
                pooled_b.sort_unstable();
                pooled_a.sort_unstable();
                let q = |h: &[(i32, u32)]| soakd::shift::block::quantile_of(h, 0.95);
                if let (Some(b), Some(a)) = (q(&pooled_b), q(&pooled_a)) {
                    if a > b * 1.1 {
                        naive += 1;
                    }
                }
            }
            let pc = |x: usize| {
                if n == 0 {
                    0.0
                } else {
                    100.0 * x as f64 / n as f64
                }
            };
            println!(
                "| {name} | {target} | {n} | {reg} ({:.1} %) | {imp} | {inv} | {naive} ({:.1} %) |",
                pc(reg),
                pc(naive)
            );
            let t = totals.entry(name).or_default();
            t.0 += n;
            t.1 += reg;
            t.2 += naive;
            t.3 += imp;
        }
    }
    println!();
    println!("| case | deploys | regressed | improved | naive rule |");
    println!("|---|---:|---:|---:|---:|");
    for (name, _) in &cases {
        if let Some((n, r, nv, im)) = totals.get(name) {
            let pc = |x: usize| 100.0 * x as f64 / (*n).max(1) as f64;
            println!(
                "| {name} | {n} | {:.1} % | {:.1} % | {:.1} % |",
                pc(*r),
                pc(*im),
                pc(*nv)
            );
        }
    }
    Ok(())
}
