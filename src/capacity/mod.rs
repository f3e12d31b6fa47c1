//! Capacity analysis: step a scenario through load levels until its SLO breaks, keep
//! every level's measurements, and turn a run into the baseline report.
//!
//! - [`plan_next`] is the search itself, a pure function of the verdicts so far: the
//!   controller asks it what to run next, and a restarted soakd replays the stored
//!   levels through it to resume where it stopped.
//! - [`judge`] turns one scenario's measurements into pass / fail / invalid.
//! - [`controller`] drives the engine (rate overrides) and measures each level.
//! - [`store`] keeps runs in PostgreSQL or append-only JSONL; [`report`] renders them.

pub mod compare;
pub mod controller;
mod findings;
pub mod follow;
mod judge;
mod plan;
mod record;
pub mod report;
pub mod store;
pub mod watch;

pub use findings::{findings, frontier, isolated_levels, Finding, Levels};
pub use judge::{
    combine, judge, Generator, GENERATOR_CPU_SATURATED, GENERATOR_DELAY_FLOOR,
    GENERATOR_DELAY_SHARE, GENERATOR_QUEUE_SHARE,
};
pub use plan::{fingerprint, plan_next};
pub use record::{
    BufferLevel, LevelResult, LevelSpec, PgLevel, Phase, PoolLevel, ProcessLevel, Quantiles, Run,
    RunRecord, RunStatus, ScenarioLevel, SloView, Statement, Verdict,
};
