//! Certificates for tests, generated per run with rcgen: a CA, a server certificate
//! for `localhost` and 127.0.0.1 signed by it, client certificates signed by it and by
//! a second, untrusted CA. Shared by the unit tests (`drivers::testcerts`) and the
//! integration tests (`tests/common`, by `#[path]`), and written to files in a temp
//! folder because soakd's config takes file paths.

#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use std::path::PathBuf;

/// A certificate and its key, as PEM and as files.
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

pub struct TestCerts {
    pub dir: tempfile::TempDir,
    /// The CA's certificate (PEM file): what a client trusts as `tls.ca_file`.
    pub ca_file: PathBuf,
    pub ca_pem: String,
    pub server: Pair,
    /// Signed by the CA: a server requiring client certificates accepts it.
    pub client: Pair,
    /// Signed by another CA: refused.
    pub stranger: Pair,
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("CA key")).expect("CA cert")
}

fn leaf(
    dir: &std::path::Path,
    name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &CertifiedIssuer<'static, KeyPair>,
) -> Pair {
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("leaf params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("leaf key");
    let cert = p.signed_by(&key, issuer).expect("leaf cert");
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    let cert_file = dir.join(format!("{name}.crt"));
    let key_file = dir.join(format!("{name}.key"));
    std::fs::write(&cert_file, &cert_pem).expect("write cert");
    std::fs::write(&key_file, &key_pem).expect("write key");
    Pair {
        cert_pem,
        key_pem,
        cert_file,
        key_file,
    }
}

impl TestCerts {
    pub fn new() -> TestCerts {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = new_ca("soakd test CA");
        let other = new_ca("another CA");
        let server = leaf(
            dir.path(),
            "server",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca,
        );
        let client = leaf(
            dir.path(),
            "client",
            &["soakd-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &ca,
        );
        let stranger = leaf(
            dir.path(),
            "stranger",
            &["stranger"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &other,
        );
        let ca_pem = ca.pem();
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, &ca_pem).expect("write CA");
        TestCerts {
            dir,
            ca_file,
            ca_pem,
            server,
            client,
            stranger,
        }
    }

    /// A rustls server config for the server certificate, offering `alpn`; with
    /// `require_client`, only clients with a certificate from the CA get through.
    pub fn server_config(
        &self,
        alpn: &[&[u8]],
        require_client: bool,
    ) -> std::sync::Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let b = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let b = if require_client {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).expect("CA"))
                .expect("CA root");
            let v =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .expect("client verifier");
            b.with_client_cert_verifier(v)
        } else {
            b.with_no_client_auth()
        };
        let mut c = b
            .with_single_cert(
                vec![
                    CertificateDer::from_pem_slice(self.server.cert_pem.as_bytes()).expect("cert"),
                ],
                PrivateKeyDer::from_pem_slice(self.server.key_pem.as_bytes()).expect("key"),
            )
            .expect("server config");
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        std::sync::Arc::new(c)
    }
}
