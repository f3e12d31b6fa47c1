//! TLS client settings for a target: one rustls `ClientConfig` (ring) per target and
//! ALPN list, shared by every connection to it so that sessions resume (rustls keeps
//! TLS 1.3 tickets and 1.2 session ids in memory, bounded, per config). Trust is the
//! system's roots plus Mozilla's bundled set plus the target's `tls.ca_file`; a client
//! certificate is presented when `tls.cert_file`/`tls.key_file` are set.

use super::kind::TLS;
use crate::config::tls::{load_certs, load_key, TargetTls};
use crate::drivers::driver::OpError;
use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The ALPN ids soakd offers.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The roots every target trusts: the system's store (where the machine's own CAs
/// are) and Mozilla's set (so a minimal image without a CA store still verifies public
/// hosts, as reqwest's default did). Loaded once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::debug!(error = %e, "system CA store");
            }
            // Certificates the store holds that rustls cannot use are skipped.
            let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
            Arc::new(roots)
        })
        .clone()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client config for a target: `tls` (CA file, client certificate),
/// `skip_verify` (accept any server certificate) and the ALPN ids to offer.
pub fn client_config(
    tls: Option<&TargetTls>,
    skip_verify: bool,
    alpn: &[&[u8]],
) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
    } else {
        let mut roots = (*system_roots()).clone();
        if let Some(ca) = tls.and_then(|t| t.ca_file.as_deref()) {
            for c in load_certs(Path::new(ca))? {
                roots.add(c).map_err(|e| format!("tls.ca_file {ca}: {e}"))?;
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match tls.and_then(|t| t.cert_file.as_deref().zip(t.key_file.as_deref())) {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(Path::new(cert))?, load_key(Path::new(key))?)
            .map_err(|e| format!("tls.cert_file {cert}: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The name to verify and send as SNI: `tls.domain`, else the URL's host.
pub fn server_name(tls: Option<&TargetTls>, host: &str) -> Result<ServerName<'static>, String> {
    let name = tls.and_then(|t| t.domain.as_deref()).unwrap_or(host);
    // An IPv6 host comes bracketed from a URL.
    let name = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(name.to_string()).map_err(|e| format!("tls server name {name:?}: {e}"))
}

/// How a target's connections speak TLS — its rustls config (whose ALPN list says
/// which protocols may be chosen) and the name verified and sent as SNI — for both of
/// soakd's HTTP clients. A failed handshake is kind `tls`, and logged at most once per
/// 10 s per target.
pub struct TlsDial {
    connector: TlsConnector,
    name: ServerName<'static>,
    logged: Mutex<Option<Instant>>,
}

impl TlsDial {
    pub fn new(config: Arc<ClientConfig>, name: ServerName<'static>) -> TlsDial {
        TlsDial {
            connector: TlsConnector::from(config),
            name,
            logged: Mutex::new(None),
        }
    }

    /// The same config, verifying (and sending as SNI) another name.
    #[cfg(test)]
    pub fn with_name(&self, name: ServerName<'static>) -> TlsDial {
        TlsDial {
            connector: self.connector.clone(),
            name,
            logged: Mutex::new(None),
        }
    }

    /// The handshake over `tcp` (connected to `addr`), by `deadline` — what is left of
    /// `connect_timeout` after the TCP connect.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        addr: &str,
        deadline: tokio::time::Instant,
        connect_timeout: Duration,
    ) -> Result<TlsStream<TcpStream>, OpError> {
        tokio::time::timeout_at(deadline, self.connector.connect(self.name.clone(), tcp))
            .await
            .map_err(|_| {
                format!(
                    "no TLS handshake within {} (with the TCP connect)",
                    crate::units::format_duration(connect_timeout)
                )
            })
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| {
                let detail = format!("TLS handshake with {addr}: {e}");
                self.log_failure(&detail);
                OpError::new(TLS, detail)
            })
    }

    /// Logs a TLS failure (the certificate problem, the alert), at most every 10 s.
    pub fn log_failure(&self, detail: &str) {
        let mut last = self.logged.lock();
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            drop(last);
            tracing::warn!(target: "soakd::http", "{detail}");
        }
    }
}

/// `tls_skip_verify`: any certificate is accepted; signatures are still checked, so
/// the handshake itself stays sound.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
