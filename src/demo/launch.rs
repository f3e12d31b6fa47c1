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
use std::path::PathBuf;
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
    #[error("the demo target: {0}")]
    Target(String),
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
    // The leak knobs act on their own clock, off the request path.
    let leaking = st.clone();
    let leak = tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::demo::state::LEAK_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            leaking.leak_tick();
        }
    });
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
    leak.abort();
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
    /// The soakd binary to run the target with (`soakd target`), as a process of its own
    /// that the soak judge observes; None runs it inside this process (then nothing of
    /// it is observed: its process would be soakd's).
    pub target_binary: Option<PathBuf>,
}

/// The demo target: a process of its own, or a server inside this one.
enum Running {
    Process(tokio::process::Child),
    InProcess(Target),
}

/// A running demo: the target, the daemon loading it, and the throwaway cluster.
pub struct Demo {
    pub daemon: Daemon,
    /// The target's HTTP and gRPC addresses, and its pid when it is a process of its own.
    pub target_http: SocketAddr,
    pub target_grpc: SocketAddr,
    pub target_pid: Option<u32>,
    /// The throwaway database's URL, when one runs.
    pub database_url: Option<String>,
    /// Why there is no database, when there is none but could have been.
    pub notice: Option<String>,
    target: Running,
    cluster: Option<Cluster>,
    grace: Duration,
}

/// An address to hand to a child: port 0 becomes a free port found here.
fn reserve(addr: SocketAddr) -> Result<SocketAddr, LaunchError> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let l =
        std::net::TcpListener::bind(addr).map_err(|source| LaunchError::Listen { addr, source })?;
    Ok(l.local_addr()?)
}

/// `soakd target` as a child process, answering on `http` once this returns.
async fn spawn_target(
    bin: &std::path::Path,
    http: SocketAddr,
    grpc: SocketAddr,
    database_url: Option<&str>,
    flush: Duration,
) -> Result<tokio::process::Child, LaunchError> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "target",
        "--listen",
        &http.to_string(),
        "--grpc-listen",
        &grpc.to_string(),
        "--flush-interval",
        &format!("{}ms", flush.as_millis()),
    ])
    .env_remove("DATABASE_URL")
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .kill_on_drop(true);
    if let Some(u) = database_url {
        cmd.args(["--database-url", u]);
    }
    let mut child = cmd.spawn()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .map_err(|e| LaunchError::Target(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(LaunchError::Target(format!(
                "`{} target` exited: {status}",
                bin.display()
            )));
        }
        if let Ok(r) = client.get(format!("http://{http}/healthz")).send().await {
            if r.status().is_success() {
                return Ok(child);
            }
        }
        if Instant::now() > deadline {
            let _ = child.start_kill();
            return Err(LaunchError::Target(format!(
                "the demo target did not answer on {http} within 30 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
        let metrics;
        let (target, http, grpc, pid, cfg) = match &opts.target_binary {
            Some(bin) => {
                let (http, grpc) = (reserve(opts.target_listen)?, reserve(opts.grpc_listen)?);
                let child = spawn_target(
                    bin,
                    http,
                    grpc,
                    database_url.as_deref(),
                    opts.flush_interval,
                )
                .await?;
                let pid = child.id();
                let cfg = demo_config(http, grpc, database_url.as_deref(), pid)?;
                metrics = Arc::new(Metrics::new(cfg.quantile_window));
                (Running::Process(child), http, grpc, pid, cfg)
            }
            None => {
                // The target first: the config names its addresses.
                let target_l = bind(opts.target_listen).await?;
                let grpc_l = bind(opts.grpc_listen).await?;
                let (http, grpc) = (target_l.local_addr()?, grpc_l.local_addr()?);
                let cfg = demo_config(http, grpc, database_url.as_deref(), None)?;
                // One registry for soakd and the target's buffered writer, so soakd's
                // /metrics and page show the writer the demo's events go through.
                metrics = Arc::new(Metrics::new(cfg.quantile_window));
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
                    None => store::Store::memory_buffered(opts.flush_interval)
                        .map_err(DemoError::from)?,
                };
                let st = DemoState::with_store(Knobs::default(), store, target_metrics)?;
                let target = Target::spawn(target_l, Some(grpc_l), st)?;
                (Running::InProcess(target), http, grpc, None, cfg)
            }
        };
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
            target_http: http,
            target_grpc: grpc,
            target_pid: pid,
            database_url,
            notice,
            target,
            cluster,
            grace,
        })
    }

    /// Stops the daemon (draining for its grace period), then the target (flushing its
    /// progress: a process on SIGTERM, as `soakd target` does), then removes the
    /// database. Returns the entries the in-process target could not flush (a target
    /// process reports its own).
    pub async fn stop(self) -> Result<usize, LaunchError> {
        self.daemon.shutdown(self.grace).await;
        let left = match self.target {
            Running::InProcess(t) => t.stop().await?,
            Running::Process(mut child) => {
                if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                    // SAFETY: kill(2) on our own child's pid; no memory is touched.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
                let waited =
                    tokio::time::timeout(DRAIN_FOR + Duration::from_secs(5), child.wait()).await;
                if waited.is_err() {
                    let _ = child.kill().await;
                }
                0
            }
        };
        if let Some(c) = self.cluster {
            tokio::task::spawn_blocking(move || drop(c)).await?;
        }
        Ok(left)
    }
}

/// The embedded demo config pointed at the target and the database; without a database
/// its statistics target and the scenarios on it are dropped.
/// With the target's pid, the API target observes that process (and its /metrics, as
/// the embedded config says); without one (an in-process target) the API target is not
/// observed, since its process would be soakd's. The database is observed as every
/// postgres target is.
fn demo_config(
    http: SocketAddr,
    grpc: SocketAddr,
    database_url: Option<&str>,
    target_pid: Option<u32>,
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
        cfg.observe
            .retain(|o| cfg.targets.iter().any(|t| t.name == o.target));
    }
    match target_pid {
        Some(pid) => {
            if let Some(o) = cfg.observe.iter_mut().find(|o| o.target == "challenge-api") {
                o.process = Some(config::observe::ProcessRef::Pid(pid));
            }
        }
        None => cfg.observe.retain(|o| o.target != "challenge-api"),
    }
    Ok(cfg)
}
