//! Config errors: each carries its key path (`scenarios.api.schedule.stages[2].hold.rate`)
//! and, from the YAML position index, the line and column it points at. Loading collects
//! them all (`Errs`) instead of stopping at the first.

use super::yaml::{Pos, PosIndex};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// Key path, e.g. `scenarios.api.schedule.stages[2].hold.rate`; empty for the file.
    pub path: String,
    pub message: String,
    pub pos: Option<Pos>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(top level)"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)?;
        if let Some(p) = self.pos {
            write!(f, " (line {}, column {})", p.line, p.col)?;
        }
        Ok(())
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    pub source_name: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {n} error{}",
            self.source_name,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// The errors found so far, and where each path is in the document.
pub(super) struct Errs<'a> {
    pub(super) list: Vec<ConfigError>,
    /// What is accepted but should change (a deprecated key): shown, never refused.
    pub(super) warnings: Vec<ConfigError>,
    pub(super) index: &'a PosIndex,
}

impl Errs<'_> {
    /// `message` at `path`, with the line and column the path is at.
    fn at(&self, path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let path = path.into();
        ConfigError {
            pos: self.index.find(&path),
            path,
            message: message.into(),
        }
    }

    pub(super) fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let w = self.at(path, message);
        self.warnings.push(w);
    }

    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let e = self.at(path, message);
        self.list.push(e);
    }

    /// Decode `v` into `T`; on failure record the error at the exact inner path.
    pub(super) fn decode<T: DeserializeOwned>(&mut self, v: &Value, base: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(v.clone()) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let path = join_path(base, if inner == "." { "" } else { &inner });
                self.push(path, e.into_inner().to_string());
                None
            }
        }
    }
}

pub(super) fn join_path(base: &str, inner: &str) -> String {
    match (base.is_empty(), inner.is_empty()) {
        (_, true) => base.to_string(),
        (true, false) => inner.to_string(),
        (false, false) if inner.starts_with('[') => format!("{base}{inner}"),
        _ => format!("{base}.{inner}"),
    }
}
