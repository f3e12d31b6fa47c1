//! The sampler's own OS thread (`soakd-history`): one row a second, on the second,
//! until it is stopped or the engine is gone.

use super::sampler::Sampler;
use super::store::History;
use crate::engine::Engine;
use std::sync::Arc;
use std::time::Duration;

/// The sampler's thread; stops when dropped or stopped, or when the engine is gone.
pub struct SamplerThread {
    stop: Option<std::sync::mpsc::Sender<()>>,
    join: Option<std::thread::JoinHandle<()>>,
}

/// Starts sampling `engine` into `history` once a second, on the second.
pub fn spawn(engine: &Arc<Engine>, history: Arc<History>) -> std::io::Result<SamplerThread> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let weak = Arc::downgrade(engine);
    let join = std::thread::Builder::new()
        .name("soakd-history".into())
        .spawn(move || {
            let mut sampler = Sampler::new(history);
            loop {
                // Sleep to the next whole second of wall time, so rows line up with the
                // clock (and minutes with minutes).
                let ms = crate::events::now_ms();
                let wait = Duration::from_millis((1000 - ms.rem_euclid(1000)) as u64);
                match rx.recv_timeout(wait) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
                let Some(engine) = weak.upgrade() else { break };
                let now = crate::events::now_ms();
                sampler.tick(
                    &engine,
                    now - now.rem_euclid(1000),
                    std::time::Instant::now(),
                );
            }
        })?;
    Ok(SamplerThread {
        stop: Some(tx),
        join: Some(join),
    })
}

impl SamplerThread {
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        drop(self.stop.take());
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for SamplerThread {
    fn drop(&mut self) {
        self.halt();
    }
}
