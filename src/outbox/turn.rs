//! Whose turn it is to write a client's socket.
//!
//! Invariant: **at most one thread writes a socket at a time**, and it is
//! the one whose turn the client's `Turn` says it is. Everybody else queues.
//!
//! ```text
//!   Opening ──101 sent──▶ Idle ◀──────── queue drained ─────────┐
//!                          │ │                                   │
//!    a push, nothing queued│ │a push or a close finds it Idle,   │
//!    (plain socket only)   │ │or a direct write would block      │
//!                          ▼ ▼                                   │
//!                      Direct ──would block──▶ Backlogged ───────┘
//!                   (the pusher, one          (the writer thread,
//!                    non-blocking send)        blocking writes)
//!                                                  │ Finish, a close frame,
//!                                                  ▼ an error, too slow
//!                                                Closed
//! ```
//!
//! - `Idle`: nobody writes. A pusher that finds nothing queued takes the
//!   turn (`Direct`) and writes its frame with one non-blocking `send`
//!   (`net::send_now`): on a reading client the bytes go straight into the
//!   kernel, with no thread woken, which is what a steady chat costs.
//! - `Backlogged`: the socket would block, or frames wait. The turn goes to
//!   the connection's writer thread, started for it if none lives
//!   (`WriterStart`), which drains the queue with blocking writes, as the
//!   one writer per socket always did, and hands the turn back (`Idle`)
//!   when the queue is empty. It then lingers (`Linger`) for a while in
//!   case the backlog comes back, and ends.
//! - `Closed`: the last writer has closed the socket; nothing is written
//!   any more, so nothing can follow a close frame.
//!
//! Writing in place is for a dispatcher that keeps up. When its batch of
//! events is large (`IN_PLACE_MAX_BATCH_EVENTS`: at full speed, or when
//! the machine's cores are busy with other work), pushes queue instead, as
//! if the socket would block, and the writer threads do the writing side by
//! side: one thread writing a hundred sockets in turn would fall further
//! behind, and the scheduler serves many short-lived writers more readily
//! than one thread that never sleeps. So the design chooses per batch:
//! in place at a steady rate, writer threads at full speed.
//!
//! Taking a turn is a compare-and-swap on one atomic; handing it over is
//! "announce, then look", with a fence between, on both sides: a pusher
//! queues and then looks at the turn, a turn holder gives it back and then
//! looks at the queue. Whichever comes second sees the other, so a queued
//! frame is never left with nobody to write it.
//!
//! ## Why this shape
//!
//! The two designs it stands between: a writer thread per connection for
//! its whole life (what threadchat did first), which costs every delivery
//! a wake-up and two context switches and every connection a second
//! thread; and a pool of writers over non-blocking sockets with a poller,
//! which is an event loop, the design threadchat exists to show an
//! alternative to. Here the blocking writer stays, with its timeouts and
//! its `writev`, but only for as long as its client is behind. Rejected
//! too: the dispatcher writing every frame itself, blocking, which would
//! let one slow client stall the chat.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering, fence};
use std::sync::{Arc, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::Shared;
use crate::config::WRITE_POLL_INTERVAL;
use crate::net;
use crate::protocol::Frame;

/// Whose turn it is to write the socket (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Turn {
    /// Before the 101 is sent: nothing may be written, everything waits.
    Opening,
    /// Nobody writes; the next pusher may write in place.
    Idle,
    /// A pusher writes one frame in place, without blocking.
    Direct,
    /// The writer thread drains the queue.
    Backlogged,
    /// The socket is closed; nothing more is written.
    Closed,
}

/// A `Turn` in an atomic.
pub(super) struct AtomicTurn(AtomicU8);

impl AtomicTurn {
    pub(super) fn new(turn: Turn) -> AtomicTurn {
        AtomicTurn(AtomicU8::new(turn as u8))
    }

    fn load(&self) -> Turn {
        match self.0.load(Ordering::SeqCst) {
            0 => Turn::Opening,
            1 => Turn::Idle,
            2 => Turn::Direct,
            3 => Turn::Backlogged,
            _ => Turn::Closed,
        }
    }

    fn store(&self, turn: Turn) {
        self.0.store(turn as u8, Ordering::SeqCst);
    }

    /// Takes the turn from `from` to `to`; false if it was not `from`.
    fn swap_if(&self, from: Turn, to: Turn) -> bool {
        self.0
            .compare_exchange(from as u8, to as u8, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// What a direct write left for the writer.
pub struct Carry {
    /// The unwritten rest of the frame.
    pub rest: Frame,
    /// Whether part of the frame was written: the socket is then in the
    /// middle of a frame, and no close frame may be written before its end.
    pub partial: bool,
    /// Whether it is a close frame: the writer closes the socket after it
    /// and writes nothing more.
    pub last: bool,
}

/// What a push did.
pub(super) enum Now {
    /// The frame is written, or carried for the writer: nothing to queue.
    Done,
    /// Not written: queue it.
    Queue,
}

/// How a writer's linger ended.
pub enum Linger {
    /// A backlog came back: the turn is the writer's again.
    Mine,
    /// Nothing came: the writer ends.
    Over,
}

/// Starts a writer thread for a connection with a backlog, and counts what
/// direct writes wrote. The connection provides it (`connection/writer.rs`):
/// the outbox cannot name the metrics or the writer's code.
pub trait WriterStart: Send + Sync {
    /// Starts a thread that runs the writer for `shared`; an error if the
    /// thread could not start (the connection is then closed).
    fn start(&self, shared: Arc<Shared>) -> io::Result<()>;
    /// Bytes written in place.
    fn written(&self, bytes: usize);
    /// Whether frames may be written in place now: not while the
    /// dispatcher is behind (`IN_PLACE_MAX_BATCH_EVENTS`).
    fn in_place(&self) -> bool;
}

impl Shared {
    /// The 101 is sent: writing may begin.
    pub(super) fn opened(self: &Arc<Self>) {
        if self.turn.swap_if(Turn::Opening, Turn::Idle) {
            self.look_after_release();
        }
    }

    /// Writes `frame` in place if nobody writes and nothing waits, and the
    /// socket is plain. What the socket does not take at once is carried
    /// for a writer thread, which gets the turn.
    pub(super) fn write_now(self: &Arc<Self>, frame: &Frame) -> Now {
        if !self.direct || frame.is_empty() || !self.receiver.is_empty() {
            return Now::Queue;
        }
        if !self.start.get().is_some_and(|start| start.in_place()) {
            return Now::Queue;
        }
        if !self.turn.swap_if(Turn::Idle, Turn::Direct) {
            return Now::Queue;
        }
        if !self.receiver.is_empty() {
            // Queued before the turn was taken: it goes first.
            self.hand_to_writer();
            return Now::Queue;
        }
        match net::send_now(self.socket.socket(), frame) {
            Ok(written) if written == frame.len() => {
                self.count_written(written);
                self.turn.store(Turn::Idle);
                self.look_after_release();
            }
            Ok(written) => {
                self.count_written(written);
                self.carry_over(frame.slice(written..), written > 0, false);
            }
            // Would block, or the socket failed: the writer finds out which.
            Err(_) => self.carry_over(frame.clone(), false, false),
        }
        Now::Done
    }

    /// Closes the socket in place, after `close_frame` if there is one,
    /// when nobody writes and nothing waits on a plain socket: the common
    /// goodbye costs no thread. False if it must go through the queue. A
    /// close frame the socket takes only in part is finished by a writer,
    /// which then closes.
    pub(super) fn close_now(self: &Arc<Self>, close_frame: Option<&Frame>) -> bool {
        if !self.direct || !self.receiver.is_empty() {
            return false;
        }
        if !self.turn.swap_if(Turn::Idle, Turn::Direct) {
            return false;
        }
        if !self.receiver.is_empty() {
            self.hand_to_writer();
            return false;
        }
        let written = match close_frame {
            None => Ok(0),
            Some(frame) => net::send_now(self.socket.socket(), frame),
        };
        let whole = close_frame.map_or(0, |frame| frame.len());
        match written {
            Ok(n) if n == whole => {
                self.count_written(n);
                let _ = self.socket.shutdown(std::net::Shutdown::Both);
                self.closed();
                true
            }
            Ok(n) => {
                self.count_written(n);
                self.close_after_carry(close_frame, n)
            }
            Err(_) => self.close_after_carry(close_frame, 0),
        }
    }

    /// The writer gets what is left of the close frame, then `Finish`.
    fn close_after_carry(self: &Arc<Self>, close_frame: Option<&Frame>, written: usize) -> bool {
        let Some(frame) = close_frame else {
            return false;
        };
        self.carry_over(frame.slice(written..), written > 0, true);
        true
    }

    fn count_written(&self, bytes: usize) {
        if let Some(start) = self.start.get() {
            start.written(bytes);
        }
    }

    fn carry_over(self: &Arc<Self>, rest: Frame, partial: bool, last: bool) {
        self.added(rest.len());
        *lock(&self.carry) = Some(Carry {
            rest,
            partial,
            last,
        });
        self.hand_to_writer();
    }

    /// Something was queued (and fenced): if nobody holds the turn, the
    /// writer gets it. A holder sees the queue when it hands the turn back.
    pub(super) fn queued_work(self: &Arc<Self>) {
        if self.turn.swap_if(Turn::Idle, Turn::Backlogged) {
            self.ensure_writer();
        }
    }

    /// The turn was just handed back (`Idle`): frames queued meanwhile get
    /// a writer.
    fn look_after_release(self: &Arc<Self>) {
        fence(Ordering::SeqCst);
        if !self.receiver.is_empty() && self.turn.swap_if(Turn::Idle, Turn::Backlogged) {
            self.ensure_writer();
        }
    }

    /// The turn holder gives the turn to the writer thread.
    fn hand_to_writer(self: &Arc<Self>) {
        self.turn.store(Turn::Backlogged);
        self.ensure_writer();
    }

    /// The turn is `Backlogged`: wakes the writer thread if one lives,
    /// else starts one. Exactly one thread serves the backlog: a writer
    /// ending marks itself gone and then looks at the turn (`linger`), a
    /// caller here marks a writer wanted and then looks at who is alive.
    fn ensure_writer(self: &Arc<Self>) {
        if self.writer_alive.swap(true, Ordering::SeqCst) {
            if self.writer_asleep.swap(false, Ordering::SeqCst)
                && let Some(writer) = lock(&self.writer).as_ref()
            {
                writer.unpark();
            }
            return;
        }
        let started = match self.start.get() {
            Some(start) => start.start(self.clone()),
            None => Err(io::Error::other("the connection is not open")),
        };
        if let Err(e) = started {
            log::warn!("no writer thread for a client with a backlog ({e}); closing it");
            self.writer_alive.store(false, Ordering::SeqCst);
            self.closed();
            let _ = self.socket.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Called by a writer thread as it starts.
    pub fn writer_started(&self) {
        *lock(&self.writer) = Some(thread::current());
    }

    /// The writer's queue is empty: it hands the turn back. True if frames
    /// came meanwhile and the turn is its own again.
    pub fn writer_release(&self) -> bool {
        self.turn.store(Turn::Idle);
        fence(Ordering::SeqCst);
        !self.receiver.is_empty() && self.turn.swap_if(Turn::Idle, Turn::Backlogged)
    }

    /// The writer waits up to `linger` for the turn to come back to it.
    pub fn linger(&self, linger: Duration) -> Linger {
        let until = Instant::now() + linger;
        loop {
            self.writer_asleep.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            match self.turn.load() {
                Turn::Backlogged => {
                    self.writer_asleep.store(false, Ordering::SeqCst);
                    return Linger::Mine;
                }
                Turn::Closed => return Linger::Over,
                _ => {}
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            thread::park_timeout(left);
        }
        self.writer_asleep.store(false, Ordering::SeqCst);
        // Going: marked gone first, then a look, so that a hand-over that
        // saw this writer alive (and only woke it) is still served.
        self.writer_alive.store(false, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.turn.load() == Turn::Backlogged && !self.writer_alive.swap(true, Ordering::SeqCst) {
            return Linger::Mine;
        }
        Linger::Over
    }

    /// Takes what a direct write left unwritten.
    pub fn take_carry(&self) -> Option<Carry> {
        lock(&self.carry).take()
    }

    /// The socket is closed: nothing more is written, and the reader
    /// waiting for it (`wait_closed`) may go.
    pub fn closed(&self) {
        self.turn.store(Turn::Closed);
        if let Some(reader) = lock(&self.closing).as_ref() {
            reader.unpark();
        }
    }

    /// Whose turn it is now (for tests and `/api/stats`).
    pub fn turn(&self) -> Turn {
        self.turn.load()
    }

    pub(super) fn wait_closed(&self, bound: Duration) {
        if self.turn.load() == Turn::Opening {
            return; // never opened: nothing was ever written
        }
        *lock(&self.closing) = Some(thread::current());
        let until = Instant::now() + bound;
        while self.turn.load() != Turn::Closed {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            // Woken by `closed`; the poll only bounds a wake-up lost to
            // the race between storing the thread and the last look.
            thread::park_timeout(left.min(WRITE_POLL_INTERVAL));
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
