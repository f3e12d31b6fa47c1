//! The `soakd` command line. Everything here is argument handling and exit codes;
//! the work is in the library.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 usage or config error, 3 `report --compare
//! --fail-on-regression` found a regression.

// Nothing that input, the network or a database can make fail may panic: errors are
// values (clippy.toml lets tests unwrap).
#![deny(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use soakd::app::{Daemon, Options, Shard, StopReason};
use soakd::config;
use soakd::demo::launch::{Demo, DemoOptions, LaunchError, Target, TargetOptions};
use soakd::demo::Knobs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

mod alloc;

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
    Run(RunArgs),
    /// Validate a config file and print what would run.
    CheckConfig(CheckConfigArgs),
    /// The embedded default: the demo target (HTTP + gRPC), a throwaway PostgreSQL when
    /// the machine has its binaries, and soakd loading them with fixtures/demo.yaml.
    Demo(DemoArgs),
    /// Render a stored capacity run as the performance-baseline report (Markdown + SVG).
    Report(ReportArgs),
    /// Run only the demo target (a challenge-service look-alike).
    Target(TargetArgs),
}

#[derive(Args)]
struct RunArgs {
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
}

#[derive(Args)]
struct CheckConfigArgs {
    #[arg(long, short)]
    config: PathBuf,
}

#[derive(Args)]
struct DemoArgs {
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
    /// How often the target flushes buffered stat updates (they show in its API after
    /// the flush; the seed's interval is 1s).
    #[arg(long, value_parser = parse_flush, default_value = "1s")]
    flush_interval: Duration,
    /// Stop by itself after this long.
    #[arg(long, value_parser = parse_dur)]
    duration: Option<Duration>,
}

#[derive(Args)]
struct ReportArgs {
    /// The soak report of a running daemon (`--url`) instead of a capacity run: what is
    /// getting worse in the system under test, as HTML with its charts inline (or JSON
    /// with --json), to standard output or --out FILE.
    #[arg(long, requires = "url", conflicts_with_all = ["list", "compare", "set_baseline", "config", "results_dir", "results_url"])]
    soak: bool,
    /// A deploy's report from a running daemon (`--url`): its releases, verdict, every
    /// measure compared and a chart of each op either side of it, as HTML (or JSON with
    /// --json), to standard output or --out FILE. An id from /api/v1/deploys, or `latest`.
    #[arg(long, value_name = "ID", requires = "url", conflicts_with_all = ["soak", "list", "compare", "set_baseline", "config", "results_dir", "results_url"])]
    deploy: Option<String>,
    /// The daemon to ask (with --soak or --deploy), e.g. http://127.0.0.1:9400.
    #[arg(long)]
    url: Option<String>,
    /// How far back the soak report looks (with --soak; default 24h, at most the window).
    #[arg(long, requires = "soak", value_parser = parse_since)]
    since: Option<std::time::Duration>,
    /// The run id, or `latest`.
    #[arg(long, default_value = "latest")]
    run: String,
    /// Write report.md and the charts here (default: the Markdown to stdout); with
    /// --soak, the HTML page to this file.
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
    /// Print the stored run (every level's measurements) as JSON instead; with
    /// --compare, the comparison.
    #[arg(long, conflicts_with = "list")]
    json: bool,
    /// Compare run B against the reference run A (ids, `latest`, or `baseline`: the
    /// baseline of the other run's search): maximum sustainable level, p95/p99 and
    /// errors at each common level, and a verdict — regressed, improved or unchanged.
    /// A may be several runs separated by commas (repeated baselines): a change must
    /// then also lie outside their spread from run to run.
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with_all = ["list", "set_baseline"])]
    compare: Option<Vec<String>>,
    /// The comparison's tolerance (e.g. 10%; default: the config's
    /// search.regression_tolerance, else 10%).
    #[arg(long, value_parser = parse_tolerance, requires = "compare")]
    tolerance: Option<f64>,
    /// With --compare: exit with status 3 when B regressed against A.
    #[arg(long, requires = "compare")]
    fail_on_regression: bool,
    /// Make a finished run (an id or `latest`) the baseline of its search.
    #[arg(long, value_name = "ID", conflicts_with_all = ["list", "json", "out"])]
    set_baseline: Option<String>,
}

fn parse_since(s: &str) -> Result<std::time::Duration, String> {
    soakd::units::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("expected a duration like 24h or 90m, got {s:?}"))
}

/// `report --soak`: the daemon's soak report, fetched and written as it is.
fn soak_report(a: &ReportArgs, url: &str) -> anyhow::Result<()> {
    let since = a.since.unwrap_or(std::time::Duration::from_secs(86_400));
    let base = url.trim_end_matches('/');
    let path = if a.json {
        "/api/v1/soak/report"
    } else {
        "/soak/report"
    };
    fetch_report(a, format!("{base}{path}?since={}s", since.as_secs().max(1)))
}

/// `report --deploy ID`: a deploy's report, fetched and written as it is.
fn deploy_report(a: &ReportArgs, url: &str, id: &str) -> anyhow::Result<()> {
    let ok = id == "latest"
        || id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(UsageError(format!("--deploy: {id:?} is not a deploy id")).into());
    }
    let base = url.trim_end_matches('/');
    let path = if a.json {
        "/api/v1/deploys"
    } else {
        "/deploys"
    };
    fetch_report(a, format!("{base}{path}/{id}"))
}

/// Fetches one of the daemon's reports and writes it as it is (to --out or stdout).
fn fetch_report(a: &ReportArgs, target: String) -> anyhow::Result<()> {
    let body = runtime()?.block_on(async {
        let resp = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?
            .get(&target)
            .send()
            .await
            .with_context(|| format!("asking {target}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            anyhow::bail!("{target}: HTTP {status}: {}", text.trim());
        }
        Ok(text)
    })?;
    match &a.out {
        Some(file) => {
            std::fs::write(file, body).with_context(|| format!("writing {}", file.display()))
        }
        None => stdout_line(body.trim_end()),
    }
}

fn parse_tolerance(s: &str) -> Result<f64, String> {
    soakd::units::parse_ratio(s)
        .filter(|r| *r < 1.0)
        .ok_or_else(|| format!("expected a tolerance like 10% or 0.1 (under 100%), got {s:?}"))
}

#[derive(Args)]
struct TargetArgs {
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
    /// How often buffered stat updates are flushed (to PostgreSQL, or in memory); the
    /// API shows an update only after its flush.
    #[arg(long, value_parser = parse_flush, default_value = "1s")]
    flush_interval: Duration,
}

fn parse_dur(s: &str) -> Result<Duration, String> {
    soakd::units::parse_duration(s)
        .ok_or_else(|| format!("expected a duration like 30s, got {s:?}"))
}

/// A flush interval: 10ms to 1h.
fn parse_flush(s: &str) -> Result<Duration, String> {
    let d = parse_dur(s)?;
    if d < Duration::from_millis(10) || d > Duration::from_secs(3600) {
        return Err(format!("a flush interval is between 10ms and 1h, not {s}"));
    }
    Ok(d)
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

/// `report --compare --fail-on-regression` found a regression: exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("run {0} regressed against run {1}")]
struct Regressed(String, String);

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
    // Dropped when main returns (the dhat build writes its profile then).
    let _alloc = alloc::start();
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
        Err(e) if e.downcast_ref::<Regressed>().is_some() => {
            eprintln!("soakd: {e}");
            ExitCode::from(3)
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
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all().thread_name("soakd-load");
    alloc::tune_runtime(&mut b);
    b.build().context("starting the runtime")
}

fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::CheckConfig(a) => check_config(a),
        Cmd::Run(a) => run_daemon(a),
        Cmd::Report(a) => report(a),
        Cmd::Demo(a) => runtime()?.block_on(demo(a)),
        Cmd::Target(a) => target(a),
    }
}

/// `check-config`: what would run, or every error with its line.
fn check_config(a: CheckConfigArgs) -> anyhow::Result<()> {
    let cfg = load_or_usage(&a.config)?;
    print!("{}", cfg.describe());
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    println!("\n{}: ok", a.config.display());
    Ok(())
}

/// `run`: the daemon until a signal, `--duration`, or (with `--exit-after-search`) the
/// end of the capacity search; exit 1 when the search failed.
fn run_daemon(a: RunArgs) -> anyhow::Result<()> {
    let cfg = load_or_usage(&a.config)?;
    if a.exit_after_search && cfg.search.is_none() {
        return Err(
            UsageError("--exit-after-search: the config has no `search:` section".into()).into(),
        );
    }
    let grace = cfg.shutdown_grace;
    let path = a.config.clone();
    let loader: soakd::engine::Loader = Box::new(move || config::load(&path));
    runtime()?.block_on(async move {
        let daemon = Daemon::start(
            cfg,
            Some(loader),
            Options {
                listen: a.listen,
                shard: a.shard,
                config_path: Some(a.config.clone()),
                metrics: None,
            },
        )?;
        let why = daemon
            .wait_for_stop_or_search(a.duration, a.exit_after_search)
            .await?;
        tracing::info!(reason = %why, "stopping: draining in-flight operations");
        let s = daemon.shutdown(grace).await;
        if a.summary {
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
        if why == StopReason::SearchFailed {
            anyhow::bail!("the capacity search failed (see the log above)");
        }
        Ok(())
    })
}

/// `report`: a stored run as Markdown (stdout) or Markdown and charts (`--out`), the
/// list of runs, or a run as JSON.
fn report(a: ReportArgs) -> anyhow::Result<()> {
    use soakd::capacity::{compare, report, store::Store};
    if let (true, Some(url)) = (a.soak, a.url.as_deref()) {
        return soak_report(&a, url);
    }
    if let (Some(id), Some(url)) = (a.deploy.as_deref(), a.url.as_deref()) {
        return deploy_report(&a, url, id);
    }
    if a.url.is_some() {
        return Err(UsageError("--url is for --soak or --deploy".into()).into());
    }
    if a.json && a.out.is_some() {
        return Err(UsageError(
            "--json prints the run to standard output; --out is for the Markdown report (with --soak, either)".into(),
        )
        .into());
    }
    use soakd::config::search::ResultsConfig;
    let config = a.config.as_deref().map(load_or_usage).transpose()?;
    let tolerance = a
        .tolerance
        .or_else(|| {
            config
                .as_ref()
                .and_then(|c| c.search.as_ref())
                .map(|s| s.regression_tolerance)
        })
        .unwrap_or(compare::DEFAULT_TOLERANCE);
    let cfg = match (config, a.results_dir, a.results_url) {
        (Some(c), _, _) => c.results,
        (None, _, Some(u)) => ResultsConfig::Postgres(config::Secret(u)),
        (None, Some(d), None) => ResultsConfig::Dir(d),
        (None, None, None) => ResultsConfig::Dir(PathBuf::from("results")),
    };
    runtime()?.block_on(async move {
        let store = match &cfg {
            ResultsConfig::Dir(d) => Store::Jsonl(d.clone()),
            pg => Store::open(pg).await?,
        };
        if a.list {
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
        if let Some(id) = &a.set_baseline {
            let run = store.set_baseline(id, soakd::units::now_unix()).await?;
            return stdout_line(&format!(
                "baseline of search {:?}: {}",
                run.record.name, run.record.id
            ));
        }
        if let Some([ida, idb]) = a.compare.as_deref() {
            let (refs, rb) = store.load_baselines(ida, idb).await?;
            let c = compare::compare_with(&refs.iter().collect::<Vec<_>>(), &rb, tolerance)?;
            if a.json {
                stdout_line(&serde_json::to_string_pretty(&c)?)?;
            } else {
                let rep = report::compare::render(&c, &refs[0], &rb);
                write_or_print(&rep, a.out.as_deref())?;
            }
            if a.fail_on_regression && c.change == compare::Change::Regressed {
                return Err(Regressed(c.b.id, c.a.id).into());
            }
            return Ok(());
        }
        let run = store.load_run(&a.run).await?;
        if a.json {
            return stdout_line(&serde_json::to_string_pretty(&run)?);
        }
        write_or_print(&report::render(&run), a.out.as_deref())
    })
}

/// A report's Markdown and charts into `out`, or its Markdown to stdout.
fn write_or_print(rep: &soakd::capacity::report::Report, out: Option<&Path>) -> anyhow::Result<()> {
    match out {
        Some(dir) => {
            for p in soakd::capacity::report::write(rep, dir)
                .with_context(|| format!("writing {}", dir.display()))?
            {
                stdout_line(&p.display().to_string())?;
            }
            Ok(())
        }
        None => stdout_line(rep.markdown.trim_end()),
    }
}

/// `demo`: the demo target, a throwaway database and a daemon loading them, until a
/// signal or `--duration`.
async fn demo(a: DemoArgs) -> anyhow::Result<()> {
    let d = Demo::start(DemoOptions {
        listen: a.listen,
        target_listen: a.target_listen,
        grpc_listen: a.grpc_listen,
        no_postgres: a.no_postgres,
        flush_interval: a.flush_interval,
        // The target runs as a process of its own, so what the soak observes is not soakd.
        target_binary: Some(std::env::current_exe().context("finding soakd's own binary")?),
    })
    .await
    .map_err(usage_if_config)?;
    if let Some(n) = &d.notice {
        eprintln!("{n}");
    }
    let (addr, http, grpc) = (d.daemon.addr(), d.target_http, d.target_grpc);
    let pid = d
        .target_pid
        .map(|p| format!(", pid {p}"))
        .unwrap_or_default();
    eprintln!(
        "\nsoakd demo is running.\n  dashboard     http://{addr}/\n  metrics       http://{addr}/metrics\n  status API    http://{addr}/api/v1/status\n  demo target   http://{http}/v1/challenges, gRPC {grpc}{pid} (knobs: http://{http}/admin/knobs, its metrics: http://{http}/metrics)\n  soak report   http://{addr}/soak/report (a leak: curl -X PUT http://{http}/admin/knobs -d '{{\"leak_bytes_per_second\": 1048576}}')\n  database      {}\nCtrl-C stops everything{}.\n",
        d.database_url.as_deref().map(config::redact_url).unwrap_or_else(|| "none (in-memory progress)".into()),
        if d.database_url.is_some() { " and removes the database" } else { "" }
    );
    let why = d.daemon.wait_for_stop(a.duration).await?;
    tracing::info!(reason = %why, "stopping the demo");
    let left = d.stop().await?;
    if left > 0 {
        tracing::warn!(entries = left, "demo target could not flush everything");
    }
    Ok(())
}

/// `target`: the demo target alone, until SIGINT or SIGTERM.
fn target(a: TargetArgs) -> anyhow::Result<()> {
    let knobs = Knobs {
        latency_min_ms: 0,
        latency_max_ms: 0,
        error_ratio: a.error_ratio,
        concurrency_limit: a.concurrency_limit,
        stall_every_ms: a.stall_every_ms,
        stall_for_ms: a.stall_for_ms,
        ..Knobs::default()
    };
    let knobs = match a.latency_ms.as_deref() {
        None => knobs,
        Some(s) => {
            let (lo, hi) = parse_latency_range(s)
                .ok_or_else(|| UsageError(format!("--latency-ms: bad value {s:?}")))?;
            Knobs {
                latency_min_ms: lo,
                latency_max_ms: hi,
                ..knobs
            }
        }
    };
    knobs.validate().map_err(UsageError)?;
    let in_db = a.database_url.is_some();
    runtime()?.block_on(async move {
        let t = Target::start(TargetOptions {
            listen: a.listen,
            grpc_listen: a.grpc_listen,
            database_url: a.database_url,
            knobs,
            flush_interval: a.flush_interval,
        })
        .await?;
        eprintln!(
            "demo target on http://{} (knobs: GET/PUT /admin/knobs; progress in {})",
            t.http,
            if in_db { "PostgreSQL" } else { "memory" }
        );
        if let Some(g) = t.grpc {
            eprintln!("demo gRPC event handler on {g}");
        }
        shutdown_signal().await;
        t.stop().await?;
        Ok(())
    })
}

/// `--latency-ms`: `MIN-MAX` or one value for both.
fn parse_latency_range(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// The embedded demo config failing to load is a usage error (exit 2), like any config.
fn usage_if_config(e: LaunchError) -> anyhow::Error {
    match e {
        LaunchError::Config(c) => UsageError(c.to_string()).into(),
        other => other.into(),
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
