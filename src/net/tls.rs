//! The TLS client configuration: which roots are trusted (the bundled web PKI roots, the
//! operating system's store, and an optional PEM `ca_file`) and which protocols are
//! offered. Certificates are always verified; nothing here can turn that off.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// ALPN protocols offered, most preferred first (awc speaks both).
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A `ca_file` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// Missing or unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not PEM, or a broken PEM block.
    #[error("{path} is not a PEM file: {detail}")]
    NotPem {
        /// The file.
        path: String,
        /// What the PEM reader said.
        detail: String,
    },
    /// PEM, but without a `CERTIFICATE` block.
    #[error("{path} holds no certificate (expected -----BEGIN CERTIFICATE----- blocks)")]
    NoCertificate {
        /// The file.
        path: String,
    },
    /// A certificate that cannot be a trust anchor.
    #[error("{path}: certificate {index} cannot be trusted as a CA: {detail}")]
    Unusable {
        /// The file.
        path: String,
        /// 1-based position in the file.
        index: usize,
        /// Why.
        detail: String,
    },
}

/// Reads the PEM certificates of `path`, each checked as a trust anchor.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CaFileError::Read {
        path: shown.clone(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaFileError::NotPem {
            path: shown.clone(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CaFileError::NoCertificate { path: shown });
    }
    let mut store = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store.add(cert.clone()).map_err(|e| CaFileError::Unusable {
            path: shown.clone(),
            index: i + 1,
            detail: e.to_string(),
        })?;
    }
    Ok(certs)
}

/// The client configuration: web PKI roots, the system store and `extra` (a `ca_file`).
pub fn client_config(extra: &[CertificateDer<'static>]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    roots.add_parsable_certificates(system_roots().iter().cloned());
    roots.add_parsable_certificates(extra.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// The operating system's trusted certificates (`SSL_CERT_FILE` and `SSL_CERT_DIR`
/// replace the default locations), loaded once per process.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::warn!(%error, "Some certificates of the system store could not be loaded.");
        }
        tracing::debug!(count = loaded.certs.len(), "System certificates loaded.");
        loaded.certs
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, content: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("aw-tls-{}-{name}", std::process::id()));
        std::fs::write(&dir, content).unwrap();
        dir
    }

    #[test]
    fn ca_file_problems_are_told_apart() {
        let missing = Path::new("/nonexistent/ca.pem");
        assert!(matches!(read_ca_file(missing), Err(CaFileError::Read { .. })));

        let text = temp_file("text.pem", b"just some words\n");
        assert!(matches!(read_ca_file(&text), Err(CaFileError::NoCertificate { .. })));

        let key_only = temp_file(
            "key.pem",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        assert!(matches!(
            read_ca_file(&key_only),
            Err(CaFileError::NoCertificate { .. })
        ));

        let broken = temp_file(
            "broken.pem",
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        assert!(matches!(read_ca_file(&broken), Err(CaFileError::NotPem { .. })));

        let garbage = temp_file(
            "garbage.pem",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let error = read_ca_file(&garbage).unwrap_err();
        assert!(matches!(error, CaFileError::Unusable { index: 1, .. }), "{error}");
        for path in [text, key_only, broken, garbage] {
            let _ = std::fs::remove_file(path);
        }
    }
}
