//! The `soakd` command line. Everything here is argument handling and exit codes;
//! the work is in the library.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use soakd::app::{Daemon, Options, Shard};
use soakd::config;
use soakd::demo::{self, DemoState, Knobs};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// mimalloc: the load path allocates per request (reqwest, hyper, tasks); glibc malloc
/// cost about 10 % of soakd's CPU at 5,000 req/s and kept memory after bursts.
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The heap-profiling build (`--features dhat-heap`; `PROFILE=dhat scripts/bench/longsoak.sh`).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

#[derive(Parser)]
#[command(
    name = "soakd",
    version,
    about = "An always-on, Prometheus-native load daemon for staging"
)]
struct Cli {
    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the scenarios of a config file until SIGTERM/SIGINT (SIGHUP reloads).
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Admin server address (overrides the config's `listen`).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Run shard i of n: every scenario's rate is divided by n.
        #[arg(long)]
        shard: Option<Shard>,
        /// Stop by itself after this long (e.g. 20s, 30m).
        #[arg(long, value_parser = parse_dur)]
        duration: Option<Duration>,
        /// Print a JSON summary of the run to stdout at exit.
        #[arg(long)]
        summary: bool,
        /// Stop once the config's capacity search has finished (exit 1 if it failed).
        #[arg(long)]
        exit_after_search: bool,
    },
    /// Validate a config file and print what would run.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The embedded default: the demo target (HTTP + gRPC), a throwaway PostgreSQL when
    /// the machine has its binaries, and soakd loading them with fixtures/demo.yaml.
    Demo {
        /// soakd's admin server address.
        #[arg(long, default_value = config::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// The demo target's HTTP address (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        target_listen: SocketAddr,
        /// The demo target's gRPC address (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        grpc_listen: SocketAddr,
        /// Keep progress in memory even when PostgreSQL binaries are found.
        #[arg(long)]
        no_postgres: bool,
        /// Stop by itself after this long.
        #[arg(long, value_parser = parse_dur)]
        duration: Option<Duration>,
    },
    /// Render a stored capacity run as the performance-baseline report (Markdown + SVG).
    Report {
        /// The run id, or `latest`.
        #[arg(long, default_value = "latest")]
        run: String,
        /// Write report.md and the charts here (default: the Markdown to stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Read the store the config's `results:` names.
        #[arg(long, short, conflicts_with_all = ["results_dir", "results_url"])]
        config: Option<PathBuf>,
        /// A JSONL results directory (default ./results).
        #[arg(long, conflicts_with = "results_url")]
        results_dir: Option<PathBuf>,
        /// A PostgreSQL results database.
        #[arg(long, env = "SOAKD_RESULTS_URL")]
        results_url: Option<String>,
        /// List the stored runs instead.
        #[arg(long)]
        list: bool,
        /// Print the stored run (every level's measurements) as JSON instead.
        #[arg(long, conflicts_with_all = ["list", "out"])]
        json: bool,
    },
    /// Run only the demo target (a challenge-service look-alike).
    Target {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Also serve the gRPC event handler here (e.g. 127.0.0.1:6565).
        #[arg(long)]
        grpc_listen: Option<SocketAddr>,
        /// Keep goal progress in this PostgreSQL database (buffered writer) instead of memory.
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
        /// Added latency in ms, "MIN-MAX" (the seed's mock platform: 50-200).
        #[arg(long)]
        latency_ms: Option<String>,
        /// Fraction of requests answered 500.
        #[arg(long, default_value_t = 0.0)]
        error_ratio: f64,
        /// Requests processed at once (0 = unlimited).
        #[arg(long, default_value_t = 0)]
        concurrency_limit: usize,
        /// Every this many ms, stall all requests for --stall-for-ms.
        #[arg(long, default_value_t = 0)]
        stall_every_ms: u64,
        #[arg(long, default_value_t = 0)]
        stall_for_ms: u64,
    },
}

fn parse_dur(s: &str) -> Result<Duration, String> {
    soakd::units::parse_duration(s)
        .ok_or_else(|| format!("expected a duration like 30s, got {s:?}"))
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// An error that maps to exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logs(cli.log_format);
    // Dropped when main returns: writes the profile to $SOAKD_DHAT_FILE.
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::builder()
        .file_name(std::env::var_os("SOAKD_DHAT_FILE").unwrap_or_else(|| "dhat-heap.json".into()))
        .build();
    #[cfg(not(feature = "dhat-heap"))]
    soakd::metrics::memory::set_allocator_committed(mimalloc_committed);
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("soakd: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load_or_usage(path: &Path) -> anyhow::Result<config::Config> {
    config::load(path).map_err(|e| UsageError(e.to_string()).into())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("soakd-load")
        .on_thread_park(return_freed_memory)
        .build()
        .context("starting the runtime")
}

#[cfg(not(feature = "dhat-heap"))]
/// mimalloc's committed bytes (kept without its debug statistics: the OS layer counts
/// them always).
fn mimalloc_committed() -> u64 {
    let (mut elapsed, mut user, mut system) = (0usize, 0usize, 0usize);
    let (mut rss, mut peak_rss, mut commit, mut peak_commit, mut faults) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    // SAFETY: every pointer is to a live local; mi_process_info only writes through them.
    unsafe {
        libmimalloc_sys::mi_process_info(
            &mut elapsed,
            &mut user,
            &mut system,
            &mut rss,
            &mut peak_rss,
            &mut commit,
            &mut peak_commit,
            &mut faults,
        )
    };
    commit as u64
}

/// How often an idle load thread hands memory it freed back to the OS.
const COLLECT_EVERY: Duration = Duration::from_secs(2);

/// Called when a load thread runs out of work. A burst (a target stall piles up
/// in-flight operations and connections) allocates megabytes that are freed when it
/// ends, but mimalloc keeps pages of its per-thread heaps that hold a few survivors,
/// so RSS stepped up with every burst in the 30-minute soak. A forced collection on
/// an idle thread, at most every [`COLLECT_EVERY`], returns them.
fn return_freed_memory() {
    use std::cell::Cell;
    use std::time::Instant;
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    LAST.with(|last| {
        let now = Instant::now();
        if last
            .get()
            .is_some_and(|t| now.duration_since(t) < COLLECT_EVERY)
        {
            return;
        }
        last.set(Some(now));
        // SAFETY: mi_collect has no preconditions; it only walks this thread's heap
        // (soakd's global allocator is mimalloc).
        unsafe { libmimalloc_sys::mi_collect(true) };
    });
}

fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::CheckConfig { config } => {
            let cfg = load_or_usage(&config)?;
            print!("{}", cfg.describe());
            println!("\n{}: ok", config.display());
            Ok(())
        }
        Cmd::Run {
            config,
            listen,
            shard,
            duration,
            summary,
            exit_after_search,
        } => {
            let cfg = load_or_usage(&config)?;
            let grace = cfg.shutdown_grace;
            let path = config.clone();
            let loader: soakd::engine::Loader = Box::new(move || config::load(&path));
            if exit_after_search && cfg.search.is_none() {
                return Err(UsageError(
                    "--exit-after-search: the config has no `search:` section".into(),
                )
                .into());
            }
            runtime()?.block_on(async move {
                let daemon = Daemon::start(
                    cfg,
                    Some(loader),
                    Options {
                        listen,
                        shard,
                        config_path: Some(config.clone()),
                        metrics: None,
                    },
                )?;
                let why = daemon
                    .wait_for_stop_or_search(duration, exit_after_search)
                    .await?;
                tracing::info!(reason = why, "stopping: draining in-flight operations");
                let s = daemon.shutdown(grace).await;
                if summary {
                    println!("{}", serde_json::to_string_pretty(&s)?);
                }
                if why == "capacity search failed" {
                    anyhow::bail!("the capacity search failed (see the log above)");
                }
                Ok(())
            })
        }
        Cmd::Report {
            run,
            out,
            config,
            results_dir,
            results_url,
            list,
            json,
        } => {
            use soakd::capacity::{report, store::Store};
            use soakd::config::search::ResultsConfig;
            let cfg = match (config, results_dir, results_url) {
                (Some(c), _, _) => load_or_usage(&c)?.results,
                (None, _, Some(u)) => ResultsConfig::Postgres(config::Secret(u)),
                (None, Some(d), None) => ResultsConfig::Dir(d),
                (None, None, None) => ResultsConfig::Dir(PathBuf::from("results")),
            };
            runtime()?.block_on(async move {
                let store = match &cfg {
                    ResultsConfig::Dir(d) => Store::Jsonl(d.clone()),
                    pg => Store::open(pg).await?,
                };
                if list {
                    for r in store.list_runs().await? {
                        stdout_line(&format!(
                            "{}\t{}\t{:?}\t{} levels\t{}",
                            r.id,
                            r.name,
                            r.status,
                            r.levels,
                            soakd::capacity::store::format_utc(r.started_at)
                        ))?;
                    }
                    return Ok(());
                }
                let run = store.load_run(&run).await?;
                if json {
                    stdout_line(&serde_json::to_string_pretty(&run)?)?;
                    return Ok(());
                }
                let rep = report::render(&run);
                match out {
                    Some(dir) => {
                        for p in report::write(&rep, &dir)
                            .with_context(|| format!("writing {}", dir.display()))?
                        {
                            stdout_line(&p.display().to_string())?;
                        }
                    }
                    None => stdout_line(rep.markdown.trim_end())?,
                }
                Ok(())
            })
        }
        Cmd::Demo {
            listen,
            target_listen,
            grpc_listen,
            no_postgres,
            duration,
        } => runtime()?.block_on(run_demo(
            listen,
            target_listen,
            grpc_listen,
            no_postgres,
            duration,
        )),
        Cmd::Target {
            listen,
            grpc_listen,
            database_url,
            latency_ms,
            error_ratio,
            concurrency_limit,
            stall_every_ms,
            stall_for_ms,
        } => {
            let (latency_min_ms, latency_max_ms) = match latency_ms.as_deref() {
                None => (0, 0),
                Some(s) => {
                    let (a, b) = s.split_once('-').unwrap_or((s, s));
                    let a: u64 = a
                        .trim()
                        .parse()
                        .map_err(|_| UsageError(format!("--latency-ms: bad value {s:?}")))?;
                    let b: u64 = b
                        .trim()
                        .parse()
                        .map_err(|_| UsageError(format!("--latency-ms: bad value {s:?}")))?;
                    (a, b)
                }
            };
            let knobs = Knobs {
                latency_min_ms,
                latency_max_ms,
                error_ratio,
                concurrency_limit,
                stall_every_ms,
                stall_for_ms,
            };
            knobs.validate().map_err(UsageError)?;
            runtime()?.block_on(async move {
                let store = match &database_url {
                    Some(url) => demo::store::postgres(url, 20, None)
                        .await
                        .map_err(|e| anyhow::anyhow!("database: {e}"))?,
                    None => demo::store::Store::memory(),
                };
                let st = DemoState::with_store(knobs, store)?;
                let l = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                eprintln!(
                    "demo target on http://{} (knobs: GET/PUT /admin/knobs; progress in {})",
                    l.local_addr()?,
                    if database_url.is_some() {
                        "PostgreSQL"
                    } else {
                        "memory"
                    }
                );
                let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
                let grpc = match grpc_listen {
                    Some(a) => {
                        let gl = tokio::net::TcpListener::bind(a)
                            .await
                            .with_context(|| format!("cannot listen on {a}"))?;
                        eprintln!("demo gRPC event handler on {}", gl.local_addr()?);
                        let mut rx = stop_tx.subscribe();
                        Some(tokio::spawn(demo::grpc::serve(
                            gl,
                            st.clone(),
                            async move {
                                let _ = rx.recv().await;
                            },
                        )))
                    }
                    None => None,
                };
                demo::serve_http(l, st.clone(), shutdown_signal()).await?;
                let _ = stop_tx.send(());
                if let Some(g) = grpc {
                    let _ = g.await;
                }
                st.store
                    .drain(std::time::Instant::now() + Duration::from_secs(10))
                    .await;
                Ok(())
            })
        }
    }
}

/// Writes a line to stdout; a closed pipe (`soakd report | head`) ends the output
/// quietly instead of panicking as `println!` would.
fn stdout_line(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

async fn shutdown_signal() {
    use futures::StreamExt;
    use signal_hook::consts::{SIGINT, SIGTERM};
    match signal_hook_tokio::Signals::new([SIGINT, SIGTERM]) {
        Ok(mut s) => {
            s.next().await;
        }
        Err(e) => {
            tracing::error!("cannot watch signals: {e}");
            futures::future::pending::<()>().await
        }
    }
}

async fn run_demo(
    listen: SocketAddr,
    target_listen: SocketAddr,
    grpc_listen: SocketAddr,
    no_postgres: bool,
    duration: Option<Duration>,
) -> anyhow::Result<()> {
    // A throwaway PostgreSQL when the machine has the binaries.
    let cluster = if no_postgres {
        None
    } else {
        match tokio::task::spawn_blocking(|| soakd::pg::cluster::Cluster::start(false)).await? {
            Ok(c) => Some(c),
            Err(soakd::pg::cluster::ClusterError::NoBinaries) => {
                eprintln!("PostgreSQL binaries not found: the demo target keeps progress in memory and soakd exports no pg_* series. Install the `postgresql` package to include the database.");
                None
            }
            Err(e) => {
                eprintln!("could not start a throwaway PostgreSQL ({e}); continuing without it");
                None
            }
        }
    };
    let db_url = cluster.as_ref().map(|c| c.url("postgres"));
    // The demo target: HTTP and gRPC, in this process.
    let l = tokio::net::TcpListener::bind(target_listen)
        .await
        .with_context(|| format!("cannot listen on {target_listen}"))?;
    let target_addr = l.local_addr()?;
    let gl = tokio::net::TcpListener::bind(grpc_listen)
        .await
        .with_context(|| format!("cannot listen on {grpc_listen}"))?;
    let grpc_addr = gl.local_addr()?;

    // The embedded config and fixtures, written where the loader can find them.
    let dir = tempfile::tempdir().context("creating a temp dir for the demo config")?;
    std::fs::write(dir.path().join("users.json"), demo::USERS_JSON)?;
    std::fs::write(dir.path().join("stats.json"), demo::STATS_JSON)?;
    let text = include_str!("../fixtures/demo.yaml");
    let env: HashMap<String, String> = HashMap::from([
        (
            "SOAKD_DEMO_HTTP_URL".to_string(),
            format!("http://{target_addr}"),
        ),
        (
            "SOAKD_DEMO_GRPC_URL".to_string(),
            format!("http://{grpc_addr}"),
        ),
        (
            "DATABASE_URL".to_string(),
            db_url
                .clone()
                .unwrap_or_else(|| "postgres://unused@127.0.0.1:1/unused".into()),
        ),
    ]);
    let mut cfg = config::parse(text, "fixtures/demo.yaml (embedded)", dir.path(), &env)
        .map_err(|e| UsageError(e.to_string()))?;
    if db_url.is_none() {
        // No database: drop the statistics target (no scenario uses it).
        cfg.targets.retain(|t| t.kind.type_name() != "postgres");
        cfg.scenarios
            .retain(|s| cfg.targets.iter().any(|t| t.name == s.target));
    }
    // One registry for soakd and the target's buffered writer, so soakd's /metrics and
    // page show the writer the demo's events go through.
    let metrics = std::sync::Arc::new(soakd::metrics::Metrics::new(cfg.quantile_window)?);
    let store = match &db_url {
        Some(u) => demo::store::postgres(u, 20, Some(metrics.buffer("demo-target")))
            .await
            .map_err(|e| anyhow::anyhow!("demo database: {e}"))?,
        None => demo::store::Store::memory(),
    };
    let st = DemoState::with_store(Knobs::default(), store)?;

    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut rx1 = stop_tx.subscribe();
    let mut rx2 = stop_tx.subscribe();
    let http_task = tokio::spawn(demo::serve_http(l, st.clone(), async move {
        let _ = rx1.recv().await;
    }));
    let grpc_task = tokio::spawn(demo::grpc::serve(gl, st.clone(), async move {
        let _ = rx2.recv().await;
    }));

    let grace = cfg.shutdown_grace;
    let daemon = Daemon::start(
        cfg,
        None,
        Options {
            listen: Some(listen),
            metrics: Some(metrics),
            ..Options::default()
        },
    )?;
    let a = daemon.addr();
    eprintln!(
        "\nsoakd demo is running.\n  dashboard     http://{a}/\n  metrics       http://{a}/metrics\n  status API    http://{a}/api/v1/status\n  demo target   http://{target_addr}/v1/challenges, gRPC {grpc_addr} (knobs: http://{target_addr}/admin/knobs, its metrics: http://{target_addr}/metrics)\n  database      {}\nCtrl-C stops everything{}.\n",
        db_url.as_deref().map(config::redact_url).unwrap_or_else(|| "none (in-memory progress)".into()),
        if db_url.is_some() { " and removes the database" } else { "" }
    );
    let why = daemon.wait_for_stop(duration).await?;
    tracing::info!(reason = why, "stopping the demo");
    daemon.shutdown(grace).await;
    let _ = stop_tx.send(());
    let _ = http_task.await;
    let _ = grpc_task.await;
    let left = st
        .store
        .drain(std::time::Instant::now() + Duration::from_secs(10))
        .await;
    if left > 0 {
        tracing::warn!(entries = left, "demo target could not flush everything");
    }
    drop(st);
    if let Some(c) = cluster {
        tokio::task::spawn_blocking(move || drop(c)).await?;
    }
    Ok(())
}
