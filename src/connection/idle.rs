//! A quiet reader waits near the top of its stack.
//!
//! A thread's stack is memory only where it has been touched, and a page
//! once touched stays resident (`stack.rs`). A reader blocked in its
//! WebSocket's `read` sleeps at the bottom of tungstenite's frames and the
//! stream's: on a plain socket that kept three stack pages (12 KiB, the
//! largest part of an idle connection's cost) resident for as long as the
//! client said nothing, which for most connections is most of their life.
//!
//! So a reader that has heard nothing for `QUIET_AFTER` stops waiting in
//! `read`. Its read times out (the socket's read timeout is at most that
//! long), the frames below the read loop unwind, and here, one call below
//! the loop, it gives back the stack pages below this frame
//! (`stack::give_back_below_here`) and waits with `poll` for the socket to
//! become readable. When the client speaks, the reader reads as before and
//! goes deep only for as long as it has work; the pages it touches then
//! come back zeroed, one page fault each.
//!
//! How shallow that is, in an optimised build on x86-64: the top 4.4 KiB of
//! a thread's stack are glibc's (its thread descriptor and static TLS),
//! then come the frames of the thread's start, the front door, the opening
//! and the read loop, and the `poll` about 7.7 KiB down: two pages, where
//! a read kept three. The read loop's frame is kept small for it
//! (`reader.rs` builds its `WebSocket` on the heap and does each message's
//! work out of line); `tests/quiet_reader.rs` checks what stays resident.
//!
//! What it costs the chat path: nothing per message. A reader that is
//! busy never comes here: its reads find bytes or wait in `read`. Each
//! quiet spell costs one wake-up more (the read timing out), one `madvise`
//! and one `poll`; a message after a quiet spell costs a few page faults.
//! That is at most once per `QUIET_AFTER` per connection.
//!
//! When the wait is safe: the read timed out, so tungstenite had no whole
//! frame in its buffer and, over TLS, the session had no plaintext waiting
//! (`net/stream.rs` hands out what it holds before it reads the socket);
//! everything still to come must arrive on the socket, which `poll` sees.
//!
//! Alternatives rejected: `poll` before every read, which is the same
//! saving with a system call more per message on the busy path; a
//! non-blocking socket whose reads return to the loop, which the socket's
//! other users (the writer's blocking writes, the goodbye) would have to
//! learn about; and one epoll thread holding the idle sockets, which would
//! give the server a second way to read a connection.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::stack;
use crate::net::Stream;

/// Whether the wait ended because there is something to read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Woken {
    /// The socket is readable (bytes, an end, or an error to read).
    Readable,
    /// The time given passed first, or a signal interrupted the wait.
    TimedOut,
}

/// Gives back the stack below this frame, then waits up to `timeout` for
/// `socket` to have something to read. Never inlined, so that its frame,
/// and so the depth it waits at, is its own and small.
#[inline(never)]
pub(super) fn wait_readable(socket: &Stream, timeout: Duration) -> io::Result<Woken> {
    stack::give_back_below_here();
    let mut interest = libc::pollfd {
        fd: socket.socket().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // Rounded up, so a wait never ends just before its deadline; capped at
    // what `poll` takes.
    let millis = timeout.as_nanos().div_ceil(1_000_000);
    let millis = libc::c_int::try_from(millis).unwrap_or(libc::c_int::MAX);
    // SAFETY: `interest` is one valid `pollfd`, borrowed for the call, and
    // its descriptor is the open socket `socket` borrows.
    let ready = unsafe { libc::poll(&mut interest, 1, millis) };
    match ready {
        0 => Ok(Woken::TimedOut),
        n if n > 0 => Ok(Woken::Readable),
        _ => {
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => Ok(Woken::TimedOut),
                _ => Err(error),
            }
        }
    }
}
