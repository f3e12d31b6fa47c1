//! gRPC driver (tonic over HTTP/2): unary calls to any method the target's descriptors
//! describe, with the request built from a JSON template into a dynamic message
//! (prost-reflect). The seed's event services are built in; other services come from
//! descriptor sets or .proto files compiled at start-up — no recompiling soakd.
//!
//! One persistent HTTP/2 connection multiplexes every call by default (the seed's 500
//! concurrent OnMessage calls over one connection); `connections: N` spreads calls
//! round-robin over N.
//!
//! Error kinds: `grpc_<code>` for a status code (`grpc_unavailable`,
//! `grpc_deadline_exceeded`, `grpc_resource_exhausted`, … — the 16 codes of the gRPC
//! spec), `template`, `timeout`.

use super::{kind, Driver, OpError, OpResult};
use crate::config::{GrpcTarget, Op, OpKind};
use crate::protos::fit::fit;
use crate::template::{IterVars, JsonTemplate, Template};
use futures::future::BoxFuture;
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor, MethodDescriptor};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

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

/// The connections of a gRPC target: what survives reloads.
#[derive(Clone)]
pub struct GrpcClient {
    channels: Arc<Vec<Channel>>,
    next: Arc<AtomicUsize>,
}

impl GrpcClient {
    /// Lazily connecting channels: a target that is down does not stop soakd.
    pub fn new(t: &GrpcTarget) -> Result<GrpcClient, String> {
        let mut ep = Endpoint::from_shared(t.endpoint.clone())
            .map_err(|e| format!("endpoint: {e}"))?
            .connect_timeout(
                t.connect_timeout
                    .map(|d| d.0)
                    .unwrap_or(Duration::from_secs(5)),
            )
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true)
            .initial_connection_window_size(Some(8 * 1024 * 1024))
            .initial_stream_window_size(Some(1024 * 1024))
            // Calls waiting for the connection: as many as the largest in-flight cap.
            .buffer_size(Some(4096));
        if t.endpoint.starts_with("https://") {
            // The system's roots and Mozilla's, as for HTTP targets.
            let mut tls = ClientTlsConfig::new()
                .with_native_roots()
                .with_webpki_roots();
            if let Some(cfg) = &t.tls {
                let read = |f: &str| std::fs::read(f).map_err(|e| format!("{f}: {e}"));
                if let Some(ca) = &cfg.ca_file {
                    tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
                }
                if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
                    tls = tls.identity(tonic::transport::Identity::from_pem(
                        read(cert)?,
                        read(key)?,
                    ));
                }
                if let Some(d) = &cfg.domain {
                    tls = tls.domain_name(d.clone());
                }
            }
            ep = ep.tls_config(tls).map_err(|e| format!("tls: {e}"))?;
        }
        let channels = (0..t.connections.max(1))
            .map(|_| ep.connect_lazy())
            .collect();
        Ok(GrpcClient {
            channels: Arc::new(channels),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn channel(&self) -> Channel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        self.channels[i].clone()
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
    message: JsonTemplate,
    metadata: Vec<(AsciiMetadataKey, Template)>,
    timeout: Duration,
}

pub struct GrpcDriver {
    client: GrpcClient,
    metadata: Vec<(AsciiMetadataKey, Template)>,
    calls: Vec<Call>,
}

fn metadata_list(
    m: &std::collections::BTreeMap<String, Template>,
) -> Result<Vec<(AsciiMetadataKey, Template)>, String> {
    m.iter()
        .map(|(k, v)| {
            AsciiMetadataKey::from_str(k)
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
                method,
                message: g.message.clone(),
                metadata: metadata_list(&g.metadata)?,
                timeout: op.timeout.unwrap_or(default_timeout),
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
        let mut json = c.message.render(vars).map_err(tmpl)?;
        fit(&c.method.input(), &mut json);
        let msg = DynamicMessage::deserialize(c.method.input(), json).map_err(|e| {
            OpError::new(
                kind::TEMPLATE,
                format!("request does not fit {}: {e}", c.method.input().full_name()),
            )
        })?;
        let mut req = tonic::Request::new(msg);
        // The deadline travels to the server as grpc-timeout.
        req.set_timeout(c.timeout);
        for (k, t) in self.metadata.iter().chain(c.metadata.iter()) {
            let v = t.render(vars).map_err(tmpl)?;
            let v = AsciiMetadataValue::try_from(v.as_str())
                .map_err(|_| OpError::new(kind::TEMPLATE, format!("metadata {k}: not ASCII")))?;
            req.metadata_mut().insert(k.clone(), v);
        }
        if let Some(t) = vars.trace() {
            // W3C trace context travels as gRPC metadata under the same name.
            if let Ok(v) = AsciiMetadataValue::try_from(&t.traceparent()[..]) {
                req.metadata_mut().insert("traceparent", v);
            }
        }
        let mut grpc = tonic::client::Grpc::new(self.client.channel());
        grpc.ready()
            .await
            .map_err(|e| OpError::new(code_kind(Code::Unavailable), e.to_string()))?;
        let codec = DynamicCodec {
            output: c.method.output(),
        };
        match grpc.unary(req, c.path.clone(), codec).await {
            Ok(_) => Ok(()),
            Err(s) => Err(OpError::new(code_kind(s.code()), s.message().to_string())),
        }
    }
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
