//! wss:// for the load: a simulated user's byte stream is a socket, or the
//! same socket with a rustls client session (`--tls-ca`, the CA the server's
//! certificate is checked against; loopback only, like every target).
//!
//! A sender has two threads on one connection: its user thread reads, its
//! writing thread writes pre-encoded frames (`room/sender.rs`). A socket
//! takes that as it is; a TLS session does not (one state machine for both
//! directions, and records must reach the socket in the order they were
//! sealed). So `Conn::Tls` shares the session behind a mutex: a reader
//! reads ciphertext *outside* it (it may wait there for `READ_POLL`) and
//! feeds it in under it; a writer seals *and* writes under it, so records
//! leave in sequence. Writing under the lock is the simple choice a load
//! generator can afford: the server always reads, so the write never waits
//! long, and the reader holds the lock only for work in memory. (The
//! server, which must never block on a slow peer while holding it, does
//! the opposite: `src/net/stream.rs`.)

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// Ciphertext read from the socket at a time: one whole TLS record.
const CIPHERTEXT_CHUNK: usize = 16 * 1024 + 2 * 1024;

/// A client configuration trusting the CA certificate(s) in the PEM file
/// `ca`, and nothing else.
pub fn client_config(ca: &Path) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(ca).map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A user's byte stream.
pub enum Conn {
    Plain(TcpStream),
    Tls(Arc<Shared>),
}

/// One socket and its session, shared by the threads of one user.
pub struct Shared {
    socket: TcpStream,
    session: Mutex<Session>,
}

struct Session {
    tls: ClientConnection,
    /// Plaintext taken out of the session (so that rustls's own buffer
    /// never fills) and not yet read, from `read_at` on.
    plaintext: Vec<u8>,
    read_at: usize,
    /// The server sent close_notify: reads give 0.
    closed: bool,
}

impl Conn {
    /// The TLS handshake on `socket`, for host `name`, within the socket's
    /// read timeout.
    pub fn handshake(socket: TcpStream, config: Arc<ClientConfig>, name: &str) -> io::Result<Conn> {
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut session = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut io_socket = &socket;
        while session.is_handshaking() {
            session.complete_io(&mut io_socket)?;
        }
        let session = Session {
            tls: session,
            plaintext: Vec::new(),
            read_at: 0,
            closed: false,
        };
        Ok(Conn::Tls(Arc::new(Shared {
            socket,
            session: Mutex::new(session),
        })))
    }

    /// The socket (timeouts, shutdown, epoll; never its bytes over TLS).
    pub fn socket(&self) -> &TcpStream {
        match self {
            Conn::Plain(socket) => socket,
            Conn::Tls(shared) => &shared.socket,
        }
    }

    /// A second handle for a second thread (a sender's writer).
    pub fn try_clone(&self) -> io::Result<Conn> {
        match self {
            Conn::Plain(socket) => socket.try_clone().map(Conn::Plain),
            Conn::Tls(shared) => Ok(Conn::Tls(shared.clone())),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_plain(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut chunk = [0u8; CIPHERTEXT_CHUNK];
        loop {
            {
                let mut guard = self.lock();
                let session = &mut *guard;
                if session.read_at < session.plaintext.len() {
                    let waiting = &session.plaintext[session.read_at..];
                    let n = waiting.len().min(buf.len());
                    buf[..n].copy_from_slice(&waiting[..n]);
                    session.read_at += n;
                    if session.read_at == session.plaintext.len() {
                        session.plaintext.clear();
                        session.read_at = 0;
                    }
                    return Ok(n);
                }
                if session.closed {
                    return Ok(0);
                }
            }
            // Outside the lock: this waits for the socket's read timeout.
            let n = (&self.socket).read(&mut chunk)?;
            if n == 0 {
                // The server closed without close_notify.
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let mut guard = self.lock();
            let session = &mut *guard;
            let mut ciphertext = &chunk[..n];
            while !ciphertext.is_empty() {
                if session.tls.read_tls(&mut ciphertext)? == 0 {
                    break;
                }
                let state = session
                    .tls
                    .process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let waiting = state.plaintext_bytes_to_read();
                if waiting > 0 {
                    let start = session.plaintext.len();
                    session.plaintext.resize(start + waiting, 0);
                    session
                        .tls
                        .reader()
                        .read_exact(&mut session.plaintext[start..])?;
                }
                session.closed |= state.peer_has_closed();
            }
            // Whatever the session answers on its own (alerts, key updates).
            let mut socket = &self.socket;
            while session.tls.wants_write() {
                session.tls.write_tls(&mut socket)?;
            }
        }
    }

    fn write_sealed(&self, buf: &[u8]) -> io::Result<usize> {
        let mut session = self.lock();
        session.tls.writer().write_all(buf)?;
        let mut socket = &self.socket;
        while session.tls.wants_write() {
            session.tls.write_tls(&mut socket)?;
        }
        Ok(buf.len())
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(socket) => socket.read(buf),
            Conn::Tls(shared) => shared.read_plain(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(socket) => socket.write(buf),
            Conn::Tls(shared) => shared.write_sealed(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(socket) => socket.flush(),
            Conn::Tls(_) => Ok(()),
        }
    }
}
