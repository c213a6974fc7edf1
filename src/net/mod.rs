//! What several threads rely on about sockets: one fact about blocking
//! sockets, a write that never blocks (`send_now`), and a connection's byte stream, plain or TLS (`stream.rs`,
//! where the reader and the writer share one TLS session).
//!
//! A leaf: the front door, the reader and the writer all use it, and none
//! of them should have to import another to get it.

mod stream;

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;

pub use stream::{HandshakeFailure, Stream, TlsStream};

/// A blocking socket with a timeout reports it as `WouldBlock` on Unix and
/// `TimedOut` elsewhere.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Writes what `socket` takes now, without waiting: one `send` with
/// `MSG_DONTWAIT`, so the socket itself stays blocking for its reader (a
/// non-blocking file descriptor would make the reader's blocking reads
/// fail). `WouldBlock` when the socket's buffer is full.
pub fn send_now(socket: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `send` only reads `bytes.len()` bytes from `bytes`, and
        // the descriptor is the open socket `socket` borrows.
        let sent = unsafe {
            libc::send(
                socket.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if sent >= 0 {
            return Ok(sent as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}
