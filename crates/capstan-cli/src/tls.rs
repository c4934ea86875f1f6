//! One way to build the TLS client configuration for everything the CLI talks to: the API
//! (gRPC and REST), the SSO provider, and the kube-apiserver `cluster add` reads. rustls with
//! ring, as in the rest of Capstan.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{CliError, CliResult};

/// Whom to trust and who we are.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// CA certificates (PEM) to trust instead of the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any certificate (`--insecure`).
    pub insecure: bool,
    /// A client certificate chain and key (PEM), for servers that ask for one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration offering `alpn` protocols (`h2` for gRPC).
pub fn client_config(options: &TlsOptions, alpn: &[&[u8]]) -> CliResult<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::other(format!("TLS setup: {e}")))?;
    let builder = if options.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
    } else {
        builder.with_root_certificates(roots(options.ca_pem.as_deref())?)
    };
    let mut config = match &options.identity {
        Some((chain, key)) => {
            let chain = certificates(chain)?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| CliError::usage(format!("the client key is not PEM: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| CliError::usage(format!("the client certificate: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

fn certificates(pem: &[u8]) -> CliResult<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::usage(format!("a certificate is not PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(CliError::usage("no PEM certificate found"));
    }
    Ok(certificates)
}

/// `ca_pem`'s certificates, else the system's trusted roots.
fn roots(ca_pem: Option<&[u8]>) -> CliResult<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for certificate in certificates(pem)? {
                roots
                    .add(certificate)
                    .map_err(|e| CliError::usage(format!("the CA certificate: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    Ok(roots)
}

/// `--insecure`: any certificate is accepted, but the handshake signatures are still
/// checked (the connection is encrypted, only the server's identity is not verified).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
