//! `type: grpc` targets and gRPC ops: endpoints, TLS, descriptors, metadata, message
//! templates checked against the method's input type.

use super::tls::TargetTls;
use crate::config::check::{check_roots, check_trace, resolve, target_names, TraceMode};
use crate::config::errors::{join_path, Errs};
use crate::template::{Fixture, JsonTemplate, Template};
use crate::units::{Dur, Ratio};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `targets.<name>` with `type: grpc`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcTarget {
    /// `http://host:port` (plaintext HTTP/2) or `https://host:port` (TLS).
    pub endpoint: String,
    /// HTTP/2 connections; calls are spread over them round-robin. One connection
    /// multiplexes up to `max_in_flight` calls (the seed's 500).
    #[serde(default = "default_connections")]
    pub connections: usize,
    #[serde(default)]
    pub connect_timeout: Option<Dur>,
    /// Metadata sent with every call (templates).
    #[serde(default)]
    pub metadata: BTreeMap<String, Template>,
    /// `on`: W3C `traceparent` metadata on every call (as for HTTP targets).
    #[serde(default)]
    pub trace: TraceMode,
    /// With `trace: on`, the fraction of traces marked sampled (default 100 %).
    #[serde(default)]
    pub trace_sampled: Option<Ratio>,
    /// TLS (`https://` endpoints): a CA bundle (PEM) to trust, a client certificate
    /// and key to present, the name to verify (default: the host).
    #[serde(default)]
    pub tls: Option<TargetTls>,
    /// Serialized FileDescriptorSet files (`protoc -o` / `buf build -o`) describing
    /// services to call, relative to the config.
    #[serde(default)]
    pub descriptors: Vec<String>,
    /// .proto files compiled at start-up (no protoc needed).
    #[serde(default)]
    pub protos: Option<ProtoSources>,
    /// Every service this target knows: the seed's event services plus the above.
    #[serde(skip)]
    pub pool: crate::protos::DescPool,
}

pub(super) fn default_connections() -> usize {
    1
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtoSources {
    pub files: Vec<String>,
    #[serde(default)]
    pub include: Vec<String>,
}

/// `grpc:` — a unary call described by the target's descriptors.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcOp {
    /// `package.Service/Method` (or `package.Service.Method`).
    pub method: String,
    /// The request as YAML/JSON (protobuf JSON mapping); string leaves are templates.
    #[serde(default = "empty_json")]
    pub message: JsonTemplate,
    /// Metadata for this call (templates), added to the target's.
    #[serde(default)]
    pub metadata: BTreeMap<String, Template>,
}

pub(super) fn empty_json() -> JsonTemplate {
    JsonTemplate::Object(vec![])
}

pub(super) fn check_grpc_metadata(m: &BTreeMap<String, Template>, path: &str, errs: &mut Errs) {
    for k in m.keys() {
        let ok = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
            && !k.ends_with("-bin");
        if !ok {
            errs.push(
                format!("{path}.{k}"),
                "metadata keys are lowercase ASCII letters, digits, '-', '_' or '.' (binary keys are not supported)",
            );
        }
    }
}

/// Checks a `type: grpc` target and loads its descriptors (files resolved against the
/// config's folder).
pub(super) fn check_target(
    g: &mut GrpcTarget,
    path: &str,
    base_dir: &Path,
    fixtures: &[Fixture],
    errs: &mut Errs,
) {
    if !(g.endpoint.starts_with("http://") || g.endpoint.starts_with("https://")) {
        errs.push(
            format!("{path}.endpoint"),
            "expected http://host:port (plaintext) or https://host:port (TLS)",
        );
    }
    if g.connections == 0 || g.connections > 1024 {
        errs.push(format!("{path}.connections"), "must be between 1 and 1024");
    }
    check_trace(g.trace, g.trace_sampled, path, errs);
    check_grpc_metadata(&g.metadata, &format!("{path}.metadata"), errs);
    let roots: Vec<&str> = g.metadata.values().flat_map(|t| t.roots()).collect();
    check_roots(
        &roots,
        fixtures,
        &target_names(g.trace),
        &format!("{path}.metadata"),
        errs,
    );
    if let Some(t) = g.tls.as_mut() {
        super::tls::check(t, base_dir, path, errs);
    }
    for (i, d) in g.descriptors.iter().enumerate() {
        let f = resolve(base_dir, d);
        if let Err(e) = g.pool.add_descriptor_set(&f) {
            errs.push(
                format!("{path}.descriptors[{i}]"),
                format!("{}: {e}", f.display()),
            );
        }
    }
    if let Some(p) = &g.protos {
        let includes: Vec<PathBuf> = p.include.iter().map(|d| resolve(base_dir, d)).collect();
        let includes = if includes.is_empty() {
            vec![base_dir.to_path_buf()]
        } else {
            includes
        };
        if let Err(e) = g.pool.add_protos(&p.files, &includes) {
            errs.push(format!("{path}.protos"), e);
        }
    }
}

/// Checks a gRPC op: its method exists on the target (when the op's target is a gRPC
/// one), and its message fits the method's
/// input type wherever that can be known before the run.
pub(super) fn check_op(
    g: &GrpcOp,
    target: Option<&GrpcTarget>,
    path: &str,
    fixtures: &[Fixture],
    errs: &mut Errs,
) {
    let gp = format!("{path}.grpc");
    if let Some(t) = target {
        match t.pool.method(&g.method) {
            Ok(m) => {
                for (field_path, msg) in crate::protos::fit::check(&m.input(), &g.message) {
                    errs.push(join_path(&format!("{gp}.message"), &field_path), msg);
                }
            }
            Err(e) => errs.push(format!("{gp}.method"), e),
        }
    }
    check_grpc_metadata(&g.metadata, &format!("{gp}.metadata"), errs);
    let mut roots: Vec<&str> = g.message.roots();
    roots.extend(g.metadata.values().flat_map(|t| t.roots()));
    let traced = target.map_or(TraceMode::Off, |t| t.trace);
    check_roots(&roots, fixtures, &target_names(traced), &gp, errs);
}
