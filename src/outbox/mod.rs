//! A client's outbound queue: the only way bytes reach its socket.
//!
//! Several threads have something to send to one client: the dispatcher
//! (broadcasts, refusals) and the client's own reader (pongs, close replies,
//! refusals of bad input). None of them may write to the socket, because two
//! writers would interleave half-written frames. So each of them pushes
//! finished frames into this queue and one writer thread per client
//! (`writer.rs`) drains it.
//!
//! The queue is bounded in messages and in bytes, and pushing never blocks:
//! a full queue means the client has stopped reading, and it is disconnected
//! instead of making anybody wait. (The channel underneath is crossbeam's
//! unbounded one, with the bound kept here: a bounded crossbeam channel
//! allocates all its slots up front, which for 10,000 mostly idle clients
//! would cost more memory than the clients themselves.)

use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Arc, OnceLock};
use std::thread::{self, Thread};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::net::Stream;
use crate::protocol::Frame;

/// What the writer thread is asked to do.
pub enum Outbound {
    /// Write these bytes (one or more complete frames).
    Frame(Frame),
    /// Write this close frame after everything queued before it, then close
    /// the socket. Nothing queued after a close frame is ever written: the
    /// WebSocket protocol allows no data after it.
    Close(Frame),
    /// Write everything queued before this, then close the socket.
    Finish,
}

/// State that the senders and the writer of one connection share.
pub struct Shared {
    /// The socket, shared by the reader (which reads) and the writer (which
    /// writes). Anyone may shut it down: that is how a connection is ended
    /// from outside, since it wakes a reader blocked in `read`.
    pub socket: Arc<Stream>,
    /// Bytes pushed and not yet taken by the writer.
    queued_bytes: AtomicUsize,
    /// Set when the connection is being dropped (too slow, server shutdown);
    /// the writer stops writing what is queued when it sees it.
    abandoned: AtomicBool,
    /// The close frame to send, if it can be, when the connection is
    /// abandoned.
    last_words: OnceLock<Frame>,
    /// The writer thread, to wake it; set by the writer when it starts.
    writer: OnceLock<Thread>,
    /// True while the writer is asleep (parked) waiting for work.
    writer_asleep: AtomicBool,
    /// Set by the dispatcher when it admits the client's first login, and
    /// never cleared: the reader, which cannot know by itself whether a
    /// login it passed on was admitted, reads it at its wake-ups to keep
    /// `--login-timeout`. A flag rather than a message: the reader only
    /// ever needs its latest value, and reading it never waits.
    logged_in: AtomicBool,
}

/// The sending half. Cheap to clone: the dispatcher keeps one, the reader
/// another.
#[derive(Clone)]
pub struct Outbox {
    sender: Sender<Outbound>,
    shared: Arc<Shared>,
    max_messages: usize,
    max_bytes: usize,
}

/// The receiving half, owned by the writer thread.
pub struct Inbox {
    pub receiver: Receiver<Outbound>,
    pub shared: Arc<Shared>,
}

/// The queue was full: the client is too slow and must go.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull;

/// Makes the queue of one connection.
pub fn outbox(socket: Arc<Stream>, max_messages: usize, max_bytes: usize) -> (Outbox, Inbox) {
    let (sender, receiver) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared {
        socket,
        queued_bytes: AtomicUsize::new(0),
        abandoned: AtomicBool::new(false),
        last_words: OnceLock::new(),
        writer: OnceLock::new(),
        writer_asleep: AtomicBool::new(false),
        logged_in: AtomicBool::new(false),
    });
    let outbox = Outbox {
        sender,
        shared: shared.clone(),
        max_messages,
        max_bytes,
    };
    (outbox, Inbox { receiver, shared })
}

impl Outbox {
    /// Queues a frame unless the client is already too far behind. Never
    /// blocks. A push after the writer has gone is silently dropped: the
    /// connection is closing and its reader will report it.
    pub fn push(&self, frame: Frame) -> Result<(), QueueFull> {
        let queued = self.shared.queued_bytes.load(Ordering::Relaxed);
        if self.sender.len() >= self.max_messages
            || queued.saturating_add(frame.len()) > self.max_bytes
        {
            return Err(QueueFull);
        }
        self.shared.added(frame.len());
        self.send(Outbound::Frame(frame));
        Ok(())
    }

    /// Queues a close frame, the last thing the client will be sent. Not
    /// bounded: a close frame must always get through to a client that reads.
    pub fn close(&self, close_frame: Frame) {
        self.shared.added(close_frame.len());
        self.send(Outbound::Close(close_frame));
    }

    /// Asks the writer to flush what is queued and then close the socket.
    pub fn finish(&self) {
        self.send(Outbound::Finish);
    }

    /// Drops the connection now: whatever is queued is abandoned, `last_words`
    /// (a close frame) is written if the writer is between frames, and the
    /// socket is shut down. Used when waiting on the client is not an option.
    pub fn abandon(&self, last_words: Frame) {
        let _ = self.shared.last_words.set(last_words);
        self.shared.abandoned.store(true, Ordering::Release);
        // Wakes a writer that is waiting for work; one blocked in a write
        // notices the flag within `WRITE_POLL_INTERVAL`.
        self.send(Outbound::Finish);
    }

    /// Sends, then wakes the writer if it sleeps. See `Inbox::recv` for why
    /// the fence makes a lost wake-up impossible.
    fn send(&self, item: Outbound) {
        let _ = self.sender.send(item);
        fence(Ordering::SeqCst);
        if self.shared.writer_asleep.swap(false, Ordering::SeqCst)
            && let Some(writer) = self.shared.writer.get()
        {
            writer.unpark();
        }
    }

    /// What waits in the queue now: messages (pushes)
    /// and bytes. Two atomic loads; the dispatcher reads it for `/api/stats`.
    pub fn queued(&self) -> (usize, usize) {
        (
            self.sender.len(),
            self.shared.queued_bytes.load(Ordering::Relaxed),
        )
    }

    /// The bounds this queue was made with.
    pub fn limits(&self) -> (usize, usize) {
        (self.max_messages, self.max_bytes)
    }

    /// Whether the dispatcher has dropped this client
    /// (`abandon`): how its reader tells a slow consumer from a client close.
    pub fn is_abandoned(&self) -> bool {
        self.shared.is_abandoned()
    }

    /// Wakes the writer with nothing to write, so that it flushes what the
    /// TLS session wants to send by itself (`net::Stream::wants_write`).
    /// Not counted against the bounds: it carries no byte.
    pub fn wake(&self) {
        self.send(Outbound::Frame(Frame::new()));
    }

    /// The dispatcher has admitted a login on this connection.
    pub fn mark_logged_in(&self) {
        self.shared.logged_in.store(true, Ordering::Release);
    }

    /// Whether a login has ever been admitted on this connection.
    pub fn has_logged_in(&self) -> bool {
        self.shared.logged_in.load(Ordering::Acquire)
    }

    /// Shuts the socket down at once, waking its reader and writer.
    pub fn shutdown_socket(&self) {
        let _ = self.shared.socket.shutdown(Shutdown::Both);
    }
}

impl Inbox {
    /// Waits for the next thing to write. `None` once every `Outbox` is gone.
    ///
    /// Why not just `Receiver::recv`? It spins and calls `sched_yield` a few
    /// times before it sleeps, which pays off when the other side is on
    /// another core and about to send. Here hundreds of writers share a core
    /// and mostly wait for the next broadcast, so every spin steals time from
    /// the thread that would produce it (measured: four `sched_yield` calls
    /// per delivery at 20,000 deliveries/s). So the writer sleeps with
    /// `thread::park`, and a pusher that finds it asleep wakes it.
    ///
    /// The lost wake-up this must avoid: the writer finds the queue empty, a
    /// push lands and finds the writer not yet asleep, then the writer goes to
    /// sleep forever. Both sides therefore announce first and look second,
    /// with a fence between: the writer sets `writer_asleep` and then checks
    /// the queue; a pusher adds to the queue and then checks `writer_asleep`.
    /// Whichever comes second sees the other's announcement. (An `unpark`
    /// that arrives before the `park` is kept, so `park` returns at once.)
    ///
    /// Every connection's queue ends with `Finish` or a close frame, sent by
    /// the reader's guard even on panic, so the writer is never left asleep
    /// after its last sender is gone.
    pub fn recv(&self) -> Option<Outbound> {
        let _ = self.shared.writer.set(thread::current());
        loop {
            match self.receiver.try_recv() {
                Ok(item) => return Some(item),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            self.shared.writer_asleep.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if self.receiver.is_empty() {
                thread::park();
            }
            self.shared.writer_asleep.store(false, Ordering::SeqCst);
        }
    }
}

impl Shared {
    pub fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    /// The close frame left by `Outbox::abandon`.
    pub fn last_words(&self) -> Option<&Frame> {
        self.last_words.get()
    }

    /// Bytes put on the queue. Every frame the writer may take off it is
    /// counted here first, so the count never goes below zero.
    fn added(&self, bytes: usize) {
        self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The writer reports bytes it has taken off the queue.
    pub fn taken(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}
