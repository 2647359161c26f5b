//! A throwaway certificate authority for DNS-over-TLS tests, made with rcgen
//! when a test starts: it signs server certificates for any name, and writes
//! its own certificate to a PEM file for `[upstream] ca_file`. Nothing here is
//! trusted by the machine; the file is removed when the `TestCa` is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    ca_file: PathBuf,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let ca_file = std::env::temp_dir().join(format!(
            "punctual-test-ca-{}-{}.pem",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&ca_file, issuer.pem()).expect("write the CA file");
        TestCa { issuer, ca_file }
    }

    /// The PEM file holding the CA's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// TLS server settings with a certificate for `name` signed by this CA.
    pub fn server_config(&self, name: &str) -> Arc<ServerConfig> {
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec![name.to_owned()]).expect("server params");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![certificate.der().clone()], key)
            .expect("server certificate and key");
        Arc::new(config)
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}
