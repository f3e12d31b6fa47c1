//! A throwaway PostgreSQL cluster from the machine's server binaries: initdb into a temp
//! dir, a free port on 127.0.0.1, `pg_stat_statements` preloaded, torn down on drop.
//! Used by the tests, the benchmarks and `soakd demo`.
//!
//! As root, the server runs as the `postgres` user (initdb refuses root).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and PATH); install the `postgresql` package")]
    NoBinaries,
    #[error("{step}: {message}")]
    Step { step: &'static str, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    run_as: Option<String>,
    stopped: bool,
}

/// The directory holding initdb and pg_ctl, newest version first.
pub fn find_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(d) = dirs.pop() {
        return Some(d);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.join("initdb").exists().then_some(p)
}

fn is_root() -> bool {
    // SAFETY-free: read the effective uid from /proc instead of calling libc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn free_port() -> Result<u16, std::io::Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    /// Starts a new cluster. `fast` turns off fsync (tests); benchmarks keep it on.
    pub fn start(fast: bool) -> Result<Cluster, ClusterError> {
        let bin = find_bin().ok_or(ClusterError::NoBinaries)?;
        let dir = tempfile::Builder::new().prefix("soakd-pg.").tempdir()?;
        let run_as = is_root().then(|| "postgres".to_string());
        if run_as.is_some() {
            // The server user must own its directory.
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()?;
            if !st.success() {
                return Err(ClusterError::Step {
                    step: "chown",
                    message: "could not give the data dir to the postgres user".into(),
                });
            }
        }
        let mut c = Cluster {
            dir,
            bin,
            port: 0,
            run_as,
            stopped: true,
        };
        let data = c.data_dir();
        c.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nmax_connections = 200\nshared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\ntrack_io_timing = on\n{}",
            c.dir.path().display(),
            if fast { "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n" } else { "" }
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))?;
        // A port can be taken between choosing and binding; try a few.
        let mut last = None;
        for _ in 0..5 {
            c.port = free_port()?;
            match c.pg_ctl_start() {
                Ok(()) => {
                    c.stopped = false;
                    c.wait_ready(Duration::from_secs(30))?;
                    return Ok(c);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClusterError::Step {
            step: "pg_ctl start",
            message: "no free port".into(),
        }))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn run(&self, step: &'static str, args: &[&str]) -> Result<Output, ClusterError> {
        let exe = self
            .bin
            .join(if step == "initdb" { "initdb" } else { "pg_ctl" });
        let out = match &self.run_as {
            Some(user) => Command::new("runuser")
                .args(["-u", user, "--"])
                .arg(&exe)
                .args(args)
                .current_dir(self.dir.path())
                .output()?,
            None => Command::new(&exe)
                .args(args)
                .current_dir(self.dir.path())
                .output()?,
        };
        if !out.status.success() {
            return Err(ClusterError::Step {
                step,
                message: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        Ok(out)
    }

    fn pg_ctl_start(&self) -> Result<(), ClusterError> {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        let port = format!("-p {}", self.port);
        self.run(
            "pg_ctl start",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-o",
                &port,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .map(|_| ())
    }

    fn wait_ready(&self, timeout: Duration) -> Result<(), ClusterError> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(ClusterError::Step {
            step: "wait",
            message: format!("server on port {} did not accept connections", self.port),
        })
    }

    /// Stops the server (fast mode), keeping the data.
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        if self.stopped {
            return Ok(());
        }
        let data = self.data_dir();
        self.run(
            "pg_ctl stop",
            &["-D", path_str(&data), "-m", "fast", "-w", "stop"],
        )?;
        self.stopped = true;
        Ok(())
    }

    /// Starts a stopped server again on the same port.
    pub fn restart(&mut self) -> Result<(), ClusterError> {
        if !self.stopped {
            return Ok(());
        }
        self.pg_ctl_start()?;
        self.stopped = false;
        self.wait_ready(Duration::from_secs(30))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.stopped {
            let data = self.data_dir();
            let _ = self.run(
                "pg_ctl stop",
                &["-D", path_str(&data), "-m", "immediate", "-w", "stop"],
            );
        }
    }
}
