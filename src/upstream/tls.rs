//! The TLS client settings for `tls://` upstreams (RFC 7858): rustls with the
//! ring provider, trusting the certificate authorities of `[upstream] ca_file`
//! or else the system's roots. Built once at start, so an unreadable CA file
//! is a start-up error, not a SERVFAIL later.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("{}: cannot read the CA file: {source}", path.display())]
    CaFile { path: PathBuf, source: io::Error },
    #[error("{}: no usable PEM certificate in the CA file", path.display())]
    NoCertificate { path: PathBuf },
    #[error(
        "no trusted root certificate found on this system for tls:// upstreams; install ca-certificates or set [upstream] ca_file"
    )]
    NoSystemRoots,
    #[error("TLS client setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The client settings. `needed` says whether any `tls://` server is configured:
/// without one, the system roots are not read at all.
pub fn client_config(
    ca_file: Option<&Path>,
    needed: bool,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let text = std::fs::read(path).map_err(|source| TlsSetupError::CaFile {
                path: path.to_owned(),
                source,
            })?;
            let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&text)
                .filter_map(Result::ok)
                .collect();
            let (added, _ignored) = roots.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(TlsSetupError::NoCertificate {
                    path: path.to_owned(),
                });
            }
        }
        None if needed => {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "reading the system's root certificates");
            }
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsSetupError::NoSystemRoots);
            }
        }
        None => {}
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
