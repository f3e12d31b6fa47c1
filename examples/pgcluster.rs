//! Starts a throwaway PostgreSQL cluster and prints its URL until Ctrl-C:
//!   cargo run --example pgcluster
fn main() {
    match soakd::pg::cluster::Cluster::start(false) {
        Ok(c) => {
            println!("{}", c.url("postgres"));
            let (tx, rx) = std::sync::mpsc::channel();
            let _ = signal_hook::flag::register(
                signal_hook::consts::SIGINT,
                std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            );
            std::thread::spawn(move || {
                let mut s = signal_hook::iterator::Signals::new([
                    signal_hook::consts::SIGINT,
                    signal_hook::consts::SIGTERM,
                ])
                .ok();
                if let Some(s) = s.as_mut() {
                    s.forever().next();
                }
                let _ = tx.send(());
            });
            let _ = rx.recv();
            drop(c);
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
