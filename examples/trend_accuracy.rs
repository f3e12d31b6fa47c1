//! The soak judge's accuracy on series whose truth is known, beside the method teams
//! write by hand (least squares on the raw samples with its textbook interval), and the
//! judge's own cost. `scripts/bench/trends.sh` runs it; docs/BENCHMARKS.md keeps the
//! results.
//!
//! Every series is one a minute (the default `soak.resolution`), judged over the default
//! 24 h window after a 15 min warmup, with the default memory threshold of 0.5 %/day, on a
//! level of 100 MiB. The noise is taken from recorded soakd runs: the resident memory of
//! soakd and of the demo target in `docs/bench/longsoak-*.csv` (10 s samples over one to
//! two hours), each run detrended by its own Theil–Sen line, made relative to its level,
//! averaged to one point a minute, and resampled in blocks of an hour (a moving-block
//! bootstrap), so the series keeps the real noise's wander within an hour.
//!
//! Cases (each simulated `REPS` times with its own seed):
//! - flat, and sawtooth of 2 %, 10 % and 30 % of the level at periods of 1 min, 15 min and
//!   2 h: every `growing` episode over a month (judged every 2 h) is a false alarm;
//! - leaks of 0.5, 1, 2 and 5 %/day: judged every 30 min for 3 days; time to the first
//!   `growing`, and the slope error then and at 24 h of data;
//! - a rise of 20 % over 4 h to a plateau, and level shifts of 5, 10 and 20 %: what the
//!   judge says of them (a step is not a leak; change points, not trends, name it).
//!
//! Usage: `cargo run --release --example trend_accuracy [REPS] [steady|steady3|rough]` (default 10,
//! steady).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use soakd::soak::changepoint::Detector;
use soakd::soak::trend::fit;
use soakd::soak::verdict::{judge, Threshold, Verdict};
use std::path::Path;
use std::time::Instant;

const DAY: f64 = 86_400.0;
const STEP: f64 = 60.0;
const WINDOW: f64 = DAY;
const WARMUP: f64 = 900.0;
const LEVEL: f64 = 100.0 * 1024.0 * 1024.0;
const GROWTH: f64 = 0.005;
/// Noise blocks: an hour of minutes.
const BLOCK: usize = 60;

/// Relative residuals a minute apart, one sequence per recorded run and process, with
/// their standard deviation.
fn noise_pool(root: &Path) -> Vec<(Vec<f64>, f64)> {
    let mut pool = Vec::new();
    let Ok(dir) = std::fs::read_dir(root.join("docs/bench")) else {
        return pool;
    };
    let mut files: Vec<_> = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("longsoak-") && n.ends_with(".csv"))
        })
        .collect();
    files.sort();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let mut lines = text.lines();
        let Some(header) = lines.next() else { continue };
        let cols: Vec<&str> = header.split(',').collect();
        let (Some(ti), Some(ci), Some(ri)) = (
            cols.iter().position(|c| *c == "elapsed_s"),
            cols.iter().position(|c| *c == "component"),
            cols.iter().position(|c| *c == "rss_kib"),
        ) else {
            continue;
        };
        for component in ["soakd", "target"] {
            let pts: Vec<(f64, f64)> = text
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let v: Vec<&str> = l.split(',').collect();
                    if v.get(ci) != Some(&component) {
                        return None;
                    }
                    let t: f64 = v.get(ti)?.parse().ok()?;
                    let r: f64 = v.get(ri)?.parse().ok()?;
                    (t >= 600.0).then_some((t, r))
                })
                .collect();
            if pts.len() < 60 {
                continue;
            }
            let Some(line) = fit(&pts) else { continue };
            let intercept = line.start_level - line.slope * pts[0].0;
            // Residuals relative to the level, averaged per minute.
            let mut minutes: Vec<f64> = Vec::new();
            let (mut cur, mut sum, mut n) = (-1i64, 0.0, 0.0);
            for (t, r) in &pts {
                let m = (*t / 60.0) as i64;
                if m != cur && n > 0.0 {
                    minutes.push(sum / n);
                    (sum, n) = (0.0, 0.0);
                }
                cur = m;
                sum += (r - (intercept + line.slope * t)) / line.level;
                n += 1.0;
            }
            if minutes.len() >= BLOCK {
                let m = minutes.iter().sum::<f64>() / minutes.len() as f64;
                let sd = (minutes.iter().map(|x| (x - m).powi(2)).sum::<f64>()
                    / minutes.len() as f64)
                    .sqrt();
                pool.push((minutes, sd));
            }
        }
    }
    pool
}

/// `n` minutes of noise: blocks of an hour drawn from the pool.
fn noise(pool: &[Vec<f64>], n: usize, rng: &mut StdRng) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let s = &pool[rng.random_range(0..pool.len())];
        let start = rng.random_range(0..=s.len() - BLOCK);
        out.extend_from_slice(&s[start..start + BLOCK]);
    }
    out.truncate(n);
    out
}

#[derive(Clone, Copy)]
enum Truth {
    Flat,
    Leak(f64),
    Saw { amp: f64, period: f64 },
    Plateau,
    Shift(f64),
}

impl Truth {
    fn name(self) -> String {
        match self {
            Truth::Flat => "flat".into(),
            Truth::Leak(r) => format!("leak {:.1} %/day", r * 100.0),
            Truth::Saw { amp, period } => {
                format!("sawtooth {:.0} %, period {}", amp * 100.0, dur(period))
            }
            Truth::Plateau => "rise 20 % over 4 h, then flat".into(),
            Truth::Shift(s) => format!("level shift +{:.0} % at 36 h", s * 100.0),
        }
    }

    fn value(self, t: f64) -> f64 {
        match self {
            Truth::Flat => 1.0,
            Truth::Leak(r) => 1.0 + r * t / DAY,
            Truth::Saw { amp, period } => 1.0 + amp * ((t / period).fract()),
            Truth::Plateau => 1.0 + 0.2 * (t / (4.0 * 3600.0)).min(1.0),
            Truth::Shift(s) => 1.0 + if t >= 1.5 * DAY { s } else { 0.0 },
        }
    }
}

fn dur(s: f64) -> String {
    if s >= 3600.0 {
        format!("{} h", s / 3600.0)
    } else {
        format!("{} min", s / 60.0)
    }
}

/// `n` minutes of noise as [`noise`], each block moved to mean 0, so that joining blocks of
/// different runs does not itself make level shifts (for the change-point tables; the
/// trend tables keep the blocks as recorded, which is harsher).
fn noise_demeaned(pool: &[Vec<f64>], n: usize, rng: &mut StdRng) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let s = &pool[rng.random_range(0..pool.len())];
        let start = rng.random_range(0..=s.len() - BLOCK);
        let b = &s[start..start + BLOCK];
        let m = b.iter().sum::<f64>() / BLOCK as f64;
        out.extend(b.iter().map(|x| x - m));
    }
    out.truncate(n);
    out
}

/// A level-1 series of `minutes` points with de-meaned noise and a step of `shift` at
/// `at` seconds (none when `shift` is 0).
fn stepped(
    minutes: usize,
    shift: f64,
    at: f64,
    pool: &[Vec<f64>],
    rng: &mut StdRng,
) -> Vec<(f64, f64)> {
    let eps = noise_demeaned(pool, minutes, rng);
    (0..minutes)
        .map(|i| {
            let t = i as f64 * STEP;
            let level = if shift != 0.0 && t >= at {
                1.0 + shift
            } else {
                1.0
            };
            (t, LEVEL * (level + eps[i]))
        })
        .collect()
}

/// A simulated series: a point a minute for `days`, sampled with ±1 s of jitter (so a
/// one-minute period is not sampled at one phase forever).
fn series(truth: Truth, days: f64, pool: &[Vec<f64>], rng: &mut StdRng) -> Vec<(f64, f64)> {
    let n = (days * DAY / STEP) as usize;
    let eps = noise(pool, n, rng);
    (0..n)
        .map(|i| {
            let t = i as f64 * STEP + rng.random_range(-1.0..1.0);
            (t, LEVEL * (truth.value(t) + eps[i]))
        })
        .collect()
}

/// The points a judgement at `now` sees: the window after warmup.
fn window(s: &[(f64, f64)], now: f64) -> &[(f64, f64)] {
    let from = (now - WINDOW).max(WARMUP);
    let a = s.partition_point(|p| p.0 < from);
    let b = s.partition_point(|p| p.0 <= now);
    &s[a..b]
}

/// The hand-written method: least squares on the raw samples, `growing` when its slope
/// per day relative to the mean is above the threshold and its textbook 95 % interval
/// (independent errors) is above zero.
fn ols_growing(p: &[(f64, f64)]) -> (bool, f64) {
    let n = p.len() as f64;
    let mt = p.iter().map(|x| x.0).sum::<f64>() / n;
    let my = p.iter().map(|x| x.1).sum::<f64>() / n;
    let sxx: f64 = p.iter().map(|x| (x.0 - mt).powi(2)).sum();
    let sxy: f64 = p.iter().map(|x| (x.0 - mt) * (x.1 - my)).sum();
    let b = sxy / sxx;
    let a = my - b * mt;
    let sse: f64 = p.iter().map(|x| (x.1 - a - b * x.0).powi(2)).sum();
    let se = (sse / (n - 2.0) / sxx).sqrt();
    let rel = b * DAY / my;
    (rel > GROWTH && b - 1.96 * se > 0.0, rel)
}

struct Alarms {
    judge: usize,
    ols: usize,
    judgements: usize,
    verdicts: [usize; 5],
}

/// `growing` episodes (a verdict turning to growing) over a month judged every 2 h
/// after the first day.
fn month(truth: Truth, pool: &[Vec<f64>], seed: u64, from: f64) -> Alarms {
    let mut rng = StdRng::seed_from_u64(seed);
    let s = series(truth, 31.0, pool, &mut rng);
    let mut a = Alarms {
        judge: 0,
        ols: 0,
        judgements: 0,
        verdicts: [0; 5],
    };
    let (mut was_j, mut was_o) = (false, false);
    let mut now = from;
    while now <= 31.0 * DAY {
        let w = window(&s, now);
        let j = judge(w, Threshold::Relative(GROWTH));
        let g = j.verdict == Verdict::Growing;
        let (o, _) = ols_growing(w);
        a.judge += usize::from(g && !was_j);
        a.ols += usize::from(o && !was_o);
        (was_j, was_o) = (g, o);
        a.judgements += 1;
        a.verdicts[match j.verdict {
            Verdict::Growing => 0,
            Verdict::Shrinking => 1,
            Verdict::Flat => 2,
            Verdict::Bounded => 3,
            Verdict::Insufficient => 4,
        }] += 1;
        now += 2.0 * 3600.0;
    }
    a
}

struct Detection {
    judge_at: Option<f64>,
    ols_at: Option<f64>,
    judge_err_at_detect: Option<f64>,
    judge_err_24h: Option<f64>,
    ols_err_24h: f64,
}

/// Time to the first `growing` (hours of data), judged every 30 min for 3 days.
fn detect(rate: f64, pool: &[Vec<f64>], seed: u64) -> Detection {
    let mut rng = StdRng::seed_from_u64(seed);
    let s = series(Truth::Leak(rate), 3.0, pool, &mut rng);
    let mut d = Detection {
        judge_at: None,
        ols_at: None,
        judge_err_at_detect: None,
        judge_err_24h: None,
        ols_err_24h: f64::NAN,
    };
    let mut now = WARMUP + 3600.0;
    while now <= 3.0 * DAY {
        let w = window(&s, now);
        let j = judge(w, Threshold::Relative(GROWTH));
        // The true relative slope at the judged window's median level.
        let level = 1.0 + rate * ((w[0].0 + w[w.len() - 1].0) / 2.0) / DAY;
        let truth = rate / level;
        let err = |est: f64| (est - truth).abs() / truth;
        if d.judge_at.is_none() && j.verdict == Verdict::Growing {
            d.judge_at = Some((now - WARMUP) / 3600.0);
            d.judge_err_at_detect = j.relative.map(|r| err(r.estimate));
        }
        let (o, rel) = ols_growing(w);
        if d.ols_at.is_none() && o {
            d.ols_at = Some((now - WARMUP) / 3600.0);
        }
        if (now - (DAY + WARMUP)).abs() < 1.0 {
            d.judge_err_24h = j.relative.map(|r| err(r.estimate));
            d.ols_err_24h = err(rel);
        }
        now += 1800.0;
    }
    d
}

/// The share of each verdict over every judgement of `runs`: growing / shrinking / flat /
/// bounded.
fn shares(runs: &[Alarms]) -> String {
    let mut v = [0usize; 5];
    let mut total = 0;
    for a in runs {
        total += a.judgements;
        for (i, x) in a.verdicts.iter().enumerate() {
            v[i] += x;
        }
    }
    let p = |i: usize| 100.0 * v[i] as f64 / total.max(1) as f64;
    format!(
        "{:.1} % / {:.1} % / {:.1} % / {:.1} %",
        p(0),
        p(1),
        p(2),
        p(3)
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn par<T: Send>(reps: u64, f: impl Fn(u64) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let f = &f;
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|k| {
                sc.spawn(move || {
                    (0..reps)
                        .filter(|r| r % threads == k)
                        .map(f)
                        .collect::<Vec<T>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn main() {
    let reps: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    // `steady`: the runs whose memory held steady (residual sd under 1 % of the level:
    // the default jemalloc build at its plateau); `rough`: 1-5 % (allocator and stall
    // experiments). Runs beyond 5 % were leaks and steps being chased, not noise.
    let class = std::env::args().nth(2).unwrap_or_else(|| "steady".into());
    // `steady3`: the steady runs' noise scaled up to a 3 % standard deviation — stationary
    // noise as large as the change-point goal names, with a real RSS series' shape.
    let (lo, hi) = match class.as_str() {
        "rough" => (0.01, 0.05),
        _ => (0.0, 0.01),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pool: Vec<Vec<f64>> = noise_pool(root)
        .into_iter()
        .filter(|(_, sd)| (lo..hi).contains(sd))
        .map(|(s, _)| s)
        .collect();
    if class == "steady3" {
        let all: Vec<f64> = pool.iter().flatten().copied().collect();
        let m = all.iter().sum::<f64>() / all.len().max(1) as f64;
        let sd =
            (all.iter().map(|x| (x - m).powi(2)).sum::<f64>() / all.len().max(1) as f64).sqrt();
        let k = if sd > 0.0 { 0.03 / sd } else { 1.0 };
        for s in &mut pool {
            for x in s.iter_mut() {
                *x *= k;
            }
        }
    }
    if pool.is_empty() {
        eprintln!("no noise: docs/bench/longsoak-*.csv not found");
        std::process::exit(1);
    }
    let sd = {
        let all: Vec<f64> = pool.iter().flatten().copied().collect();
        let m = all.iter().sum::<f64>() / all.len() as f64;
        (all.iter().map(|x| (x - m).powi(2)).sum::<f64>() / all.len() as f64).sqrt()
    };
    println!(
        "noise `{class}`: {} recorded sequences, {} minutes, sd {:.3} % of the level; {reps} simulated months per case\n",
        pool.len(),
        pool.iter().map(Vec::len).sum::<usize>(),
        sd * 100.0
    );

    // SECTION=changepoints runs only the change-point tables.
    if std::env::var("SECTION").as_deref() != Ok("changepoints") {
        println!(
        "## False `growing` episodes per simulated month (judged every 2 h after the first day)\n"
    );
        println!("| series | soak judge | least squares on raw samples | judge's verdicts (growing / shrinking / flat / bounded) |");
        println!("|---|---|---|---|");
        let mut cases = vec![Truth::Flat];
        for amp in [0.02, 0.10, 0.30] {
            for period in [60.0, 900.0, 7200.0] {
                cases.push(Truth::Saw { amp, period });
            }
        }
        for truth in cases {
            let runs = par(reps, |r| month(truth, &pool, 1000 + r, DAY));
            let n = runs.len() as f64;
            let j = runs.iter().map(|a| a.judge).sum::<usize>() as f64 / n;
            let o = runs.iter().map(|a| a.ols).sum::<usize>() as f64 / n;
            println!("| {} | {j:.2} | {o:.2} | {} |", truth.name(), shares(&runs));
        }

        println!("\n## Leaks: time to the first `growing` and slope error (judged every 30 min)\n");
        println!("| leak | detected (judge) | median hours to detect (judge) | slope error at detection | slope error at 24 h (judge) | detected (least squares) | median hours (least squares) | slope error at 24 h (least squares) |");
        println!("|---|---|---|---|---|---|---|---|");
        for rate in [0.005, 0.01, 0.02, 0.05] {
            let runs = par(reps * 2, |r| detect(rate, &pool, 5000 + r));
            let n = runs.len();
            let jd: Vec<f64> = runs.iter().filter_map(|d| d.judge_at).collect();
            let od: Vec<f64> = runs.iter().filter_map(|d| d.ols_at).collect();
            let e_det = median(runs.iter().filter_map(|d| d.judge_err_at_detect).collect());
            let e24 = median(runs.iter().filter_map(|d| d.judge_err_24h).collect());
            let o24 = median(runs.iter().map(|d| d.ols_err_24h).collect());
            println!(
                "| {} | {}/{n} | {:.1} | {:.0} % | {:.0} % | {}/{n} | {:.1} | {:.0} % |",
                Truth::Leak(rate).name(),
                jd.len(),
                median(jd.clone()),
                e_det * 100.0,
                e24 * 100.0,
                od.len(),
                median(od.clone()),
                o24 * 100.0
            );
        }

        println!("\n## Bounds and steps: the judge's verdicts after the first 36 h (every 2 h)\n");
        println!("| series | growing episodes per month | growing / shrinking / flat / bounded |");
        println!("|---|---|---|");
        for truth in [
            Truth::Plateau,
            Truth::Shift(0.05),
            Truth::Shift(0.10),
            Truth::Shift(0.20),
        ] {
            let runs = par(reps, |r| month(truth, &pool, 9000 + r, 1.5 * DAY));
            let n = runs.len() as f64;
            let j = runs.iter().map(|a| a.judge).sum::<usize>() as f64 / n;
            println!("| {} | {j:.2} | {} |", truth.name(), shares(&runs));
        }
    }

    // Change points: false ones on flat series over simulated weeks, and how soon a
    // step is found. The detector is stepped once a minute, as the soak thread steps it.
    println!("\n## Change points (stepped once a minute)\n");
    let weeks = reps * 4;
    let false_cps: Vec<usize> = par(weeks, |r| {
        let mut rng = StdRng::seed_from_u64(20_000 + r);
        let s = stepped(7 * 1440, 0.0, 0.0, &pool, &mut rng);
        let mut d = Detector::default();
        (1..=s.len())
            .filter(|i| d.step(&s[..*i], &[]).is_some())
            .count()
    });
    let per_week = false_cps.iter().sum::<usize>() as f64 / weeks as f64;
    println!(
        "False change points on flat series (noise blocks de-meaned, so their joins are no steps): {per_week:.2} per series-week over {weeks} simulated weeks ({:.2} per week for a target of 10 series).\n",
        per_week * 10.0
    );
    println!("| step | found within 2 h | median minutes to report | median location error (min) | false before it |");
    println!("|---|---|---|---|---|");
    for shift in [0.05, 0.10, 0.20] {
        let runs = par(reps * 2, |r| {
            let mut rng = StdRng::seed_from_u64(30_000 + r);
            let at = 6.0 * 3600.0;
            let s = stepped(8 * 60, shift, at, &pool, &mut rng);
            let mut d = Detector::default();
            let mut before = 0;
            for i in 1..=s.len() {
                if let Some(cp) = d.step(&s[..i], &[]) {
                    if cp.t < at - 1800.0 {
                        before += 1;
                        continue;
                    }
                    return (
                        Some((s[i - 1].0 - at) / 60.0),
                        Some((cp.t - at).abs() / 60.0),
                        before,
                    );
                }
            }
            (None, None, before)
        });
        let found: Vec<f64> = runs.iter().filter_map(|r| r.0).collect();
        let loc: Vec<f64> = runs.iter().filter_map(|r| r.1).collect();
        let early: usize = runs.iter().map(|r| r.2).sum();
        println!(
            "| +{:.0} % | {}/{} | {:.0} | {:.1} | {early} |",
            shift * 100.0,
            found.len(),
            runs.len(),
            median(found.clone()),
            median(loc)
        );
    }

    // The judge's cost: 1,000 series of a full window, judged once.
    let mut rng = StdRng::seed_from_u64(42);
    let many: Vec<Vec<(f64, f64)>> = (0..1000)
        .map(|_| series(Truth::Flat, 1.0 + WARMUP / DAY, &pool, &mut rng))
        .collect();
    let t0 = Instant::now();
    let mut growing = 0;
    for s in &many {
        let w = window(s, DAY + WARMUP);
        growing += usize::from(judge(w, Threshold::Relative(GROWTH)).verdict == Verdict::Growing);
    }
    let took = t0.elapsed();
    println!(
        "\n## Cost\n\n1,000 series of 1,440 points judged once: {:.2} s of one core ({:.2} ms a series; {growing} growing); their rings hold {:.1} MiB (16 bytes a point).",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / 1000.0,
        1000.0 * 1440.0 * 16.0 / 1024.0 / 1024.0
    );
}
