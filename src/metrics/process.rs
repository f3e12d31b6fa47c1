//! The process's own series: the prometheus crate's process collector, with CPU seconds
//! at tick resolution instead of whole seconds.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

/// The standard `process_*` series, with `process_cpu_seconds_total` at the kernel's
/// tick resolution: the prometheus crate's collector truncates it to whole seconds,
/// which makes `rate()` over a minute (or a 10 s capacity window) useless.
pub struct ProcessMetrics {
    inner: prometheus::process_collector::ProcessCollector,
}

impl ProcessMetrics {
    pub fn new() -> ProcessMetrics {
        ProcessMetrics {
            inner: prometheus::process_collector::ProcessCollector::for_self(),
        }
    }
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut mfs = self.inner.collect();
        let precise = crate::sysinfo::read_proc(None).map(|s| s.cpu.as_secs_f64());
        if let Some(secs) = precise {
            for mf in mfs.iter_mut() {
                if mf.name() == "process_cpu_seconds_total" {
                    if let Ok(c) = prometheus::Counter::new(
                        "process_cpu_seconds_total",
                        "Total user and system CPU time spent in seconds.",
                    ) {
                        c.inc_by(secs);
                        if let Some(m) = c.collect().pop() {
                            *mf = m;
                        }
                    }
                }
            }
        }
        mfs
    }
}
