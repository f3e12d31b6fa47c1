//! The deploy judge: when each target changed (its release, read or told), and whether
//! the change made anything worse — soakd's latency, errors and drops against the target
//! before and after, and the target's resources once the soak can say.
//!
//! `blocks.rs` cuts what each op did per period and keeps the rings; `release.rs` reads
//! a target's release and debounces it; `fleet.rs` replaces a sharded leader's blocks
//! by Prometheus's sums over every shard; `judge.rs` gives a deploy's load verdict (on
//! `shift`'s statistics); `record.rs` is what a deploy and its verdict are; `state.rs`
//! the deploys shared with the API; `thread.rs` runs it all on its own thread;
//! `api.rs` is `/api/v1/deploys`; `gate.rs` the gates Flagger and Argo Rollouts ask; `report.rs` a
//! deploy's report page.

pub mod api;
pub mod blocks;
pub mod fleet;
pub mod gate;
pub mod judge;
pub mod record;
pub mod release;
pub mod report;
pub mod state;
pub mod thread;

pub use record::{Deploy, State};
pub use state::Deploys;
