//! HTTP driver (reqwest over rustls; pooled keep-alive connections; HTTP/1.1 or HTTP/2).
//!
//! Error kinds: `connect` (could not connect), `io` (the connection failed after it was
//! made), `timeout`, `status_4xx`, `status_5xx`, `status_other` (an unexpected 1xx/3xx),
//! `body` (the body could not be read, was not JSON where a step extracts, or held no
//! match with `on_empty: error`), `template`.

use super::{kind, Driver, OpError, OpResult};
use crate::config::{Extract, HttpTarget, HttpVersion, OnEmpty, Op, OpKind, Pick, StatusMatch};
use crate::template::{IterVars, JsonTemplate, Template};
use futures::future::BoxFuture;
use rand::Rng;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Method;
use serde_json::Value as Json;
use std::time::Duration;

pub const CONNECT: &str = "connect";
pub const IO: &str = "io";
pub const STATUS_4XX: &str = "status_4xx";
pub const STATUS_5XX: &str = "status_5xx";
pub const STATUS_OTHER: &str = "status_other";
pub const BODY: &str = "body";

pub fn build_client(h: &HttpTarget) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(
            h.connect_timeout
                .map(|d| d.0)
                .unwrap_or(Duration::from_secs(5)),
        )
        .pool_max_idle_per_host(h.pool_max_idle_per_host.unwrap_or(1024))
        .pool_idle_timeout(
            h.pool_idle_timeout
                .map(|d| d.0)
                .unwrap_or(Duration::from_secs(90)),
        )
        .user_agent(concat!("soakd/", env!("CARGO_PKG_VERSION")));
    b = match h.version {
        HttpVersion::Auto => b,
        HttpVersion::Http1 => b.http1_only(),
        HttpVersion::Http2 => b.http2_prior_knowledge(),
    };
    if h.tls_skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build()
}

enum Body {
    None,
    Raw(Template),
    Json(JsonTemplate),
}

struct Step {
    method: Method,
    path: Template,
    /// The whole URL, parsed once, when the path has no template.
    fixed_url: Option<reqwest::Url>,
    headers: Vec<(HeaderName, Template)>,
    body: Body,
    expect: Vec<StatusMatch>,
    extract: Vec<Extract>,
}

pub struct HttpDriver {
    client: reqwest::Client,
    base: String,
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

impl HttpDriver {
    pub fn new(client: reqwest::Client, target: &HttpTarget, ops: &[Op]) -> Result<Self, String> {
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
                let base = target.base_url.trim_end_matches('/');
                let fixed_url = if r.path.is_static() {
                    Some(
                        reqwest::Url::parse(&format!("{base}{}", r.path.source()))
                            .map_err(|e| format!("op {}: url: {e}", op.name))?,
                    )
                } else {
                    None
                };
                out.push(Step {
                    method: Method::from_bytes(r.method.as_bytes())
                        .map_err(|e| format!("op {}: method: {e}", op.name))?,
                    path: r.path.clone(),
                    fixed_url,
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
            base: target.base_url.trim_end_matches('/').to_string(),
            headers: header_list(&target.headers)?,
            ops: compiled,
        })
    }

    async fn run_step(&self, step: &Step, vars: &mut IterVars<'_>) -> Result<Flow, OpError> {
        let tmpl_err =
            |e: crate::template::RenderError| OpError::new(kind::TEMPLATE, e.to_string());
        let (mut req, url) = match &step.fixed_url {
            Some(u) => (self.client.request(step.method.clone(), u.clone()), None),
            None => {
                let mut url = self.base.clone();
                step.path.render_into(vars, &mut url).map_err(tmpl_err)?;
                (self.client.request(step.method.clone(), &url), Some(url))
            }
        };
        // For error messages only: built when needed.
        let url = || {
            url.clone()
                .or_else(|| step.fixed_url.as_ref().map(|u| u.to_string()))
                .unwrap_or_default()
        };
        for (name, t) in self.headers.iter().chain(step.headers.iter()) {
            let v = t.render(vars).map_err(tmpl_err)?;
            let v = HeaderValue::from_str(&v).map_err(|_| {
                OpError::new(kind::TEMPLATE, format!("header {name}: invalid value"))
            })?;
            req = req.header(name.clone(), v);
        }
        req = match &step.body {
            Body::None => req,
            Body::Raw(t) => req.body(t.render(vars).map_err(tmpl_err)?),
            Body::Json(j) => req.json(&j.render(vars).map_err(tmpl_err)?),
        };
        let resp = req.send().await.map_err(classify)?;
        let status = resp.status().as_u16();
        // Read the whole body so the connection goes back to the pool.
        let bytes = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                OpError::new(kind::TIMEOUT, e.to_string())
            } else {
                OpError::new(BODY, e.to_string())
            }
        })?;
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
