//! Test certificates (feature `certs`): a private CA and the server and
//! client certificates it signs, generated with rcgen and written as PEM
//! files, for TLS servers started by the harness and the clients of tests.
//!
//! Nothing here is fit for production: keys are written unencrypted to a
//! temp dir that is removed on [`Drop`].

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::{HarnessError, ServerTls};

/// A CA with one server certificate (for `127.0.0.1` and `localhost`) and
/// one client certificate, as PEM files in a private temp dir.
#[derive(Debug)]
pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// Generates a CA named `name` and the certificates it signs.
    ///
    /// # Errors
    /// [`HarnessError::Certs`] or [`HarnessError::Io`].
    pub fn generate(name: &str) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("orion-bus-pki-")
            .tempdir()?;

        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        write(dir.path(), "ca.pem", &ca.pem())?;

        for (stem, sans, purpose) in [
            (
                "server",
                vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            ("client", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            let mut params = CertificateParams::new(sans)?;
            params
                .distinguished_name
                .push(DnType::CommonName, format!("{name} {stem}"));
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![purpose];
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &ca)?;
            write(dir.path(), &format!("{stem}.pem"), &cert.pem())?;
            write(dir.path(), &format!("{stem}.key"), &key.serialize_pem())?;
        }
        Ok(Self { dir })
    }

    /// The CA certificate (PEM).
    #[must_use]
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM), valid for `127.0.0.1` and `localhost`.
    #[must_use]
    pub fn server_cert_file(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server certificate's private key (PKCS#8 PEM).
    #[must_use]
    pub fn server_key_file(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// A client certificate (PEM) for mutual TLS.
    #[must_use]
    pub fn client_cert_file(&self) -> PathBuf {
        self.dir.path().join("client.pem")
    }

    /// The client certificate's private key (PKCS#8 PEM).
    #[must_use]
    pub fn client_key_file(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }

    /// Server TLS with this CA's server certificate, trusting this CA for
    /// client certificates, which are required when `auth_clients`.
    #[must_use]
    pub fn server_tls(&self, auth_clients: bool) -> ServerTls {
        ServerTls::new(
            self.server_cert_file(),
            self.server_key_file(),
            self.ca_file(),
        )
        .auth_clients(auth_clients)
    }
}

fn write(dir: &Path, name: &str, pem: &str) -> Result<(), HarnessError> {
    std::fs::write(dir.join(name), pem)?;
    Ok(())
}
