//! CPU time and resident memory of a process (from /proc, or from a Prometheus
//! endpoint's `process_*` series), and a one-line description of the machine.

use std::time::Duration;

/// Cumulative CPU time and current RSS of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    pub cpu: Duration,
    pub rss_bytes: u64,
}

pub fn cpu_percent(a: Option<ProcSample>, b: Option<ProcSample>, secs: f64) -> Option<f64> {
    let (a, b) = (a?, b?);
    Some(100.0 * b.cpu.saturating_sub(a.cpu).as_secs_f64() / secs.max(1e-9))
}

/// Reads /proc/PID (or /proc/self with None). None when the process is gone or /proc
/// is not there.
pub fn read_proc(pid: Option<u32>) -> Option<ProcSample> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".into(),
    };
    let cpu = cpu_of(&dir)?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())?;
    Some(ProcSample {
        cpu,
        rss_bytes: rss_kb * 1024,
    })
}

fn cpu_of(dir: &str) -> Option<Duration> {
    // utime and stime (fields 14 and 15) in clock ticks; after the last ')' because
    // the command name may hold spaces.
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // Summed over all threads, including ones that exited (the kernel folds them in).
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / clock_ticks(),
    ))
}

/// USER_HZ: clock ticks per second in /proc times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for unknown names.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Reads `process_cpu_seconds_total` and `process_resident_memory_bytes` from a
/// Prometheus text exposition.
pub fn parse_process_metrics(text: &str) -> Option<ProcSample> {
    let value = |name: &str| {
        text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let mut it = l.split_whitespace();
            let n = it.next()?;
            (n == name).then(|| it.next()?.parse::<f64>().ok())?
        })
    };
    let cpu = value("process_cpu_seconds_total")?;
    let rss = value("process_resident_memory_bytes")?;
    Some(ProcSample {
        cpu: Duration::from_secs_f64(cpu.max(0.0)),
        rss_bytes: rss.max(0.0) as u64,
    })
}

/// CPUs, model, memory and kernel, for the report's environment line.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} CPU ({model}), {mem_gib:.0} GiB RAM, Linux {}",
        kernel.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = read_proc(None).unwrap();
        assert!(s.rss_bytes > 1 << 20);
        // A busy loop shows up as CPU time.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let s2 = read_proc(None).unwrap();
        assert!(s2.cpu > s.cpu, "{x}");
        assert!(read_proc(Some(u32::MAX)).is_none());
    }

    #[test]
    fn parses_an_exposition() {
        let t = "# HELP process_cpu_seconds_total x\nprocess_cpu_seconds_total 12.5\nprocess_resident_memory_bytes 1.048576e+06\nprocess_cpu_seconds_total_extra 1\n";
        let s = parse_process_metrics(t).unwrap();
        assert_eq!(s.cpu, Duration::from_millis(12_500));
        assert_eq!(s.rss_bytes, 1_048_576);
        assert!(parse_process_metrics("up 1\n").is_none());
        assert!(machine().contains("CPU"));
    }
}
