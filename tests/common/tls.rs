//! TLS for the tests: a CA and the certificates it signs, made in each test
//! with Debian's `openssl` (never a committed key), a rustls client that
//! trusts that CA only, and the byte stream a test client speaks over, plain
//! or TLS, so that one test can be run both ways (`Over`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use threadchat::Config;

use super::WAIT;

/// How a test reaches the server: `ws://`, or `wss://` with native TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    Plain,
    Tls,
}

pub type TlsSocket = StreamOwned<ClientConnection, TcpStream>;

/// What a test client reads and writes: the socket, or TLS over it.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsSocket>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.read(buf),
            Transport::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.write(buf),
            Transport::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(socket) => socket.flush(),
            Transport::Tls(tls) => tls.flush(),
        }
    }
}

/// The socket under either (timeouts, shutdown), so that tests written for
/// a plain socket keep working.
impl std::ops::Deref for Transport {
    type Target = TcpStream;
    fn deref(&self) -> &TcpStream {
        match self {
            Transport::Plain(socket) => socket,
            Transport::Tls(tls) => &tls.sock,
        }
    }
}

/// A test CA and the certificates it signs, in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=threadchat test CA",
        ]);
        std::fs::write(
            pki.path("leaf.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl on PATH");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A new P-256 key in `key` and a certificate request for localhost in
    /// `csr`, for the CA to sign.
    pub fn key_and_request(&self, key: &str, csr: &str) {
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            "/CN=localhost",
        ]);
    }

    /// A leaf for localhost signed by the CA, valid for `days`, as
    /// `<name>.pem` (leaf then CA, like certbot's fullchain.pem) and
    /// `<name>.key` (PKCS#8).
    pub fn leaf(&self, name: &str, days: u32) -> (PathBuf, PathBuf) {
        let (key, csr, cert) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        self.key_and_request(&key, &csr);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &cert,
            "-extfile",
            "leaf.ext",
            "-days",
            &days.to_string(),
        ]);
        let chain = format!(
            "{}{}",
            std::fs::read_to_string(self.path(&cert)).unwrap(),
            std::fs::read_to_string(self.path("ca.pem")).unwrap()
        );
        let pem = self.path(&format!("{name}.pem"));
        std::fs::write(&pem, chain).unwrap();
        (pem, self.path(&key))
    }

    /// A client configuration that trusts this CA only.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        let ca = CertificateDer::from_pem_file(self.path("ca.pem")).unwrap();
        roots.add(ca).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

/// A server's certificate and a client that trusts it: what a test needs to
/// run a server over TLS, for as long as the value lives.
pub struct ServerTls {
    pki: Pki,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client: Arc<ClientConfig>,
}

impl ServerTls {
    pub fn new() -> ServerTls {
        let pki = Pki::new();
        let (cert, key) = pki.leaf("server", 30);
        let client = pki.client_config();
        ServerTls {
            pki,
            cert,
            key,
            client,
        }
    }

    /// `config` serving this certificate.
    pub fn config(&self, config: Config) -> Config {
        server_config(&self.cert, &self.key, config)
    }

    /// The binary's flags for this certificate.
    pub fn args(&self) -> Vec<String> {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        vec![
            "--tls-cert".into(),
            path(&self.cert),
            "--tls-key".into(),
            path(&self.key),
        ]
    }

    pub fn pki(&self) -> &Pki {
        &self.pki
    }
}

/// `config` with `--tls-cert cert --tls-key key`.
pub fn server_config(cert: &Path, key: &Path, config: Config) -> Config {
    Config {
        tls_cert: Some(cert.to_path_buf()),
        tls_key: Some(key.to_path_buf()),
        ..config
    }
}

/// A TLS connection to the server, handshake done.
pub fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<TlsSocket> {
    let socket = TcpStream::connect(addr)?;
    socket.set_read_timeout(Some(WAIT))?;
    let name = ServerName::try_from("localhost").unwrap();
    let session = ClientConnection::new(config, name).unwrap();
    let mut stream = StreamOwned::new(session, socket);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// Sends one request over https and reads the answer to its end.
pub fn https(addr: SocketAddr, config: Arc<ClientConfig>, request: &str) -> String {
    let mut stream = connect(addr, config).expect("TLS handshake");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    // The server ends with close_notify; a reset after it is not an error
    // worth failing over, so keep what was read.
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}
