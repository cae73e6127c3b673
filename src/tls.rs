//! TLS, with one crypto library: rustls on `ring`. What folio trusts when it
//! connects out (an `https://` upstream, a `rediss://` Redis): the system's
//! roots plus `--ca-file`; and the certificate it shows its own clients
//! (`--tls-cert`, `--tls-key`), which a reload swaps without a restart.
//!
//! Nothing here falls back to plain text: a peer whose certificate does not
//! verify is refused, and the caller says so.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::files;

/// The protocols folio offers its clients by ALPN, preferred first.
const SERVED_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A TLS file folio cannot use, or a TLS setting it cannot honour.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// A certificate, key or CA file: which, and what is wrong with it.
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    #[error("{0}")]
    Config(String),
}

fn file_error(path: &Path, problem: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    }
}

/// Makes `ring` the process's rustls provider, so every TLS config built
/// here or inside a library (redis builds its own) uses it. Idempotent.
pub(crate) fn use_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client config trusting the system's roots plus `ca_file` (for `folio
/// warm --target https://…`).
pub fn trusted_client_config(ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    Ok(Trust::load(ca_file)
        .map_err(|e| e.to_string())?
        .client_config())
}

/// The certificate authorities folio trusts when it connects out: the
/// system's roots plus the operator's `--ca-file`.
#[derive(Clone)]
pub(crate) struct Trust {
    roots: Arc<RootCertStore>,
    /// The same roots, PEM-encoded, for libraries that take them that way
    /// (redis replaces the system's roots by what it is given).
    pem: Arc<[u8]>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("roots", &self.roots.len())
            .finish()
    }
}

impl Trust {
    /// The system's roots (those rustls can use; unreadable ones are
    /// logged and skipped) plus every certificate of `ca_file`, which must
    /// hold at least one.
    pub(crate) fn load(ca_file: Option<&Path>) -> Result<Self, TlsError> {
        use_ring();
        let mut roots = RootCertStore::empty();
        let mut pem = String::new();
        let mut add = |cert: CertificateDer<'static>, roots: &mut RootCertStore| {
            let encoded = pem_certificate(&cert);
            roots.add(cert).map(|()| pem.push_str(&encoded))
        };
        let system = rustls_native_certs::load_native_certs();
        for error in &system.errors {
            tracing::warn!(%error, "a system root certificate could not be read; skipped");
        }
        for cert in system.certs {
            // A root webpki cannot parse could never verify anything.
            let _ = add(cert, &mut roots);
        }
        let system_roots = roots.len();
        if let Some(path) = ca_file {
            let mut found = 0;
            let pem =
                files::read_bounded(path, files::MAX_TLS_FILE).map_err(|e| file_error(path, e))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| file_error(path, e))?;
                add(cert, &mut roots).map_err(|e| {
                    file_error(path, format!("a certificate is not a usable CA: {e}"))
                })?;
                found += 1;
            }
            if found == 0 {
                return Err(file_error(
                    path,
                    "no certificate found (expected PEM: -----BEGIN CERTIFICATE-----)",
                ));
            }
        }
        if roots.is_empty() {
            return Err(TlsError::Config(
                "no trusted certificate authorities: the system has none (install ca-certificates) and no --ca-file was given".into(),
            ));
        }
        tracing::debug!(
            system_roots,
            extra = roots.len() - system_roots,
            "TLS roots loaded"
        );
        Ok(Self {
            roots: Arc::new(roots),
            pem: pem.into_bytes().into(),
        })
    }

    /// A client config verifying peers against these roots (the caller
    /// sets ALPN).
    pub(crate) fn client_config(&self) -> ClientConfig {
        ClientConfig::builder()
            .with_root_certificates(Arc::clone(&self.roots))
            .with_no_client_auth()
    }

    /// For redis: these roots, as PEM.
    pub(crate) fn redis_certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(self.pem.to_vec()),
        }
    }
}

/// One certificate as PEM.
fn pem_certificate(cert: &CertificateDer<'_>) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let mut pem = String::with_capacity(encoded.len() + encoded.len() / 64 + 60);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        // Base64 is ASCII: every chunk is a str.
        let _ = writeln!(pem, "{}", String::from_utf8_lossy(line));
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Whether an error (or one it was caused by) is a TLS peer that could not
/// be verified or spoke TLS wrongly; the TLS problem, said plainly.
pub(crate) fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // An io::Error hides the error it wraps from `source()` (and
        // connectors wrap io::Errors in io::Errors): look inside.
        current = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

/// The certificate folio serves to its clients, read from `--tls-cert`
/// and `--tls-key`; [`ServedCertificate::reload`] reads them again and
/// new handshakes use the new one (connections open stay as they are).
#[derive(Debug)]
pub(crate) struct ServedCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
}

impl ServedCertificate {
    pub(crate) fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        use_ring();
        Ok(Arc::new(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: ArcSwap::from_pointee(certified_key(cert_path, key_path)?),
        }))
    }

    /// Reads the files again; on an error the certificate served stays.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let fresh = certified_key(&self.cert_path, &self.key_path)?;
        self.current.store(Arc::new(fresh));
        Ok(())
    }

    /// The server config of the listener: no client certificates, HTTP/2
    /// and HTTP/1.1 by ALPN, this certificate.
    pub(crate) fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = SERVED_ALPN.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A client config for folio's own requests to its own listener (warming):
/// it accepts exactly the certificate the listener serves at the time, and
/// nothing else, whatever name it was made for.
pub(crate) fn own_listener_client(served: &Arc<ServedCertificate>) -> ClientConfig {
    let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(OwnCertificate {
            served: Arc::clone(served),
            algorithms,
        }))
        .with_no_client_auth()
}

/// Verifies that the peer is folio's own listener: its certificate is the
/// one served, and the handshake is signed by its key.
#[derive(Debug)]
struct OwnCertificate {
    served: Arc<ServedCertificate>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for OwnCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self.served.current.load().cert.first() == Some(end_entity) {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ResolvesServerCert for ServedCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A certificate chain and its private key, checked to belong together.
fn certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let pem = files::read_bounded(cert_path, files::MAX_TLS_FILE)
        .map_err(|e| file_error(cert_path, e))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(cert_path, e))?;
    if chain.is_empty() {
        return Err(file_error(
            cert_path,
            "no certificate found (expected PEM: -----BEGIN CERTIFICATE-----)",
        ));
    }
    // The key's bytes never appear in a message.
    let pem =
        files::read_bounded(key_path, files::MAX_TLS_FILE).map_err(|e| file_error(key_path, e))?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        file_error(
            key_path,
            format!("no usable private key (expected PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        )
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| file_error(key_path, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|_| {
        file_error(
            key_path,
            format!(
                "this key does not belong to the certificate in {}",
                cert_path.display()
            ),
        )
    })?;
    Ok(certified)
}

/// `scheme://user:password@host…` with the password (or a lone user,
/// which Redis reads as a password) replaced, for logs and messages.
pub fn redact_url(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.into();
    };
    let userinfo = &rest[..at];
    let redacted = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{scheme}://{redacted}{}", &rest[at..]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("rediss://folio:s3cret@cache.internal:6380/0"),
            "rediss://folio:***@cache.internal:6380/0"
        );
        assert_eq!(
            redact_url("redis://:s3cret@127.0.0.1"),
            "redis://:***@127.0.0.1"
        );
        assert_eq!(
            redact_url("redis://s3cret@127.0.0.1"),
            "redis://***@127.0.0.1"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0?a=b@c"),
            "redis://127.0.0.1:6379/0?a=b@c"
        );
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock"),
            "redis+unix:///run/redis.sock"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn tls_failures_are_found_inside_wrapped_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped =
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        let found = tls_failure(&wrapped).unwrap();
        assert!(found.contains("UnknownIssuer"), "{found}");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(tls_failure(&refused), None);
    }

    #[test]
    fn pem_round_trips() {
        let der = CertificateDer::from((0u8..=255).cycle().take(700).collect::<Vec<_>>());
        let pem = pem_certificate(&der);
        assert!(pem.lines().all(|line| line.len() <= 64));
        let back: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, vec![der]);
    }
}
