//! The TCP dial every client shares.

use super::driver::OpError;
use super::kind;

/// `connect_timeout` when a target sets none (HTTP and gRPC).
pub(crate) const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A TCP connection to `addr` by `deadline` (`connect_timeout` from now), without
/// Nagle (requests are single small writes): kind `connect` when there is none.
pub(crate) async fn connect_tcp(
    addr: &str,
    deadline: tokio::time::Instant,
    connect_timeout: std::time::Duration,
) -> Result<tokio::net::TcpStream, OpError> {
    let fail = |e: String| OpError::new(kind::CONNECT, format!("connect {addr}: {e}"));
    let stream = tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| {
            fail(format!(
                "no connection within {}",
                crate::units::format_duration(connect_timeout)
            ))
        })?
        .map_err(|e| fail(e.to_string()))?;
    stream.set_nodelay(true).map_err(|e| fail(e.to_string()))?;
    Ok(stream)
}
