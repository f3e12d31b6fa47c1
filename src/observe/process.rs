//! A local process of the system under test, read from /proc: resident and anonymous
//! memory (smaps_rollup), open and allowed fds, threads, CPU seconds and start time.
//!
//! The process is named by pid, by a pid file or by a name or command-line pattern; the
//! last two are looked up again whenever the process found before has exited, so a
//! restarted target is followed (and its restart seen by its start time).

use crate::config::observe::ProcessRef;
use crate::observe::reading::{Identity, Reading};
use procfs::process::Process;

/// The process a [`ProcessRef`] names now, if one does.
pub fn resolve(r: &ProcessRef) -> Result<i32, String> {
    match r {
        ProcessRef::Pid(p) => Ok(*p as i32),
        ProcessRef::PidFile(f) => {
            let text =
                std::fs::read_to_string(f).map_err(|e| format!("pid file {}: {e}", f.display()))?;
            text.trim().parse::<i32>().map_err(|_| {
                format!(
                    "pid file {} holds {:?}, not a pid",
                    f.display(),
                    text.trim()
                )
            })
        }
        ProcessRef::Pattern(p) => find(p).ok_or_else(|| format!("no process matches {p:?}")),
    }
}

/// The oldest process (lowest start time) whose name is `pattern`, else whose command
/// line contains it; never soakd itself.
fn find(pattern: &str) -> Option<i32> {
    let me = std::process::id() as i32;
    let mut by_name: Option<(u64, i32)> = None;
    let mut by_cmdline: Option<(u64, i32)> = None;
    for p in procfs::process::all_processes().ok()?.flatten() {
        if p.pid == me {
            continue;
        }
        let Ok(stat) = p.stat() else { continue };
        let key = (stat.starttime, p.pid);
        if stat.comm == pattern {
            by_name = Some(by_name.map_or(key, |b| b.min(key)));
        } else if by_name.is_none() {
            let hit = p
                .cmdline()
                .map(|c| c.join(" ").contains(pattern))
                .unwrap_or(false);
            if hit {
                by_cmdline = Some(by_cmdline.map_or(key, |b| b.min(key)));
            }
        }
    }
    by_name.or(by_cmdline).map(|(_, pid)| pid)
}

/// Follows one [`ProcessRef`]: keeps the pid it found while that process lives.
pub struct ProcessSource {
    what: ProcessRef,
    pid: Option<i32>,
}

impl ProcessSource {
    pub fn new(what: ProcessRef) -> ProcessSource {
        ProcessSource { what, pid: None }
    }

    /// Reads the process into `out`; an error when it cannot be found or read.
    pub fn read(&mut self, out: &mut Reading) -> Result<(), String> {
        let pid = match self.pid {
            Some(p) if Process::new(p).map(|p| p.is_alive()).unwrap_or(false) => p,
            _ => {
                self.pid = None;
                let p = resolve(&self.what)?;
                self.pid = Some(p);
                p
            }
        };
        match read_pid(pid, out) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Gone between the check and the read: look it up again next time.
                self.pid = None;
                Err(e)
            }
        }
    }
}

fn read_pid(pid: i32, out: &mut Reading) -> Result<(), String> {
    let p = Process::new(pid).map_err(|e| format!("process {pid}: {e}"))?;
    let stat = p.stat().map_err(|e| format!("process {pid}: {e}"))?;
    let ticks = procfs::ticks_per_second() as f64;
    let boot = procfs::boot_time_secs().unwrap_or(0) as f64;
    let start = boot + stat.starttime as f64 / ticks;
    out.identity = Some(Identity {
        pid: Some(pid as u32),
        start_time: Some(start),
    });
    out.set("cpu_seconds", (stat.utime + stat.stime) as f64 / ticks);
    out.set("threads", stat.num_threads as f64);
    out.set("start_time_seconds", start);
    match p.smaps_rollup() {
        Ok(r) => {
            let map = r.memory_map_rollup.0.first().map(|m| &m.extension.map);
            if let Some(m) = map {
                if let Some(v) = m.get("Rss") {
                    out.set("rss_bytes", *v as f64);
                }
                if let Some(v) = m.get("Anonymous") {
                    out.set("anon_bytes", *v as f64);
                }
            }
        }
        // Kernels before 4.14 have no smaps_rollup: resident memory from stat.
        Err(_) => out.set("rss_bytes", (stat.rss * procfs::page_size()) as f64),
    }
    match p.fd_count() {
        Ok(n) => out.set("open_fds", n as f64),
        Err(e) => return Err(format!("process {pid}: open fds: {e}")),
    }
    if let Ok(l) = p.limits() {
        if let procfs::process::LimitValue::Value(v) = l.max_open_files.soft_limit {
            out.set("max_fds", v as f64);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_finds_one_by_name() {
        let mut r = Reading::default();
        let mut src = ProcessSource::new(ProcessRef::Pid(std::process::id()));
        src.read(&mut r).unwrap();
        for k in [
            "rss_bytes",
            "anon_bytes",
            "open_fds",
            "threads",
            "cpu_seconds",
            "max_fds",
        ] {
            assert!(r.get(k).is_some_and(|v| v > 0.0), "{k}: {:?}", r.get(k));
        }
        assert!(r.identity.unwrap().start_time.unwrap() > 1.6e9);
        // A child by name; soakd itself is never taken.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = resolve(&ProcessRef::Pattern("sleep".into())).unwrap();
        assert!(pid > 0);
        child.kill().ok();
        child.wait().ok();
        let e = resolve(&ProcessRef::Pattern("no-such-process-xyz".into())).unwrap_err();
        assert!(e.contains("no process matches"), "{e}");
        let e = resolve(&ProcessRef::PidFile("/nonexistent/pid".into())).unwrap_err();
        assert!(e.contains("pid file /nonexistent/pid"), "{e}");
    }
}
