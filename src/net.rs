//! One fact about blocking sockets that several threads rely on.
//!
//! A leaf: the front door, the reader and the writer all use it, and none
//! of them should have to import another to get it.

use std::io;

/// A blocking socket with a timeout reports it as `WouldBlock` on Unix and
/// `TimedOut` elsewhere.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
