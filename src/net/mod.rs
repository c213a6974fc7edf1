//! What several threads rely on about sockets: one fact about blocking
//! sockets, and a connection's byte stream, plain or TLS (`stream.rs`,
//! where the reader and the writer share one TLS session).
//!
//! A leaf: the front door, the reader and the writer all use it, and none
//! of them should have to import another to get it.

mod stream;

use std::io;

pub use stream::{HandshakeFailure, Stream, TlsStream};

/// A blocking socket with a timeout reports it as `WouldBlock` on Unix and
/// `TimedOut` elsewhere.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
