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
    #[error("sip.tls_client_ca_file {path}: {message}")]
    ClientCa { path: String, message: String },
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
    let roots = load_roots(ca_file, |path, message| TlsError::Ca { path, message })?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|_| TlsError::ServerName(server_name.to_string()))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

/// The CA certificates in a PEM file as a root store; `err` names the config key.
fn load_roots(
    ca_file: &Path,
    err: impl Fn(String, String) -> TlsError,
) -> Result<rustls::RootCertStore, TlsError> {
    let shown = ca_file.display().to_string();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| err(shown.clone(), e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(shown.clone(), e.to_string()))?;
    if certs.is_empty() {
        return Err(err(shown, "no certificate in the file".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| err(shown.clone(), e.to_string()))?;
    }
    Ok(roots)
}

/// Server config from a PEM chain and key. With `client_ca_file` (`sip.tls_client_ca_file`) a
/// client must present a certificate that chains to one of its CAs (mutual TLS); without it no
/// client certificate is asked for.
pub fn acceptor(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> Result<TlsAcceptor, TlsError> {
    let cshown = cert_file.display().to_string();
    let kshown = key_file.display().to_string();
    // Like every secret file: group and others may not read it, checked on the file read.
    let key_pem = imsgw_token::read_secret_file(key_file).map_err(|e| TlsError::Key {
        path: kshown.clone(),
        message: match e {
            imsgw_token::KeyError::Io { source, .. } => source.to_string(),
            other => other.to_string(),
        },
    })?;
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
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Key {
        path: kshown,
        message: "no readable PEM private key".into(),
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = load_roots(ca, |path, message| TlsError::ClientCa { path, message })?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::ClientCa {
                path: ca.display().to_string(),
                message: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// True when a failed TLS handshake failed because the client presented no certificate or one
/// that does not chain to `sip.tls_client_ca_file` (decided on rustls' error, not its text).
pub fn is_client_cert_refusal(e: &std::io::Error) -> bool {
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_untrusted_client_cert_is_told_apart_from_other_handshake_failures_rfc8446_4_4_2()
    {
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        assert!(is_client_cert_refusal(&io(
            rustls::Error::NoCertificatesPresented
        )));
        assert!(is_client_cert_refusal(&io(
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        )));
        assert!(!is_client_cert_refusal(&io(rustls::Error::DecryptError)));
        assert!(!is_client_cert_refusal(&std::io::Error::from(
            std::io::ErrorKind::UnexpectedEof
        )));
    }

    #[test]
    fn client_ca_file_without_certificates_names_its_key() {
        let dir = std::env::temp_dir().join(format!("imsgw-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty-ca.pem");
        std::fs::write(&empty, "").expect("write");
        let e = load_roots(&empty, |path, message| TlsError::ClientCa { path, message })
            .expect_err("no certificate");
        assert!(e.to_string().starts_with("sip.tls_client_ca_file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_tls_key_others_can_read_is_refused_naming_its_key_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("imsgw-tls-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let key = dir.join("server.key");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = acceptor(&dir.join("none.pem"), &key, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("sip.tls_key_file") && e.contains("644"),
            "{e}"
        );
        assert!(
            !e.contains("BEGIN PRIVATE KEY"),
            "never the key's text: {e}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = acceptor(&dir.join("none.pem"), &key, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("sip.tls_cert_file"),
            "past the key's check: {e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
