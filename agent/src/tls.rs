//! TLS for `wss://` hub links: a rustls client configuration built from the
//! system roots plus `CA_CERT`, or, with `TLS_SKIP_VERIFY`, one that accepts
//! any certificate (and says so loudly).
//!
//! This module owns certificate loading and the verifier choice. It installs
//! the `ring` provider explicitly instead of relying on a process default,
//! and never dials anything itself.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Reads the certificates of a PEM file; at least one must be there.
pub(crate) fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read {}: {e}: point it at a readable PEM file",
            path.display()
        )
    })?;
    let mut certs = Vec::new();
    for item in rustls_pemfile::certs(&mut bytes.as_slice()) {
        let cert = item.map_err(|e| {
            format!(
                "{} is not valid PEM: {e}: give a PEM file of CA certificates",
                path.display()
            )
        })?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the hub's CA certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// Builds the client configuration for `wss://` links.
pub(crate) fn client_config(
    ca_cert: Option<&Path>,
    skip_verify: bool,
) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    if skip_verify {
        tracing::warn!(
            "TLS_SKIP_VERIFY is on: the hub's certificate is NOT verified; anyone on the path can \
             impersonate the hub and read the token. Use CA_CERT instead outside of testing."
        );
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        return Ok(Arc::new(config));
    }
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        tracing::debug!(%err, "skipping a system root certificate source");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system root certificates loaded");
    if let Some(path) = ca_cert {
        for cert in load_ca_file(path)? {
            roots
                .add(cert)
                .map_err(|e| format!("CA_CERT {}: unusable certificate: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err(
            "no trusted root certificates: install the system CA bundle or set CA_CERT".into(),
        );
    }
    Ok(Arc::new(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
}

/// A verifier that accepts any certificate (still checks handshake
/// signatures against the presented key). Only for `TLS_SKIP_VERIFY`.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_ca_file_is_explained() {
        let err = load_ca_file(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(err.contains("cannot read /nonexistent/ca.pem"), "{err}");
        let path = std::env::temp_dir().join(format!("mooring-ca-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = load_ca_file(&path).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn skip_verify_config_builds() {
        assert!(client_config(None, true).is_ok());
    }
}
