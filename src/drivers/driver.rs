//! What every driver is: the [`Driver`] trait (run op *i* for one iteration) and how an
//! operation fails ([`OpError`], with a bounded kind from `kind.rs`), or a driver cannot
//! be built ([`DriverError`]).

use crate::template::IterVars;
use futures::future::BoxFuture;
use std::borrow::Cow;

/// Why an operation failed. `kind` is from a small fixed set per driver (it becomes a
/// metric label); `detail` is for logs only.
#[derive(Debug, Clone, PartialEq)]
pub struct OpError {
    pub kind: Cow<'static, str>,
    pub detail: String,
}

impl OpError {
    pub fn new(kind: &'static str, detail: impl Into<String>) -> OpError {
        OpError {
            kind: Cow::Borrowed(kind),
            detail: detail.into(),
        }
    }
}

pub type OpResult = Result<(), OpError>;

pub trait Driver: Send + Sync + 'static {
    /// Runs op `op` (an index into the scenario's ops) for one iteration.
    fn execute<'a, 'b: 'a>(
        &'a self,
        op: usize,
        vars: &'a mut IterVars<'b>,
    ) -> BoxFuture<'a, OpResult>;
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("target {target}: {message}")]
    Build { target: String, message: String },
}
