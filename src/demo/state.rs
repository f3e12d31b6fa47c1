//! What the demo target keeps: its knobs, the challenges and stat index from the seed's
//! fixtures, claims, recent events and progress (through the store), and its series.

use super::metrics::DemoMetrics;
use super::store;
use crate::challenges::ChallengeIndex;
use parking_lot::{Mutex, RwLock};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The 10,000 fixture users with their tokens.
pub const USERS_JSON: &str = include_str!("../../fixtures/users.json");
/// The 250 stat codes of the challenge definitions.
pub const STATS_JSON: &str = include_str!("../../fixtures/stats.json");

/// Demonstration knobs, settable at start and at runtime (`PUT /admin/knobs` with any
/// subset of the fields).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Knobs {
    /// Added latency, uniform between min and max milliseconds (the seed's mock
    /// platform: 50–200).
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    /// Fraction of requests answered 500 (0.05 = 5 %).
    pub error_ratio: f64,
    /// Every `stall_every_ms`, all requests wait out a stall of `stall_for_ms`.
    pub stall_every_ms: u64,
    pub stall_for_ms: u64,
    /// Requests processed at once (0 = unlimited); the rest queue, so latency climbs
    /// once the offered rate exceeds concurrency_limit / service time.
    pub concurrency_limit: usize,
    /// Added to every request's latency (ms): set it at runtime for a latency step.
    pub latency_step_ms: u64,
    /// Memory allocated, touched and kept every second (a leak for the soak judge to
    /// find), up to [`MAX_LEAK_BYTES`] in all.
    pub leak_bytes_per_second: u64,
    /// File descriptors opened (on /dev/null) and kept every minute, up to
    /// [`MAX_LEAK_FDS`] in all.
    pub leak_fds_per_minute: u32,
    /// The release it says it runs (`GET /version`; empty: `1.0.0`): change it with a
    /// latency step to show the deploy judge a regression.
    pub version: String,
}

/// The most a leak knob keeps: 2 GiB of memory and 10,000 file descriptors (then it
/// stops and says so); `DELETE /admin/leak` frees what it kept.
pub const MAX_LEAK_BYTES: u64 = 2 << 30;
pub const MAX_LEAK_FDS: usize = 10_000;

impl Knobs {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_ratio) {
            return Err("error_ratio must be within 0..1".into());
        }
        if self.latency_max_ms < self.latency_min_ms {
            return Err("latency_max_ms must be >= latency_min_ms".into());
        }
        if self.leak_bytes_per_second > 256 << 20 {
            return Err("leak_bytes_per_second is capped at 268435456 (256 MiB/s)".into());
        }
        if self.leak_fds_per_minute > 6000 {
            return Err("leak_fds_per_minute is capped at 6000".into());
        }
        if self.latency_max_ms > 600_000
            || self.stall_for_ms > 600_000
            || self.latency_step_ms > 600_000
        {
            return Err("latencies and stalls are capped at 600000 ms".into());
        }
        if self.version.chars().count() > 64 || self.version.contains('\n') {
            return Err("version is at most 64 characters on one line".into());
        }
        if self.stall_for_ms > 0 && self.stall_every_ms <= self.stall_for_ms {
            return Err("stall_every_ms must be greater than stall_for_ms".into());
        }
        Ok(())
    }
}

pub struct DemoState {
    pub index: Arc<ChallengeIndex>,
    pub(super) knobs: RwLock<Knobs>,
    pub(super) limiter: RwLock<Option<Arc<Semaphore>>>,
    pub store: store::Store,
    pub metrics: DemoMetrics,
    pub(super) started: Instant,
    /// The last events received, newest last (bounded).
    pub(super) events: Mutex<VecDeque<Received>>,
    pub(super) logins: Mutex<HashMap<String, u32>>,
    pub grpc_in_flight: AtomicUsize,
    pub grpc_peak: AtomicUsize,
    pub grpc_connections: AtomicUsize,
    pub(super) namespace: String,
    /// What the leak knobs keep.
    pub(super) leaked: Mutex<Leaked>,
}

/// The memory and file descriptors the leak knobs keep (freed by `DELETE /admin/leak`).
#[derive(Default)]
pub struct Leaked {
    chunks: Vec<Vec<u8>>,
    bytes: u64,
    fds: Vec<std::fs::File>,
    /// Fractions of an fd owed from earlier ticks.
    fd_credit: f64,
    capped: bool,
}

/// What `GET /admin/leak` answers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct LeakStatus {
    pub bytes: u64,
    pub fds: usize,
}

/// How often the leak knobs act.
pub const LEAK_TICK: Duration = Duration::from_millis(100);

impl crate::metrics::MemorySize for DemoState {
    /// The last events, the login counts and (in memory mode) the progress map.
    fn memory_bytes(&self) -> u64 {
        use crate::metrics::memory::hash_map_bytes;
        let events: usize = {
            let q = self.events.lock();
            q.capacity() * std::mem::size_of::<Received>()
                + q.iter().map(|e| e.heap_bytes()).sum::<usize>()
        };
        let logins = {
            let m = self.logins.lock();
            hash_map_bytes::<String, u32>(m.capacity())
                + m.keys().map(|k| k.capacity() as u64).sum::<u64>()
        };
        // The leak knobs' memory is left out: it is the leak the soak judge should see.
        events as u64 + logins + self.store.memory_bytes()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo challenges: {0}")]
    Fixture(#[from] serde_json::Error),
    #[error("knobs: {0}")]
    Knobs(String),
}

const MAX_EVENTS_KEPT: usize = 1000;

impl DemoState {
    /// A demo target keeping progress in memory.
    pub fn new(knobs: Knobs) -> Result<Arc<DemoState>, DemoError> {
        Self::with_store(knobs, store::Store::memory(), DemoMetrics::new())
    }

    pub fn with_store(
        knobs: Knobs,
        store: store::Store,
        metrics: DemoMetrics,
    ) -> Result<Arc<DemoState>, DemoError> {
        knobs.validate().map_err(DemoError::Knobs)?;
        let st = Arc::new(DemoState {
            index: Arc::new(ChallengeIndex::embedded()?),
            knobs: RwLock::new(Knobs::default()),
            limiter: RwLock::new(None),
            store,
            metrics,
            started: Instant::now(),
            events: Mutex::new(VecDeque::new()),
            logins: Mutex::new(HashMap::new()),
            grpc_in_flight: AtomicUsize::new(0),
            grpc_peak: AtomicUsize::new(0),
            grpc_connections: AtomicUsize::new(0),
            namespace: "test".into(),
            leaked: Mutex::new(Leaked::default()),
        });
        st.set_knobs(knobs);
        st.metrics.memory.register("target_state", &st);
        if let Some(w) = st.store.writer() {
            st.metrics.memory.register("write_buffers", w);
        }
        Ok(st)
    }

    pub fn knobs(&self) -> Knobs {
        self.knobs.read().clone()
    }

    pub fn set_knobs(&self, k: Knobs) {
        let limit = k.concurrency_limit;
        let mut cur = self.knobs.write();
        if cur.concurrency_limit != limit || self.limiter.read().is_none() && limit > 0 {
            *self.limiter.write() = (limit > 0).then(|| Arc::new(Semaphore::new(limit)));
        }
        *cur = k;
    }

    /// Applies stalls, the concurrency limit and added latency; returns whether to
    /// inject a failure, and the permit to hold while the request is served.
    pub async fn apply_knobs(&self) -> (bool, Option<tokio::sync::OwnedSemaphorePermit>) {
        let k = self.knobs();
        if k.stall_every_ms > 0 && k.stall_for_ms > 0 {
            let phase = self.started.elapsed().as_millis() as u64 % k.stall_every_ms;
            if phase < k.stall_for_ms {
                tokio::time::sleep(Duration::from_millis(k.stall_for_ms - phase)).await;
            }
        }
        let limiter = self.limiter.read().clone();
        let permit = match limiter {
            Some(s) => s.acquire_owned().await.ok(),
            None => None,
        };
        let (delay, fail) = {
            let mut rng = rand::rng();
            let delay = if k.latency_max_ms > 0 {
                rng.random_range(k.latency_min_ms..=k.latency_max_ms)
            } else {
                0
            };
            (
                delay,
                k.error_ratio > 0.0 && rng.random::<f64>() < k.error_ratio,
            )
        };
        let delay = delay + k.latency_step_ms;
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        (fail, permit)
    }

    /// One tick of the leak knobs: allocates and touches a tick's share of
    /// `leak_bytes_per_second` (every page written, so it is resident, not just
    /// reserved) and opens a tick's share of `leak_fds_per_minute`, keeping both.
    pub fn leak_tick(&self) {
        let k = self.knobs();
        if k.leak_bytes_per_second == 0 && k.leak_fds_per_minute == 0 {
            return;
        }
        let share = LEAK_TICK.as_secs_f64();
        let mut l = self.leaked.lock();
        let bytes = (k.leak_bytes_per_second as f64 * share) as u64;
        if bytes > 0 && l.bytes + bytes <= MAX_LEAK_BYTES {
            l.chunks.push(vec![1u8; bytes as usize]);
            l.bytes += bytes;
        } else if bytes > 0 && !l.capped {
            l.capped = true;
            tracing::warn!(
                "demo leak: {MAX_LEAK_BYTES} bytes kept, the most it keeps; not leaking more"
            );
        }
        l.fd_credit += k.leak_fds_per_minute as f64 * share / 60.0;
        while l.fd_credit >= 1.0 && l.fds.len() < MAX_LEAK_FDS {
            l.fd_credit -= 1.0;
            match std::fs::File::open("/dev/null") {
                Ok(f) => l.fds.push(f),
                Err(e) => {
                    tracing::warn!("demo leak: cannot open another fd: {e}");
                    l.fd_credit = 0.0;
                    break;
                }
            }
        }
    }

    pub fn leak_status(&self) -> LeakStatus {
        let l = self.leaked.lock();
        LeakStatus {
            bytes: l.bytes,
            fds: l.fds.len(),
        }
    }

    /// Frees what the leak knobs kept.
    pub fn free_leak(&self) -> LeakStatus {
        let was = self.leak_status();
        *self.leaked.lock() = Leaked::default();
        was
    }

    pub(super) fn record(&self, ev: Received) {
        let mut q = self.events.lock();
        if q.len() >= MAX_EVENTS_KEPT {
            q.pop_front();
        }
        q.push_back(ev);
    }

    pub fn received(&self) -> Vec<Received> {
        self.events.lock().iter().cloned().collect()
    }

    /// Logins so far for a user (the value of its login stat).
    pub(super) fn count_login(&self, user: &str) -> u32 {
        let mut m = self.logins.lock();
        if m.len() >= 1_000_000 {
            m.clear();
        }
        let n = m.entry(user.to_string()).or_default();
        *n += 1;
        *n
    }
}

/// One received event, as tests and `GET /admin/events` see it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Received {
    pub service: String,
    pub id: String,
    pub namespace: String,
    pub user_id: String,
    pub stat_code: String,
    pub latest_value: f64,
    pub metadata_trace: String,
    /// The W3C `traceparent` metadata, when the caller sent one.
    #[serde(default)]
    pub traceparent: String,
}

impl Received {
    /// Bytes of its strings on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.service.capacity()
            + self.id.capacity()
            + self.namespace.capacity()
            + self.user_id.capacity()
            + self.stat_code.capacity()
            + self.metadata_trace.capacity()
            + self.traceparent.capacity()
    }
}
