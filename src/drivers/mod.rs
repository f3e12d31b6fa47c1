//! Drivers run one operation against one kind of target and classify its failure.
//! They know nothing about time, rates or metrics: the engine owns those.

pub mod http;

use crate::config::{Config, Op, Target, TargetKind};
use crate::template::IterVars;
use futures::future::BoxFuture;
use std::borrow::Cow;
use std::sync::Arc;

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

/// Error kinds every driver may produce.
pub mod kind {
    /// The per-op timeout expired (set by the engine).
    pub const TIMEOUT: &str = "timeout";
    /// A template could not be rendered (a fixture row lacks a field, say).
    pub const TEMPLATE: &str = "template";
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

/// What a target keeps between reloads: connection pools.
#[derive(Clone)]
pub enum TargetClient {
    Http(reqwest::Client),
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("target {target}: {message}")]
    Build { target: String, message: String },
}

impl TargetClient {
    pub fn new(target: &Target) -> Result<TargetClient, DriverError> {
        match &target.kind {
            TargetKind::Http(h) => {
                http::build_client(h)
                    .map(TargetClient::Http)
                    .map_err(|e| DriverError::Build {
                        target: target.name.clone(),
                        message: e.to_string(),
                    })
            }
        }
    }
}

/// The driver for a scenario's ops on a target.
pub fn build(
    cfg: &Config,
    target: &Target,
    client: &TargetClient,
    ops: &[Op],
) -> Result<Arc<dyn Driver>, DriverError> {
    let _ = cfg;
    match (&target.kind, client) {
        (TargetKind::Http(h), TargetClient::Http(c)) => Ok(Arc::new(
            http::HttpDriver::new(c.clone(), h, ops).map_err(|message| DriverError::Build {
                target: target.name.clone(),
                message,
            })?,
        )),
    }
}
