//! gRPC driver: unary calls to any method the target's descriptors describe, with the
//! request built from a JSON template into a dynamic message (prost-reflect). The
//! seed's event services are built in; other services come from descriptor sets or
//! .proto files compiled at start-up — no recompiling soakd.
//!
//! Calls go over soakd's own HTTP/2 client ([`H2Pool`], shared with HTTP/2 targets):
//! each call is a stream driven from the operation's own task, framed here (5-byte
//! prefix, `grpc-timeout`, metadata, `traceparent`) and judged by its `grpc-status`
//! trailer — no tower buffer, hyper or tonic channel in between, and the call's
//! phases (`connect`, `tls`, `first_byte`, `body`) are timed like HTTP's. One HTTP/2
//! connection multiplexes every call by default (the seed's 500 concurrent OnMessage
//! calls over one connection); `connections: N` spreads calls round-robin over N.
//!
//! Error kinds: `grpc_<code>` for a status code (`grpc_unavailable`,
//! `grpc_deadline_exceeded`, `grpc_resource_exhausted`, … — the 16 codes of the gRPC
//! spec; `grpc_unavailable` also when no connection could be made, and the code gRPC
//! maps an HTTP status to when something other than a gRPC server answered), `tls`,
//! `io` and `h2_<reason>` as for HTTP/2, `template`, `timeout`.

use super::h2::{Dial, Exchange, H2Pool, Request as H2Request};
use crate::config::{GrpcTarget, Op, OpKind};
use crate::drivers::driver::{Driver, OpError, OpResult};
use crate::drivers::{kind, tls};
use crate::protos::encode::MessageTemplate;
use crate::template::{IterVars, Template};
use bytes::{BufMut, BytesMut};
use futures::future::BoxFuture;
use http::header::{CONTENT_TYPE, TE};
use http::uri::Scheme;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor, MethodDescriptor};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

const USER_AGENT: &str = concat!("soakd/", env!("CARGO_PKG_VERSION"), " grpc");

/// Encodes and decodes dynamic messages of one method.
#[derive(Clone)]
pub struct DynamicCodec {
    output: MessageDescriptor,
}

impl DynamicCodec {
    /// A codec that decodes messages of type `decode_as` (a client: the method's
    /// output; a server: its input).
    pub fn new(decode_as: MessageDescriptor) -> Self {
        DynamicCodec { output: decode_as }
    }
}

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynEncoder;
    type Decoder = DynDecoder;

    fn encoder(&mut self) -> DynEncoder {
        DynEncoder
    }

    fn decoder(&mut self) -> DynDecoder {
        DynDecoder(self.output.clone())
    }
}

pub struct DynEncoder;

impl Encoder for DynEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: DynamicMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

pub struct DynDecoder(MessageDescriptor);

impl Decoder for DynDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Status> {
        DynamicMessage::decode(self.0.clone(), src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// The connections of a gRPC target: what survives reloads. soakd's own HTTP/2 client
/// ([`H2Pool`]), as for HTTP/2 targets: `connections` connections, calls spread over
/// them round-robin, each call a stream on the operation's own task.
#[derive(Clone)]
pub struct GrpcClient {
    pool: Arc<H2Pool>,
}

impl GrpcClient {
    /// Lazily connecting: a target that is down does not stop soakd.
    pub fn new(t: &GrpcTarget) -> Result<GrpcClient, String> {
        let uri = http::Uri::from_str(&t.endpoint).map_err(|e| format!("endpoint: {e}"))?;
        let https = uri.scheme() == Some(&Scheme::HTTPS);
        let host = uri.host().ok_or("endpoint: no host")?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri.authority().cloned().ok_or("endpoint: no host")?;
        let tls = if https {
            let config = tls::client_config(t.tls.as_ref(), false, &[tls::ALPN_H2])?;
            let name = tls::server_name(t.tls.as_ref(), host)?;
            Some(tls::TlsDial::new(Arc::new(config), name))
        } else {
            None
        };
        let dial = Dial {
            addr: format!("{}:{port}", authority.host()),
            scheme: if https { Scheme::HTTPS } else { Scheme::HTTP },
            authority,
            tls,
            connect_timeout: t
                .connect_timeout
                .map(|d| d.0)
                .unwrap_or(crate::drivers::connect::CONNECT_TIMEOUT),
            user_agent: USER_AGENT,
        };
        Ok(GrpcClient {
            pool: Arc::new(H2Pool::new(dial, t.connections)),
        })
    }
}

/// `grpc_<code>`, e.g. `grpc_unavailable`.
pub fn code_kind(code: Code) -> &'static str {
    match code {
        Code::Ok => "grpc_ok",
        Code::Cancelled => "grpc_cancelled",
        Code::Unknown => "grpc_unknown",
        Code::InvalidArgument => "grpc_invalid_argument",
        Code::DeadlineExceeded => "grpc_deadline_exceeded",
        Code::NotFound => "grpc_not_found",
        Code::AlreadyExists => "grpc_already_exists",
        Code::PermissionDenied => "grpc_permission_denied",
        Code::ResourceExhausted => "grpc_resource_exhausted",
        Code::FailedPrecondition => "grpc_failed_precondition",
        Code::Aborted => "grpc_aborted",
        Code::OutOfRange => "grpc_out_of_range",
        Code::Unimplemented => "grpc_unimplemented",
        Code::Internal => "grpc_internal",
        Code::Unavailable => "grpc_unavailable",
        Code::DataLoss => "grpc_data_loss",
        Code::Unauthenticated => "grpc_unauthenticated",
    }
}

struct Call {
    method: MethodDescriptor,
    path: http::uri::PathAndQuery,
    /// The request message, compiled against the method's input type.
    message: MessageTemplate,
    metadata: Vec<(HeaderName, Template)>,
    /// The headers every call of this op sends: content type, `te`, `grpc-timeout`.
    headers: HeaderMap,
    /// A visibility op's write: the response's fields are bound (`{{write.field}}`).
    bind_response: bool,
}

pub struct GrpcDriver {
    client: GrpcClient,
    metadata: Vec<(HeaderName, Template)>,
    calls: Vec<Call>,
}

fn metadata_list(
    m: &std::collections::BTreeMap<String, Template>,
) -> Result<Vec<(HeaderName, Template)>, String> {
    m.iter()
        .map(|(k, v)| {
            // The config's check allows only ASCII metadata keys (no `-bin`).
            HeaderName::from_str(k)
                .map(|key| (key, v.clone()))
                .map_err(|e| format!("metadata {k:?}: {e}"))
        })
        .collect()
}

impl GrpcDriver {
    pub fn new(
        client: GrpcClient,
        target: &GrpcTarget,
        ops: &[Op],
        default_timeout: Duration,
    ) -> Result<Self, String> {
        let mut calls = Vec::with_capacity(ops.len());
        for op in ops {
            let OpKind::Grpc(g) = &op.kind else {
                return Err(format!(
                    "op {}: a {} op cannot run on a grpc target",
                    op.name,
                    op.kind.type_name()
                ));
            };
            let method = target.pool.method(&g.method)?;
            let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
            calls.push(Call {
                path: http::uri::PathAndQuery::from_str(&path)
                    .map_err(|e| format!("{path}: {e}"))?,
                message: MessageTemplate::compile(&method.input(), &g.message),
                method,
                metadata: metadata_list(&g.metadata)?,
                headers: call_headers(op.timeout.unwrap_or(default_timeout)),
                bind_response: op.visibility.is_some(),
            });
        }
        Ok(GrpcDriver {
            client,
            metadata: metadata_list(&target.metadata)?,
            calls,
        })
    }

    async fn call(&self, c: &Call, vars: &mut IterVars<'_>) -> OpResult {
        let tmpl = |e: crate::template::RenderError| OpError::new(kind::TEMPLATE, e.to_string());
        // gRPC framing: uncompressed, the length (filled in below), the message.
        let mut body = BytesMut::with_capacity(256);
        body.put_bytes(0, 5);
        c.message
            .encode(vars, &mut body)
            .map_err(|e| OpError::new(kind::TEMPLATE, e.to_string()))?;
        let len = body.len() - 5;
        body[1..5].copy_from_slice(&(len as u32).to_be_bytes());
        let body = body.freeze();
        let mut headers = c.headers.clone();
        for (k, t) in self.metadata.iter().chain(c.metadata.iter()) {
            let v = t.render(vars).map_err(tmpl)?;
            let v = HeaderValue::try_from(v)
                .ok()
                .filter(|v| v.to_str().is_ok())
                .ok_or_else(|| OpError::new(kind::TEMPLATE, format!("metadata {k}: not ASCII")))?;
            headers.insert(k.clone(), v);
        }
        // W3C trace context travels as gRPC metadata under the same name.
        let trace = vars.trace().map(|t| t.traceparent());
        let req = H2Request {
            method: &Method::POST,
            target: c.path.as_str(),
            headers: &headers,
            body: Some(&body),
            traceparent: trace.as_ref().map(|t| &t[..]),
        };
        // Boxed: the exchange's state stays out of every operation's future.
        let x = Box::pin(self.client.pool.exchange(&req, true))
            .await
            .map_err(|e| match &*e.kind {
                kind::CONNECT => OpError::new(code_kind(Code::Unavailable), e.detail),
                _ => e,
            })?;
        vars.phases.add(&x.timing);
        let msg = outcome(&x, &c.method.output())?;
        if c.bind_response {
            // The protobuf JSON mapping (camelCase names), top-level fields bound.
            if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(&msg) {
                for (k, v) in m {
                    vars.bind(&k, v);
                }
            }
        }
        Ok(())
    }
}

/// The headers of every call: gRPC's content type, `te: trailers` (which gRPC requires
/// to detect proxies that would drop trailers) and the deadline, which travels to the
/// server as `grpc-timeout`.
fn call_headers(timeout: Duration) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(4);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert(TE, HeaderValue::from_static("trailers"));
    h.insert("grpc-timeout", grpc_timeout(timeout));
    h
}

/// `grpc-timeout`: the deadline in the largest-resolution unit that fits the
/// protocol's eight digits.
fn grpc_timeout(d: Duration) -> HeaderValue {
    let units = [
        (d.as_nanos(), 'n'),
        (d.as_micros(), 'u'),
        (d.as_millis(), 'm'),
        (d.as_secs() as u128, 'S'),
        (d.as_secs() as u128 / 60, 'M'),
    ];
    let (n, unit) = units
        .into_iter()
        .find(|(n, _)| *n <= 99_999_999)
        .unwrap_or(((d.as_secs() / 3600).min(99_999_999) as u128, 'H'));
    HeaderValue::try_from(format!("{n}{unit}")).unwrap_or(HeaderValue::from_static("1H"))
}

/// HTTP status to gRPC code when the server answered outside gRPC (a proxy, say), as
/// gRPC's http-grpc-status-mapping says.
fn http_status_code(status: u16) -> Code {
    match status {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// A finished call's result: its `grpc-status` (in the trailers, or in the headers of
/// a trailers-only answer) and, when OK, one response message that decodes as the
/// method's output type.
fn outcome(x: &Exchange, output: &MessageDescriptor) -> Result<DynamicMessage, OpError> {
    if x.status != 200 {
        return Err(OpError::new(
            code_kind(http_status_code(x.status)),
            format!("HTTP status {} instead of a gRPC answer", x.status),
        ));
    }
    let status = x
        .trailers
        .as_ref()
        .and_then(Status::from_header_map)
        .or_else(|| Status::from_header_map(&x.headers))
        .ok_or_else(|| OpError::new(code_kind(Code::Internal), "no grpc-status in the answer"))?;
    if status.code() != Code::Ok {
        return Err(OpError::new(
            code_kind(status.code()),
            status.message().to_string(),
        ));
    }
    let bad = |what: String| OpError::new(code_kind(Code::Internal), what);
    let b = &x.body[..];
    if b.len() < 5 {
        return Err(bad("no response message".into()));
    }
    if b[0] != 0 {
        return Err(bad("a compressed response, though none was offered".into()));
    }
    let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
    let msg = b.get(5..5 + len).ok_or_else(|| {
        bad(format!(
            "a response message cut short ({} of {len} bytes)",
            b.len() - 5
        ))
    })?;
    DynamicMessage::decode(output.clone(), msg)
        .map_err(|e| bad(format!("the response is not a {}: {e}", output.full_name())))
}

impl Driver for GrpcDriver {
    fn execute<'a, 'b: 'a>(
        &'a self,
        op: usize,
        vars: &'a mut IterVars<'b>,
    ) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            match self.calls.get(op) {
                Some(c) => self.call(c, vars).await,
                None => Err(OpError::new(kind::TEMPLATE, format!("no op #{op}"))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
        trailers: Option<&[(&str, &str)]>,
    ) -> Exchange {
        let map = |h: &[(&str, &str)]| {
            h.iter()
                .map(|(k, v)| {
                    (
                        HeaderName::from_str(k).unwrap(),
                        HeaderValue::from_str(v).unwrap(),
                    )
                })
                .collect::<HeaderMap>()
        };
        Exchange {
            status,
            headers: map(headers),
            body: bytes::Bytes::copy_from_slice(body),
            trailers: trailers.map(map),
            timing: Default::default(),
        }
    }

    #[test]
    fn the_answer_is_judged_by_grpc_status_and_its_message() {
        let pool = crate::protos::builtin_pool();
        let out = crate::protos::find_method(&pool, crate::protos::STAT_METHOD)
            .unwrap()
            .output();
        let ok = Some(&[("grpc-status", "0")][..]);
        // An empty message: the prefix alone.
        assert!(outcome(&exchange(200, &[], &[0, 0, 0, 0, 0], ok), &out).is_ok());
        // Trailers-only: the status in the headers, with its message percent-decoded.
        let e = outcome(
            &exchange(
                200,
                &[("grpc-status", "5"), ("grpc-message", "no%20such%20user")],
                &[],
                None,
            ),
            &out,
        )
        .unwrap_err();
        assert_eq!((&*e.kind, &*e.detail), ("grpc_not_found", "no such user"));
        let e = outcome(
            &exchange(200, &[], &[0, 0, 0, 0, 0], Some(&[("grpc-status", "14")])),
            &out,
        )
        .unwrap_err();
        assert_eq!(e.kind, "grpc_unavailable");
        // Not a gRPC answer at all.
        let kind = |x: &Exchange| outcome(x, &out).unwrap_err().kind;
        assert_eq!(kind(&exchange(404, &[], b"", None)), "grpc_unimplemented");
        assert_eq!(kind(&exchange(503, &[], b"", None)), "grpc_unavailable");
        assert_eq!(kind(&exchange(500, &[], b"", None)), "grpc_unknown");
        assert_eq!(
            kind(&exchange(200, &[], &[0, 0, 0, 0, 0], None)),
            "grpc_internal"
        );
        // OK, but no message, a compressed one, one cut short, one of another type.
        assert_eq!(kind(&exchange(200, &[], b"", ok)), "grpc_internal");
        assert_eq!(
            kind(&exchange(200, &[], &[1, 0, 0, 0, 0], ok)),
            "grpc_internal"
        );
        assert_eq!(
            kind(&exchange(200, &[], &[0, 0, 0, 0, 9, 1], ok)),
            "grpc_internal"
        );
        assert_eq!(
            kind(&exchange(200, &[], &[0, 0, 0, 0, 2, 0xff, 0xff], ok)),
            "grpc_internal"
        );
    }

    #[test]
    fn deadlines_travel_in_the_largest_unit_that_fits_eight_digits() {
        let t = |d: Duration| grpc_timeout(d).to_str().unwrap().to_string();
        assert_eq!(t(Duration::from_millis(30)), "30000000n");
        assert_eq!(t(Duration::from_secs(10)), "10000000u");
        assert_eq!(t(Duration::from_secs(1000)), "1000000m");
        assert_eq!(t(Duration::from_secs(86_400 * 30)), "2592000S");
        assert_eq!(t(Duration::from_secs(u64::MAX / 2)), "99999999H");
    }

    #[test]
    fn codes_are_bounded_kinds() {
        assert_eq!(code_kind(Code::Unavailable), "grpc_unavailable");
        assert_eq!(code_kind(Code::DeadlineExceeded), "grpc_deadline_exceeded");
        assert_eq!(
            code_kind(Code::ResourceExhausted),
            "grpc_resource_exhausted"
        );
    }
}
