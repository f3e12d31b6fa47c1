//! HTTP driver: soakd's own HTTP/1.1 and HTTP/2 clients (plain and TLS), pooled
//! connections, redirects, multi-step ops and extraction.
//!
//! Error kinds: `connect` (could not connect), `tls` (the handshake failed), `io` (the
//! connection failed after it was made), `timeout`, `status_4xx`, `status_5xx`,
//! `status_other` (an unexpected 1xx/3xx), `h2_<reason>` (an HTTP/2 reset),
//! `body` (the body could not be read, was not JSON where a step extracts, or held no
//! match with `on_empty: error`), `template`.

use super::extract::extract;
use super::h1::{self, H1Pool};
use super::h2::{Dial as H2Dial, H2Pool, Request as H2Request};
use super::kind::{self, BODY, CONNECT, IO, STATUS_4XX, STATUS_5XX, STATUS_OTHER};
use super::tls;
use crate::config::{Extract, HttpTarget, HttpVersion, OnEmpty, Op, OpKind, StatusMatch};
use crate::drivers::driver::{Driver, OpError, OpResult};
use crate::template::{IterVars, JsonTemplate, Template};
use bytes::Bytes;
use futures::future::BoxFuture;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde_json::Value as Json;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Redirects followed per request, as reqwest's default policy.
const MAX_REDIRECTS: usize = 10;

const USER_AGENT: &str = concat!("soakd/", env!("CARGO_PKG_VERSION"));

/// A target's connections, shared by every scenario on it and kept across reloads.
///
/// Every request goes through soakd's own clients: HTTP/1.1 ([`H1Pool`]) for `http://`
/// and `https://` targets with version `auto` or `http1`, HTTP/2 ([`H2Pool`]) for
/// `version: http2` (h2c on `http://`) and for an `https://` server that chooses `h2`
/// by ALPN under `auto`. reqwest is kept for one case: a redirect to another origin,
/// followed with the same TLS settings. Either way at most `max_connections` requests
/// are on the wire at once (for HTTP/1.1 that bounds the connections; further requests
/// wait for a slot, and the wait counts in their latency).
#[derive(Clone)]
pub struct HttpClient {
    reqwest: reqwest::Client,
    fast: Arc<FastPath>,
    slots: Option<Arc<Semaphore>>,
}

struct FastPath {
    /// HTTP/1.1 (absent for `version: http2`).
    h1: Option<H1Pool>,
    /// HTTP/2 (`version: http2`, or `auto` over TLS in case the server chooses it).
    h2: Option<H2Pool>,
    /// The base URL, to resolve redirects against.
    base: Url,
}

impl crate::metrics::MemorySize for FastPath {
    fn memory_bytes(&self) -> u64 {
        self.h1.as_ref().map_or(0, H1Pool::buffer_bytes)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("base_url: {0}")]
    Url(String),
    #[error("base_url: no host")]
    NoHost,
    #[error("tls: {0}")]
    Tls(String),
    #[error(transparent)]
    Reqwest(#[from] reqwest::Error),
}

impl HttpClient {
    pub fn new(h: &HttpTarget) -> Result<HttpClient, ClientError> {
        let connect_timeout = h
            .connect_timeout
            .map(|d| d.0)
            .unwrap_or(crate::drivers::connect::CONNECT_TIMEOUT);
        let idle_timeout = h
            .pool_idle_timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(90));
        let max_idle = h.pool_max_idle_per_host.unwrap_or(1024);
        let tls = h.tls.as_ref();
        let config = |alpn: &[&[u8]]| {
            tls::client_config(tls, h.tls_skip_verify, alpn)
                .map(Arc::new)
                .map_err(ClientError::Tls)
        };
        let auto_alpn: &[&[u8]] = &[tls::ALPN_H2, tls::ALPN_HTTP1];
        // Redirects to other origins: HTTP/2 or HTTP/1.1 as the origin chooses, with
        // the same roots, client certificate and verification.
        let reqwest = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .connect_timeout(connect_timeout)
            .pool_max_idle_per_host(max_idle)
            .pool_idle_timeout(idle_timeout)
            .user_agent(USER_AGENT)
            .use_preconfigured_tls((*config(auto_alpn)?).clone())
            .build()?;
        let base = Url::parse(&h.base_url).map_err(|e| ClientError::Url(e.to_string()))?;
        let host = base.host_str().ok_or(ClientError::NoHost)?;
        let https = base.scheme() == "https";
        let port = base
            .port_or_known_default()
            .unwrap_or(if https { 443 } else { 80 });
        let authority = match base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let addr = format!("{host}:{port}");
        let name = || tls::server_name(tls, host).map_err(ClientError::Tls);
        let h1 = match h.version {
            HttpVersion::Http2 => None,
            HttpVersion::Auto | HttpVersion::Http1 => {
                let dial = if https {
                    let alpn = match h.version {
                        HttpVersion::Auto => auto_alpn,
                        _ => &[tls::ALPN_HTTP1],
                    };
                    Some(tls::TlsDial::new(config(alpn)?, name()?))
                } else {
                    None
                };
                Some(H1Pool::new(
                    addr.clone(),
                    authority.clone(),
                    USER_AGENT,
                    connect_timeout,
                    idle_timeout,
                    max_idle,
                    dial,
                ))
            }
        };
        let h2 = match (h.version, https) {
            (HttpVersion::Http1, _) | (HttpVersion::Auto, false) => None,
            (HttpVersion::Http2 | HttpVersion::Auto, _) => {
                let tls = if https {
                    Some(tls::TlsDial::new(config(&[tls::ALPN_H2])?, name()?))
                } else {
                    None
                };
                Some(H2Pool::new(
                    H2Dial {
                        addr,
                        scheme: if https {
                            http::uri::Scheme::HTTPS
                        } else {
                            http::uri::Scheme::HTTP
                        },
                        authority: authority
                            .parse()
                            .map_err(|e| ClientError::Url(format!("{authority}: {e}")))?,
                        tls,
                        connect_timeout,
                        user_agent: USER_AGENT,
                    },
                    h.connections.unwrap_or(1),
                ))
            }
        };
        Ok(HttpClient {
            reqwest,
            fast: Arc::new(FastPath { h1, h2, base }),
            slots: h.max_connections.map(|n| Arc::new(Semaphore::new(n))),
        })
    }

    /// The HTTP/1.1 connections' buffers, to register under `connections`.
    pub fn memory_source(&self) -> std::sync::Weak<dyn crate::metrics::MemorySize> {
        let weak: std::sync::Weak<FastPath> = Arc::downgrade(&self.fast);
        weak
    }

    /// Sends one request and reads the whole response (its body only when
    /// `want_body`), following redirects.
    async fn send(&self, req: &Prepared<'_>, want_body: bool) -> Result<h1::Response, OpError> {
        let t0 = std::time::Instant::now();
        let _slot = match &self.slots {
            Some(s) => Some(
                s.acquire()
                    .await
                    .map_err(|_| OpError::new(IO, "the target's client was closed"))?,
            ),
            None => None,
        };
        // The wait for a slot, when there are slots (max_connections).
        let queue = self.slots.as_ref().map(|_| t0.elapsed());
        let mut resp = self.send_fast(req, want_body).await?;
        resp.timing.queue = queue;
        Ok(resp)
    }

    /// One hop on the target's own connections: HTTP/1.1 unless the target speaks
    /// HTTP/2 (by configuration, or because its server chose `h2` by ALPN).
    async fn hop(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        body: Option<&Bytes>,
        traceparent: Option<&[u8]>,
        want_body: bool,
    ) -> Result<h1::Response, OpError> {
        let f = &self.fast;
        if let Some(p) = f.h1.as_ref().filter(|p| !p.chose_h2()) {
            let req = h1::Request {
                method,
                target,
                headers,
                body: body.map(|b| &b[..]),
                traceparent,
            };
            match p.send(&req, want_body).await {
                // The server chose HTTP/2 in this handshake: nothing was sent.
                Err(_) if p.chose_h2() && f.h2.is_some() => {}
                r => return r,
            }
        }
        let Some(p) = &f.h2 else {
            return Err(OpError::new(IO, "the server chose HTTP/2, which is off"));
        };
        let req = H2Request {
            method,
            target,
            headers,
            body,
            traceparent,
        };
        // Boxed: its state would otherwise be inlined into every operation's future,
        // which is copied into a box per operation (HTTP/1.1's included).
        Box::pin(p.send(&req, want_body)).await
    }

    async fn send_fast(
        &self,
        req: &Prepared<'_>,
        want_body: bool,
    ) -> Result<h1::Response, OpError> {
        let f = &self.fast;
        // Owned copies only when a redirect changes them.
        let mut method = req.method.clone();
        let mut target = Cow::Borrowed(&*req.target);
        let mut headers = Cow::Borrowed(&req.headers);
        let mut body = req.body.clone();
        // Every hop's time and bytes count.
        let mut timing = crate::phases::Phases::default();
        for _ in 0..=MAX_REDIRECTS {
            let mut resp = self
                .hop(
                    &method,
                    &target,
                    &headers,
                    body.as_ref(),
                    req.traceparent.as_ref().map(|t| &t[..]),
                    want_body,
                )
                .await?;
            timing.add(&resp.timing);
            let Some(next) = redirect(&resp, &method) else {
                resp.timing = timing;
                return Ok(resp);
            };
            let here = f
                .base
                .join(&target)
                .map_err(|e| OpError::new(IO, format!("{target}: {e}")))?;
            let to = here.join(&next.location).map_err(|e| {
                OpError::new(
                    STATUS_OTHER,
                    format!("redirect to {:?}: {e}", next.location),
                )
            })?;
            if next.drop_body {
                method = next.method;
                body = None;
                headers.to_mut().remove(header::CONTENT_TYPE);
            }
            let same_origin = to.scheme() == f.base.scheme()
                && to.host_str() == f.base.host_str()
                && to.port_or_known_default() == f.base.port_or_known_default();
            if !same_origin {
                // Elsewhere: reqwest follows the rest. It strips credentials only on
                // the redirects it follows itself, so strip them here.
                for h in [
                    header::AUTHORIZATION,
                    header::COOKIE,
                    header::PROXY_AUTHORIZATION,
                ] {
                    headers.to_mut().remove(h);
                }
                if let Some(v) = req
                    .traceparent
                    .and_then(|t| HeaderValue::from_bytes(&t).ok())
                {
                    headers
                        .to_mut()
                        .insert(HeaderName::from_static("traceparent"), v);
                }
                // Boxed, as the HTTP/2 path: reqwest's futures are large and rare here.
                let mut r =
                    Box::pin(self.send_reqwest(method, to, headers.into_owned(), body)).await?;
                // The hops made here; reqwest's own are not measured.
                r.timing = timing;
                return Ok(r);
            }
            target = Cow::Owned(origin_form(&to));
        }
        Err(OpError::new(
            STATUS_OTHER,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }

    async fn send_reqwest(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<h1::Response, OpError> {
        let mut req = self.reqwest.request(method, url).headers(headers);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.map_err(classify)?;
        let status = resp.status().as_u16();
        // Read the whole body so the connection goes back to the pool.
        let body = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                OpError::new(kind::TIMEOUT, e.to_string())
            } else {
                OpError::new(BODY, e.to_string())
            }
        })?;
        // reqwest does not say where the time went: no phases.
        Ok(h1::Response {
            status,
            location: None,
            body,
            timing: Default::default(),
        })
    }
}

struct Redirect {
    location: String,
    method: Method,
    drop_body: bool,
}

/// Where a 3xx response sends the request, with browsers' (and reqwest's) method
/// rules: 303, and 301/302 after a POST, become a GET without a body.
fn redirect(resp: &h1::Response, method: &Method) -> Option<Redirect> {
    let location = resp.location.clone()?;
    let (method, drop_body) = match resp.status {
        303 if *method == Method::HEAD => (Method::HEAD, true),
        303 => (Method::GET, true),
        301 | 302 if *method == Method::POST => (Method::GET, true),
        301 | 302 | 307 | 308 => (method.clone(), false),
        _ => return None,
    };
    Some(Redirect {
        location,
        method,
        drop_body,
    })
}

/// A rendered request; `target` is origin-form (path and query).
struct Prepared<'a> {
    method: Method,
    target: Cow<'a, str>,
    headers: HeaderMap,
    body: Option<Bytes>,
    /// `traceparent` (`trace: on`), apart from `headers`: no header map per request.
    traceparent: Option<[u8; 55]>,
}

enum Body {
    None,
    Raw(Template),
    Json(JsonTemplate),
}

struct Step {
    method: Method,
    path: Template,
    /// The request target (origin-form), parsed once, when the path has no template.
    fixed: Option<String>,
    headers: Vec<(HeaderName, Template)>,
    body: Body,
    expect: Vec<StatusMatch>,
    extract: Vec<Extract>,
}

pub struct HttpDriver {
    client: HttpClient,
    /// The base URL without a trailing slash (for error messages and odd paths).
    base: String,
    /// The base URL's path without a trailing slash (the fast path's request target).
    base_path: String,
    headers: Vec<(HeaderName, Template)>,
    ops: Vec<Vec<Step>>,
}

fn header_list(
    h: &std::collections::BTreeMap<String, Template>,
) -> Result<Vec<(HeaderName, Template)>, String> {
    h.iter()
        .map(|(k, v)| {
            HeaderName::from_bytes(k.as_bytes())
                .map(|n| (n, v.clone()))
                .map_err(|e| format!("header {k:?}: {e}"))
        })
        .collect()
}

/// The origin-form request target (path and query) of a URL.
fn origin_form(url: &Url) -> String {
    let mut s = url.path().to_string();
    if let Some(q) = url.query() {
        s.push('?');
        s.push_str(q);
    }
    s
}

/// Whether `s` can go on the request line as it is: a path with no bytes that need
/// percent-encoding (else the URL parser encodes it).
fn plain_target(s: &str) -> bool {
    s.starts_with('/') && s.bytes().all(|b| b.is_ascii_graphic() && b != b'#')
}

impl HttpDriver {
    pub fn new(client: HttpClient, target: &HttpTarget, ops: &[Op]) -> Result<Self, String> {
        let base = target.base_url.trim_end_matches('/');
        let base_url = Url::parse(base).map_err(|e| format!("base_url: {e}"))?;
        let mut compiled = Vec::with_capacity(ops.len());
        for op in ops {
            let OpKind::Http(steps) = &op.kind else {
                return Err(format!(
                    "op {}: a {} op cannot run on an http target",
                    op.name,
                    op.kind.type_name()
                ));
            };
            let mut out = Vec::with_capacity(steps.len());
            for s in steps {
                let r = &s.request;
                let fixed = if r.path.is_static() {
                    let url = Url::parse(&format!("{base}{}", r.path.source()))
                        .map_err(|e| format!("op {}: url: {e}", op.name))?;
                    Some(origin_form(&url))
                } else {
                    None
                };
                out.push(Step {
                    method: Method::from_bytes(r.method.as_bytes())
                        .map_err(|e| format!("op {}: method: {e}", op.name))?,
                    path: r.path.clone(),
                    fixed,
                    headers: header_list(&r.headers)?,
                    body: match (&r.body, &r.json) {
                        (Some(b), _) => Body::Raw(b.clone()),
                        (None, Some(j)) => Body::Json(j.clone()),
                        (None, None) => Body::None,
                    },
                    expect: r
                        .expect
                        .clone()
                        .unwrap_or_else(|| vec![StatusMatch::Class(2)]),
                    extract: s.extract.clone(),
                });
            }
            compiled.push(out);
        }
        Ok(HttpDriver {
            client,
            base: base.to_string(),
            base_path: base_url.path().trim_end_matches('/').to_string(),
            headers: header_list(&target.headers)?,
            ops: compiled,
        })
    }

    fn prepare<'s>(
        &self,
        step: &'s Step,
        vars: &mut IterVars<'_>,
    ) -> Result<Prepared<'s>, OpError> {
        let tmpl_err =
            |e: crate::template::RenderError| OpError::new(kind::TEMPLATE, e.to_string());
        let target = match &step.fixed {
            Some(origin) => Cow::Borrowed(origin.as_str()),
            None => {
                let mut s = self.base_path.clone();
                step.path.render_into(vars, &mut s).map_err(tmpl_err)?;
                if plain_target(&s) {
                    Cow::Owned(s)
                } else {
                    // Through the URL parser, which percent-encodes what needs it.
                    let full = format!("{}{}", self.base, &s[self.base_path.len()..]);
                    let url = Url::parse(&full)
                        .map_err(|e| OpError::new(kind::TEMPLATE, format!("url {full:?}: {e}")))?;
                    Cow::Owned(origin_form(&url))
                }
            }
        };
        let mut headers = HeaderMap::new();
        for (name, t) in self.headers.iter().chain(step.headers.iter()) {
            let v = t.render(vars).map_err(tmpl_err)?;
            let v = HeaderValue::from_str(&v).map_err(|_| {
                OpError::new(kind::TEMPLATE, format!("header {name}: invalid value"))
            })?;
            headers.insert(name.clone(), v);
        }
        // Every request of the iteration carries its trace, each with a new span id.
        let traceparent = vars.trace().map(|t| t.traceparent());
        let body = match &step.body {
            Body::None => None,
            Body::Raw(t) => Some(Bytes::from(t.render(vars).map_err(tmpl_err)?)),
            Body::Json(j) => {
                let v = j.render(vars).map_err(tmpl_err)?;
                let b = serde_json::to_vec(&v)
                    .map_err(|e| OpError::new(kind::TEMPLATE, format!("json body: {e}")))?;
                if !headers.contains_key(header::CONTENT_TYPE) {
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                }
                Some(Bytes::from(b))
            }
        };
        Ok(Prepared {
            method: step.method.clone(),
            target,
            headers,
            body,
            traceparent,
        })
    }

    /// Sends op `op`'s (first) request and returns its status and body whatever the
    /// status: a visibility poll judges the answer itself.
    pub async fn fetch(&self, op: usize, vars: &mut IterVars<'_>) -> Result<(u16, Bytes), OpError> {
        let Some(step) = self.ops.get(op).and_then(|s| s.first()) else {
            return Err(OpError::new(kind::TEMPLATE, format!("no op #{op}")));
        };
        let req = self.prepare(step, vars)?;
        let resp = self.client.send(&req, true).await?;
        Ok((resp.status, resp.body))
    }

    async fn run_step(&self, step: &Step, vars: &mut IterVars<'_>) -> Result<Flow, OpError> {
        let req = self.prepare(step, vars)?;
        // For error messages only.
        let url = || {
            format!(
                "{}{}",
                self.base.trim_end_matches(&*self.base_path),
                req.target
            )
        };
        let resp = self.client.send(&req, !step.extract.is_empty()).await?;
        vars.phases.add(&resp.timing);
        let status = resp.status;
        let bytes = resp.body;
        if !step.expect.iter().any(|m| m.matches(status)) {
            let k = match status {
                400..=499 => STATUS_4XX,
                500..=599 => STATUS_5XX,
                _ => STATUS_OTHER,
            };
            return Err(OpError::new(
                k,
                format!("{} {}: status {status}", step.method, url()),
            ));
        }
        if step.extract.is_empty() {
            return Ok(Flow::Continue);
        }
        let doc: Json = serde_json::from_slice(&bytes)
            .map_err(|e| OpError::new(BODY, format!("{}: response is not JSON: {e}", url())))?;
        for ex in &step.extract {
            match extract(&doc, ex) {
                Some(bound) => {
                    for (name, v) in ex.bind.iter().zip(bound) {
                        vars.bind(name, v);
                    }
                }
                None => match ex.on_empty {
                    OnEmpty::Skip => return Ok(Flow::Stop),
                    OnEmpty::Error => {
                        return Err(OpError::new(
                            BODY,
                            format!("{}: nothing matched {}", url(), ex.from),
                        ))
                    }
                },
            }
        }
        Ok(Flow::Continue)
    }
}

enum Flow {
    Continue,
    /// Nothing to act on: end the operation successfully.
    Stop,
}

fn classify(e: reqwest::Error) -> OpError {
    let k = if e.is_timeout() {
        kind::TIMEOUT
    } else if e.is_connect() {
        CONNECT
    } else if e.is_body() || e.is_decode() {
        BODY
    } else {
        IO
    };
    // The full chain: reqwest's top-level message rarely says what went wrong.
    let mut detail = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        src = s.source();
    }
    OpError::new(k, detail)
}

impl Driver for HttpDriver {
    fn execute<'a, 'b: 'a>(
        &'a self,
        op: usize,
        vars: &'a mut IterVars<'b>,
    ) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            let Some(steps) = self.ops.get(op) else {
                return Err(OpError::new(kind::TEMPLATE, format!("no op #{op}")));
            };
            for step in steps {
                if let Flow::Stop = self.run_step(step, vars).await? {
                    break;
                }
            }
            Ok(())
        })
    }
}
