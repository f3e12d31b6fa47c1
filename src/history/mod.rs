//! The daemon's own history: what the page at `/` draws and `GET /api/v1/history`
//! serves, without a Prometheus.
//!
//! Once a second a sampler thread reads what the engine already records — the
//! scenarios' counters and rolling HdrHistogram windows, the pools' sizes and acquire
//! histograms, the buffered writers' gauges and histograms, the PostgreSQL statistics
//! snapshot, `/proc/self` — and appends one row to a ring of 1 s samples; every minute
//! it appends one row to a ring of 1 min samples. Both rings are sized when the daemon
//! starts ([`DashboardConfig`]) and never grow (see [`ring`]).
//!
//! The sampler runs on its own OS thread and never touches the load runtime. Most of
//! what it reads is atomics; the few locks it shares with the load path it holds only to
//! copy a value: each latency window's (one slot, see
//! [`crate::metrics::window::Window::since`]), a scenario's current rate and stage (the
//! runner's tick writes them), its error counts by kind (written on errors) and the pool's
//! sizes. Readers of the history (`/api/v1/history`, the page) take only the rings' own
//! locks, which the load path never takes.

pub mod ring;
mod sampler;

pub use ring::{Key, View};
pub use sampler::Sampler;

use crate::config::dashboard::DashboardConfig;
use crate::engine::Engine;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

/// Which ring a reader wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Second,
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

/// The sampler's thread; stops when dropped or stopped, or when the engine is gone.
pub struct SamplerThread {
    stop: Option<std::sync::mpsc::Sender<()>>,
    join: Option<std::thread::JoinHandle<()>>,
}

/// Starts sampling `engine` into `history` once a second, on the second.
pub fn spawn(engine: &Arc<Engine>, history: Arc<History>) -> std::io::Result<SamplerThread> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let weak = Arc::downgrade(engine);
    let join = std::thread::Builder::new()
        .name("soakd-history".into())
        .spawn(move || {
            let mut sampler = Sampler::new(history);
            loop {
                // Sleep to the next whole second of wall time, so rows line up with the
                // clock (and minutes with minutes).
                let ms = crate::events::now_ms();
                let wait = Duration::from_millis((1000 - ms.rem_euclid(1000)) as u64);
                match rx.recv_timeout(wait) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
                let Some(engine) = weak.upgrade() else { break };
                let now = crate::events::now_ms();
                sampler.tick(
                    &engine,
                    now - now.rem_euclid(1000),
                    std::time::Instant::now(),
                );
            }
        })?;
    Ok(SamplerThread {
        stop: Some(tx),
        join: Some(join),
    })
}

impl SamplerThread {
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        drop(self.stop.take());
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for SamplerThread {
    fn drop(&mut self) {
        self.halt();
    }
}
