//! Starting and stopping the demo as the CLI runs it: [`Target`] is `soakd target` (the
//! demo target on its own, HTTP and optionally gRPC, progress in memory or PostgreSQL),
//! [`Demo`] is `soakd demo` (the target, a throwaway PostgreSQL when the machine has its
//! binaries, and a daemon running the embedded `fixtures/demo.yaml` against them). The
//! binary only parses flags, prints where things are and waits for a signal.

use crate::app::{Daemon, Options, StartError};
use crate::config::{self, ConfigErrors};
use crate::demo::http::serve_http;
use crate::demo::metrics::DemoMetrics;
use crate::demo::state::{DemoError, DemoState, Knobs};
use crate::demo::{grpc, store};
use crate::metrics::Metrics;
use crate::pg::cluster::{Cluster, ClusterError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a stopping target may take to flush buffered progress to the database.
const DRAIN_FOR: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Database(String),
    #[error(transparent)]
    Demo(#[from] DemoError),
    /// The embedded demo config did not load (a broken build or environment).
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the demo target's gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("a demo task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, LaunchError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| LaunchError::Listen { addr, source })
}

/// What `soakd target` serves.
pub struct TargetOptions {
    pub listen: SocketAddr,
    /// The gRPC event services, when given.
    pub grpc_listen: Option<SocketAddr>,
    /// Progress in PostgreSQL through the buffered writer; in memory without.
    pub database_url: Option<String>,
    pub knobs: Knobs,
    /// How often buffered stat updates are flushed (and become visible in the API).
    pub flush_interval: Duration,
}

/// A running demo target: its HTTP API and, with a listener, its gRPC event services,
/// served until [`Target::stop`].
pub struct Target {
    pub http: SocketAddr,
    pub grpc: Option<SocketAddr>,
    pub state: Arc<DemoState>,
    stop: oneshot::Sender<()>,
    served: JoinHandle<Result<(), LaunchError>>,
}

impl Target {
    /// Binds, then serves in the background.
    pub async fn start(opts: TargetOptions) -> Result<Target, LaunchError> {
        let metrics = DemoMetrics::new();
        let store = match &opts.database_url {
            Some(url) => store::postgres(
                url,
                20,
                opts.flush_interval,
                metrics.buffers.writer("demo-target"),
                &metrics.pools,
            )
            .await
            .map_err(LaunchError::Database)?,
            None => store::Store::memory_buffered(opts.flush_interval).map_err(DemoError::from)?,
        };
        let st = DemoState::with_store(opts.knobs, store, metrics)?;
        Target::serve(opts.listen, opts.grpc_listen, st).await
    }

    /// Serves `st` on the given addresses.
    async fn serve(
        listen: SocketAddr,
        grpc_listen: Option<SocketAddr>,
        st: Arc<DemoState>,
    ) -> Result<Target, LaunchError> {
        let l = bind(listen).await?;
        let gl = match grpc_listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        Target::spawn(l, gl, st)
    }

    /// Serves `st` on bound listeners in the background.
    fn spawn(
        l: TcpListener,
        gl: Option<TcpListener>,
        st: Arc<DemoState>,
    ) -> Result<Target, LaunchError> {
        let http = l.local_addr()?;
        let grpc = gl.as_ref().map(|g| g.local_addr()).transpose()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(serve_both(l, gl, st.clone(), stopped));
        Ok(Target {
            http,
            grpc,
            state: st,
            stop,
            served,
        })
    }

    /// Stops serving and flushes buffered progress (for up to 10 s); returns the entries
    /// that could not be flushed.
    pub async fn stop(self) -> Result<usize, LaunchError> {
        let _ = self.stop.send(());
        self.served.await??;
        Ok(self.state.store.drain(Instant::now() + DRAIN_FOR).await)
    }
}

/// HTTP (and gRPC, with a listener) until `stop` fires or is dropped; then both stop.
async fn serve_both(
    http: TcpListener,
    grpc: Option<TcpListener>,
    st: Arc<DemoState>,
    stop: oneshot::Receiver<()>,
) -> Result<(), LaunchError> {
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let grpc_task = grpc.map(|g| {
        let mut rx = tx.subscribe();
        tokio::spawn(grpc::serve(g, st.clone(), async move {
            let _ = rx.recv().await;
        }))
    });
    let served = serve_http(http, st, async move {
        let _ = stop.await;
    })
    .await;
    let _ = tx.send(());
    if let Some(g) = grpc_task {
        g.await??;
    }
    Ok(served?)
}

/// What `soakd demo` runs.
pub struct DemoOptions {
    /// soakd's admin server (dashboard, /metrics, API).
    pub listen: SocketAddr,
    pub target_listen: SocketAddr,
    pub grpc_listen: SocketAddr,
    /// Skip the throwaway PostgreSQL even when its binaries exist.
    pub no_postgres: bool,
    /// The target's flush interval (stat updates become visible in the API after it).
    pub flush_interval: Duration,
}

/// A running demo: the target, the daemon loading it, and the throwaway cluster.
pub struct Demo {
    pub daemon: Daemon,
    pub target: Target,
    /// The throwaway database's URL, when one runs.
    pub database_url: Option<String>,
    /// Why there is no database, when there is none but could have been.
    pub notice: Option<String>,
    cluster: Option<Cluster>,
    grace: Duration,
}

impl Demo {
    pub async fn start(opts: DemoOptions) -> Result<Demo, LaunchError> {
        let (cluster, notice) = if opts.no_postgres {
            (None, None)
        } else {
            match tokio::task::spawn_blocking(|| Cluster::start(false)).await? {
                Ok(c) => (Some(c), None),
                Err(ClusterError::NoBinaries) => (None, Some("PostgreSQL binaries not found: the demo target keeps progress in memory and soakd exports no pg_* series. Install the `postgresql` package to include the database.".to_string())),
                Err(e) => (None, Some(format!("could not start a throwaway PostgreSQL ({e}); continuing without it"))),
            }
        };
        let database_url = cluster.as_ref().map(|c| c.url("postgres"));
        // The target first: the config names its addresses.
        let target_l = bind(opts.target_listen).await?;
        let grpc_l = bind(opts.grpc_listen).await?;
        let (http, grpc) = (target_l.local_addr()?, grpc_l.local_addr()?);
        let cfg = demo_config(http, grpc, database_url.as_deref())?;
        // One registry for soakd and the target's buffered writer, so soakd's /metrics
        // and page show the writer the demo's events go through.
        let metrics = Arc::new(Metrics::new(cfg.quantile_window));
        let target_metrics = DemoMetrics::new();
        let store = match &database_url {
            Some(u) => store::postgres(
                u,
                20,
                opts.flush_interval,
                metrics.buffers.writer("demo-target"),
                &target_metrics.pools,
            )
            .await
            .map_err(LaunchError::Database)?,
            None => store::Store::memory_buffered(opts.flush_interval).map_err(DemoError::from)?,
        };
        let st = DemoState::with_store(Knobs::default(), store, target_metrics)?;
        let target = Target::spawn(target_l, Some(grpc_l), st)?;
        let grace = cfg.shutdown_grace;
        let daemon = Daemon::start(
            cfg,
            None,
            Options {
                listen: Some(opts.listen),
                metrics: Some(metrics),
                ..Options::default()
            },
        )?;
        Ok(Demo {
            daemon,
            target,
            database_url,
            notice,
            cluster,
            grace,
        })
    }

    /// Stops the daemon (draining for its grace period), then the target (flushing its
    /// progress), then removes the database. Returns the entries that could not be
    /// flushed.
    pub async fn stop(self) -> Result<usize, LaunchError> {
        self.daemon.shutdown(self.grace).await;
        let left = self.target.stop().await?;
        if let Some(c) = self.cluster {
            tokio::task::spawn_blocking(move || drop(c)).await?;
        }
        Ok(left)
    }
}

/// The embedded demo config pointed at the target and the database; without a database
/// its statistics target and the scenarios on it are dropped.
fn demo_config(
    http: SocketAddr,
    grpc: SocketAddr,
    database_url: Option<&str>,
) -> Result<config::Config, LaunchError> {
    // The embedded fixtures, written where the loader can find them.
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("users.json"),
        crate::demo::state::USERS_JSON,
    )?;
    std::fs::write(
        dir.path().join("stats.json"),
        crate::demo::state::STATS_JSON,
    )?;
    let env: HashMap<String, String> = HashMap::from([
        ("SOAKD_DEMO_HTTP_URL".to_string(), format!("http://{http}")),
        ("SOAKD_DEMO_GRPC_URL".to_string(), format!("http://{grpc}")),
        (
            "DATABASE_URL".to_string(),
            database_url
                .unwrap_or("postgres://unused@127.0.0.1:1/unused")
                .to_string(),
        ),
    ]);
    let text = include_str!("../../fixtures/demo.yaml");
    let mut cfg = config::parse(text, "fixtures/demo.yaml (embedded)", dir.path(), &env)?;
    if database_url.is_none() {
        cfg.targets.retain(|t| t.kind.type_name() != "postgres");
        cfg.scenarios
            .retain(|s| cfg.targets.iter().any(|t| t.name == s.target));
    }
    Ok(cfg)
}
