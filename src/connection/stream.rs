//! The stream under the reader's tungstenite `WebSocket`: its *read* half is
//! the socket, its *write* half the client's outbox, so that everything
//! tungstenite sends on its own (pongs, the reply to a close) reaches the
//! socket through the writer thread, the only one that writes to it. Why
//! the reader and the writer split a socket this way: `reader.rs`; over
//! TLS, how they share the session: `net/stream.rs`.

use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::Bytes;

use crate::net::Stream;
use crate::outbox::Outbox;
use crate::protocol;

/// The stream under the reader's `WebSocket`: reads come from the socket,
/// writes (pongs, close frames) go to the writer's queue.
pub(super) struct ReaderStream {
    pub(super) socket: Arc<Stream>,
    pub(super) outbox: Outbox,
}

impl Read for ReaderStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = (&*self.socket).read(buf);
        // What the client sent may make its TLS session want to answer (an
        // alert, a key update): only the writer may write it.
        if self.socket.wants_write() {
            self.outbox.wake();
        }
        read
    }
}

impl Write for ReaderStream {
    /// tungstenite hands over each frame it sends in one `write` call
    /// (its write buffer is configured to size 0), so each push is one whole
    /// frame, and a close frame can be told apart: it goes last.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if protocol::is_close_frame(buf) {
            self.outbox.close(Bytes::copy_from_slice(buf));
        } else {
            self.outbox
                .push(Bytes::copy_from_slice(buf))
                .map_err(|_| io::Error::other("outbound queue full"))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
