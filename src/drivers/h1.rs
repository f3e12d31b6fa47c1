//! soakd's own HTTP/1.1 client for `http://` and `https://` targets: a stack of
//! keep-alive connections, each request one write and (usually) one read, in the task
//! that runs the operation. Over TLS (tokio-rustls) the handshake runs on that task
//! too, right after the TCP connect, and every connection shares the target's rustls
//! config, so sessions resume.
//!
//! reqwest (which served every request before, and now only redirects to other origins)
//! costs per request a client and connector
//! clone, a pool checkout keyed by URL, header maps, and hand-offs between the request's
//! task and the connection's task over channels (hyper's dispatcher) for the request,
//! the response and its body. At tens of thousands of requests a second on two cores
//! that is what limits the generator (`docs/BENCHMARKS.md`). Here the operation's task
//! owns the connection while it uses it: it serializes the request into the
//! connection's write buffer, parses the response head with `httparse` and frames the
//! body itself (`Content-Length`, chunked, or until close). The body is only kept when
//! the step extracts from it.
//!
//! The pool is a stack so the busiest connections stay warm and those a burst opened
//! sink to the bottom, where a check-in closes them once they have idled for
//! `idle_timeout`: memory and file descriptors come back after the burst. Buffers are
//! per connection and shrink back after a large response. How many connections may be
//! open at once is bounded above this module (the target's `max_connections`: a
//! connection is only opened by a request holding a slot when no idle one is left).

use super::kind::{BODY, IO, TLS};
pub use super::tls::TlsDial;
use crate::drivers::driver::OpError;
use crate::phases::Phases;
use bytes::Bytes;
use http::{HeaderMap, Method};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

/// A connection's byte stream: plain TCP, or TLS over it (boxed: rustls' state is a
/// few hundred bytes, and plain connections should not carry it).
type Stream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body accepted (bounded memory per in-flight request).
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// A connection's buffers shrink back to this after a larger response.
const KEEP_BUF: usize = 16 * 1024;
/// Response headers parsed at most.
const MAX_HEADERS: usize = 100;

struct Conn {
    stream: Stream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// The pool's buffer bytes, and this connection's share of them.
    acct: Arc<AtomicUsize>,
    counted: usize,
}

impl Conn {
    /// Brings the pool's byte count up to date with this connection's buffers.
    fn recount(&mut self) {
        let now = self.rbuf.capacity() + self.wbuf.capacity();
        // The usual case (buffers back at their kept size): no shared write per request.
        if now == self.counted {
            return;
        }
        if now > self.counted {
            self.acct.fetch_add(now - self.counted, Ordering::Relaxed);
        } else {
            self.acct.fetch_sub(self.counted - now, Ordering::Relaxed);
        }
        self.counted = now;
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.acct.fetch_sub(self.counted, Ordering::Relaxed);
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

pub struct H1Pool {
    /// `host:port` to connect to.
    addr: String,
    /// The Host header's value.
    host: String,
    user_agent: &'static str,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    /// Most recently used at the back.
    idle: Mutex<VecDeque<Idle>>,
    /// Bytes of the read and write buffers of its open connections (as of their last
    /// check-in: a large response in flight is counted when it is handed back).
    buffer_bytes: Arc<AtomicUsize>,
    /// For `https://`: the handshake each new connection makes.
    tls: Option<TlsDial>,
    /// The server chose HTTP/2 by ALPN: this pool cannot serve the target.
    chose_h2: std::sync::atomic::AtomicBool,
}

/// One request; `target` is origin-form (path and query).
pub struct Request<'a> {
    pub method: &'a Method,
    pub target: &'a str,
    pub headers: &'a HeaderMap,
    pub body: Option<&'a [u8]>,
    /// A W3C `traceparent` value, written as that header (kept apart from `headers`
    /// so that a request without other headers needs no header map).
    pub traceparent: Option<&'a [u8]>,
}

/// A response, read whole. `body` is empty unless it was asked for.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// The `Location` header of a 3xx response.
    pub location: Option<String>,
    pub body: Bytes,
    /// Where its time went (connect only on a new connection) and its bytes.
    pub timing: Phases,
}

/// How a round trip failed.
#[derive(Debug)]
enum Failure {
    /// The connection was closed before any of the response arrived: on a kept-alive
    /// connection, the server closed it while idle and the request may be resent.
    Closed(String),
    Io(String),
    Body(String),
    /// The TLS layer failed: with TLS 1.3 a server refusing the client's certificate
    /// says so (an alert) only after the client finished its side of the handshake.
    Tls(String),
}

impl Failure {
    fn into_op_error(self) -> OpError {
        match self {
            Failure::Closed(d) | Failure::Io(d) => OpError::new(IO, d),
            Failure::Body(d) => OpError::new(BODY, d),
            Failure::Tls(d) => OpError::new(TLS, d),
        }
    }
}

/// How the response body is delimited.
#[derive(Debug, PartialEq)]
enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

/// What the response head said.
struct Head {
    status: u16,
    len: usize,
    framing: Framing,
    keep_alive: bool,
    location: Option<String>,
}

impl H1Pool {
    pub fn new(
        addr: String,
        host: String,
        user_agent: &'static str,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
        tls: Option<TlsDial>,
    ) -> H1Pool {
        H1Pool {
            addr,
            host,
            user_agent,
            connect_timeout,
            idle_timeout,
            max_idle,
            idle: Mutex::new(VecDeque::new()),
            buffer_bytes: Arc::default(),
            tls,
            chose_h2: Default::default(),
        }
    }

    /// The server chose HTTP/2 in a handshake (offered with `version: auto`): its
    /// requests belong on an HTTP/2 client, not here.
    pub fn chose_h2(&self) -> bool {
        self.chose_h2.load(Ordering::Relaxed)
    }

    /// Bytes of its connections' buffers (see `buffer_bytes`).
    pub fn buffer_bytes(&self) -> u64 {
        self.buffer_bytes.load(Ordering::Relaxed) as u64
    }

    /// Connections idle in the pool now.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle.lock().len()
    }

    fn expired(&self, c: &Idle) -> bool {
        c.since.elapsed() > self.idle_timeout
    }

    /// The most recently used idle connection that has not idled out.
    fn checkout(&self) -> Option<Conn> {
        let mut expired = Vec::new();
        let found = {
            let mut idle = self.idle.lock();
            loop {
                match idle.pop_back() {
                    Some(c) if self.expired(&c) => expired.push(c),
                    Some(c) => break Some(c.conn),
                    None => break None,
                }
            }
        };
        // Closing happens outside the lock.
        drop(expired);
        found
    }

    fn checkin(&self, mut conn: Conn) {
        for b in [&mut conn.rbuf, &mut conn.wbuf] {
            b.clear();
            if b.capacity() > KEEP_BUF {
                b.shrink_to(KEEP_BUF);
            }
        }
        conn.recount();
        let mut idle = self.idle.lock();
        // The coldest connection is at the front: close it once it has idled out.
        let expired = match idle.front() {
            Some(c) if self.expired(c) => idle.pop_front(),
            _ => None,
        };
        let extra = if idle.len() < self.max_idle {
            idle.push_back(Idle {
                conn,
                since: Instant::now(),
            });
            None
        } else {
            Some(conn)
        };
        drop(idle);
        drop((expired, extra));
    }

    /// [`Self::connect`], adding the time the TCP connect and the TLS handshake took to
    /// `dial`'s `connect` and `tls`.
    async fn timed_connect(&self, dial: &mut Phases) -> Result<Conn, OpError> {
        let t0 = Instant::now();
        let deadline = tokio::time::Instant::from_std(t0 + self.connect_timeout);
        let tcp =
            crate::drivers::connect::connect_tcp(&self.addr, deadline, self.connect_timeout).await;
        let t1 = Instant::now();
        dial.connect = Some(dial.connect.unwrap_or_default() + (t1 - t0));
        let stream = match (&self.tls, tcp?) {
            (None, tcp) => Either::Left(tcp),
            (Some(tls), tcp) => {
                // Boxed: the handshake's state (a whole rustls connection) would
                // otherwise be inlined into every request's future, and that future is
                // copied into a box per operation.
                let tls_stream = Box::pin(self.handshake(tls, tcp, deadline)).await;
                dial.tls = Some(dial.tls.unwrap_or_default() + t1.elapsed());
                Either::Right(Box::new(tls_stream?))
            }
        };
        let mut conn = Conn {
            stream,
            rbuf: Vec::with_capacity(4096),
            wbuf: Vec::with_capacity(1024),
            acct: self.buffer_bytes.clone(),
            counted: 0,
        };
        conn.recount();
        Ok(conn)
    }

    /// The TLS handshake; a server choosing `h2` by ALPN is noted and the connection
    /// dropped, nothing sent on it.
    async fn handshake(
        &self,
        tls: &TlsDial,
        tcp: TcpStream,
        deadline: tokio::time::Instant,
    ) -> Result<TlsStream<TcpStream>, OpError> {
        let stream = tls
            .handshake(tcp, &self.addr, deadline, self.connect_timeout)
            .await?;
        if stream.get_ref().1.alpn_protocol() == Some(super::tls::ALPN_H2) {
            self.chose_h2.store(true, Ordering::Relaxed);
            return Err(OpError::new(IO, format!("{} chose HTTP/2", self.addr)));
        }
        Ok(stream)
    }

    /// Sends `req` and reads the whole response; keeps its body when `want_body`.
    ///
    /// Its future is part of every HTTP operation's; `future_stays_small` (below)
    /// keeps it from growing unnoticed.
    pub async fn send(&self, req: &Request<'_>, want_body: bool) -> Result<Response, OpError> {
        let mut dial = Phases::default();
        let (mut conn, reused) = match self.checkout() {
            Some(c) => (c, true),
            None => (self.timed_connect(&mut dial).await?, false),
        };
        let result = match self.round_trip(&mut conn, req, want_body).await {
            // A kept-alive connection the server closed while it was idle: nothing of
            // the response came back, so send once more on a fresh connection, as
            // browsers and HTTP libraries do.
            Err(Failure::Closed(_)) if reused => {
                conn = self.timed_connect(&mut dial).await?;
                self.round_trip(&mut conn, req, want_body).await
            }
            r => r,
        };
        match result {
            Ok((mut resp, keep_alive)) => {
                resp.timing.connect = dial.connect;
                resp.timing.tls = dial.tls;
                if keep_alive {
                    self.checkin(conn);
                }
                Ok(resp)
            }
            Err(f) => {
                if let (Failure::Tls(d), Some(tls)) = (&f, &self.tls) {
                    tls.log_failure(&format!("{}: {d}", self.addr));
                }
                Err(f.into_op_error())
            }
        }
    }

    async fn round_trip(
        &self,
        conn: &mut Conn,
        req: &Request<'_>,
        want_body: bool,
    ) -> Result<(Response, bool), Failure> {
        conn.rbuf.clear();
        conn.wbuf.clear();
        encode_request(&mut conn.wbuf, req, &self.host, self.user_agent);
        let body = req.body.unwrap_or_default();
        let sent = (conn.wbuf.len() + body.len()) as u64;
        match &mut conn.stream {
            Either::Left(tcp) => {
                tcp.write_all(&conn.wbuf)
                    .await
                    .map_err(|e| lost(e, "sending the request"))?;
                if !body.is_empty() {
                    tcp.write_all(body)
                        .await
                        .map_err(|e| lost(e, "sending the body"))?;
                }
            }
            // One TLS record for head and body where they fit, and flushed: rustls
            // keeps what the socket did not take.
            Either::Right(tls) => {
                conn.wbuf.extend_from_slice(body);
                tls.write_all(&conn.wbuf)
                    .await
                    .map_err(|e| lost(e, "sending the request"))?;
                tls.flush()
                    .await
                    .map_err(|e| lost(e, "sending the request"))?;
            }
        }
        let written = Instant::now();
        // When the first byte of the answer arrived, and bytes of interim responses.
        let mut first: Option<Instant> = None;
        let mut interim = 0u64;
        // The head, skipping interim 1xx responses.
        let head = loop {
            let head = loop {
                if let Some(h) = parse_head(&conn.rbuf, req.method)? {
                    break h;
                }
                if conn.rbuf.len() > MAX_HEAD {
                    return Err(Failure::Io(format!(
                        "response head larger than {MAX_HEAD} bytes"
                    )));
                }
                let n = read_more(conn).await?;
                if n > 0 && first.is_none() {
                    first = Some(Instant::now());
                }
                if n == 0 {
                    return Err(if conn.rbuf.is_empty() {
                        Failure::Closed("connection closed before the response".into())
                    } else {
                        Failure::Io("connection closed in the response head".into())
                    });
                }
            };
            if (100..200).contains(&head.status) {
                if head.status == 101 {
                    return Err(Failure::Io(
                        "101 Switching Protocols is not supported".into(),
                    ));
                }
                interim += head.len as u64;
                conn.rbuf.drain(..head.len);
                continue;
            }
            break head;
        };
        let start = head.len;
        let mut keep_alive = head.keep_alive;
        let (body, end) = match head.framing {
            Framing::None => (Bytes::new(), start),
            Framing::Length(n) => {
                if n > MAX_BODY {
                    return Err(Failure::Body(format!(
                        "body of {n} bytes is larger than {MAX_BODY}"
                    )));
                }
                while conn.rbuf.len() < start + n {
                    conn.rbuf
                        .reserve((start + n - conn.rbuf.len()).min(1 << 20));
                    if read_more(conn).await? == 0 {
                        return Err(Failure::Body("connection closed in the body".into()));
                    }
                }
                let body = if want_body {
                    Bytes::copy_from_slice(&conn.rbuf[start..start + n])
                } else {
                    Bytes::new()
                };
                (body, start + n)
            }
            Framing::Chunked => {
                let mut dec = Chunked {
                    pos: start,
                    total: 0,
                    out: Vec::new(),
                };
                while !dec.advance(&conn.rbuf, want_body)? {
                    if read_more(conn).await? == 0 {
                        return Err(Failure::Body("connection closed in the body".into()));
                    }
                }
                (Bytes::from(dec.out), dec.pos)
            }
            Framing::UntilClose => {
                keep_alive = false;
                while read_more(conn).await? > 0 {
                    if conn.rbuf.len() - start > MAX_BODY {
                        return Err(Failure::Body(format!("body larger than {MAX_BODY}")));
                    }
                }
                let end = conn.rbuf.len();
                let body = if want_body {
                    Bytes::copy_from_slice(&conn.rbuf[start..end])
                } else {
                    Bytes::new()
                };
                (body, end)
            }
        };
        // Anything after the response was not asked for: do not reuse the connection.
        if conn.rbuf.len() != end {
            keep_alive = false;
        }
        let done = Instant::now();
        // The head may have been in the buffer already (never, on a fresh request).
        let first = first.unwrap_or(done);
        Ok((
            Response {
                status: head.status,
                location: head.location,
                body,
                timing: Phases {
                    first_byte: Some(first.saturating_duration_since(written)),
                    body: Some(done.saturating_duration_since(first)),
                    sent,
                    received: interim + end as u64,
                    ..Phases::default()
                },
            },
            keep_alive,
        ))
    }
}

/// Reads what is available into the connection's buffer; 0 at end of stream.
async fn read_more(conn: &mut Conn) -> Result<usize, Failure> {
    if conn.rbuf.capacity() - conn.rbuf.len() < 2048 {
        conn.rbuf.reserve(8192);
    }
    match conn.stream.read_buf(&mut conn.rbuf).await {
        Ok(n) => Ok(n),
        // A TLS peer that closed without close_notify (many servers do on keep-alive
        // timeouts): the end of the stream, as over plain TCP.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(0),
        Err(e) if conn.rbuf.is_empty() || is_tls(&e) => Err(lost(e, "reading the response")),
        Err(e) => Err(Failure::Io(format!("reading the response: {e}"))),
    }
}

/// An I/O error before any of the response: `Closed` when the peer closed or reset
/// the connection (resendable on a reused one), else `Io`.
fn lost(e: std::io::Error, what: &str) -> Failure {
    if is_tls(&e) {
        return Failure::Tls(format!("{what}: TLS: {e}"));
    }
    match e.kind() {
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
            Failure::Closed(format!("{what}: {e}"))
        }
        _ => Failure::Io(format!("{what}: {e}")),
    }
}

/// Whether an I/O error came from rustls (an alert, a bad record).
fn is_tls(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<tokio_rustls::rustls::Error>())
}

fn encode_request(out: &mut Vec<u8>, req: &Request<'_>, host: &str, user_agent: &str) {
    let line = |out: &mut Vec<u8>, k: &[u8], v: &[u8]| {
        out.extend_from_slice(k);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    };
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let h = req.headers;
    if !h.contains_key(http::header::HOST) {
        line(out, b"host", host.as_bytes());
    }
    if !h.contains_key(http::header::USER_AGENT) {
        line(out, b"user-agent", user_agent.as_bytes());
    }
    if !h.contains_key(http::header::ACCEPT) {
        line(out, b"accept", b"*/*");
    }
    if let Some(t) = req.traceparent {
        line(out, b"traceparent", t);
    }
    for (k, v) in h {
        // soakd frames the body itself.
        if k == http::header::CONTENT_LENGTH || k == http::header::TRANSFER_ENCODING {
            continue;
        }
        line(out, k.as_str().as_bytes(), v.as_bytes());
    }
    let len = req.body.map_or(0, <[u8]>::len);
    if len > 0 || matches!(*req.method, Method::POST | Method::PUT | Method::PATCH) {
        line(out, b"content-length", len.to_string().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses a complete response head at the start of `buf`; None when more is needed.
fn parse_head(buf: &[u8], method: &Method) -> Result<Option<Head>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Failure::Io(format!("invalid response head: {e}"))),
    };
    let status = resp.code.unwrap_or(0);
    let http10 = resp.version == Some(0);
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut close = http10;
    let mut location = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| Failure::Io("invalid content-length".into()))?;
            if length.is_some_and(|l| l != n) {
                return Err(Failure::Io("conflicting content-length headers".into()));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                let t = token.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        } else if h.name.eq_ignore_ascii_case("location") && (300..400).contains(&status) {
            location = std::str::from_utf8(h.value).ok().map(str::to_string);
        }
    }
    let framing = if *method == Method::HEAD || status == 204 || status == 304 || status < 200 {
        Framing::None
    } else if chunked {
        // Transfer-Encoding wins over Content-Length (RFC 9112, 6.3).
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        len,
        framing,
        keep_alive: !close,
        location,
    }))
}

/// A resumable chunked-body decoder over the connection's read buffer: `pos` is where
/// the next chunk's size line starts; complete chunks are consumed as they arrive.
struct Chunked {
    pos: usize,
    total: usize,
    out: Vec<u8>,
}

impl Chunked {
    /// Consumes what `buf` holds; true when the last chunk and trailers are complete.
    fn advance(&mut self, buf: &[u8], keep: bool) -> Result<bool, Failure> {
        let bad = |what: &str| Failure::Body(format!("invalid chunked body: {what}"));
        loop {
            let rest = &buf[self.pos..];
            let Some(eol) = find_crlf(rest) else {
                return if rest.len() > 1024 {
                    Err(bad("chunk size line too long"))
                } else {
                    Ok(false)
                };
            };
            let size_field = rest[..eol]
                .split(|b| *b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            let size = std::str::from_utf8(size_field)
                .ok()
                .and_then(|s| usize::from_str_radix(s, 16).ok())
                .ok_or_else(|| bad("chunk size"))?;
            if size == 0 {
                // Trailer lines up to an empty one.
                let mut p = eol + 2;
                loop {
                    let Some(e) = find_crlf(&rest[p..]) else {
                        return Ok(false);
                    };
                    p += e + 2;
                    if e == 0 {
                        self.pos += p;
                        return Ok(true);
                    }
                }
            }
            self.total = self.total.saturating_add(size);
            if self.total > MAX_BODY {
                return Err(Failure::Body(format!("body larger than {MAX_BODY}")));
            }
            let data = eol + 2;
            if rest.len() < data + size + 2 {
                self.total -= size;
                return Ok(false);
            }
            if &rest[data + size..data + size + 2] != b"\r\n" {
                return Err(bad("missing CRLF after a chunk"));
            }
            if keep {
                self.out.extend_from_slice(&rest[data..data + size]);
            }
            self.pos += data + size + 2;
        }
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tls::TargetTls;
    use crate::drivers::kind::CONNECT;
    use crate::drivers::testcerts::TestCerts;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::net::TcpListener;
    use tokio_rustls::rustls::pki_types::ServerName;

    /// A keep-alive server that answers every request head with `reply`, counting
    /// accepted connections; with `close_after` it closes each connection after that
    /// many responses without saying so (the stale keep-alive case). Keeps the last
    /// request it saw.
    async fn server(
        tx: &Tx,
        reply: &'static [u8],
        close_after: Option<usize>,
    ) -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<u8>>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(Mutex::new(Vec::new()));
        let (a, seen) = (accepted.clone(), last.clone());
        let acceptor = tx.acceptor();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let mut s = match acceptor {
                        None => Either::Left(s),
                        Some(a) => match a.accept(s).await {
                            Ok(t) => Either::Right(t),
                            Err(_) => return,
                        },
                    };
                    let mut buf = vec![0u8; 65536];
                    let mut served = 0;
                    let mut pending = Vec::new();
                    loop {
                        let Ok(n) = s.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            let req: Vec<u8> = pending.drain(..end + 4).collect();
                            // A body, if any, is drained by length.
                            let text = String::from_utf8_lossy(&req).to_lowercase();
                            let len = text
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            while pending.len() < len {
                                let Ok(n) = s.read(&mut buf).await else {
                                    return;
                                };
                                pending.extend_from_slice(&buf[..n]);
                            }
                            let mut whole = req;
                            whole.extend(pending.drain(..len));
                            *seen.lock() = whole;
                            if s.write_all(reply).await.is_err() {
                                return;
                            }
                            served += 1;
                            if close_after == Some(served) {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted, last)
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    /// How the test server and the pool talk: plain TCP, or TLS with certificates
    /// made for the test (the pool trusts their CA through `tls.ca_file`).
    #[derive(Clone)]
    enum Tx {
        Plain,
        Tls(Arc<TestCerts>),
    }

    impl Tx {
        fn tls() -> Tx {
            Tx::Tls(Arc::new(TestCerts::new()))
        }

        fn acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
            match self {
                Tx::Plain => None,
                Tx::Tls(c) => Some(
                    c.server_config(&[super::super::tls::ALPN_HTTP1], false)
                        .into(),
                ),
            }
        }

        fn dial(&self, tls: Option<TargetTls>) -> Option<TlsDial> {
            let Tx::Tls(c) = self else {
                return None;
            };
            let tls = tls.unwrap_or(TargetTls {
                ca_file: Some(c.ca_file.display().to_string()),
                ..TargetTls::default()
            });
            let config = super::super::tls::client_config(
                Some(&tls),
                false,
                &[super::super::tls::ALPN_HTTP1],
            )
            .unwrap();
            Some(TlsDial::new(
                Arc::new(config),
                ServerName::try_from("localhost").unwrap(),
            ))
        }
    }

    fn pool_with(
        tx: &Tx,
        tls: Option<TargetTls>,
        addr: &str,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> H1Pool {
        H1Pool::new(
            addr.into(),
            addr.into(),
            "soakd-test",
            Duration::from_secs(1),
            idle_timeout,
            max_idle,
            tx.dial(tls),
        )
    }

    /// A pool for `addr` that connects with `dial`.
    fn dialing(addr: &str, dial: TlsDial) -> H1Pool {
        H1Pool::new(
            addr.into(),
            addr.into(),
            "t",
            Duration::from_secs(1),
            Duration::from_secs(60),
            8,
            Some(dial),
        )
    }

    fn pool(tx: &Tx, addr: &str, idle_timeout: Duration, max_idle: usize) -> H1Pool {
        pool_with(tx, None, addr, idle_timeout, max_idle)
    }

    /// Each test below runs over plain TCP and over TLS.
    macro_rules! both {
        ($($name:ident),* $(,)?) => {
            mod over {
                $(mod $name {
                    #[tokio::test]
                    async fn plain() {
                        super::super::$name(super::super::Tx::Plain).await
                    }
                    #[tokio::test]
                    async fn tls() {
                        super::super::$name(super::super::Tx::tls()).await
                    }
                })*
            }
        };
    }

    both!(
        a_burst_of_connections_leaves_no_buffers_behind,
        reuses_one_connection_for_sequential_requests,
        sends_headers_and_body_with_its_length,
        resends_on_a_fresh_connection_when_the_kept_one_was_closed,
        closes_connections_idle_past_the_timeout_and_keeps_at_most_max_idle,
        frames_chunked_interim_and_close_delimited_responses,
        malformed_and_oversized_responses_are_errors,
        a_refused_connection_is_a_connect_error,
        connect_and_tls_are_timed_once_per_new_connection,
    );

    async fn get(p: &H1Pool, want_body: bool) -> Result<Response, OpError> {
        let headers = HeaderMap::new();
        let req = Request {
            method: &Method::GET,
            target: "/x?y=1",
            headers: &headers,
            body: None,
            traceparent: None,
        };
        p.send(&req, want_body).await
    }

    /// A burst opens many connections; once they idle out, the next request closes
    /// them and their buffers are gone from the count.
    async fn a_burst_of_connections_leaves_no_buffers_behind(tx: Tx) {
        let (addr, accepted, _) = server(&tx, OK, None).await;
        let p = pool(&tx, &addr, Duration::from_millis(300), 1024);
        get(&p, false).await.unwrap();
        let one = p.buffer_bytes();
        assert!(one >= 4096, "{one}");
        let burst = futures::future::join_all((0..64).map(|_| get(&p, false))).await;
        assert!(burst.iter().all(|r| r.is_ok()));
        let opened = accepted.load(Ordering::SeqCst);
        assert!(opened > 8, "the burst opened connections: {opened}");
        assert_eq!(p.buffer_bytes(), one * p.idle_count() as u64);
        assert!(p.buffer_bytes() >= one * 8);
        tokio::time::sleep(Duration::from_millis(400)).await;
        get(&p, false).await.unwrap();
        assert_eq!(p.idle_count(), 1);
        assert_eq!(
            p.buffer_bytes(),
            one,
            "only the connection in use is counted"
        );
    }

    async fn reuses_one_connection_for_sequential_requests(tx: Tx) {
        let (addr, accepted, last) = server(&tx, OK, None).await;
        let p = pool(&tx, &addr, Duration::from_secs(60), 8);
        for _ in 0..50 {
            let r = get(&p, true).await.unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(&r.body[..], b"ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(p.idle_count(), 1);
        let req = String::from_utf8(last.lock().clone()).unwrap();
        assert!(req.starts_with("GET /x?y=1 HTTP/1.1\r\n"), "{req}");
        assert!(req.contains(&format!("host: {addr}\r\n")), "{req}");
        assert!(req.contains("user-agent: soakd-test\r\n"), "{req}");
        assert!(!req.contains("content-length"), "{req}");
        // Without want_body the body is read (the connection stays usable) but not kept.
        let r = get(&p, false).await.unwrap();
        assert!(r.body.is_empty());
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    async fn sends_headers_and_body_with_its_length(tx: Tx) {
        let (addr, _, last) = server(&tx, OK, None).await;
        let p = pool(&tx, &addr, Duration::from_secs(60), 8);
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer t".parse().unwrap());
        headers.insert("content-length", "999".parse().unwrap());
        let req = Request {
            method: &Method::POST,
            target: "/claim",
            headers: &headers,
            body: Some(b"{\"a\":1}"),
            traceparent: None,
        };
        assert_eq!(p.send(&req, false).await.unwrap().status, 200);
        let seen = String::from_utf8(last.lock().clone()).unwrap();
        assert!(seen.starts_with("POST /claim HTTP/1.1\r\n"), "{seen}");
        assert!(seen.contains("authorization: Bearer t\r\n"), "{seen}");
        assert!(seen.contains("content-length: 7\r\n"), "{seen}");
        // Not the caller's own (wrong) length; "999" alone could be in the port.
        assert!(!seen.contains("content-length: 999"), "{seen}");
        assert!(seen.ends_with("\r\n\r\n{\"a\":1}"), "{seen}");
        // A POST without a body says so.
        let req = Request {
            body: None,
            headers: &HeaderMap::new(),
            ..req
        };
        p.send(&req, false).await.unwrap();
        assert!(String::from_utf8(last.lock().clone())
            .unwrap()
            .contains("content-length: 0\r\n"));
    }

    async fn resends_on_a_fresh_connection_when_the_kept_one_was_closed(tx: Tx) {
        let (addr, accepted, _) = server(&tx, OK, Some(1)).await;
        let p = pool(&tx, &addr, Duration::from_secs(60), 8);
        for _ in 0..5 {
            assert_eq!(get(&p, true).await.unwrap().status, 200);
            // Let the server's close reach the client for some requests, not others.
            tokio::task::yield_now().await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    async fn closes_connections_idle_past_the_timeout_and_keeps_at_most_max_idle(tx: Tx) {
        let (addr, accepted, _) = server(&tx, OK, None).await;
        let p = Arc::new(pool(&tx, &addr, Duration::from_millis(100), 3));
        // A burst of 6 concurrent requests opens 6 connections; 3 are kept.
        let burst: Vec<_> = (0..6)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move { get(&p, false).await.map(|r| r.status) })
            })
            .collect();
        for b in burst {
            assert_eq!(b.await.unwrap().unwrap(), 200);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 6);
        assert_eq!(p.idle_count(), 3);
        tokio::time::sleep(Duration::from_millis(150)).await;
        get(&p, false).await.unwrap();
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            7,
            "expired ones are not reused"
        );
        assert_eq!(p.idle_count(), 1);
    }

    async fn frames_chunked_interim_and_close_delimited_responses(tx: Tx) {
        let chunked = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\ntrailer: t\r\n\r\n";
        let (addr, accepted, _) = server(&tx, chunked, None).await;
        let p = pool(&tx, &addr, Duration::from_secs(60), 8);
        for _ in 0..3 {
            let r = get(&p, true).await.unwrap();
            assert_eq!(&r.body[..], b"abc0123456789abcdef");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "chunked keeps the connection"
        );

        let until_close = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        let (addr, accepted, _) = server(&tx, until_close, Some(1)).await;
        let p = pool(&tx, &addr, Duration::from_secs(60), 8);
        for _ in 0..2 {
            assert_eq!(&get(&p, true).await.unwrap().body[..], b"all of it");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "never reused");
        assert_eq!(p.idle_count(), 0);

        let close = b"HTTP/1.1 503 Busy\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let (addr, accepted, _) = server(&tx, close, None).await;
        let p = pool(&tx, &addr, Duration::from_secs(60), 8);
        for _ in 0..2 {
            assert_eq!(get(&p, true).await.unwrap().status, 503);
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "connection: close is honoured"
        );

        let redirect = b"HTTP/1.1 302 Found\r\nLocation: /next\r\ncontent-length: 0\r\n\r\n";
        let (addr, _, _) = server(&tx, redirect, None).await;
        let r = get(&pool(&tx, &addr, Duration::from_secs(60), 8), true)
            .await
            .unwrap();
        assert_eq!(r.location.as_deref(), Some("/next"));
    }

    async fn malformed_and_oversized_responses_are_errors(tx: Tx) {
        let cases: [(&'static [u8], &str); 3] = [
            (b"NOT HTTP\r\n\r\n", IO),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n",
                BODY,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                BODY,
            ),
        ];
        for (reply, kind) in cases {
            let (addr, _, _) = server(&tx, reply, None).await;
            let e = get(&pool(&tx, &addr, Duration::from_secs(60), 8), true)
                .await
                .unwrap_err();
            assert_eq!(e.kind, kind, "{}", String::from_utf8_lossy(reply));
        }
    }

    async fn a_refused_connection_is_a_connect_error(tx: Tx) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let e = get(&pool(&tx, &addr, Duration::from_secs(60), 8), true)
            .await
            .unwrap_err();
        assert_eq!(e.kind, CONNECT);
    }

    async fn connect_and_tls_are_timed_once_per_new_connection(tx: Tx) {
        let (addr, _, _) = server(&tx, OK, None).await;
        let p = pool(&tx, &addr, Duration::from_secs(60), 8);
        let first = get(&p, false).await.unwrap().timing;
        assert!(first.connect.is_some());
        assert_eq!(first.tls.is_some(), matches!(tx, Tx::Tls(_)), "{first:?}");
        assert!(first.first_byte.is_some() && first.body.is_some());
        let reused = get(&p, false).await.unwrap().timing;
        assert_eq!((reused.connect, reused.tls), (None, None), "{reused:?}");
    }

    /// A TLS server answering `OK` to every request head; records how each handshake
    /// went (full or resumed) and the client certificate's presence.
    async fn tls_server(
        config: Arc<tokio_rustls::rustls::ServerConfig>,
    ) -> (
        String,
        Arc<Mutex<Vec<(tokio_rustls::rustls::HandshakeKind, bool)>>>,
    ) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let (acceptor, record) = (acceptor.clone(), record.clone());
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(s).await else {
                        return;
                    };
                    let c = s.get_ref().1;
                    if let Some(kind) = c.handshake_kind() {
                        record.lock().push((kind, c.peer_certificates().is_some()));
                    }
                    let mut buf = vec![0u8; 4096];
                    let mut pending = Vec::new();
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            if s.write_all(OK).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    fn with_client(c: &TestCerts, pair: Option<&crate::drivers::testcerts::Pair>) -> TargetTls {
        TargetTls {
            ca_file: Some(c.ca_file.display().to_string()),
            cert_file: pair.map(|p| p.cert_file.display().to_string()),
            key_file: pair.map(|p| p.key_file.display().to_string()),
            domain: None,
        }
    }

    #[tokio::test]
    async fn a_server_requiring_a_client_certificate_accepts_ours_and_refuses_others() {
        let tx = Tx::tls();
        let Tx::Tls(c) = &tx else { unreachable!() };
        let (addr, seen) =
            tls_server(c.server_config(&[crate::drivers::tls::ALPN_HTTP1], true)).await;
        let ours = pool_with(
            &tx,
            Some(with_client(c, Some(&c.client))),
            &addr,
            Duration::from_secs(60),
            8,
        );
        assert_eq!(get(&ours, false).await.unwrap().status, 200);
        assert_eq!(
            seen.lock().last().map(|k| k.1),
            Some(true),
            "it saw our certificate"
        );
        // Signed by a CA the server does not trust; no certificate at all. With TLS 1.3
        // the server says so after the client's side of the handshake is done, in the
        // first read: still kind `tls`, the alert named.
        for pair in [Some(&c.stranger), None] {
            let p = pool_with(
                &tx,
                Some(with_client(c, pair)),
                &addr,
                Duration::from_secs(60),
                8,
            );
            let e = get(&p, false).await.unwrap_err();
            assert_eq!(e.kind, TLS, "{e:?}");
            assert!(e.detail.contains("alert"), "{}", e.detail);
        }
    }

    #[tokio::test]
    async fn an_untrusted_server_certificate_is_a_tls_error_unless_verification_is_off() {
        let c = TestCerts::new();
        let (addr, _) =
            tls_server(c.server_config(&[crate::drivers::tls::ALPN_HTTP1], false)).await;
        let dial = |skip: bool| {
            TlsDial::new(
                Arc::new(
                    crate::drivers::tls::client_config(
                        None,
                        skip,
                        &[crate::drivers::tls::ALPN_HTTP1],
                    )
                    .unwrap(),
                ),
                ServerName::try_from("localhost").unwrap(),
            )
        };
        let p = |skip| dialing(&addr, dial(skip));
        let e = get(&p(false), false).await.unwrap_err();
        assert_eq!(e.kind, TLS);
        assert!(
            e.detail.contains("UnknownIssuer"),
            "the problem is named: {}",
            e.detail
        );
        assert_eq!(get(&p(true), false).await.unwrap().status, 200);
        // The name verified is the URL's host unless tls.domain says otherwise.
        let wrong = Tx::Tls(Arc::new(c))
            .dial(None)
            .unwrap()
            .with_name(ServerName::try_from("elsewhere.example").unwrap());
        let p = dialing(&addr, wrong);
        let e = get(&p, false).await.unwrap_err();
        assert_eq!(e.kind, TLS);
        assert!(e.detail.contains("not valid for name"), "{}", e.detail);
    }

    #[tokio::test]
    async fn new_connections_resume_the_tls_session() {
        let tx = Tx::tls();
        let Tx::Tls(c) = &tx else { unreachable!() };
        let (addr, seen) =
            tls_server(c.server_config(&[crate::drivers::tls::ALPN_HTTP1], false)).await;
        // No idle connections kept: every request opens one.
        let p = pool(&tx, &addr, Duration::from_secs(60), 0);
        for _ in 0..3 {
            assert_eq!(get(&p, false).await.unwrap().status, 200);
        }
        let kinds: Vec<_> = seen.lock().iter().map(|k| k.0).collect();
        use tokio_rustls::rustls::HandshakeKind::{Full, Resumed};
        assert_eq!(kinds, [Full, Resumed, Resumed]);
    }

    #[tokio::test]
    async fn a_server_choosing_h2_is_noted_and_nothing_is_sent() {
        let c = TestCerts::new();
        let (addr, _) = tls_server(c.server_config(&[crate::drivers::tls::ALPN_H2], false)).await;
        let tls = with_client(&c, None);
        let config = crate::drivers::tls::client_config(
            Some(&tls),
            false,
            &[
                crate::drivers::tls::ALPN_H2,
                crate::drivers::tls::ALPN_HTTP1,
            ],
        )
        .unwrap();
        let p = dialing(
            &addr,
            TlsDial::new(Arc::new(config), ServerName::try_from("localhost").unwrap()),
        );
        assert!(!p.chose_h2());
        assert!(get(&p, false).await.is_err());
        assert!(p.chose_h2());
    }

    /// Every operation's future holds this one and is boxed (copied) per operation: a
    /// rustls connection or an HTTP/2 client inlined into it made plain HTTP/1.1 20 %
    /// slower at saturation (docs/BENCHMARKS.md). Connecting and TLS are boxed instead.
    #[test]
    fn future_stays_small() {
        let p = pool(&Tx::Plain, "127.0.0.1:1", Duration::from_secs(1), 1);
        let headers = HeaderMap::new();
        let req = Request {
            method: &Method::GET,
            target: "/",
            headers: &headers,
            body: None,
            traceparent: None,
        };
        let size = std::mem::size_of_val(&p.send(&req, false));
        eprintln!("H1Pool::send future: {size} bytes");
        assert!(size < 1024, "H1Pool::send's future is {size} bytes");
    }

    #[test]
    fn chunked_decoder_resumes_across_partial_reads() {
        let whole = b"4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n";
        let mut dec = Chunked {
            pos: 0,
            total: 0,
            out: Vec::new(),
        };
        for end in 1..whole.len() {
            assert!(
                !dec.advance(&whole[..end], true).unwrap(),
                "incomplete at {end}"
            );
        }
        assert!(dec.advance(whole, true).unwrap());
        assert_eq!(dec.out, b"wikipedia");
        assert_eq!(dec.pos, whole.len());
    }
}
