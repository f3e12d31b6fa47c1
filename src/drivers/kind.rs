//! Error kinds: the one bounded set the drivers draw from (each becomes an `error`
//! label). gRPC adds `grpc_<code>` and PostgreSQL `sqlstate_<code>`, both bounded by
//! their protocols' code lists.

/// The per-op timeout expired (set by the engine).
pub const TIMEOUT: &str = "timeout";
/// A template could not be rendered (a fixture row lacks a field, say).
pub const TEMPLATE: &str = "template";
/// A connection could not be made (HTTP, PostgreSQL).
pub const CONNECT: &str = "connect";
/// The connection failed after it was made (HTTP, PostgreSQL).
pub const IO: &str = "io";
/// HTTP: the TLS handshake failed (the certificate was refused, the server wanted a
/// client certificate, no common protocol) or did not finish within
/// `connect_timeout`.
pub const TLS: &str = "tls";
/// HTTP: a 4xx, a 5xx, or an unexpected 1xx/3xx status.
pub const STATUS_4XX: &str = "status_4xx";
pub const STATUS_5XX: &str = "status_5xx";
pub const STATUS_OTHER: &str = "status_other";
/// HTTP: the body could not be read, was not JSON where a step extracts, or held no
/// match with `on_empty: error`.
pub const BODY: &str = "body";
/// PostgreSQL: no pooled connection within `acquire_timeout`.
pub const POOL_TIMEOUT: &str = "pool_timeout";
/// PostgreSQL: the server spoke out of protocol.
pub const PROTOCOL: &str = "protocol";
/// PostgreSQL events: the buffered writer refused an event (its queue was full).
pub const BUFFER_FULL: &str = "buffer_full";

/// The kinds an op of this kind against this target is known to produce, which its
/// error series start at (0) so `rate(errors) / rate(requests)` is 0 on a healthy
/// run, not empty. Rarer kinds (a SQLSTATE, most gRPC codes) appear when they happen.
pub fn expected(
    op: &crate::config::OpKind,
    target: &crate::config::TargetKind,
) -> Vec<&'static str> {
    use crate::config::{OpKind, TargetKind};
    let tls = match target {
        TargetKind::Http(h) => h.base_url.starts_with("https://"),
        TargetKind::Grpc(g) => g.endpoint.starts_with("https://"),
        TargetKind::Postgres(_) => false,
    };
    let mut kinds = vec![TIMEOUT];
    match op {
        OpKind::Http(_) => kinds.extend([CONNECT, IO, STATUS_4XX, STATUS_5XX, BODY]),
        OpKind::Grpc(_) => kinds.extend([
            CONNECT,
            IO,
            "grpc_unavailable",
            "grpc_deadline_exceeded",
            "grpc_internal",
        ]),
        OpKind::Sql(_) => kinds.extend([CONNECT, IO, POOL_TIMEOUT]),
        OpKind::Event(_) => kinds.push(BUFFER_FULL),
    }
    if tls && !matches!(op, OpKind::Sql(_) | OpKind::Event(_)) {
        kinds.push(TLS);
    }
    kinds
}
