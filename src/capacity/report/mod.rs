//! `soakd report`: a stored run as the seed's performance-baseline document (Markdown)
//! plus SVG charts — latency percentiles and error ratio against offered load with the
//! knee marked, and pool in-use against its maximum per level.
//!
//! `render` writes the sections in order, one function each (`sections.rs` for a run and
//! its scenarios, `combined.rs` for a matrix search); `analysis.rs` turns the levels into
//! bottleneck notes and recommendations, `svg.rs` draws the charts, `cells.rs` is the one
//! set of formatters.

mod analysis;
mod cells;
mod combined;
pub mod compare;
mod render;
mod sections;
mod svg;

pub use render::{render, write, Report};
