//! The global allocator and its statistics hooks, for the binary only (a library user
//! picks their own). build.rs picks the allocator from the features:
//! `cfg(soakd_alloc = "jemalloc" | "mimalloc" | "heap_count" | "dhat")`.

#[cfg(any(soakd_alloc = "mimalloc", soakd_alloc = "heap_count"))]
use std::time::Duration;

/// jemalloc, with its background thread purging freed pages (decay) on its own: the
/// long soak (docs/BENCHMARKS.md) measured soakd's resident memory at ~6 MiB over its
/// live heap and flat, where mimalloc held 35-45 MiB over it and crept upward in steps
/// after bursts. build.rs picks the allocator from the features. `--features
/// jemalloc-prof` is the same allocator with its heap profiler compiled in (off unless
/// `_RJEM_MALLOC_CONF` has `prof:true`; PROFILE=jemalloc-prof scripts/bench/longsoak.sh).
#[cfg(soakd_alloc = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `--features mimalloc`: the allocator soakd had before, for comparison
/// (`PROFILE=mimalloc scripts/bench/longsoak.sh`).
#[cfg(soakd_alloc = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The live-heap counting build (`--features heap-count`; scripts/bench/longsoak.sh):
/// mimalloc behind `cap`, which counts the bytes allocated and not yet freed, so the
/// long soak can tell live-heap growth from the allocator's retention.
#[cfg(soakd_alloc = "heap_count")]
#[global_allocator]
static GLOBAL: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

/// The heap-profiling build (`--features dhat-heap`; `PROFILE=dhat scripts/bench/longsoak.sh`).
#[cfg(soakd_alloc = "dhat")]
#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

/// What [`start`] hands back to keep until exit: the dhat build's profiler, which writes
/// `$SOAKD_DHAT_FILE` when dropped; nothing otherwise.
pub struct Guard {
    #[cfg(soakd_alloc = "dhat")]
    _profiler: dhat::Profiler,
}

/// Sets the allocator's options and the hooks `soakd_allocator_committed_bytes` and
/// `_live_bytes` read at scrape time. Call once, first thing in `main`.
pub fn start() -> Guard {
    #[cfg(any(soakd_alloc = "mimalloc", soakd_alloc = "heap_count"))]
    {
        keep_freed_pages_for_a_while();
        soakd::metrics::memory::set_allocator_committed(mimalloc_committed);
        #[cfg(soakd_alloc = "heap_count")]
        soakd::metrics::memory::set_allocator_live(|| GLOBAL.allocated() as u64);
    }
    #[cfg(soakd_alloc = "jemalloc")]
    {
        soakd::metrics::memory::set_allocator_committed(|| {
            jemalloc_stat(tikv_jemalloc_ctl::stats::mapped::read)
        });
        soakd::metrics::memory::set_allocator_live(|| {
            jemalloc_stat(tikv_jemalloc_ctl::stats::allocated::read)
        });
    }
    Guard {
        #[cfg(soakd_alloc = "dhat")]
        _profiler: dhat::Profiler::builder()
            .file_name(
                std::env::var_os("SOAKD_DHAT_FILE").unwrap_or_else(|| "dhat-heap.json".into()),
            )
            .build(),
    }
}

/// The load runtime's share: mimalloc builds collect an idle thread's heap when it parks
/// (jemalloc's background thread purges on its own).
pub fn tune_runtime(b: &mut tokio::runtime::Builder) {
    #[cfg(any(soakd_alloc = "mimalloc", soakd_alloc = "heap_count"))]
    b.on_thread_park(return_freed_memory);
    let _ = b;
}

/// One of jemalloc's statistics, refreshed (they are cached until the epoch advances);
/// 0 if jemalloc cannot tell.
#[cfg(soakd_alloc = "jemalloc")]
fn jemalloc_stat(read: fn() -> tikv_jemalloc_ctl::Result<usize>) -> u64 {
    let _ = tikv_jemalloc_ctl::epoch::advance();
    read().map_or(0, |v| v as u64)
}

#[cfg(any(soakd_alloc = "mimalloc", soakd_alloc = "heap_count"))]
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

/// mimalloc's `purge_delay` and `arena_purge_mult` options (their enum's indexes;
/// libmimalloc-sys names no constants for them).
#[cfg(any(soakd_alloc = "mimalloc", soakd_alloc = "heap_count"))]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
#[cfg(any(soakd_alloc = "mimalloc", soakd_alloc = "heap_count"))]
const MI_OPTION_ARENA_PURGE_MULT: libmimalloc_sys::mi_option_t = 24;

/// How long freed pages stay resident before mimalloc returns them to the OS, unless
/// `MIMALLOC_PURGE_DELAY` says otherwise.
#[cfg(any(soakd_alloc = "mimalloc", soakd_alloc = "heap_count"))]
const PURGE_DELAY: Duration = Duration::from_secs(300);

/// mimalloc returns freed pages to the OS 10 ms after they are freed by default (whole
/// arena ranges 100 ms after). soakd's steady state frees and reuses megabytes all the
/// time (the buffered writer's maps and batches between flushes, gRPC and HTTP buffers,
/// the sampler's pass), so with the default the resident set swung by 10-18 MiB around
/// the heap's level as pages went back and were faulted in again, and the allocator took
/// fresh pages while others waited to be purged: noise that hid any trend in the long
/// soak, and a cost. Measured over 15 minutes of the accelerated long soak: with a 10 s
/// delay soakd's resident set held within 0.2 MiB but the demo target's still wandered
/// by 7 MiB; with purging off both were flat to the KiB but kept the search levels'
/// peak for good. Five minutes (arenas too) keeps what the recent load reuses and still
/// gives back what a burst (a target stall piling up operations and connections) took,
/// five minutes after it ends.
#[cfg(any(soakd_alloc = "mimalloc", soakd_alloc = "heap_count"))]
fn keep_freed_pages_for_a_while() {
    let ms = libc::c_long::try_from(PURGE_DELAY.as_millis()).unwrap_or(libc::c_long::MAX);
    // SAFETY: mi_option_set only stores the value; mimalloc reads it when it purges.
    unsafe {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms);
        }
        if std::env::var_os("MIMALLOC_ARENA_PURGE_MULT").is_none() {
            libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_PURGE_MULT, 1);
        }
    }
}

/// How often an idle load thread collects its heap.
#[cfg(any(soakd_alloc = "mimalloc", soakd_alloc = "heap_count"))]
const COLLECT_EVERY: Duration = Duration::from_secs(2);

/// Called when a load thread runs out of work: at most every [`COLLECT_EVERY`], free
/// this thread's retired pages and deferred frees, and purge what has waited longer than
/// the purge delay. Not forced: a forced collection purged every freed page at once,
/// which is what made the resident set swing (see [`keep_freed_pages_for_a_while`]).
#[cfg(any(soakd_alloc = "mimalloc", soakd_alloc = "heap_count"))]
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
        unsafe { libmimalloc_sys::mi_collect(false) };
    });
}
