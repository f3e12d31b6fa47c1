//! Schedules: a stage (`hold`, `ramp`, `levels`, `daily`, `follow`) or
//! `{stages: [...], repeat}`, decoded stage by stage so every bad one is reported.

use crate::config::errors::Errs;
use crate::schedule::follow::{Follow, FollowSpec, OnError, Step};
use crate::schedule::{Schedule, Stage};
use crate::units::{format_rate, parse_rate, parse_ratio, Dur, Rate};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    stages: Vec<Value>,
    #[serde(default)]
    repeat: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStage {
    hold: Option<RawHold>,
    ramp: Option<RawRamp>,
    levels: Option<RawLevels>,
    daily: Option<RawDaily>,
    follow: Option<RawFollow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFollow {
    prometheus: String,
    query: String,
    #[serde(default)]
    factor: Option<f64>,
    #[serde(default)]
    min: Option<Rate>,
    max: Rate,
    #[serde(default)]
    every: Option<Dur>,
    /// `25%` (of the current rate) or `50/s`.
    #[serde(default)]
    max_step: Option<Value>,
    #[serde(default)]
    on_error: Option<RawOnError>,
    #[serde(default)]
    fallback: Option<Rate>,
    #[serde(default, rename = "for")]
    dur: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawOnError {
    Hold,
    Fallback,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHold {
    rate: Rate,
    #[serde(default, rename = "for")]
    dur: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRamp {
    from: Rate,
    to: Rate,
    over: Dur,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevels {
    rates: Vec<Rate>,
    each: Dur,
    /// How many passes through the list: a number, or `forever`.
    #[serde(default)]
    repeat: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaily {
    /// `"HH:MM": rate` pairs.
    points: BTreeMap<String, Rate>,
    /// Offset of local time from UTC, e.g. `"+02:00"`.
    #[serde(default)]
    utc_offset: Option<String>,
    #[serde(default, rename = "for")]
    dur: Option<Dur>,
}

pub(super) fn build_schedule(v: &Value, path: &str, errs: &mut Errs) -> Option<Schedule> {
    // Either `{stages: [...], repeat}` or a single stage written directly.
    let is_full = v.as_object().is_some_and(|m| m.contains_key("stages"));
    let (stage_values, repeat) = if is_full {
        let raw = errs.decode::<RawSchedule>(v, path)?;
        (raw.stages, raw.repeat)
    } else {
        (vec![v.clone()], false)
    };
    let stage_path = |i: usize| {
        if is_full {
            format!("{path}.stages[{i}]")
        } else {
            path.to_string()
        }
    };
    if stage_values.is_empty() {
        errs.push(format!("{path}.stages"), "needs at least one stage");
        return None;
    }
    let before = errs.list.len();
    let mut stages = Vec::new();
    for (i, sv) in stage_values.iter().enumerate() {
        let sp = stage_path(i);
        let Some(raw) = errs.decode::<RawStage>(sv, &sp) else {
            continue;
        };
        let n = raw.hold.is_some() as u8
            + raw.ramp.is_some() as u8
            + raw.levels.is_some() as u8
            + raw.daily.is_some() as u8
            + raw.follow.is_some() as u8;
        if n != 1 {
            errs.push(
                &sp,
                "a stage is exactly one of `hold`, `ramp`, `levels`, `daily` or `follow`",
            );
            continue;
        }
        let stage = if let Some(h) = raw.hold {
            Stage::Hold {
                rate: h.rate.0,
                dur: h.dur.map(|d| d.0),
            }
        } else if let Some(r) = raw.ramp {
            ramp(r, &sp, errs)
        } else if let Some(l) = raw.levels {
            levels(l, &sp, errs)
        } else if let Some(d) = raw.daily {
            daily(d, &sp, errs)
        } else if let Some(f) = raw.follow {
            follow(f, &sp, errs)
        } else {
            continue;
        };
        stages.push((sp, stage));
    }
    let last = stages.len().saturating_sub(1);
    for (i, (sp, s)) in stages.iter().enumerate() {
        if s.duration().is_none() && i != last {
            errs.push(
                sp,
                "this stage never ends, so the stages after it would never run (give it `for`, or move it last)",
            );
        }
        if repeat && s.duration().is_none() {
            errs.push(
                sp,
                "`repeat: true` needs every stage to end (give it `for`)",
            );
        }
    }
    if errs.list.len() > before {
        return None;
    }
    Some(Schedule {
        stages: stages.into_iter().map(|(_, s)| s).collect(),
        repeat,
    })
}

fn ramp(r: RawRamp, sp: &str, errs: &mut Errs) -> Stage {
    if r.over.0.is_zero() {
        errs.push(format!("{sp}.ramp.over"), "must be above 0");
    }
    Stage::Ramp {
        from: r.from.0,
        to: r.to.0,
        over: r.over.0,
    }
}

fn levels(l: RawLevels, sp: &str, errs: &mut Errs) -> Stage {
    if l.rates.is_empty() {
        errs.push(format!("{sp}.levels.rates"), "needs at least one rate");
    }
    if l.each.0.is_zero() {
        errs.push(format!("{sp}.levels.each"), "must be above 0");
    }
    let times = match &l.repeat {
        None => Some(1),
        Some(Value::String(s)) if s == "forever" => None,
        Some(Value::Bool(true)) => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| (1..=1_000_000).contains(&n)) => {
            n.as_u64().map(|n| n as u32)
        }
        Some(_) => {
            errs.push(
                format!("{sp}.levels.repeat"),
                "expected a number of passes (1 or more) or `forever`",
            );
            Some(1)
        }
    };
    Stage::Levels {
        rates: l.rates.iter().map(|r| r.0).collect(),
        each: l.each.0,
        times,
    }
}

/// A daily curve: points at local times of day, stored in UTC seconds so that the
/// engine passes UTC time of day.
fn daily(d: RawDaily, sp: &str, errs: &mut Errs) -> Stage {
    let offset = match d.utc_offset.as_deref().map(parse_offset) {
        None => 0.0,
        Some(Some(o)) => o,
        Some(None) => {
            errs.push(
                format!("{sp}.daily.utc_offset"),
                "expected an offset like \"+02:00\"",
            );
            0.0
        }
    };
    let mut points = Vec::new();
    for (k, r) in &d.points {
        match parse_hhmm(k) {
            Some(t) => points.push(((t - offset).rem_euclid(86_400.0), r.0)),
            None => errs.push(
                format!("{sp}.daily.points.{k}"),
                "expected a time of day like \"09:30\"",
            ),
        }
    }
    if points.is_empty() {
        errs.push(format!("{sp}.daily.points"), "needs at least one point");
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    Stage::Daily {
        points,
        dur: d.dur.map(|d| d.0),
    }
}

/// `follow:`: a rate that a PromQL query's value sets (`schedule::follow`, read by `engine::follow`).
fn follow(f: RawFollow, sp: &str, errs: &mut Errs) -> Stage {
    let at = |k: &str| format!("{sp}.follow.{k}");
    let url = f.prometheus.trim();
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || reqwest::Url::parse(url).is_err()
    {
        errs.push(
            at("prometheus"),
            "expected the Prometheus server's URL, like http://prometheus:9090",
        );
    }
    if f.query.trim().is_empty() {
        errs.push(at("query"), "must not be empty");
    }
    let factor = f.factor.unwrap_or(1.0);
    if !(factor.is_finite() && factor > 0.0) {
        errs.push(at("factor"), "must be a number above 0");
    }
    let min = f.min.map_or(0.0, |r| r.0);
    let max = f.max.0;
    if max <= 0.0 {
        errs.push(
            at("max"),
            "must be above 0 (the ceiling a wrong query cannot pass)",
        );
    }
    if min > max {
        errs.push(
            at("min"),
            format!("{} is above max ({})", format_rate(min), format_rate(max)),
        );
    }
    let every = f.every.map_or(Duration::from_secs(15), |d| d.0);
    if every < Duration::from_secs(1) || every > Duration::from_secs(3600) {
        errs.push(at("every"), "must be between 1s and 1h");
    }
    let max_step = match &f.max_step {
        None => None,
        Some(v) => {
            let text = match v {
                Value::String(s) => s.trim().to_string(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            let step = if text.ends_with('%') {
                parse_ratio(&text).filter(|r| *r > 0.0).map(Step::Share)
            } else {
                parse_rate(&text).filter(|r| *r > 0.0).map(Step::Rate)
            };
            if step.is_none() {
                errs.push(
                    at("max_step"),
                    "expected a share of the current rate like 25% or a rate like 50/s, above 0",
                );
            }
            step
        }
    };
    let on_error = match f.on_error {
        None | Some(RawOnError::Hold) => OnError::Hold,
        Some(RawOnError::Fallback) => OnError::Fallback,
    };
    let fallback = f.fallback.map(|r| r.0);
    if on_error == OnError::Fallback && fallback.is_none() {
        errs.push(
            at("fallback"),
            "`on_error: fallback` needs the fallback rate",
        );
    }
    if let Some(r) = fallback.filter(|r| *r < min || *r > max) {
        errs.push(
            at("fallback"),
            format!(
                "{} is outside min..max ({}..{})",
                format_rate(r),
                format_rate(min),
                format_rate(max)
            ),
        );
    }
    Stage::Follow {
        follow: Follow::new(FollowSpec {
            prometheus: url.trim_end_matches('/').to_string(),
            query: f.query.trim().to_string(),
            factor,
            min,
            max: max.max(min),
            every,
            max_step,
            on_error,
            fallback,
        }),
        scale: 1.0,
        dur: f.dur.map(|d| d.0),
    }
}

pub(super) fn parse_hhmm(s: &str) -> Option<f64> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h * 3600 + m * 60) as f64)
}

pub(super) fn parse_offset(s: &str) -> Option<f64> {
    let s = s.trim();
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1.0, &s[1..]),
        b'-' => (-1.0, &s[1..]),
        _ => (1.0, s),
    };
    parse_hhmm(rest).map(|v| sign * v)
}
