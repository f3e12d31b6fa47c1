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
pub mod catalogue;
pub mod ring;
mod sampler;
mod store;
mod thread;

pub use catalogue::Group;
pub use ring::{Key, View};
pub use sampler::Sampler;
pub use store::{History, Resolution};
pub use thread::{spawn, SamplerThread};
