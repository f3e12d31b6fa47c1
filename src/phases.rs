//! Where an iteration's HTTP requests spent their time, measured on the HTTP/1.1 fast
//! path with the clock reads it makes anyway (no extra syscalls): waiting for a
//! connection slot (`queue`), opening a connection (`connect`, `tls`), from the request
//! written to the first byte of the answer (`first_byte`, the server's think time plus
//! one round trip), and reading the rest (`body`); and the bytes each way. A phase that
//! did not happen — no slot limit, a reused connection — stays `None` and is not
//! observed. The engine records an iteration's sums per op
//! (`soakd_http_phase_seconds`), and the capacity judge reads them to say where the time
//! went.

use std::time::Duration;

/// Sums over one iteration's requests (one per step of a multi-step op).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Phases {
    pub queue: Option<Duration>,
    pub connect: Option<Duration>,
    pub tls: Option<Duration>,
    pub first_byte: Option<Duration>,
    pub body: Option<Duration>,
    /// Request bytes written (head and body).
    pub sent: u64,
    /// Response bytes read (interim responses, head and body).
    pub received: u64,
}

/// The phases by name, in the order a request goes through them.
pub const NAMES: [&str; 5] = ["queue", "connect", "tls", "first_byte", "body"];

fn sum(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Phases {
    /// Adds another request's phases to these.
    pub fn add(&mut self, o: &Phases) {
        self.queue = sum(self.queue, o.queue);
        self.connect = sum(self.connect, o.connect);
        self.tls = sum(self.tls, o.tls);
        self.first_byte = sum(self.first_byte, o.first_byte);
        self.body = sum(self.body, o.body);
        self.sent += o.sent;
        self.received += o.received;
    }

    /// The phases in [`NAMES`] order.
    pub fn by_name(&self) -> [Option<Duration>; 5] {
        [
            self.queue,
            self.connect,
            self.tls,
            self.first_byte,
            self.body,
        ]
    }

    /// Nothing was measured (no request went through the fast path).
    pub fn is_empty(&self) -> bool {
        *self == Phases::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_keep_phases_that_did_not_happen_unobserved() {
        let ms = Duration::from_millis;
        let mut p = Phases::default();
        assert!(p.is_empty());
        p.add(&Phases {
            connect: Some(ms(2)),
            first_byte: Some(ms(10)),
            body: Some(ms(1)),
            sent: 100,
            received: 300,
            ..Phases::default()
        });
        // A second step on the kept connection: no connect.
        p.add(&Phases {
            first_byte: Some(ms(5)),
            body: Some(ms(1)),
            sent: 80,
            received: 200,
            ..Phases::default()
        });
        assert_eq!(
            p.by_name(),
            [None, Some(ms(2)), None, Some(ms(15)), Some(ms(2))]
        );
        assert_eq!((p.sent, p.received), (180, 500));
        assert!(!p.is_empty());
    }
}
