//! Drivers run one operation against one kind of target and classify its failure.
//! They know nothing of time, rates or schedules: the engine owns those. The only
//! metrics they touch are their own resources' (pool waits and sizes, connection
//! buffers), through handles resolved when the target is built.

mod client;
mod connect;
mod driver;
pub mod extract;
pub mod grpc;
pub mod h1;
pub mod h2;
pub mod http;
pub mod kind;
pub mod postgres;
#[cfg(test)]
pub(crate) mod testcerts;
pub mod tls;

pub use client::{build, TargetClient};
pub use driver::{Driver, DriverError, OpError, OpResult};
