//! Did a distribution shift between two windows? The statistics the deploy judge (and
//! any before/after comparison) runs on per-period blocks: `block.rs` (what one op did
//! in one period, as sparse log buckets), `stats.rs` (the block bootstrap, the rank and
//! permutation tests, Holm's correction) and `compare.rs` (every measure of every op
//! compared, corrected and called) and `drift.rs` (how far an op wanders between two
//! windows without a deploy, from its own history).

pub mod block;
pub mod compare;
pub mod drift;
pub mod stats;

pub use block::Block;
pub use compare::{compare, Change, Drops, Finding, OpWindows, Settings};
