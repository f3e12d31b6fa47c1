//! The results store: capacity runs and their levels (and the deploy judge's records),
//! in PostgreSQL (tables created by
//! embedded migrations) or in append-only JSONL files, one per run.
//!
//! `results.rs` is the [`Store`] the rest uses; `jsonl.rs` and `pg.rs` are the two
//! backends; `error.rs` the errors and a run's summary; `ids.rs` run ids and UTC times.

mod error;
mod ids;
mod jsonl;
mod pg;
mod results;

pub use crate::units::{civil_from_days, format_utc};
pub use error::{RunSummary, StoreError};
pub use ids::new_run_id;
pub use results::Store;

/// The results store once open (None until then), shared by the search, the deploy
/// judge and the API.
pub type SharedStore = std::sync::Arc<parking_lot::RwLock<Option<Store>>>;
