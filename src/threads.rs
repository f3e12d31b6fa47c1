//! Threads of soakd's own work beside the load: each named, each with a current-thread
//! tokio runtime of its own, so what it waits on (a slow Prometheus, a scrape) never
//! delays the load's runtime, and the load never delays it.

/// Runs `make()`'s future to its end on a thread named `name` with a runtime of its own,
/// built here (a runtime that cannot be built is this call's error, not a silent thread).
pub fn spawn_with_runtime<F, Fut>(
    name: &str,
    make: F,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || rt.block_on(make()))
}
