//! TLS settings toward the IMS (rustls on aws-lc-rs): the client side for a `sips:` /
//! `transport=tls` upstream and the server side for `sip.tls_listen`.
//!
//! Owns: reading PEM files and building rustls configs. Must not touch: sockets.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A TLS setting that cannot be used; names the file or key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sip.tls_ca_file {path}: {message}")]
    Ca { path: String, message: String },
    #[error("sip.tls_cert_file {path}: {message}")]
    Cert { path: String, message: String },
    #[error("sip.tls_key_file {path}: {message}")]
    Key { path: String, message: String },
    #[error("sip.tls_server_name `{0}` is not a valid DNS name or IP address")]
    ServerName(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Client config trusting only the CAs in `ca_file`.
pub fn connector(
    ca_file: &Path,
    server_name: &str,
) -> Result<(TlsConnector, ServerName<'static>), TlsError> {
    let shown = ca_file.display().to_string();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| TlsError::Ca {
            path: shown.clone(),
            message: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Ca {
            path: shown.clone(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Ca {
            path: shown,
            message: "no certificate in the file".into(),
        });
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| TlsError::Ca {
            path: shown.clone(),
            message: e.to_string(),
        })?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|_| TlsError::ServerName(server_name.to_string()))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

/// Server config from a PEM chain and key.
pub fn acceptor(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, TlsError> {
    let cshown = cert_file.display().to_string();
    let kshown = key_file.display().to_string();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| TlsError::Cert {
            path: cshown.clone(),
            message: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert {
            path: cshown.clone(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Cert {
            path: cshown,
            message: "no certificate in the file".into(),
        });
    }
    // The key's text is never put into an error message.
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|_| TlsError::Key {
        path: kshown,
        message: "no readable PEM private key".into(),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
