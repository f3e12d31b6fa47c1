//! Protobuf descriptors: the seed's event services built in, descriptor sets and .proto
//! files added per gRPC target, method lookup — and [`fit`], which shapes a rendered
//! template into a message. Config loading (to check ops before a run) and the gRPC
//! driver (to send them) both use this module; neither reaches into the other for it.

pub mod encode;
pub mod fit;

use prost_reflect::{DescriptorPool, MethodDescriptor};
use std::path::{Path, PathBuf};

/// The seed's event services (compiled from proto/ at build time).
pub const EVENTS_DESCRIPTOR: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/events_descriptor.bin"));

pub const LOGIN_METHOD: &str = "iam.account.v1.UserAuthenticationUserLoggedInService/OnMessage";
pub const STAT_METHOD: &str = "social.statistic.v1.StatisticStatItemUpdatedService/OnMessage";

/// The built-in pool: the seed's event services.
pub fn builtin_pool() -> DescriptorPool {
    // The bytes are produced by build.rs from our own protos; decoding them cannot
    // fail unless the build is broken, in which case an empty pool makes every method
    // lookup report itself as unknown.
    DescriptorPool::decode(EVENTS_DESCRIPTOR).unwrap_or_default()
}

/// A gRPC target's descriptors: the built-in services plus its own. Equal when it holds
/// the same files (a reload that changes none keeps the target's connections).
#[derive(Debug, Clone)]
pub struct DescPool(pub DescriptorPool);

impl Default for DescPool {
    fn default() -> Self {
        DescPool(builtin_pool())
    }
}

impl PartialEq for DescPool {
    fn eq(&self, other: &Self) -> bool {
        self.0
            .file_descriptor_protos()
            .eq(other.0.file_descriptor_protos())
    }
}

impl DescPool {
    /// Adds a serialized FileDescriptorSet (`protoc -o`, `buf build -o`).
    pub fn add_descriptor_set(&mut self, file: &Path) -> Result<(), String> {
        let bytes = std::fs::read(file).map_err(|e| e.to_string())?;
        self.0
            .decode_file_descriptor_set(bytes.as_slice())
            .map_err(|e| e.to_string())
    }

    /// Compiles .proto files at start-up (protox: no protoc needed) and adds them.
    pub fn add_protos(&mut self, files: &[String], includes: &[PathBuf]) -> Result<(), String> {
        let fds = protox::compile(files, includes).map_err(|e| e.to_string())?;
        self.0
            .add_file_descriptor_set(fds)
            .map_err(|e| e.to_string())
    }

    /// A unary method by `pkg.Service/Method` or `pkg.Service.Method`.
    pub fn method(&self, name: &str) -> Result<MethodDescriptor, String> {
        find_method(&self.0, name)
    }
}

/// `pkg.Service/Method` or `pkg.Service.Method` → the method, unary only.
pub fn find_method(pool: &DescriptorPool, name: &str) -> Result<MethodDescriptor, String> {
    let (svc, method) = match name.rsplit_once('/') {
        Some(p) => p,
        None => name
            .rsplit_once('.')
            .ok_or_else(|| format!("{name:?}: expected package.Service/Method"))?,
    };
    let svc = svc.trim_start_matches('/');
    let service = pool.get_service_by_name(svc).ok_or_else(|| {
        let mut known: Vec<String> = pool.services().map(|s| s.full_name().to_string()).collect();
        known.sort();
        format!("unknown service {svc:?} (known: {})", known.join(", "))
    })?;
    let m = service
        .methods()
        .find(|m| m.name() == method)
        .ok_or_else(|| format!("service {svc} has no method {method:?}"))?;
    if m.is_client_streaming() || m.is_server_streaming() {
        return Err(format!("{name}: only unary methods are supported"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::JsonTemplate;

    // Shared with the tests of `fit` and `encode` (this module is visible to them).

    /// `soakd.kinds.v1.Kinds` from `fixtures/protos/kinds.proto`: every field kind.
    pub(crate) fn kinds() -> prost_reflect::MessageDescriptor {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kinds.proto"),
            include_str!("../../fixtures/protos/kinds.proto"),
        )
        .unwrap();
        let mut pool = DescPool::default();
        pool.add_protos(&["kinds.proto".into()], &[dir.path().to_path_buf()])
            .unwrap();
        pool.0.get_message_by_name("soakd.kinds.v1.Kinds").unwrap()
    }

    /// A message template written as YAML.
    pub(crate) fn template(yaml: &str) -> JsonTemplate {
        JsonTemplate::from_value(&crate::config::yaml::parse(yaml).unwrap()).unwrap()
    }

    #[test]
    fn builtin_methods_resolve() {
        let pool = DescPool::default();
        let m = pool.method(LOGIN_METHOD).unwrap();
        assert_eq!(m.input().full_name(), "iam.account.v1.UserLoggedIn");
        let m2 = pool
            .method("social.statistic.v1.StatisticStatItemUpdatedService.OnMessage")
            .unwrap();
        assert_eq!(m2.name(), "OnMessage");
        assert!(pool
            .method("nope.Svc/M")
            .unwrap_err()
            .contains("unknown service"));
        assert!(pool
            .method("iam.account.v1.UserAuthenticationUserLoggedInService/Nope")
            .unwrap_err()
            .contains("no method"));
        assert!(pool.method("nothing").unwrap_err().contains("expected"));
    }

    #[test]
    fn pools_compare_by_their_files() {
        let a = DescPool::default();
        let mut b = DescPool::default();
        assert_eq!(a, b);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("x.proto"),
            "syntax = \"proto3\"; package x; message M { string a = 1; }\n\
             service S { rpc Call(M) returns (M); }\n",
        )
        .unwrap();
        b.add_protos(&["x.proto".into()], &[dir.path().to_path_buf()])
            .unwrap();
        assert_ne!(a, b);
        assert!(b.method("x.S/Call").is_ok());
        let err = b
            .add_protos(&["missing.proto".into()], &[dir.path().to_path_buf()])
            .unwrap_err();
        assert!(err.contains("missing.proto"), "{err}");
    }
}
