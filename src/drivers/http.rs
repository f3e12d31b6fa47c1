//! HTTP driver: soakd's own HTTP/1.1 client (plain and TLS), reqwest for HTTP/2;
//! pooled keep-alive connections.
//!
//! Error kinds: `connect` (could not connect), `tls` (the handshake failed), `io` (the
//! connection failed after it was made), `timeout`, `status_4xx`, `status_5xx`,
//! `status_other` (an unexpected 1xx/3xx),
//! `body` (the body could not be read, was not JSON where a step extracts, or held no
//! match with `on_empty: error`), `template`.

use super::h1::{self, H1Pool};
use super::kind::{self, BODY, CONNECT, IO, STATUS_4XX, STATUS_5XX, STATUS_OTHER};
use super::tls;
use super::{Driver, OpError, OpResult};
use crate::config::{Extract, HttpTarget, HttpVersion, OnEmpty, Op, OpKind, Pick, StatusMatch};
use crate::template::{IterVars, JsonTemplate, Template};
use bytes::Bytes;
use futures::future::BoxFuture;
use rand::Rng;
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
/// HTTP/1.1 — `http://` and `https://` targets with version `auto` or `http1` — goes
/// through soakd's own pool ([`H1Pool`]); HTTP/2 — `version: http2`, or a server that
/// chooses `h2` by ALPN under `auto` — and redirects to other origins go through
/// reqwest, with the same TLS settings. Either way at most
/// `max_connections` requests are on the wire at once (for HTTP/1.1 that bounds the
/// connections; further requests wait for a slot, and the wait counts in their latency).
#[derive(Clone)]
pub struct HttpClient {
    reqwest: reqwest::Client,
    fast: Option<Arc<FastPath>>,
    slots: Option<Arc<Semaphore>>,
}

struct FastPath {
    pool: H1Pool,
    /// The base URL, to resolve redirects against.
    base: Url,
}

impl crate::metrics::MemorySize for FastPath {
    fn memory_bytes(&self) -> u64 {
        self.pool.buffer_bytes()
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
            .unwrap_or(Duration::from_secs(5));
        let idle_timeout = h
            .pool_idle_timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(90));
        let max_idle = h.pool_max_idle_per_host.unwrap_or(1024);
        let tls = h.tls.as_ref();
        let alpn: &[&[u8]] = match h.version {
            HttpVersion::Auto => &[tls::ALPN_H2, tls::ALPN_HTTP1],
            HttpVersion::Http1 => &[tls::ALPN_HTTP1],
            HttpVersion::Http2 => &[tls::ALPN_H2],
        };
        let tls_config =
            tls::client_config(tls, h.tls_skip_verify, alpn).map_err(ClientError::Tls)?;
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .connect_timeout(connect_timeout)
            .pool_max_idle_per_host(max_idle)
            .pool_idle_timeout(idle_timeout)
            .user_agent(USER_AGENT)
            // The same roots, client certificate and verification as the fast path.
            .use_preconfigured_tls(tls_config.clone());
        b = match h.version {
            HttpVersion::Auto => b,
            HttpVersion::Http1 => b.http1_only(),
            HttpVersion::Http2 => b.http2_prior_knowledge(),
        };
        let base = Url::parse(&h.base_url).map_err(|e| ClientError::Url(e.to_string()))?;
        let fast = if h.version != HttpVersion::Http2 {
            let host = base.host_str().ok_or(ClientError::NoHost)?;
            let port = base.port_or_known_default().unwrap_or(80);
            let host_header = match base.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_string(),
            };
            let dial = match base.scheme() {
                "https" => Some(h1::TlsDial {
                    connector: tokio_rustls::TlsConnector::from(Arc::new(tls_config)),
                    name: tls::server_name(tls, host).map_err(ClientError::Tls)?,
                }),
                _ => None,
            };
            Some(Arc::new(FastPath {
                pool: H1Pool::new(
                    format!("{host}:{port}"),
                    host_header,
                    USER_AGENT,
                    connect_timeout,
                    idle_timeout,
                    max_idle,
                    dial,
                ),
                base,
            }))
        } else {
            None
        };
        Ok(HttpClient {
            reqwest: b.build()?,
            fast,
            slots: h.max_connections.map(|n| Arc::new(Semaphore::new(n))),
        })
    }

    /// The fast path's connection buffers, to register under `connections` (None on
    /// reqwest's path, whose buffers are not visible from here).
    pub fn memory_source(&self) -> Option<std::sync::Weak<dyn crate::metrics::MemorySize>> {
        let f = self.fast.as_ref()?;
        let weak: std::sync::Weak<FastPath> = Arc::downgrade(f);
        Some(weak)
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
        match (&self.fast, &req.url) {
            (Some(f), Target::Origin(target)) => {
                let mut resp = self.send_fast(f, req, target, want_body).await?;
                resp.timing.queue = queue;
                Ok(resp)
            }
            (_, Target::Origin(_)) => Err(OpError::new(IO, "no fast path for this target")),
            (_, Target::Url(url)) => {
                self.send_reqwest(
                    req.method.clone(),
                    url.clone(),
                    req.headers.clone(),
                    req.body.clone(),
                )
                .await
            }
        }
    }

    async fn send_fast(
        &self,
        f: &FastPath,
        req: &Prepared<'_>,
        target: &str,
        want_body: bool,
    ) -> Result<h1::Response, OpError> {
        // Owned copies only when a redirect changes them.
        let mut method = req.method.clone();
        let mut target = Cow::Borrowed(target);
        let mut headers = Cow::Borrowed(&req.headers);
        let mut body = req.body.clone();
        // Every hop's time and bytes count.
        let mut timing = crate::phases::Phases::default();
        for _ in 0..=MAX_REDIRECTS {
            let req = h1::Request {
                method: &method,
                target: &target,
                headers: &headers,
                body: body.as_deref(),
            };
            let sent = if f.pool.chose_h2() {
                None
            } else {
                Some(f.pool.send(&req, want_body).await)
            };
            let mut resp = match sent {
                Some(Ok(r)) => r,
                Some(Err(e)) if !f.pool.chose_h2() => return Err(e),
                // The server chose HTTP/2 by ALPN (version `auto`): nothing was sent on
                // this path; reqwest's client speaks HTTP/2.
                _ => {
                    let url = f
                        .base
                        .join(&target)
                        .map_err(|e| OpError::new(IO, format!("{target}: {e}")))?;
                    let mut r = self
                        .send_reqwest(method, url, headers.into_owned(), body)
                        .await?;
                    r.timing = timing;
                    return Ok(r);
                }
            };
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
                let mut r = self
                    .send_reqwest(method, to, headers.into_owned(), body)
                    .await?;
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

/// Where a request goes: an origin-form target on the fast path, a URL for reqwest.
enum Target<'a> {
    Origin(Cow<'a, str>),
    Url(Url),
}

/// A rendered request.
struct Prepared<'a> {
    method: Method,
    url: Target<'a>,
    headers: HeaderMap,
    body: Option<Bytes>,
}

enum Body {
    None,
    Raw(Template),
    Json(JsonTemplate),
}

struct Step {
    method: Method,
    path: Template,
    /// The request target, parsed once, when the path has no template.
    fixed: Option<FixedUrl>,
    headers: Vec<(HeaderName, Template)>,
    body: Body,
    expect: Vec<StatusMatch>,
    extract: Vec<Extract>,
}

struct FixedUrl {
    url: Url,
    origin: String,
}

pub struct HttpDriver {
    client: HttpClient,
    /// The base URL without a trailing slash (reqwest's path).
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
                    let origin = origin_form(&url);
                    Some(FixedUrl { url, origin })
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
        let fast = self.client.fast.is_some();
        let url = match &step.fixed {
            Some(f) if fast => Target::Origin(Cow::Borrowed(&f.origin)),
            Some(f) => Target::Url(f.url.clone()),
            None => {
                let mut s = if fast {
                    self.base_path.clone()
                } else {
                    self.base.clone()
                };
                step.path.render_into(vars, &mut s).map_err(tmpl_err)?;
                if fast && plain_target(&s) {
                    Target::Origin(Cow::Owned(s))
                } else {
                    let full = if fast {
                        format!("{}{}", self.base, &s[self.base_path.len()..])
                    } else {
                        s
                    };
                    let url = Url::parse(&full)
                        .map_err(|e| OpError::new(kind::TEMPLATE, format!("url {full:?}: {e}")))?;
                    if fast {
                        Target::Origin(Cow::Owned(origin_form(&url)))
                    } else {
                        Target::Url(url)
                    }
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
        if let Some(t) = vars.trace() {
            // Every request of the iteration carries its trace, each with a new span id.
            if let Ok(v) = HeaderValue::from_bytes(&t.traceparent()) {
                headers.insert(HeaderName::from_static("traceparent"), v);
            }
        }
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
            url,
            headers,
            body,
        })
    }

    async fn run_step(&self, step: &Step, vars: &mut IterVars<'_>) -> Result<Flow, OpError> {
        let req = self.prepare(step, vars)?;
        // For error messages only.
        let url = || match &req.url {
            Target::Origin(u) => format!("{}{u}", self.base.trim_end_matches(&*self.base_path)),
            Target::Url(u) => u.to_string(),
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

/// Applies one extract rule: the bound values (one per wildcard, or the pointed value),
/// or None when nothing matched.
pub fn extract(doc: &Json, ex: &Extract) -> Option<Vec<Json>> {
    let segs: Vec<String> = if ex.from.is_empty() {
        vec![]
    } else {
        ex.from[1..]
            .split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect()
    };
    let mut matches: Vec<Vec<&Json>> = Vec::new();
    walk(doc, &segs, &mut Vec::new(), &mut matches);
    // `where` applies to the last bound element (the value itself without wildcards).
    let keep = |m: &Vec<&Json>| -> bool {
        match m.last() {
            Some(v) => ex
                .filter
                .iter()
                .all(|(k, want)| v.get(k).unwrap_or(&Json::Null) == want),
            None => false,
        }
    };
    let candidates: Vec<&Vec<&Json>> = matches.iter().filter(|m| keep(m)).collect();
    if candidates.is_empty() {
        return None;
    }
    let chosen = match ex.pick {
        Pick::First => candidates[0],
        Pick::Random => candidates[rand::rng().random_range(0..candidates.len())],
    };
    Some(chosen.iter().map(|v| (*v).clone()).collect())
}

/// Collects, for every way the path matches, the elements bound by each wildcard (or,
/// with no wildcard, the value at the end).
fn walk<'a>(
    cur: &'a Json,
    segs: &[String],
    bound: &mut Vec<&'a Json>,
    out: &mut Vec<Vec<&'a Json>>,
) {
    let Some((head, rest)) = segs.split_first() else {
        if bound.is_empty() {
            out.push(vec![cur]);
        } else {
            out.push(bound.clone());
        }
        return;
    };
    if head == "*" {
        let children: Box<dyn Iterator<Item = &Json>> = match cur {
            Json::Array(a) => Box::new(a.iter()),
            Json::Object(o) => Box::new(o.values()),
            _ => return,
        };
        for c in children {
            bound.push(c);
            walk(c, rest, bound, out);
            bound.pop();
        }
    } else {
        let next = match cur {
            Json::Object(o) => o.get(head.as_str()),
            Json::Array(a) => head.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        if let Some(n) = next {
            walk(n, rest, bound, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn ex(from: &str, bind: &[&str], filter: &[(&str, Json)]) -> Extract {
        Extract {
            from: from.into(),
            bind: bind.iter().map(|s| s.to_string()).collect(),
            filter: filter
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
            pick: Pick::First,
            on_empty: OnEmpty::Skip,
        }
    }

    #[test]
    fn extracts_nested_matches_with_parents() {
        let doc = json!({"challenges": [
            {"id": "c1", "goals": [{"id": "g1", "status": "in_progress"}]},
            {"id": "c2", "goals": [
                {"id": "g2", "status": "completed", "claimed_at": "2025-01-01"},
                {"id": "g3", "status": "completed", "claimed_at": null}
            ]}
        ]});
        let e = ex(
            "/challenges/*/goals/*",
            &["challenge", "goal"],
            &[("status", json!("completed")), ("claimed_at", Json::Null)],
        );
        let got = extract(&doc, &e).unwrap();
        assert_eq!(got[0]["id"], "c2");
        assert_eq!(got[1]["id"], "g3");
        // No wildcard: the pointed value.
        let got = extract(&doc, &ex("/challenges/0/id", &["cid"], &[])).unwrap();
        assert_eq!(got, vec![json!("c1")]);
        // Nothing matches.
        assert!(extract(
            &doc,
            &ex(
                "/challenges/*/goals/*",
                &["c", "g"],
                &[("status", json!("x"))]
            )
        )
        .is_none());
        assert!(extract(&doc, &ex("/nope", &["x"], &[])).is_none());
    }
}
