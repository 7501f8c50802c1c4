//! TLS material from files — CA bundles and client identities — and the rustls client
//! configuration every outbound connection builds from them, with errors that name the file and
//! what is wrong with it (never a panic, never key material in the message).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The file could not be read.
    #[error("{what} {path}: cannot read it: {cause}")]
    Read {
        /// What the file was meant to be, e.g. "CA bundle".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        cause: String,
    },
    /// The file holds no usable PEM item of the expected kind.
    #[error("{what} {path}: {cause}")]
    Content {
        /// What the file was meant to be.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        cause: String,
    },
    /// rustls refused the combination (e.g. a key that does not match the certificate).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The certificates of a PEM file (a CA bundle or a certificate chain), at least one.
pub fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let text = std::fs::read(path).map_err(|e| TlsFileError::Read { what, path: path.into(), cause: e.to_string() })?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsFileError::Content { what, path: path.into(), cause: format!("not valid PEM ({e})") })?;
    if certs.is_empty() {
        return Err(TlsFileError::Content {
            what,
            path: path.into(),
            cause: "holds no certificate (expected `-----BEGIN CERTIFICATE-----` blocks)".into(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let what = "private key";
    let text = std::fs::read(path).map_err(|e| TlsFileError::Read { what, path: path.into(), cause: e.to_string() })?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| TlsFileError::Content {
        what,
        path: path.into(),
        // The error names the PEM problem only, never the key's bytes.
        cause: format!("holds no usable private key ({e})"),
    })
}

/// A client certificate chain and its key, for servers that ask for mutual TLS.
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ClientIdentity {
    /// Loads `cert_file` (chain, leaf first) and `key_file`.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, TlsFileError> {
        Ok(Self { chain: certificates(cert_file, "client certificate")?, key: private_key(key_file)? })
    }
}

/// The trust anchors of an outbound connection: the built-in public roots, optionally with a
/// private CA bundle added (a corporate TLS-inspecting proxy, a private ClickHouse).
pub fn root_store(extra_ca_file: Option<&Path>, public_roots: bool) -> Result<rustls::RootCertStore, TlsFileError> {
    let mut roots = rustls::RootCertStore::empty();
    if public_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(path) = extra_ca_file {
        for cert in certificates(path, "CA bundle")? {
            roots.add(cert).map_err(|e| TlsFileError::Content {
                what: "CA bundle",
                path: path.into(),
                cause: format!("holds a certificate that is not a usable trust anchor ({e})"),
            })?;
        }
    }
    Ok(roots)
}

/// A rustls client configuration (ring provider, TLS 1.2 and 1.3) trusting `roots`, presenting
/// `identity` when one is given.
pub fn client_config(
    roots: rustls::RootCertStore,
    identity: Option<ClientIdentity>,
) -> Result<Arc<rustls::ClientConfig>, TlsFileError> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsFileError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(|e| TlsFileError::Config(format!("the client certificate and key do not go together ({e})")))?,
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, content: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ccp-tls-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let err = root_store(Some(Path::new("/nonexistent/ca.pem")), false).unwrap_err().to_string();
        assert!(err.contains("CA bundle /nonexistent/ca.pem") && err.contains("cannot read"), "{err}");
        let path = temp("ca.pem", "not a certificate\n");
        let err = root_store(Some(&path), false).unwrap_err().to_string();
        assert!(err.contains("holds no certificate") && err.contains("ca.pem"), "{err}");
    }

    #[test]
    fn a_key_file_without_a_key_says_so_without_echoing_it() {
        let path = temp("key.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\nsecretish\n");
        let err = private_key(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("holds no usable private key") && !err.contains("secretish"), "{err}");
    }

    #[test]
    fn public_roots_alone_make_a_configuration() {
        let roots = root_store(None, true).unwrap();
        assert!(!roots.is_empty());
        assert!(client_config(roots, None).is_ok());
    }
}
