//! A postgres target's own statistics as a soak source: its tables' bloat, its
//! connections, WAL, the oldest open transaction and replication lag
//! ([`crate::pg::stats::soak_reading`]), read on a connection of the soak's own — never
//! the load's pool — with a statement timeout, reconnecting after a failure.

use crate::config::observe::PgObserve;
use crate::observe::reading::Reading;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::ConnectOptions;
use std::time::Duration;

pub struct PgSource {
    cfg: PgObserve,
    timeout: Duration,
    conn: Option<PgConnection>,
}

impl PgSource {
    pub fn new(cfg: PgObserve, timeout: Duration) -> PgSource {
        PgSource {
            cfg,
            timeout,
            conn: None,
        }
    }

    async fn connect(&self) -> Result<PgConnection, String> {
        let opts = self
            .cfg
            .url
            .parse::<PgConnectOptions>()
            .map_err(|e| format!("the target's url: {e}"))?
            .application_name("soakd-soak")
            .options([("statement_timeout", self.timeout.as_millis().to_string())])
            .log_statements(log::LevelFilter::Trace)
            .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(1));
        match tokio::time::timeout(self.timeout, opts.connect()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(format!("connecting: {e}")),
            Err(_) => Err("connecting timed out".into()),
        }
    }

    pub async fn read(&mut self, out: &mut Reading) -> Result<(), String> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().await?,
        };
        let read = tokio::time::timeout(
            self.timeout,
            crate::pg::stats::soak_reading(&mut conn, &self.cfg.tables),
        )
        .await;
        match read {
            Ok(Ok(values)) => {
                for (name, v, counter) in values {
                    out.set(&name, v);
                    if counter {
                        out.counters.push(name);
                    }
                }
                self.conn = Some(conn);
                Ok(())
            }
            // The connection is dropped: the next read connects again.
            Ok(Err(e)) => Err(format!("reading statistics: {e}")),
            Err(_) => Err("reading statistics timed out".into()),
        }
    }
}
