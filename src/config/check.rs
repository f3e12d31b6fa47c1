//! The validators every section of the config shares (names, file paths, template
//! roots, tracing) and the small types they need, below every section so each can use
//! them without reaching up to `mod.rs`.

use super::errors::Errs;
use crate::template::Fixture;
use crate::units::Ratio;
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// A string that is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// W3C trace context on a target's requests (`trace: off | on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TraceMode {
    #[default]
    Off,
    On,
}

/// A target's kind without its settings: what a section checks another target against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Postgres,
    Grpc,
}

impl Kind {
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Postgres => "postgres",
            Kind::Grpc => "grpc",
        }
    }
}

/// A target as another section sees it: its name, its kind, and whether its requests
/// carry a trace (`trace: on`).
#[derive(Debug, Clone, Copy)]
pub struct TargetRef<'a> {
    pub name: &'a str,
    pub kind: Kind,
    pub traced: bool,
}

/// The config's targets as a section sees them.
pub type TargetKinds<'a> = [TargetRef<'a>];

pub(super) fn key_name(k: &str, path: &str, errs: &mut Errs) -> Option<String> {
    if valid_name(k) {
        return Some(k.to_string());
    }
    errs.push(
        path,
        format!("names must be 1-64 characters of letters, digits, '_' or '-', got {k}"),
    );
    None
}

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(super) fn resolve(base: &Path, file: &str) -> PathBuf {
    let p = PathBuf::from(file);
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

/// The template names a target itself provides: `trace` when it has `trace: on`.
pub(super) fn target_names(mode: TraceMode) -> HashSet<String> {
    match mode {
        TraceMode::On => HashSet::from(["trace".to_string()]),
        TraceMode::Off => HashSet::new(),
    }
}

/// `trace_sampled` only means something with `trace: on`.
pub(super) fn check_trace(mode: TraceMode, sampled: Option<Ratio>, path: &str, errs: &mut Errs) {
    if mode == TraceMode::Off && sampled.is_some() {
        errs.push(
            format!("{path}.trace_sampled"),
            "has no effect without `trace: on`",
        );
    }
}

/// Every template root must be a fixture or a name bound by an earlier step.
pub(super) fn check_roots(
    roots: &[&str],
    fixtures: &[Fixture],
    bound: &HashSet<String>,
    path: &str,
    errs: &mut Errs,
) {
    for r in roots {
        if !fixtures.iter().any(|f| f.name == *r) && !bound.contains(*r) {
            if *r == "trace" {
                errs.push(
                    path,
                    "template uses \"trace\", which needs `trace: on` on the op's target",
                );
                continue;
            }
            let mut known: Vec<&str> = fixtures.iter().map(|f| f.name.as_str()).collect();
            known.extend(bound.iter().map(String::as_str));
            known.sort();
            errs.push(
                path,
                format!(
                    "template uses {r:?}, which is neither a fixture nor an extracted value (known: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            );
        }
    }
}

/// "no target named X (known: ...)".
pub(super) fn no_such_target(name: &str, targets: &TargetKinds) -> String {
    let known: Vec<&str> = targets.iter().map(|t| t.name).collect();
    format!(
        "no target named {name:?} (known: {})",
        if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        }
    )
}
