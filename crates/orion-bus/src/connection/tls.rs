//! TLS for `rediss://`: the process's rustls crypto provider (ring),
//! reading and checking CA and client certificate files, and telling a
//! failed handshake apart from other connection errors.

use std::path::Path;
use std::sync::{Arc, Once};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// True when a connection error is a TLS failure, not a network one.
pub(super) fn is_tls_failure(e: &redis::RedisError) -> bool {
    tls_error(e).is_some()
}

/// The rustls error behind a connection error, if any. rustls reports
/// handshake and certificate errors as I/O errors that wrap a
/// `rustls::Error`, and redis-rs keeps the I/O error behind an
/// `Arc<dyn Error>`, which is unwrapped on the way.
fn tls_error(e: &redis::RedisError) -> Option<&rustls::Error> {
    use std::error::Error;
    let mut next: Option<&(dyn Error + 'static)> = e.source();
    while let Some(err) = next {
        let err: &(dyn Error + 'static) = match err.downcast_ref::<Arc<dyn Error + Send + Sync>>() {
            Some(inner) => inner.as_ref(),
            None => err,
        };
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        next = err.source();
    }
    None
}

/// What to do about a failed handshake, for the error message: the two
/// failures a private CA brings.
pub(super) fn tls_hint(e: &redis::RedisError) -> &'static str {
    match tls_error(e) {
        Some(rustls::Error::InvalidCertificate(_)) => {
            " (the server's certificate is not trusted: set tls_ca_file to the CA that signed it)"
        }
        Some(rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)) => {
            " (the server requires a client certificate: set tls_cert_file and tls_key_file)"
        }
        _ => "",
    }
}

/// Makes ring the process's rustls crypto provider, unless the application
/// installed one already (then that one is used). redis-rs builds each TLS
/// configuration from the process default, and rustls panics without one.
pub(super) fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means a provider is installed already: keep it.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The PEM file a TLS setting names, with errors naming both.
pub(super) fn read_pem(setting: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{setting} {}: {e}", path.display()))
}

/// A PEM file that must hold at least one certificate, each of which
/// parses as a trust anchor (as redis-rs will parse a CA file).
pub(super) fn read_certificates(setting: &str, path: &Path) -> Result<Vec<u8>, String> {
    let pem = read_pem(setting, path)?;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{setting} {}: bad PEM ({e})", path.display()))?;
        rustls::RootCertStore::empty().add(cert).map_err(|e| {
            format!(
                "{setting} {}: not a usable X.509 certificate ({e})",
                path.display()
            )
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(format!(
            "{setting} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(pem)
}

/// Checks that a client certificate and key load and belong together, as
/// the handshake would (rustls refuses X.509 v1 certificates, for one), so
/// that a bad pair is reported with the settings, not as a failed connection.
pub(super) fn check_client_identity(cert_pem: &[u8], key_pem: &[u8]) -> Result<(), String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate PEM ({e})"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("no PEM private key in the key file ({e})"))?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    rustls::sign::CertifiedKey::from_der(chain, key, &provider)
        .map(|_| ())
        .map_err(|e| format!("not a usable certificate and key ({e})"))
}
