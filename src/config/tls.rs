//! `tls:` on HTTP and gRPC targets: a CA bundle to trust beside the system's roots, a
//! client certificate and key to present (mTLS), the name to verify. Files are resolved
//! against the config's folder and parsed when the config is checked, so a wrong path
//! or a file that holds no certificate is named before anything connects.

use crate::config::check::resolve;
use crate::config::errors::Errs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::path::Path;

/// `targets.<name>.tls`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TargetTls {
    /// A CA bundle (PEM) trusted besides the system's roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// The client certificate chain (PEM, leaf first) presented when the server asks.
    #[serde(default)]
    pub cert_file: Option<String>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key_file: Option<String>,
    /// The name verified in the server's certificate and sent as SNI (default: the
    /// URL's host).
    #[serde(default)]
    pub domain: Option<String>,
}

/// The certificates in a PEM file; an error when it holds none.
pub fn load_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| pem_error(file, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(file, e))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", file.display()));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn load_key(file: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(file).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            format!("{}: no private key in it", file.display())
        }
        e => pem_error(file, e),
    })
}

fn pem_error(file: &Path, e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => format!("{}: {e}", file.display()),
        e => format!("{}: not PEM: {e}", file.display()),
    }
}

/// Resolves the files against `base_dir` (in place) and checks that they parse, that a
/// certificate comes with its key and that the key belongs to it.
pub(super) fn check(t: &mut TargetTls, base_dir: &Path, path: &str, errs: &mut Errs) {
    for f in [&mut t.ca_file, &mut t.cert_file, &mut t.key_file]
        .into_iter()
        .flatten()
    {
        *f = resolve(base_dir, f).display().to_string();
    }
    if let Some(f) = &t.ca_file {
        if let Err(e) = load_certs(Path::new(f)) {
            errs.push(format!("{path}.tls.ca_file"), e);
        }
    }
    let certs = t.cert_file.as_ref().map(|f| load_certs(Path::new(f)));
    let key = t.key_file.as_ref().map(|f| load_key(Path::new(f)));
    match (certs, key) {
        (Some(Ok(certs)), Some(Ok(key))) => {
            if let Err(e) = check_pair(certs, key) {
                errs.push(
                    format!("{path}.tls.key_file"),
                    format!("does not go with tls.cert_file: {e}"),
                );
            }
        }
        (certs, key) => {
            if let Some(Err(e)) = &certs {
                errs.push(format!("{path}.tls.cert_file"), e.clone());
            }
            if let Some(Err(e)) = &key {
                errs.push(format!("{path}.tls.key_file"), e.clone());
            }
            if certs.is_some() && key.is_none() {
                errs.push(
                    format!("{path}.tls.key_file"),
                    "required with tls.cert_file (the client certificate's private key)",
                );
            }
            if key.is_some() && certs.is_none() {
                errs.push(
                    format!("{path}.tls.cert_file"),
                    "required with tls.key_file (the client certificate it signs for)",
                );
            }
        }
    }
    if let Some(d) = &t.domain {
        if rustls::pki_types::ServerName::try_from(d.as_str()).is_err() {
            errs.push(format!("{path}.tls.domain"), "not a DNS name or IP address");
        }
    }
}

/// Whether `key` is the private key of `certs`' leaf.
fn check_pair(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<(), String> {
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| e.to_string())?;
    rustls::sign::CertifiedKey::new(certs, signing)
        .keys_match()
        .map_err(|e| e.to_string())
}
