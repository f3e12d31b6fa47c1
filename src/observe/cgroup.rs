//! A cgroup of the system under test — how a container is watched: its memory (total,
//! anonymous, page cache), CPU seconds and OOM kills.
//!
//! cgroup v2 (one hierarchy): `memory.current`, `memory.stat` (`anon`, `file`),
//! `cpu.stat` (`usage_usec`), `memory.events` (`oom_kill`). cgroup v1 (a hierarchy per
//! controller, as hosts that still mount it have — this one does): the memory
//! controller's `memory.usage_in_bytes`, `memory.stat` (`total_rss`, `total_cache`) and
//! `memory.oom_control` (`oom_kill`), the cpuacct controller's `cpuacct.usage` (ns).
//!
//! `cgroup:` is a directory under a mount (`/sys/fs/cgroup/system.slice/x.service`, or
//! on v1 `/sys/fs/cgroup/memory/x`), or a cgroup path as /proc/PID/cgroup writes it
//! (`/system.slice/x.service`), found under each mounted hierarchy.

use crate::observe::reading::Reading;
use std::path::{Path, PathBuf};

/// The directories one cgroup's files are read from.
#[derive(Debug, Clone, PartialEq)]
pub enum Dirs {
    V2(PathBuf),
    V1 {
        memory: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
    },
}

/// The cgroup mounts: v2's mount point and each v1 controller's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mounts {
    pub v2: Option<PathBuf>,
    pub memory: Option<PathBuf>,
    pub cpuacct: Option<PathBuf>,
}

impl Mounts {
    /// From /proc/self/mountinfo.
    pub fn here() -> Mounts {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|t| Mounts::parse(&t))
            .unwrap_or_default()
    }

    pub fn parse(mountinfo: &str) -> Mounts {
        let mut m = Mounts::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(point) = left.split_whitespace().nth(4) else {
                continue;
            };
            let mut r = right.split_whitespace();
            let (fstype, _src, opts) = (r.next(), r.next(), r.next().unwrap_or(""));
            match fstype {
                Some("cgroup2") => m.v2 = Some(PathBuf::from(point)),
                Some("cgroup") => {
                    for o in opts.split(',') {
                        match o {
                            "memory" => m.memory = Some(PathBuf::from(point)),
                            "cpuacct" => m.cpuacct = Some(PathBuf::from(point)),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        m
    }

    /// Where `cgroup` is read: a directory that exists as given (v2 when it has
    /// `memory.current` or `cgroup.controllers`), else a cgroup path under each mount.
    pub fn locate(&self, cgroup: &Path) -> Result<Dirs, String> {
        if cgroup.join("memory.current").exists() || cgroup.join("cgroup.controllers").exists() {
            return Ok(Dirs::V2(cgroup.to_path_buf()));
        }
        if cgroup.join("memory.usage_in_bytes").exists() {
            // A v1 memory directory: its twin under cpuacct, if that mount has one.
            let rel = self
                .memory
                .as_ref()
                .and_then(|m| cgroup.strip_prefix(m).ok())
                .map(Path::to_path_buf);
            let cpuacct = match (&self.cpuacct, rel) {
                (Some(c), Some(rel)) => Some(c.join(rel)).filter(|d| d.is_dir()),
                _ => None,
            };
            return Ok(Dirs::V1 {
                memory: Some(cgroup.to_path_buf()),
                cpuacct,
            });
        }
        let rel = cgroup.strip_prefix("/").unwrap_or(cgroup);
        let under = |m: &Option<PathBuf>| m.as_ref().map(|m| m.join(rel)).filter(|d| d.is_dir());
        let (memory, cpuacct) = (under(&self.memory), under(&self.cpuacct));
        if memory.is_some() || cpuacct.is_some() {
            return Ok(Dirs::V1 { memory, cpuacct });
        }
        if let Some(d) = under(&self.v2) {
            return Ok(Dirs::V2(d));
        }
        Err(format!(
            "cgroup {}: no such cgroup (not a cgroup directory, nor under a cgroup mount)",
            cgroup.display()
        ))
    }
}

fn read(dir: &Path, file: &str) -> Result<String, String> {
    let p = dir.join(file);
    std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
}

fn number(dir: &Path, file: &str) -> Result<f64, String> {
    let t = read(dir, file)?;
    t.trim().parse::<f64>().map_err(|_| {
        format!(
            "{}: expected a number, got {:?}",
            dir.join(file).display(),
            t.trim()
        )
    })
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, memory.oom_control).
fn keyed(text: &str, key: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse::<f64>().ok())?
    })
}

/// Reads one cgroup into `out`.
pub fn read_into(dirs: &Dirs, out: &mut Reading) -> Result<(), String> {
    match dirs {
        Dirs::V2(d) => {
            out.set("cgroup_memory_bytes", number(d, "memory.current")?);
            let stat = read(d, "memory.stat")?;
            if let Some(v) = keyed(&stat, "anon") {
                out.set("cgroup_anon_bytes", v);
            }
            if let Some(v) = keyed(&stat, "file") {
                out.set("cgroup_file_bytes", v);
            }
            if let Some(v) = keyed(&read(d, "cpu.stat")?, "usage_usec") {
                out.set("cgroup_cpu_seconds", v / 1e6);
            }
            if let Some(v) = read(d, "memory.events")
                .ok()
                .and_then(|t| keyed(&t, "oom_kill"))
            {
                out.set("oom_kills", v);
            }
        }
        Dirs::V1 { memory, cpuacct } => {
            if let Some(d) = memory {
                out.set("cgroup_memory_bytes", number(d, "memory.usage_in_bytes")?);
                let stat = read(d, "memory.stat")?;
                if let Some(v) = keyed(&stat, "total_rss").or_else(|| keyed(&stat, "rss")) {
                    out.set("cgroup_anon_bytes", v);
                }
                if let Some(v) = keyed(&stat, "total_cache").or_else(|| keyed(&stat, "cache")) {
                    out.set("cgroup_file_bytes", v);
                }
                let oom = read(d, "memory.oom_control").ok();
                if let Some(v) = oom.and_then(|t| keyed(&t, "oom_kill")) {
                    out.set("oom_kills", v);
                }
            }
            if let Some(d) = cpuacct {
                out.set("cgroup_cpu_seconds", number(d, "cpuacct.usage")? / 1e9);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn mounts_are_found_per_controller() {
        let m = Mounts::parse(MOUNTINFO);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(m.memory, Some(PathBuf::from("/sys/fs/cgroup/memory")));
        assert_eq!(m.cpuacct, Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")));
    }

    /// v2's files as the kernel writes them (cgroup v2 documentation's formats).
    #[test]
    fn v2_files_are_read() {
        let d = tempfile::tempdir().unwrap();
        let w = |f: &str, t: &str| std::fs::write(d.path().join(f), t).unwrap();
        w("cgroup.controllers", "cpu memory pids\n");
        w("memory.current", "104857600\n");
        w(
            "memory.stat",
            "anon 73400320\nfile 20971520\nkernel 1048576\nanon_thp 0\n",
        );
        w(
            "cpu.stat",
            "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 0\n",
        );
        w(
            "memory.events",
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        );
        let dirs = Mounts::default().locate(d.path()).unwrap();
        assert_eq!(dirs, Dirs::V2(d.path().to_path_buf()));
        let mut r = Reading::default();
        read_into(&dirs, &mut r).unwrap();
        assert_eq!(r.get("cgroup_memory_bytes"), Some(104857600.0));
        assert_eq!(r.get("cgroup_anon_bytes"), Some(73400320.0));
        assert_eq!(r.get("cgroup_file_bytes"), Some(20971520.0));
        assert_eq!(r.get("cgroup_cpu_seconds"), Some(2.5));
        assert_eq!(r.get("oom_kills"), Some(1.0));
        std::fs::remove_file(d.path().join("memory.current")).unwrap();
        let e = read_into(&dirs, &mut r).unwrap_err();
        assert!(e.contains("memory.current"), "{e}");
    }

    #[test]
    fn a_missing_cgroup_is_an_error_naming_it() {
        let e = Mounts::parse(MOUNTINFO)
            .locate(Path::new("/no/such/group"))
            .unwrap_err();
        assert!(e.contains("cgroup /no/such/group: no such cgroup"), "{e}");
    }
}
