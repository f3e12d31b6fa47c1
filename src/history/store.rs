//! [`History`]: the two rings (1 s and 1 min rows) the sampler writes and the API reads,
//! and [`Resolution`], which one a reader asks for.

use super::ring::{self, Key, View};
use crate::config::dashboard::DashboardConfig;
use parking_lot::Mutex;

/// Which ring a reader wants (`1s` or `1m` in the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Resolution {
    #[serde(rename = "1s")]
    Second,
    #[serde(rename = "1m")]
    Minute,
}

impl Resolution {
    pub fn parse(s: &str) -> Option<Resolution> {
        match s {
            "1s" => Some(Resolution::Second),
            "1m" => Some(Resolution::Minute),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Second => "1s",
            Resolution::Minute => "1m",
        }
    }

    pub fn step_ms(self) -> i64 {
        match self {
            Resolution::Second => 1000,
            Resolution::Minute => ring::MINUTE_MS,
        }
    }
}

/// The two rings, shared by the sampler (writer) and the API (readers).
pub struct History {
    pub cfg: DashboardConfig,
    fine: Mutex<ring::Ring>,
    coarse: Mutex<ring::Ring>,
}

impl History {
    pub fn new(cfg: DashboardConfig) -> History {
        History {
            fine: Mutex::new(ring::Ring::new(cfg.slots_1s())),
            coarse: Mutex::new(ring::Ring::new(cfg.slots_1m())),
            cfg,
        }
    }

    fn ring(&self, r: Resolution) -> &Mutex<ring::Ring> {
        match r {
            Resolution::Second => &self.fine,
            Resolution::Minute => &self.coarse,
        }
    }

    /// Rows newer than `since_ms` at resolution `r` (at most the ring's capacity).
    pub fn view(&self, r: Resolution, since_ms: i64) -> View {
        self.ring(r).lock().since(since_ms)
    }

    pub fn capacity(&self, r: Resolution) -> usize {
        self.ring(r).lock().capacity()
    }

    /// Bytes the rows of both rings hold now (fixed once every series has appeared).
    pub fn value_bytes(&self) -> usize {
        self.fine.lock().value_bytes() + self.coarse.lock().value_bytes()
    }

    /// Appends a row. The sampler is the writer; benchmarks use it to fill a ring
    /// without waiting an hour (`examples/history_serve.rs`).
    pub fn push(&self, r: Resolution, t_ms: i64, values: &[(Key, f32)]) {
        self.ring(r).lock().push(t_ms, values);
    }
}

impl crate::metrics::MemorySize for History {
    fn memory_bytes(&self) -> u64 {
        (self.fine.lock().memory_bytes() + self.coarse.lock().memory_bytes()) as u64
    }
}
