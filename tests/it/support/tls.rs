//! TLS for the tests: a certificate authority made on the spot (rcgen),
//! certificates it signs written to files folio reads, and a TLS client that
//! says which protocol ALPN chose and which certificate the server showed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

use super::{Got, REQUEST_TIMEOUT, ScratchDir};

/// Makes ring the process's rustls provider (idempotent).
pub(crate) fn use_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A certificate authority of the test's own, and the files of what it signs.
pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate, PEM.
    pub(crate) pem: String,
    dir: ScratchDir,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("dir", &self.dir).finish()
    }
}

/// A certificate and its key, PEM, and where they were written.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) cert_path: PathBuf,
    pub(crate) key_path: PathBuf,
}

impl Leaf {
    /// The DER of the certificate (to compare with what a server showed).
    pub(crate) fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()
    }

    pub(crate) fn server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        use_ring();
        let chain = vec![self.der()];
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl TestCa {
    /// A new CA named `name`.
    pub(crate) fn new(name: &str) -> Self {
        let dir = ScratchDir::unique("tls");
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        std::fs::write(dir.join("ca.pem"), &pem).unwrap();
        Self {
            issuer: Issuer::new(params, key),
            pem,
            dir,
        }
    }

    /// The CA's certificate file.
    pub(crate) fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `names` (host names or IP addresses), written as
    /// `<file>.pem` and `<file>.key`.
    pub(crate) fn leaf(&self, file: &str, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let leaf = Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_path: self.dir.join(format!("{file}.pem")),
            key_path: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&leaf.cert_path, &leaf.cert_pem).unwrap();
        std::fs::write(&leaf.key_path, &leaf.key_pem).unwrap();
        leaf
    }

    /// A client config trusting this CA only, offering `alpn`.
    pub(crate) fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        use_ring();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap())
            .unwrap();
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// What a TLS exchange showed besides the response.
#[derive(Debug)]
pub(crate) struct TlsGot {
    pub(crate) got: Got,
    /// The HTTP version the response came in.
    pub(crate) version: Version,
    /// The protocol ALPN chose, if any.
    pub(crate) alpn: Option<Vec<u8>>,
    /// The server's certificate.
    pub(crate) certificate: CertificateDer<'static>,
}

/// The TLS handshake with `addr` as `server_name`, trusting `config`'s
/// roots; the error as text when it fails.
pub(crate) async fn connect(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// GET `path` from `addr` over TLS on a fresh connection, in HTTP/2 when
/// ALPN chose it and HTTP/1.1 otherwise.
pub(crate) async fn tls_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> TlsGot {
    let exchange = async {
        let stream = connect(addr, "localhost", config)
            .await
            .unwrap_or_else(|e| panic!("TLS handshake with {addr}: {e}"));
        let (_, session) = stream.get_ref();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let certificate = session.peer_certificates().unwrap()[0].clone().into_owned();
        let h2 = alpn.as_deref() == Some(b"h2");
        let mut request = Request::get(format!("https://127.0.0.1:{}{path}", addr.port()));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::<Bytes>::new()).unwrap();
        let io = TokioIo::new(stream);
        let response = if h2 {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        };
        let version = response.version();
        let (head, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        TlsGot {
            got: Got {
                status: head.status,
                headers: head.headers,
                body,
            },
            version,
            alpn,
            certificate,
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path} over TLS took longer than {REQUEST_TIMEOUT:?}"))
}
