//! soakd's own HTTP/2 client: `connections` HTTP/2 connections per target (h2c with
//! prior knowledge for `http://`, TLS with ALPN `h2` for `https://`), requests spread
//! over them round-robin, each a stream. The `h2` crate keeps to the server's
//! `max_concurrent_streams` (streams past it wait in its queue, bounded by the
//! scenarios' `max_in_flight`) and does the flow control; a connection's frames are
//! driven by one task per connection, as HTTP/2 needs.
//!
//! A connection that fails or that the server retires with GOAWAY is replaced on the
//! next request. A request the server did not process — above a graceful GOAWAY's last
//! stream id, or refused with REFUSED_STREAM — is sent again on a fresh connection,
//! at most twice: it cost the server nothing and is not an error of the target. Other
//! stream resets are error kinds `h2_<reason>` (a fixed list: the protocol's 14 codes).

use super::h1::{Response, MAX_BODY};
use super::kind::{BODY, IO};
use super::tls::TlsDial;
use crate::drivers::driver::OpError;
use crate::phases::Phases;
use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use h2::Reason;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Uri};
use parking_lot::RwLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Streams' and the connection's receive windows: a large response is not throttled
/// by a round trip per 64 KiB.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONN_WINDOW: u32 = 8 * 1024 * 1024;
/// Sends of a request the server did not process, beyond the first.
const RESENDS: usize = 2;

/// How a pool's connections are made.
pub struct Dial {
    /// `host:port` to connect to.
    pub addr: String,
    pub scheme: Scheme,
    pub authority: Authority,
    /// For `https://`: the handshake, with the target's rustls config (ALPN `h2`).
    pub tls: Option<TlsDial>,
    pub connect_timeout: Duration,
    pub user_agent: &'static str,
}

struct Slot {
    /// The connection's handle and its generation (to replace only the broken one).
    conn: RwLock<Option<(u64, SendRequest<Bytes>)>>,
    /// Held while connecting, so one request connects and the others wait for it.
    connecting: tokio::sync::Mutex<()>,
}

pub struct H2Pool {
    dial: Dial,
    slots: Vec<Slot>,
    next: AtomicUsize,
    generation: AtomicU64,
}

/// One request; `target` is origin-form (path and query).
pub struct Request<'a> {
    pub method: &'a Method,
    pub target: &'a str,
    pub headers: &'a HeaderMap,
    pub body: Option<&'a Bytes>,
    /// A W3C `traceparent` value, sent as that header.
    pub traceparent: Option<&'a [u8]>,
}

/// A whole HTTP/2 exchange as received: the response head, the body (when kept), the
/// trailers (gRPC's status travels there) and where the time went.
pub struct Exchange {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
    pub timing: Phases,
}

/// Why a stream failed: whether it may be sent again.
enum Failure {
    /// The server did not process it (graceful GOAWAY past it, REFUSED_STREAM), or the
    /// connection was found closed before it was sent.
    Unprocessed(OpError),
    Failed(OpError),
}

impl H2Pool {
    pub fn new(dial: Dial, connections: usize) -> H2Pool {
        H2Pool {
            dial,
            slots: (0..connections.max(1))
                .map(|_| Slot {
                    conn: RwLock::new(None),
                    connecting: tokio::sync::Mutex::new(()),
                })
                .collect(),
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// Sends `req` and reads the whole response; keeps its body when `want_body`.
    pub async fn send(&self, req: &Request<'_>, want_body: bool) -> Result<Response, OpError> {
        let x = self.exchange(req, want_body).await?;
        let location = match x.status {
            300..=399 => x
                .headers
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            _ => None,
        };
        Ok(Response {
            status: x.status,
            location,
            body: x.body,
            timing: x.timing,
        })
    }

    /// Sends `req` and reads the whole exchange, trailers included; keeps the body when
    /// `want_body`.
    pub async fn exchange(&self, req: &Request<'_>, want_body: bool) -> Result<Exchange, OpError> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let mut timing = Phases::default();
        let mut tries = 0;
        loop {
            let (generation, sender) = self.sender(slot, &mut timing).await?;
            match self.round_trip(sender, req, want_body, &mut timing).await {
                Ok(resp) => return Ok(resp),
                Err(Failure::Unprocessed(e)) => {
                    self.retire(slot, generation);
                    tries += 1;
                    if tries > RESENDS {
                        return Err(e);
                    }
                }
                Err(Failure::Failed(e)) => {
                    self.retire(slot, generation);
                    return Err(e);
                }
            }
        }
    }

    /// Forgets the slot's connection if it is still `generation` (a request that found
    /// it broken); the next request connects anew.
    fn retire(&self, slot: &Slot, generation: u64) {
        let mut c = slot.conn.write();
        if c.as_ref().is_some_and(|(g, _)| *g == generation) {
            *c = None;
        }
    }

    /// The slot's connection, opened first when there is none (its connect and
    /// handshake times added to `timing`).
    async fn sender(
        &self,
        slot: &Slot,
        timing: &mut Phases,
    ) -> Result<(u64, SendRequest<Bytes>), OpError> {
        if let Some(c) = slot.conn.read().clone() {
            return Ok(c);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(c) = slot.conn.read().clone() {
            return Ok(c);
        }
        let sender = self.connect(timing).await?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        *slot.conn.write() = Some((generation, sender.clone()));
        Ok((generation, sender))
    }

    async fn connect(&self, timing: &mut Phases) -> Result<SendRequest<Bytes>, OpError> {
        let d = &self.dial;
        let t0 = Instant::now();
        let deadline = tokio::time::Instant::from_std(t0 + d.connect_timeout);
        let tcp =
            crate::drivers::connect::connect_tcp(&d.addr, deadline, d.connect_timeout).await?;
        let t1 = Instant::now();
        timing.connect = Some(timing.connect.unwrap_or_default() + (t1 - t0));
        let mut builder = h2::client::Builder::new();
        builder
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW)
            .enable_push(false);
        let handshake_err =
            |e: h2::Error| OpError::new(IO, format!("HTTP/2 handshake with {}: {e}", d.addr));
        match &d.tls {
            None => {
                let (sender, conn) = builder.handshake(tcp).await.map_err(handshake_err)?;
                settled(sender, conn, deadline, &d.addr).await
            }
            Some(dial) => {
                // Boxed: a rustls connection's state, kept out of every request's future.
                let tls =
                    Box::pin(dial.handshake(tcp, &d.addr, deadline, d.connect_timeout)).await?;
                timing.tls = Some(timing.tls.unwrap_or_default() + t1.elapsed());
                if tls.get_ref().1.alpn_protocol() != Some(super::tls::ALPN_H2) {
                    return Err(OpError::new(
                        IO,
                        format!("{} did not agree to HTTP/2 (ALPN)", d.addr),
                    ));
                }
                let (sender, conn) = builder.handshake(tls).await.map_err(handshake_err)?;
                settled(sender, conn, deadline, &d.addr).await
            }
        }
    }

    async fn round_trip(
        &self,
        sender: SendRequest<Bytes>,
        req: &Request<'_>,
        want_body: bool,
        timing: &mut Phases,
    ) -> Result<Exchange, Failure> {
        let d = &self.dial;
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(d.scheme.clone());
        uri.authority = Some(d.authority.clone());
        uri.path_and_query = Some(
            PathAndQuery::try_from(req.target)
                .map_err(|e| Failure::Failed(OpError::new(IO, format!("{}: {e}", req.target))))?,
        );
        let uri = Uri::from_parts(uri)
            .map_err(|e| Failure::Failed(OpError::new(IO, format!("{}: {e}", req.target))))?;
        let mut head = http::Request::builder()
            .method(req.method.clone())
            .uri(uri)
            .body(())
            .map_err(|e| Failure::Failed(OpError::new(IO, e.to_string())))?;
        let headers = head.headers_mut();
        let mut sent = 0u64;
        for (k, v) in req.headers {
            // Connection-specific headers do not exist in HTTP/2; Host is :authority.
            if is_connection_specific(k, v) {
                continue;
            }
            sent += (k.as_str().len() + v.len()) as u64;
            headers.append(k.clone(), v.clone());
        }
        if let Some(t) = req.traceparent {
            if let Ok(mut v) = http::HeaderValue::from_bytes(t) {
                // New on every request: sent as a never-indexed literal, so it does not
                // churn the HPACK table (evicting the headers that repeat) on both ends.
                v.set_sensitive(true);
                sent += (b"traceparent".len() + t.len()) as u64;
                headers.insert(http::HeaderName::from_static("traceparent"), v);
            }
        }
        for (k, v) in [
            (http::header::USER_AGENT, d.user_agent),
            (http::header::ACCEPT, "*/*"),
        ] {
            if !headers.contains_key(&k) {
                sent += (k.as_str().len() + v.len()) as u64;
                headers.insert(k, http::HeaderValue::from_static(v));
            }
        }
        let body = req.body.filter(|b| !b.is_empty());
        // Until the request is handed to h2 nothing has left: a closed connection here
        // is one to replace, not an error of the target.
        let not_sent = |e: h2::Error| {
            Failure::Unprocessed(OpError::new(IO, format!("HTTP/2 {}: {e}", d.addr)))
        };
        let mut sender = sender.ready().await.map_err(not_sent)?;
        let started = Instant::now();
        let (response, mut stream) = sender
            .send_request(head, body.is_none())
            .map_err(not_sent)?;
        if let Some(b) = body {
            send_body(&mut stream, b.clone())
                .await
                .map_err(|e| classify(e, &d.addr))?;
            sent += b.len() as u64;
        }
        let resp = response.await.map_err(|e| classify(e, &d.addr))?;
        let first = Instant::now();
        let (head, mut recv) = resp.into_parts();
        let status = head.status.as_u16();
        let mut received: u64 = header_bytes(&head.headers);
        let mut kept = BytesMut::new();
        // Part of the response came: it was processed, whatever fails now.
        let body_failed =
            |e: h2::Error| Failure::Failed(OpError::new(BODY, format!("HTTP/2 {}: {e}", d.addr)));
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(body_failed)?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            received += chunk.len() as u64;
            if received > MAX_BODY as u64 {
                return Err(Failure::Failed(OpError::new(
                    BODY,
                    format!("body larger than {MAX_BODY}"),
                )));
            }
            if want_body {
                kept.extend_from_slice(&chunk);
            }
        }
        let trailers = if recv.is_end_stream() {
            None
        } else {
            let t = recv.trailers().await.map_err(body_failed)?;
            if let Some(t) = &t {
                received += header_bytes(t);
            }
            t
        };
        let done = Instant::now();
        timing.first_byte = Some(first - started);
        timing.body = Some(done - first);
        timing.sent = sent;
        timing.received = received;
        Ok(Exchange {
            status,
            headers: head.headers,
            body: kept.freeze(),
            trailers,
            timing: *timing,
        })
    }
}

/// Starts the connection's task and waits for one PING round trip: the server's
/// SETTINGS come first on its side of the connection, so after the PONG its
/// `max_concurrent_streams` is known and no burst of streams opened in the first round
/// trip is refused for exceeding it.
async fn settled<T>(
    sender: SendRequest<Bytes>,
    mut conn: h2::client::Connection<T, Bytes>,
    deadline: tokio::time::Instant,
    addr: &str,
) -> Result<SendRequest<Bytes>, OpError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let ping = conn.ping_pong();
    tokio::spawn(async move {
        let _ = Batched {
            conn,
            yielded: false,
        }
        .await;
    });
    if let Some(mut ping) = ping {
        tokio::time::timeout_at(deadline, ping.ping(h2::Ping::opaque()))
            .await
            .map_err(|_| OpError::new(IO, format!("HTTP/2 {addr}: no SETTINGS in time")))?
            .map_err(|e| OpError::new(IO, format!("HTTP/2 {addr}: {e}")))?;
    }
    Ok(sender)
}

/// A connection's task that, each time it is woken, first lets the other ready tasks
/// run once. A request hands its frames to the connection and wakes it; tokio runs a
/// task woken that way next (its LIFO slot), so without this the connection wrote each
/// request as its own `writev` just after it was queued. Yielding once lets the other
/// operations due now queue theirs, and one write carries them all.
struct Batched<F> {
    conn: F,
    yielded: bool,
}

impl<F: std::future::Future + Unpin> std::future::Future for Batched<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        if !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        self.yielded = false;
        std::pin::Pin::new(&mut self.conn).poll(cx)
    }
}

/// Sends a request body within the stream's flow-control window.
async fn send_body(stream: &mut h2::SendStream<Bytes>, mut body: Bytes) -> Result<(), h2::Error> {
    while !body.is_empty() {
        stream.reserve_capacity(body.len());
        let n = match futures::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(n) => n?,
            None => return Err(h2::Error::from(Reason::CANCEL)),
        };
        let chunk = body.split_to(n.min(body.len()));
        stream.send_data(chunk, body.is_empty())?;
    }
    Ok(())
}

/// A header block's size as counted in the byte counters: names and values.
fn header_bytes(h: &HeaderMap) -> u64 {
    h.iter()
        .map(|(k, v)| (k.as_str().len() + v.len()) as u64)
        .sum()
}

/// Headers HTTP/2 forbids (RFC 9113 8.2.2), except `te: trailers`, which gRPC sends.
fn is_connection_specific(k: &http::HeaderName, v: &http::HeaderValue) -> bool {
    use http::header::{CONNECTION, HOST, TE, TRANSFER_ENCODING, UPGRADE};
    k == CONNECTION
        || k == HOST
        || k == TRANSFER_ENCODING
        || k == UPGRADE
        || (k == TE && v != "trailers")
        || k.as_str() == "keep-alive"
        || k.as_str() == "proxy-connection"
}

/// A sent stream's error: whether the server said it did not process the request
/// (above a graceful GOAWAY's last stream id, or REFUSED_STREAM), and its kind.
fn classify(e: h2::Error, addr: &str) -> Failure {
    let detail = format!("HTTP/2 {addr}: {e}");
    let graceful_go_away = e.is_go_away() && e.is_remote() && e.reason() == Some(Reason::NO_ERROR);
    let refused = e.is_reset() && e.is_remote() && e.reason() == Some(Reason::REFUSED_STREAM);
    if graceful_go_away || refused {
        return Failure::Unprocessed(OpError::new(reset_kind(e.reason()), detail));
    }
    if e.is_io() {
        return Failure::Failed(OpError::new(IO, detail));
    }
    Failure::Failed(OpError::new(reset_kind(e.reason()), detail))
}

/// `h2_<reason>` for a stream or connection error code: the protocol's fixed list.
pub fn reset_kind(r: Option<Reason>) -> &'static str {
    match r {
        None => IO,
        Some(r) => match u32::from(r) {
            0 => "h2_no_error",
            1 => "h2_protocol_error",
            2 => "h2_internal_error",
            3 => "h2_flow_control_error",
            4 => "h2_settings_timeout",
            5 => "h2_stream_closed",
            6 => "h2_frame_size_error",
            7 => "h2_refused_stream",
            8 => "h2_cancel",
            9 => "h2_compression_error",
            10 => "h2_connect_error",
            11 => "h2_enhance_your_calm",
            12 => "h2_inadequate_security",
            13 => "h2_http_1_1_required",
            _ => "h2_unknown",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::testcerts::TestCerts;
    use parking_lot::Mutex;
    use std::sync::Arc;

    /// What the test server does with the n-th stream it accepts (counted over all
    /// connections).
    #[derive(Clone, Copy)]
    enum Act {
        /// Answers 200 with this many body bytes after a delay.
        Ok(usize, Duration),
        /// Resets the stream.
        Reset(Reason),
    }

    #[derive(Default)]
    struct Seen {
        connections: AtomicUsize,
        streams: AtomicUsize,
        /// Streams accepted whose answer could not be sent (the connection was gone).
        aborted: AtomicUsize,
        active: AtomicUsize,
        peak: AtomicUsize,
        /// Request body bytes received, per stream.
        bodies: Mutex<Vec<usize>>,
        versions: Mutex<Vec<http::Version>>,
    }

    /// An HTTP/2 server (h2c, or TLS with ALPN h2) allowing `max_streams` per
    /// connection; with `goaway_after`, each connection is retired with a graceful
    /// GOAWAY once it has accepted that many streams.
    async fn server(
        tls: Option<Arc<TestCerts>>,
        max_streams: u32,
        goaway_after: Option<usize>,
        act: impl Fn(usize) -> Act + Send + Sync + 'static,
    ) -> (String, Arc<Seen>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let seen = Arc::new(Seen::default());
        let acceptor = tls.map(|c| {
            tokio_rustls::TlsAcceptor::from(c.server_config(&[super::super::tls::ALPN_H2], false))
        });
        let (s2, act) = (seen.clone(), Arc::new(act));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let (seen, act, acceptor) = (s2.clone(), act.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let io = match acceptor {
                        None => tokio_util::either::Either::Left(tcp),
                        Some(a) => match a.accept(tcp).await {
                            Ok(t) => tokio_util::either::Either::Right(t),
                            Err(_) => return,
                        },
                    };
                    let Ok(mut conn) = h2::server::Builder::new()
                        .max_concurrent_streams(max_streams)
                        .handshake::<_, Bytes>(io)
                        .await
                    else {
                        return;
                    };
                    seen.connections.fetch_add(1, Ordering::SeqCst);
                    let mut here = 0;
                    while let Some(Ok((req, mut respond))) = conn.accept().await {
                        here += 1;
                        if goaway_after == Some(here) {
                            conn.graceful_shutdown();
                        }
                        let n = seen.streams.fetch_add(1, Ordering::SeqCst);
                        let (seen, act) = (seen.clone(), act.clone());
                        tokio::spawn(async move {
                            let now = seen.active.fetch_add(1, Ordering::SeqCst) + 1;
                            seen.peak.fetch_max(now, Ordering::SeqCst);
                            seen.versions.lock().push(req.version());
                            let mut body = req.into_body();
                            let mut got = 0;
                            while let Some(Ok(d)) = body.data().await {
                                got += d.len();
                                let _ = body.flow_control().release_capacity(d.len());
                            }
                            seen.bodies.lock().push(got);
                            match act(n) {
                                Act::Reset(r) => respond.send_reset(r),
                                Act::Ok(len, delay) => {
                                    tokio::time::sleep(delay).await;
                                    let resp =
                                        http::Response::builder().status(200).body(()).unwrap();
                                    let answered = match respond.send_response(resp, len == 0) {
                                        Ok(_) if len == 0 => true,
                                        Ok(mut s) => {
                                            send_body(&mut s, Bytes::from(vec![b'x'; len]))
                                                .await
                                                .is_ok()
                                        }
                                        Err(_) => false,
                                    };
                                    if !answered {
                                        seen.aborted.fetch_add(1, Ordering::SeqCst);
                                    }
                                }
                            }
                            seen.active.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                    // Streams it accepted run to their end before the socket closes.
                    let _ = futures::future::poll_fn(|cx| conn.poll_closed(cx)).await;
                });
            }
        });
        (addr, seen)
    }

    fn pool(addr: &str, tls: Option<&TestCerts>, connections: usize) -> H2Pool {
        let tls = tls.map(|c| {
            let t = crate::config::tls::TargetTls {
                ca_file: Some(c.ca_file.display().to_string()),
                ..Default::default()
            };
            let config =
                super::super::tls::client_config(Some(&t), false, &[super::super::tls::ALPN_H2])
                    .unwrap();
            TlsDial::new(
                Arc::new(config),
                tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            )
        });
        H2Pool::new(
            Dial {
                addr: addr.to_string(),
                scheme: if tls.is_some() {
                    Scheme::HTTPS
                } else {
                    Scheme::HTTP
                },
                authority: addr.parse().unwrap(),
                tls,
                connect_timeout: Duration::from_secs(2),
                user_agent: "soakd-test",
            },
            connections,
        )
    }

    async fn get(p: &H2Pool, body: Option<&Bytes>) -> Result<Response, OpError> {
        let headers = HeaderMap::new();
        let method = if body.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        p.send(
            &Request {
                method: &method,
                target: "/x?y=1",
                headers: &headers,
                body,
                traceparent: None,
            },
            true,
        )
        .await
    }

    async fn many(p: &Arc<H2Pool>, n: usize) -> Vec<Result<Response, OpError>> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move { get(&p, None).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn streams_stay_within_the_servers_max_concurrent_streams() {
        let (addr, seen) = server(None, 3, None, |_| Act::Ok(10, Duration::from_millis(30))).await;
        let p = Arc::new(pool(&addr, None, 1));
        let all = many(&p, 30).await;
        for r in &all {
            let r = r.as_ref().unwrap();
            assert_eq!((r.status, r.body.len()), (200, 10));
        }
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1, "one connection");
        assert_eq!(
            seen.peak.load(Ordering::SeqCst),
            3,
            "never more than the server allows"
        );
        assert!(seen
            .versions
            .lock()
            .iter()
            .all(|v| *v == http::Version::HTTP_2));
    }

    #[tokio::test]
    async fn requests_spread_over_the_connections() {
        let (addr, seen) = server(None, 100, None, |_| Act::Ok(2, Duration::from_millis(5))).await;
        let p = Arc::new(pool(&addr, None, 4));
        assert!(many(&p, 40).await.iter().all(|r| r.is_ok()));
        assert_eq!(seen.connections.load(Ordering::SeqCst), 4);
    }

    /// 8 workers sending 25 requests each, one after another.
    async fn steady(p: &Arc<H2Pool>) -> Vec<OpError> {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move {
                    let mut failed = Vec::new();
                    for _ in 0..25 {
                        if let Err(e) = get(&p, None).await {
                            failed.push(e);
                        }
                    }
                    failed
                })
            })
            .collect();
        let mut failed = Vec::new();
        for w in workers {
            failed.extend(w.await.unwrap());
        }
        failed
    }

    #[tokio::test]
    async fn a_graceful_goaway_mid_run_costs_no_request() {
        // Every connection is retired with a graceful GOAWAY (h2's: GOAWAY with the
        // highest id, a PING, then GOAWAY with the last stream id it accepted, finishing
        // those — as nginx does at http2_max_requests) after 10 streams, while 8
        // requests are in flight: streams above the last id are sent again on a new
        // connection, and none fails.
        {
            let (addr, seen) = server(None, 100, Some(10), |_| {
                Act::Ok(100, Duration::from_millis(2))
            })
            .await;
            let p = Arc::new(pool(&addr, None, 1));
            let failed = steady(&p).await;
            assert!(failed.is_empty(), "{failed:?}");
            assert_eq!(seen.aborted.load(Ordering::SeqCst), 0);
            assert!(seen.streams.load(Ordering::SeqCst) >= 200);
            let conns = seen.connections.load(Ordering::SeqCst);
            assert!(conns >= 10, "reconnected after each GOAWAY: {conns}");
        }
    }

    #[tokio::test]
    async fn resets_are_classified_and_refused_streams_sent_again() {
        // The first stream is refused, then served: the request succeeds.
        let (addr, seen) = server(None, 100, None, |n| match n {
            0 => Act::Reset(Reason::REFUSED_STREAM),
            _ => Act::Ok(2, Duration::ZERO),
        })
        .await;
        assert_eq!(get(&pool(&addr, None, 1), None).await.unwrap().status, 200);
        assert_eq!(seen.streams.load(Ordering::SeqCst), 2);
        // Refused every time: given up after the resends, kind h2_refused_stream.
        let (addr, seen) = server(None, 100, None, |_| Act::Reset(Reason::REFUSED_STREAM)).await;
        let e = get(&pool(&addr, None, 1), None).await.unwrap_err();
        assert_eq!(e.kind, "h2_refused_stream", "{e:?}");
        assert_eq!(seen.streams.load(Ordering::SeqCst), 1 + RESENDS);
        // Any other reset is the target's error, not sent again.
        let (addr, seen) = server(None, 100, None, |_| Act::Reset(Reason::INTERNAL_ERROR)).await;
        let e = get(&pool(&addr, None, 1), None).await.unwrap_err();
        assert_eq!(e.kind, "h2_internal_error", "{e:?}");
        assert_eq!(seen.streams.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn bodies_larger_than_the_windows_go_both_ways_over_tls() {
        let certs = Arc::new(TestCerts::new());
        let (addr, seen) = server(Some(certs.clone()), 100, None, |_| {
            Act::Ok(3 << 20, Duration::ZERO)
        })
        .await;
        let p = pool(&addr, Some(&certs), 1);
        let up = Bytes::from(vec![b'u'; 300_000]);
        let r = get(&p, Some(&up)).await.unwrap();
        assert_eq!(r.body.len(), 3 << 20);
        assert_eq!(*seen.bodies.lock(), [300_000]);
        // A new connection's connect and handshake are timed; a reused one's are not.
        assert!(
            r.timing.connect.is_some() && r.timing.tls.is_some(),
            "{:?}",
            r.timing
        );
        assert!(
            r.timing.sent >= 300_000 && r.timing.received >= 3 << 20,
            "{:?}",
            r.timing
        );
        let again = get(&p, None).await.unwrap().timing;
        assert_eq!((again.connect, again.tls), (None, None));
        assert!(again.first_byte.is_some() && again.body.is_some());
    }

    #[tokio::test]
    async fn a_server_that_closed_the_connection_is_replaced() {
        let (addr, seen) = server(None, 100, Some(1), |_| Act::Ok(2, Duration::ZERO)).await;
        let p = pool(&addr, None, 1);
        for _ in 0..5 {
            assert_eq!(get(&p, None).await.unwrap().status, 200);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(seen.connections.load(Ordering::SeqCst), 5);
    }
}
