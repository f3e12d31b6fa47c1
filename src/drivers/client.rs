//! [`TargetClient`]: what a target keeps between reloads (its connection pools), and
//! [`build`], a scenario's driver on it.

use super::driver::{Driver, DriverError};
use super::{grpc, http, postgres};
use crate::config::{Op, Target, TargetKind};
use crate::metrics::Metrics;
use crate::pg::writer::BufferedWriter;
use std::sync::Arc;

/// What a target keeps between reloads: connection pools.
#[derive(Clone)]
pub enum TargetClient {
    Http(http::HttpClient),
    Postgres(postgres::PgClient),
    Grpc(grpc::GrpcClient),
}

impl TargetClient {
    /// Builds the target's client. Must run inside the load runtime: pools spawn their
    /// maintenance tasks there.
    pub fn new(target: &Target, metrics: &Metrics) -> Result<TargetClient, DriverError> {
        let fail = |message: String| DriverError::Build {
            target: target.name.clone(),
            message,
        };
        match &target.kind {
            TargetKind::Http(h) => {
                let c = http::HttpClient::new(h).map_err(|e| fail(e.to_string()))?;
                metrics
                    .memory
                    .register_weak("connections", c.memory_source());
                Ok(TargetClient::Http(c))
            }
            TargetKind::Grpc(g) => grpc::GrpcClient::new(g)
                .map(TargetClient::Grpc)
                .map_err(fail),
            TargetKind::Postgres(p) => {
                let pool = postgres::build_pool(p).map_err(|e| fail(e.to_string()))?;
                let conns = Arc::new(crate::pg::conn::ConnCache::new(
                    pool.clone(),
                    p.max_connections,
                    p.acquire_timeout
                        .map(|d| d.0)
                        .unwrap_or(postgres::ACQUIRE_TIMEOUT),
                    p.idle_timeout
                        .map(|d| d.0)
                        .unwrap_or(postgres::IDLE_TIMEOUT),
                ));
                let pm = Arc::new(metrics.pools.pool(&target.name, conns.clone()));
                let (ready_tx, ready) = tokio::sync::watch::channel(!p.bootstrap);
                tokio::spawn(postgres::connect_watch(
                    target.name.clone(),
                    pool.clone(),
                    p.bootstrap,
                    ready_tx,
                ));
                let stats = if p.stats.enabled {
                    let h = crate::pg::stats::spawn(
                        target.name.clone(),
                        &p.url,
                        p.stats.clone(),
                        metrics,
                        metrics.pg.snapshot.clone(),
                    )
                    .map_err(|e| fail(e.to_string()))?;
                    Some(Arc::new(postgres::AbortOnDrop(h)))
                } else {
                    None
                };
                Ok(TargetClient::Postgres(postgres::PgClient {
                    conns,
                    metrics: pm,
                    stats,
                    ready,
                }))
            }
        }
    }

    /// Where a postgres target's statements get connections.
    pub fn pg_conns(&self) -> Option<Arc<crate::pg::conn::ConnCache>> {
        match self {
            TargetClient::Postgres(c) => Some(c.conns.clone()),
            TargetClient::Http(_) | TargetClient::Grpc(_) => None,
        }
    }
}

/// The driver for a scenario's ops on a target.
pub fn build(
    target: &Target,
    client: &TargetClient,
    ops: &[Op],
    buffer: Option<Arc<BufferedWriter>>,
    default_timeout: std::time::Duration,
) -> Result<Arc<dyn Driver>, DriverError> {
    let fail = |message: String| DriverError::Build {
        target: target.name.clone(),
        message,
    };
    match (&target.kind, client) {
        (TargetKind::Http(h), TargetClient::Http(c)) => Ok(Arc::new(
            http::HttpDriver::new(c.clone(), h, ops).map_err(fail)?,
        )),
        (TargetKind::Postgres(_), TargetClient::Postgres(c)) => Ok(Arc::new(
            postgres::PostgresDriver::new(c.clone(), ops, buffer).map_err(fail)?,
        )),
        (TargetKind::Grpc(g), TargetClient::Grpc(c)) => Ok(Arc::new(
            grpc::GrpcDriver::new(c.clone(), g, ops, default_timeout).map_err(fail)?,
        )),
        _ => Err(fail("target and client kinds differ".into())),
    }
}
