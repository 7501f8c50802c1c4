//! A certificate authority made by a test: a CA, server certificates for loopback names, client
//! certificates, and the broken variants a test of TLS errors needs (expired, another CA),
//! written as PEM files into a temporary directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A test CA and the directory its files are written to.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    name: String,
}

/// PEM files of one issued certificate.
#[derive(Debug, Clone)]
pub struct IssuedFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, writing into a fresh temporary directory.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ccp-pki-{name}-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, format!("ccp test CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("CA key: {e}"));
        let issuer = CertifiedIssuer::self_signed(params, key).unwrap_or_else(|e| panic!("CA certificate: {e}"));
        let ca = Self { issuer, dir, name: name.to_owned() };
        std::fs::write(ca.ca_file(), ca.issuer.pem()).unwrap_or_else(|e| panic!("write CA: {e}"));
        ca
    }

    /// The directory holding this CA's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate (PEM), to give clients as their trust anchor.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A server certificate for `localhost` and 127.0.0.1, valid now.
    pub fn server(&self, file_stem: &str) -> IssuedFiles {
        self.issue(file_stem, &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth, Validity::Now)
    }

    /// A client certificate with common name `name`, valid now.
    pub fn client(&self, file_stem: &str, name: &str) -> IssuedFiles {
        self.issue(file_stem, &[name], ExtendedKeyUsagePurpose::ClientAuth, Validity::Now)
    }

    /// A client certificate that expired a year ago.
    pub fn expired_client(&self, file_stem: &str, name: &str) -> IssuedFiles {
        self.issue(file_stem, &[name], ExtendedKeyUsagePurpose::ClientAuth, Validity::Expired)
    }

    fn issue(
        &self,
        file_stem: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> IssuedFiles {
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap_or_else(|e| panic!("certificate names: {e}"));
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("ccp"));
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let now = time::OffsetDateTime::now_utc();
        match validity {
            Validity::Now => {
                params.not_before = now - time::Duration::days(1);
                params.not_after = now + time::Duration::days(30);
            }
            Validity::Expired => {
                params.not_before = now - time::Duration::days(400);
                params.not_after = now - time::Duration::days(365);
            }
        }
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("key: {e}"));
        let cert = params.signed_by(&key, &self.issuer).unwrap_or_else(|e| panic!("sign: {e}"));
        let files = IssuedFiles {
            cert: self.dir.join(format!("{file_stem}.pem")),
            key: self.dir.join(format!("{file_stem}-key.pem")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap_or_else(|e| panic!("write certificate: {e}"));
        std::fs::write(&files.key, key.serialize_pem()).unwrap_or_else(|e| panic!("write key: {e}"));
        files
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

enum Validity {
    Now,
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_files_are_pem_the_runtime_reads() {
        let ca = TestCa::new("unit");
        let server = ca.server("server");
        let roots = ccp_runtime::tls::root_store(Some(&ca.ca_file()), false).unwrap();
        assert_eq!(roots.len(), 1);
        assert_eq!(ccp_runtime::tls::certificates(&server.cert, "certificate").unwrap().len(), 1);
        let id = ccp_runtime::tls::ClientIdentity::load(&server.cert, &server.key).unwrap();
        assert!(ccp_runtime::tls::client_config(roots, Some(id)).is_ok());
        let dir = ca.dir().to_owned();
        drop(ca);
        assert!(!dir.exists());
    }
}
