//! Drivers run one operation against one kind of target and classify its failure.
//! They know nothing of time, rates or schedules: the engine owns those. The only
//! metrics they touch are their own resources' (pool waits and sizes, connection
//! buffers), through handles resolved when the target is built.

pub mod grpc;
pub mod h1;
pub mod h2;
pub mod http;
pub mod postgres;
#[cfg(test)]
pub(crate) mod testcerts;
pub mod tls;

use crate::config::{Op, Target, TargetKind};
use crate::metrics::Metrics;
use crate::pg::writer::BufferedWriter;
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

/// Error kinds: the one bounded set the drivers draw from (each becomes an `error`
/// label). gRPC adds `grpc_<code>` and PostgreSQL `sqlstate_<code>`, both bounded by
/// their protocols' code lists.
pub mod kind {
    /// The per-op timeout expired (set by the engine).
    pub const TIMEOUT: &str = "timeout";
    /// A template could not be rendered (a fixture row lacks a field, say).
    pub const TEMPLATE: &str = "template";
    /// A connection could not be made (HTTP, PostgreSQL).
    pub const CONNECT: &str = "connect";
    /// The connection failed after it was made (HTTP, PostgreSQL).
    pub const IO: &str = "io";
    /// HTTP: the TLS handshake failed (the certificate was refused, the server wanted a
    /// client certificate, no common protocol) or did not finish within
    /// `connect_timeout`.
    pub const TLS: &str = "tls";
    /// HTTP: a 4xx, a 5xx, or an unexpected 1xx/3xx status.
    pub const STATUS_4XX: &str = "status_4xx";
    pub const STATUS_5XX: &str = "status_5xx";
    pub const STATUS_OTHER: &str = "status_other";
    /// HTTP: the body could not be read, was not JSON where a step extracts, or held no
    /// match with `on_empty: error`.
    pub const BODY: &str = "body";
    /// PostgreSQL: no pooled connection within `acquire_timeout`.
    pub const POOL_TIMEOUT: &str = "pool_timeout";
    /// PostgreSQL: the server spoke out of protocol.
    pub const PROTOCOL: &str = "protocol";
    /// PostgreSQL events: the buffered writer refused an event (its queue was full).
    pub const BUFFER_FULL: &str = "buffer_full";

    /// The kinds an op of this kind against this target is known to produce, which its
    /// error series start at (0) so `rate(errors) / rate(requests)` is 0 on a healthy
    /// run, not empty. Rarer kinds (a SQLSTATE, most gRPC codes) appear when they happen.
    pub fn expected(
        op: &crate::config::OpKind,
        target: &crate::config::TargetKind,
    ) -> Vec<&'static str> {
        use crate::config::{OpKind, TargetKind};
        let tls = match target {
            TargetKind::Http(h) => h.base_url.starts_with("https://"),
            TargetKind::Grpc(g) => g.endpoint.starts_with("https://"),
            TargetKind::Postgres(_) => false,
        };
        let mut kinds = vec![TIMEOUT];
        match op {
            OpKind::Http(_) => kinds.extend([CONNECT, IO, STATUS_4XX, STATUS_5XX, BODY]),
            OpKind::Grpc(_) => kinds.extend([
                CONNECT,
                IO,
                "grpc_unavailable",
                "grpc_deadline_exceeded",
                "grpc_internal",
            ]),
            OpKind::Sql(_) => kinds.extend([CONNECT, IO, POOL_TIMEOUT]),
            OpKind::Event(_) => kinds.push(BUFFER_FULL),
        }
        if tls && !matches!(op, OpKind::Sql(_) | OpKind::Event(_)) {
            kinds.push(TLS);
        }
        kinds
    }
}

pub type OpResult = Result<(), OpError>;

/// `connect_timeout` when a target sets none (HTTP and gRPC).
pub(crate) const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A TCP connection to `addr` by `deadline` (`connect_timeout` from now), without
/// Nagle (requests are single small writes): kind `connect` when there is none.
pub(crate) async fn connect_tcp(
    addr: &str,
    deadline: tokio::time::Instant,
    connect_timeout: std::time::Duration,
) -> Result<tokio::net::TcpStream, OpError> {
    let fail = |e: String| OpError::new(kind::CONNECT, format!("connect {addr}: {e}"));
    let stream = tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| {
            fail(format!(
                "no connection within {}",
                crate::units::format_duration(connect_timeout)
            ))
        })?
        .map_err(|e| fail(e.to_string()))?;
    stream.set_nodelay(true).map_err(|e| fail(e.to_string()))?;
    Ok(stream)
}

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
    Http(http::HttpClient),
    Postgres(postgres::PgClient),
    Grpc(grpc::GrpcClient),
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("target {target}: {message}")]
    Build { target: String, message: String },
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
