//! PostgreSQL underneath the drivers: where SQL operations and the buffered writer get
//! their connections (`conn`), the buffered writer itself (`writer`), the statistics
//! collector behind the pg_* series (`stats`), and the throwaway cluster of the demo,
//! the tests and the benchmarks (`cluster`). Nothing here knows about scenarios or
//! schedules; `drivers::postgres` and the demo target build on it.

pub mod cluster;
pub mod conn;
pub mod stats;
pub mod writer;
