//! What a failed request means: a problem only an operator can fix (a certificate that
//! fails verification, a proxy demanding credentials) or a transient network failure.
//! The error values are inspected by type (`rustls::Error`, `TunnelError`), never by text.

use awc::error::{ConnectError, SendRequestError};
use rustls::CertificateError;

use super::connector::TunnelError;

/// The status a proxy answers when it wants (other) credentials.
pub const PROXY_AUTHENTICATION_REQUIRED: u16 = 407;

/// The verdict on a request that got no usable response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnosis {
    /// Configuration: repeating will not help until an operator acts.
    Misconfigured {
        /// The host the problem is about (the target for a certificate, the proxy for a 407).
        host: String,
        /// What is wrong and what to check, naming the host; safe to show.
        reason: String,
    },
    /// No response within the deadline.
    Timeout,
    /// Any other failure without a response: repeated with backoff.
    Network(String),
}

/// Diagnoses `error` from a request to `host` (`host:port`) whose settings live in the
/// config table `table` (named in hints).
pub fn diagnose(error: &SendRequestError, host: &str, table: &str) -> Diagnosis {
    let connect = match error {
        SendRequestError::Timeout => return Diagnosis::Timeout,
        SendRequestError::Connect(connect) => connect,
        other => return Diagnosis::Network(other.to_string()),
    };
    let io = match connect {
        ConnectError::Io(io) => io,
        ConnectError::Timeout => return Diagnosis::Network(format!("connecting to {host} timed out")),
        ConnectError::Resolver(e) => return Diagnosis::Network(format!("cannot resolve {host}: {e}")),
        other => return Diagnosis::Network(format!("cannot connect to {host}: {other}")),
    };
    let inner = io.get_ref();
    if let Some(tunnel) = inner.and_then(|e| e.downcast_ref::<TunnelError>()) {
        return match tunnel {
            TunnelError::Refused {
                proxy,
                status: PROXY_AUTHENTICATION_REQUIRED,
                ..
            } => Diagnosis::Misconfigured {
                host: proxy.clone(),
                reason: format!("{tunnel}; {}", proxy_credentials_hint(table)),
            },
            other => Diagnosis::Network(other.to_string()),
        };
    }
    if let Some(tls) = inner.and_then(|e| e.downcast_ref::<rustls::Error>()) {
        return match tls {
            rustls::Error::InvalidCertificate(problem) => Diagnosis::Misconfigured {
                host: host.to_owned(),
                reason: certificate_reason(problem, host, table),
            },
            other => Diagnosis::Network(format!("TLS handshake with {host} failed: {other}")),
        };
    }
    Diagnosis::Network(format!("cannot connect to {host}: {io}"))
}

/// The diagnosis of a 407 answered to a plain-http request sent through a proxy.
pub fn proxy_status(host: &str, table: &str) -> Diagnosis {
    Diagnosis::Misconfigured {
        host: host.to_owned(),
        reason: format!(
            "the proxy for {host} answered 407 Proxy Authentication Required; {}",
            proxy_credentials_hint(table)
        ),
    }
}

fn proxy_credentials_hint(table: &str) -> String {
    format!("check the proxy credentials ({table}.proxy_auth_env, or user:password in the proxy URL)")
}

/// Why a certificate was rejected, naming the host, with what to check.
fn certificate_reason(problem: &CertificateError, host: &str, table: &str) -> String {
    let what = match problem {
        CertificateError::UnknownIssuer => {
            return format!(
                "the TLS certificate of {host} is signed by an unknown issuer; trust its CA with {table}.ca_file (PEM) or SSL_CERT_FILE"
            )
        }
        CertificateError::NotValidForName => "is not valid for that name".to_owned(),
        CertificateError::NotValidForNameContext { presented, .. } => {
            format!("is not valid for that name (it names {})", presented.join(", "))
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "has expired (or the system clock is wrong)".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "is not valid yet (or the system clock is wrong)".to_owned()
        }
        CertificateError::Revoked => "has been revoked".to_owned(),
        // webpki's reasons arrive wrapped; their text is the variant's name.
        CertificateError::Other(other) if other.to_string() == "CaUsedAsEndEntity" => {
            "is a CA certificate: the server must present its own certificate, issued by that CA".to_owned()
        }
        CertificateError::Other(other) => format!("was rejected: {other}"),
        other => format!("was rejected: {other}"),
    };
    format!("the TLS certificate of {host} {what}")
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    fn connect_io(inner: impl std::error::Error + Send + Sync + 'static) -> SendRequestError {
        SendRequestError::Connect(ConnectError::Io(io::Error::other(inner)))
    }

    fn refused(status: u16, reason: &str) -> SendRequestError {
        connect_io(TunnelError::Refused {
            proxy: "127.0.0.1:3128".into(),
            target: "api.example.com:443".into(),
            status,
            reason: reason.into(),
        })
    }

    #[test]
    fn a_proxy_demanding_credentials_is_misconfiguration_other_refusals_are_transient() {
        let Diagnosis::Misconfigured { host, reason } = diagnose(
            &refused(407, "Proxy Authentication Required"),
            "api.example.com:443",
            "cxone",
        ) else {
            panic!("407 must be a misconfiguration");
        };
        assert_eq!(host, "127.0.0.1:3128");
        assert!(
            reason.starts_with("proxy 127.0.0.1:3128 refused CONNECT to api.example.com:443: 407"),
            "{reason}"
        );
        assert!(reason.contains("cxone.proxy_auth_env"), "{reason}");
        for status in [403, 502, 503] {
            let d = diagnose(&refused(status, "x"), "api.example.com:443", "cxone");
            assert!(
                matches!(&d, Diagnosis::Network(m) if m.contains(&status.to_string())),
                "{d:?}"
            );
        }
    }

    #[test]
    fn certificate_failures_are_misconfiguration_and_name_the_host() {
        let tls = |e: CertificateError| {
            let io = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::InvalidCertificate(e));
            SendRequestError::Connect(ConnectError::Io(io))
        };
        let d = diagnose(&tls(CertificateError::UnknownIssuer), "cxone.test:8443", "dead_letter");
        let Diagnosis::Misconfigured { host, reason } = d else {
            panic!()
        };
        assert_eq!(host, "cxone.test:8443");
        assert!(
            reason.contains("cxone.test:8443") && reason.contains("unknown issuer"),
            "{reason}"
        );
        assert!(reason.contains("dead_letter.ca_file"), "{reason}");
        for e in [
            CertificateError::NotValidForName,
            CertificateError::Expired,
            CertificateError::BadSignature,
        ] {
            assert!(matches!(
                diagnose(&tls(e), "h:443", "cxone"),
                Diagnosis::Misconfigured { .. }
            ));
        }
        #[derive(Debug)]
        struct CaUsedAsEndEntity;
        impl std::fmt::Display for CaUsedAsEndEntity {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("CaUsedAsEndEntity")
            }
        }
        impl std::error::Error for CaUsedAsEndEntity {}
        let wrapped = CertificateError::Other(rustls::OtherError(std::sync::Arc::new(CaUsedAsEndEntity)));
        let Diagnosis::Misconfigured { reason, .. } = diagnose(&tls(wrapped), "h:443", "cxone") else {
            panic!()
        };
        assert_eq!(
            reason,
            "the TLS certificate of h:443 is a CA certificate: the server must present its own certificate, issued by that CA"
        );
        let other = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        let d = diagnose(&SendRequestError::Connect(ConnectError::Io(other)), "h:443", "cxone");
        assert!(
            matches!(d, Diagnosis::Network(_)),
            "a handshake failure that is not about the certificate is transient"
        );
    }

    #[test]
    fn plain_connection_failures_and_timeouts_are_transient() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let d = diagnose(&SendRequestError::Connect(ConnectError::Io(refused)), "h:443", "cxone");
        assert!(matches!(d, Diagnosis::Network(m) if m.starts_with("cannot connect to h:443")));
        assert_eq!(
            diagnose(&SendRequestError::Timeout, "h:443", "cxone"),
            Diagnosis::Timeout
        );
        let unreachable = connect_io(TunnelError::Unreachable {
            proxy: "p:1".into(),
            message: "Connection refused".into(),
        });
        assert!(
            matches!(diagnose(&unreachable, "h:443", "cxone"), Diagnosis::Network(m) if m.contains("cannot reach proxy p:1"))
        );
    }
}
